"""Parse + merge cost of sync/maindata at 1k / 10k / 20k / 50k torrents (synthetic payloads).

Run: .venv/bin/python bench/bench_maindata.py [--quick]

Each figure is printed next to a baseline measured in the same run:
- full update: msgspec decode + merge vs stdlib ``json.loads`` + the same merge;
- 1 % incremental merge: vs what a poller without rid would do every tick (parse + merge a full update);
- memory per torrent: tracemalloc of the merged state / torrents.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from qsse.qbt.maindata import MainDataMerger

STATES = ["pausedDL", "pausedUP", "stalledUP", "uploading", "downloading", "stalledDL", "queuedDL", "checkingUP"]
CATS = ["movies", "tv", "tv/anime", "linux", "music", "books", ""]
TAGS = ["hd", "4k", "fav", "old", "new", "x265"]


def torrent(rng: random.Random, i: int) -> dict[str, Any]:
    size = rng.randint(1 << 20, 1 << 34)
    progress = rng.choice([0.0, 1.0, rng.random()])
    return {
        "added_on": 1_600_000_000 + i, "amount_left": int(size * (1 - progress)), "auto_tmm": False,
        "availability": -1, "category": rng.choice(CATS), "completed": int(size * progress),
        "completion_on": 1_700_000_000 if progress == 1 else -1, "content_path": f"/data/torrent-{i}",
        "dl_limit": -1, "dlspeed": rng.randint(0, 10**6), "download_path": "", "downloaded": int(size * progress),
        "downloaded_session": 0, "eta": 8640000, "f_l_piece_prio": False, "force_start": False,
        "infohash_v1": f"{i:040x}", "infohash_v2": "", "last_activity": 1_700_000_000,
        "magnet_uri": f"magnet:?xt=urn:btih:{i:040x}&dn=torrent-{i}", "max_ratio": -1, "max_seeding_time": -1,
        "name": f"Some.Torrent.Name.{i}.1080p.WEB-DL", "num_complete": rng.randint(0, 100),
        "num_incomplete": rng.randint(0, 100), "num_leechs": 0, "num_seeds": 0, "priority": 0,
        "progress": progress, "ratio": rng.random() * 3, "ratio_limit": -2, "save_path": "/data",
        "seeding_time": rng.randint(0, 10**6), "seeding_time_limit": -2, "seen_complete": 1_700_000_000,
        "seq_dl": False, "size": size, "state": rng.choice(STATES), "super_seeding": False,
        "tags": ", ".join(rng.sample(TAGS, rng.randint(0, 2))), "time_active": rng.randint(0, 10**6),
        "total_size": size, "tracker": f"http://tracker{i % 7}.example:6969/announce", "trackers_count": 1,
        "up_limit": -1, "uploaded": rng.randint(0, 1 << 34), "uploaded_session": 0, "upspeed": rng.randint(0, 10**6),
    }


def full_payload(n: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "rid": 1, "full_update": True,
        "torrents": {f"{i:040x}": torrent(rng, i) for i in range(n)},
        "categories": {c: {"name": c, "savePath": f"/data/{c}"} for c in CATS if c},
        "tags": TAGS,
        "trackers": {f"http://tracker{k}.example:6969/announce": [f"{i:040x}" for i in range(k, n, 7)]
                     for k in range(7)},
        "server_state": {"refresh_interval": 1500, "dl_info_speed": 0, "up_info_speed": 0},
    }


def partial_payload(n: int, rid: int, fraction: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    changed = rng.sample(range(n), max(1, int(n * fraction)))
    return {
        "rid": rid,
        "torrents": {f"{i:040x}": {"dlspeed": rng.randint(0, 10**6), "upspeed": rng.randint(0, 10**6),
                                   "progress": rng.random(), "eta": rng.randint(0, 10**5)} for i in changed},
        "server_state": {"dl_info_speed": rng.randint(0, 10**7)},
    }


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000, statistics.median(times) * 1000


def run(n: int, repeat: int) -> dict[str, float]:
    full_body = json.dumps(full_payload(n)).encode()
    partials = [json.dumps(partial_payload(n, rid, 0.01, rid)).encode() for rid in range(2, 2 + repeat)]

    def full_msgspec() -> None:
        MainDataMerger().apply_bytes(full_body)

    def full_stdlib() -> None:
        MainDataMerger().apply(json.loads(full_body))

    merger = MainDataMerger()
    merger.apply_bytes(full_body)
    bodies = iter(partials)

    def incremental() -> None:
        merger.apply_bytes(next(bodies))

    full_ms, _ = best_of(full_msgspec, repeat)
    stdlib_ms, _ = best_of(full_stdlib, repeat)
    inc_ms, _ = best_of(incremental, repeat)

    gc.collect()
    tracemalloc.start()
    keep = MainDataMerger()
    keep.apply_bytes(full_body)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n": n, "json_mb": len(full_body) / 1e6, "full_ms": full_ms, "stdlib_ms": stdlib_ms,
        "inc_ms": inc_ms, "bytes_per_torrent": current / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, fewer repeats")
    args = parser.parse_args()
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 20_000, 50_000]
    repeat = 3 if args.quick else 5
    print(f"{'torrents':>8} {'JSON MB':>8} {'full parse+merge ms':>20} {'stdlib json ms':>15} {'ratio':>6} "
          f"{'1% merge ms':>12} {'full-refetch ms':>16} {'ratio':>7} {'KB/torrent':>11}")
    for n in sizes:
        r = run(n, repeat)
        print(f"{r['n']:>8} {r['json_mb']:>8.1f} {r['full_ms']:>20.1f} {r['stdlib_ms']:>15.1f} "
              f"{r['stdlib_ms'] / r['full_ms']:>5.2f}x {r['inc_ms']:>12.2f} {r['full_ms']:>16.1f} "
              f"{r['full_ms'] / r['inc_ms']:>6.0f}x {r['bytes_per_torrent'] / 1024:>11.2f}")


if __name__ == "__main__":
    main()
