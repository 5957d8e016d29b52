"""Benchmark of the view engine (issue 3): full recompute, a 1 % tick, 50 views on one tick.

Run: ``.venv/bin/python bench/bench_views.py`` (``--quick`` for small sizes only).

Each number is the median of several runs and stands next to a *baseline* measured in the
same run: the straightforward reference implementation of the tests (filter, search, sort
and page the whole list from scratch, no caches), which is what a cache-less engine does on
every tick.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_views_reference import reference_view

from qsse.qbt.maindata import MainData
from qsse.qbt.status import Health, InstanceState
from qsse.views.engine import ViewEngine
from qsse.views.options import Filters, ViewOptions

STATES = (
    ["stalledUP"] * 40 + ["uploading"] * 8 + ["pausedUP"] * 12 + ["queuedUP"] * 3 + ["downloading"] * 6
    + ["stalledDL"] * 6 + ["pausedDL"] * 3 + ["queuedDL"] * 2 + ["metaDL", "checkingUP", "error", "missingFiles"]
)  # fmt: skip
CATEGORIES = ["movies", "tv", "tv/hd", "music", "books", "games", "software", "linux", ""]
TAGS = ["", "", "", "private", "public", "cross-seed", "private, cross-seed", "keep", "keep, public", "hd"]
WORDS = [
    "ubuntu",
    "debian",
    "fedora",
    "arch",
    "linux",
    "server",
    "desktop",
    "amd64",
    "arm64",
    "iso",
    "live",
    "netinst",
    "the",
    "a",
    "of",
    "and",
    "great",
    "big",
    "small",
    "movie",
    "show",
    "season",
    "episode",
    "s01e02",
    "s02e05",
    "1080p",
    "720p",
    "2160p",
    "x264",
    "x265",
    "hevc",
    "web-dl",
    "bluray",
    "remux",
    "flac",
    "mp3",
    "album",
    "live",
    "concert",
    "collection",
    "complete",
    "edition",
    "deluxe",
    "remastered",
    "director",
    "cut",
    "extended",
    "night",
    "day",
    "blue",
    "red",
]
TRACKERS = [f"udp://tracker{i}.example.org:1337/announce" for i in range(12)] + [
    f"https://t{i}.private.net/announce/abc" for i in range(6)
]


def make_row(rng: random.Random, h: str, now: int) -> dict[str, Any]:
    state = rng.choice(STATES)
    size = rng.randrange(50_000_000, 80_000_000_000)
    progress = 1.0 if state.endswith("UP") else round(rng.random(), 4)
    name = ".".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 9))) + f".{rng.randrange(1990, 2026)}"
    tracker = rng.choice(TRACKERS)
    return {
        "hash": h,
        "added_on": now - rng.randrange(0, 10**8),
        "amount_left": int(size * (1 - progress)),
        "auto_tmm": False,
        "availability": -1,
        "category": rng.choice(CATEGORIES),
        "completed": int(size * progress),
        "completion_on": now - rng.randrange(0, 10**7) if progress == 1 else -1,
        "content_path": f"/data/{name}",
        "dl_limit": -1,
        "dlspeed": rng.randrange(0, 5_000_000) if state == "downloading" else 0,
        "download_path": "",
        "downloaded": int(size * progress),
        "downloaded_session": rng.randrange(0, 10**9),
        "eta": 8640000 if progress == 1 else rng.randrange(0, 8640001),
        "f_l_piece_prio": False,
        "force_start": False,
        "infohash_v1": h,
        "infohash_v2": "",
        "last_activity": now - rng.randrange(0, 10**6),
        "magnet_uri": f"magnet:?xt=urn:btih:{h}&dn={name}",
        "max_ratio": -1,
        "max_seeding_time": -1,
        "name": name,
        "num_complete": rng.randrange(0, 500),
        "num_incomplete": rng.randrange(0, 50),
        "num_leechs": rng.randrange(0, 10),
        "num_seeds": rng.randrange(0, 50),
        "priority": rng.randrange(0, 20) if not state.endswith("UP") else 0,
        "progress": progress,
        "ratio": round(rng.random() * 5, 3),
        "ratio_limit": -2,
        "save_path": "/data/",
        "seeding_time": rng.randrange(0, 10**7),
        "seeding_time_limit": -2,
        "seen_complete": now - rng.randrange(0, 10**6),
        "seq_dl": False,
        "size": size,
        "state": state,
        "super_seeding": False,
        "tags": rng.choice(TAGS),
        "time_active": rng.randrange(0, 10**7),
        "total_size": size,
        "tracker": tracker,
        "trackers_count": 1,
        "up_limit": -1,
        "uploaded": rng.randrange(0, 10**11),
        "uploaded_session": rng.randrange(0, 10**9),
        "upspeed": rng.randrange(0, 2_000_000) if state == "uploading" else 0,
    }


def make_library(n: int, seed: int = 1) -> MainData:
    rng = random.Random(seed)
    now = 1_760_000_000
    torrents = {}
    trackers: dict[str, list[str]] = {}
    for _i in range(n):
        h = f"{rng.getrandbits(160):040x}"
        row = make_row(rng, h, now)
        torrents[h] = row
        trackers.setdefault(row["tracker"], []).append(h)
    categories = {c: {"name": c, "savePath": f"/data/{c}"} for c in CATEGORIES if c}
    return MainData(
        rid=1,
        torrents=torrents,
        categories=categories,
        tags=("private", "public", "cross-seed", "keep", "hd"),
        trackers={url: tuple(hs) for url, hs in trackers.items()},
        server_state={"connection_status": "connected", "dl_info_speed": 0, "up_info_speed": 0},
    )


def tick(data: MainData, rng: random.Random, share: float = 0.01) -> MainData:
    """A new snapshot in which ``share`` of the rows changed (new row objects), like the merger makes."""
    torrents = dict(data.torrents)
    for h in rng.sample(list(torrents), max(1, int(len(torrents) * share))):
        row = dict(torrents[h])
        row["dlspeed"] = rng.randrange(0, 5_000_000)
        row["upspeed"] = rng.randrange(0, 2_000_000)
        row["uploaded"] += rng.randrange(0, 10**7)
        row["ratio"] = round(row["ratio"] + 0.01, 3)
        row["num_seeds"] = rng.randrange(0, 50)
        if rng.random() < 0.2:
            row["state"] = rng.choice(STATES)
        torrents[h] = row
    return MainData(
        rid=data.rid + 1,
        torrents=torrents,
        categories=data.categories,
        tags=data.tags,
        trackers=data.trackers,
        server_state={**data.server_state, "dl_info_speed": rng.randrange(0, 10**7)},
    )


def state_of(data: MainData) -> InstanceState:
    return InstanceState(
        instance_id=1,
        name="main",
        health=Health.SYNCING,
        data=data,
        version="v5.0.4",
        webapi_version="2.11.3",
        last_success=1_760_000_000.0,
        next_poll=1_760_000_002.0,
    )


TYPICAL = ViewOptions(
    instance_id=1,
    instance_ids=(1,),
    page=0,
    limit=300,
    sort="name",
    order="asc",
    search="linux",
    filters=Filters(status=("seeding",), categories=("software", "linux")),
)


def fifty_views() -> list[ViewOptions]:
    """50 distinct views, the kind a few dashboards open: sorts, orders, filters and pages."""
    sorts = ["added_on", "name", "size", "ratio", "upspeed", "eta", "state", "priority", "progress", "tracker"]
    filter_sets = [
        Filters(),
        Filters(status=("downloading",)),
        Filters(status=("seeding",), categories=("movies",)),
        Filters(tags=("private",), exclude_status=("paused",)),
        Filters(categories=("tv",), trackers=("tracker3.example.org",)),
    ]
    views = []
    for i in range(50):
        views.append(
            ViewOptions(
                instance_id=1,
                instance_ids=(1,),
                page=i % 3,
                limit=100 if i % 2 else 300,
                sort=sorts[i % len(sorts)],
                order="asc" if (i // 10) % 2 else "desc",
                search=["", "", "", "1080p", "ubuntu"][i % 5],
                filters=filter_sets[(i // 2) % len(filter_sets)],
            )
        )
    assert len({v.group_key for v in views}) == 50
    return views


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(n: int, repeat: int) -> dict[str, tuple[float, float]]:
    data = make_library(n)
    rng = random.Random(7)
    state = state_of(data)
    views = fifty_views()
    now = 1_760_000_001.0
    out: dict[str, tuple[float, float]] = {}

    def baseline(options: ViewOptions, st: InstanceState) -> None:
        reference_view(options, [st])

    # 1. full recompute of the typical view on a cold engine (nothing cached at all).
    out["typical view, cold engine"] = (
        median_ms(lambda: ViewEngine().build(TYPICAL, [state], now=now), repeat),
        median_ms(lambda: baseline(TYPICAL, state), repeat),
    )

    # 2. the typical view, first build of the view on a warm engine (another view already
    #    derived the instance's counts and domains).
    def first_build() -> None:
        engine = ViewEngine()
        engine.build(views[0], [state], now=now)
        start = time.perf_counter()
        engine.build(TYPICAL, [state], now=now)
        first_build.ms = (time.perf_counter() - start) * 1000  # type: ignore[attr-defined]

    warm = []
    for _ in range(repeat):
        first_build()
        warm.append(first_build.ms)  # type: ignore[attr-defined]
    out["typical view, new view on warm engine"] = (statistics.median(warm), out["typical view, cold engine"][1])

    # 3. the typical view after a tick that changed 1 % of the rows.
    engine = ViewEngine()
    engine.build(TYPICAL, [state], now=now)
    tick_times, tick_base = [], []
    current = data
    for _ in range(repeat):
        current = tick(current, rng)
        st = state_of(current)
        start = time.perf_counter()
        engine.build(TYPICAL, [st], now=now)
        tick_times.append((time.perf_counter() - start) * 1000)
        tick_base.append(median_ms(lambda st=st: baseline(TYPICAL, st), 1))
    out["typical view, after a 1 % tick"] = (statistics.median(tick_times), statistics.median(tick_base))

    # 4. 50 distinct views built on the same tick (views already subscribed: warm caches).
    engine = ViewEngine()
    for v in views:
        engine.build(v, [state], now=now)
    many, many_base = [], []
    current = data
    for _ in range(max(1, repeat // 2)):
        current = tick(current, rng)
        st = state_of(current)
        start = time.perf_counter()
        for v in views:
            engine.build(v, [st], now=now)
        many.append((time.perf_counter() - start) * 1000)
    st = state_of(current)
    start = time.perf_counter()
    for v in views:
        baseline(v, st)
    many_base.append((time.perf_counter() - start) * 1000)
    out["50 views on one 1 % tick"] = (statistics.median(many), statistics.median(many_base))

    # 5. 50 distinct views subscribed at once (cold engine: every view built for the first time).
    def cold_fifty() -> None:
        engine = ViewEngine()
        for v in views:
            engine.build(v, [state], now=now)

    out["50 views, cold engine"] = (median_ms(cold_fifty, max(1, repeat // 3)), many_base[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1k and 10k torrents, fewer repeats")
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 20_000, 50_000]
    repeat = 3 if args.quick else 7
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} cpus, load average {load}; median of {repeat} runs")
    print()
    print(f"| {'torrents':>8} | {'measure':<38} | {'engine ms':>9} | {'baseline ms':>11} | {'speed-up':>8} |")
    print(f"|{'-' * 10}|{'-' * 40}|{'-' * 11}|{'-' * 13}|{'-' * 10}|")
    for n in sizes:
        for name, (ms, base) in bench(n, repeat).items():
            print(f"| {n:>8} | {name:<38} | {ms:>9.2f} | {base:>11.2f} | {base / ms:>7.1f}x |", flush=True)


if __name__ == "__main__":
    main()
