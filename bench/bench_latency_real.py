"""Time from a change inside a real qbittorrent-nox to the frame at an SSE client, vs a direct poller.

Run: .venv/bin/python bench/bench_latency_real.py [--quick] [--changes 30] [--json out.json]

A real ``qbittorrent-nox`` (tests/testbed.py: refresh_interval 250 ms) with 20 torrents, ``qsse serve``
at its default ``sync.interval`` of 2 s in its own process, and in this process: one SSE client
watching the instance, one direct ``sync/maindata`` poller (own session, rid, 2 s (+0-10 %) after each
answer, as qsse waits) and a renamer. Each change is a ``torrents/rename`` through the WebUI API; its
latency is the wall-clock time from just before the request to the first frame (or poll answer)
carrying the new name. Changes are spaced by a random pause so their phase against the polls is
uniform: the expected latency is about interval / 2 + qBittorrent's refresh + one poll.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _procs import loadavg, start_daemon
from sse_client import open_stream
from testbed import QbtInstance, launch_instance, scratch_dir

INTERVAL = 2.0  # qsse's default sync.interval
PREFIX = "bench-rename-"


class Seen:
    """First time each renamed name was observed, per observer."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.changed = trio.Event()

    def saw(self, name: str, when: float) -> None:
        if name.startswith(PREFIX) and name not in self.at:
            self.at[name] = when
            self.changed.set()
            self.changed = trio.Event()


async def sse_observer(base: str, seen: Seen, ready: trio.Event) -> None:
    sub = {"key": "bench", "instanceId": 1, "limit": 100, "sort": "name", "order": "asc"}
    async with open_stream(base, [sub]) as stream:
        while True:
            event = await stream.next()
            now = time.time()
            if event.name == "init":
                ready.set()
            if event.name in ("init", "update", "delta"):
                for row in event.payload["data"].get("torrents") or []:
                    if "name" in row:
                        seen.saw(row["name"], now)


async def direct_poller(inst: QbtInstance, seen: Seen, ready: trio.Event) -> None:
    async with httpx2.AsyncClient(base_url=inst.url, trust_env=False, verify=False, timeout=30) as http:
        r = await http.post("/api/v2/auth/login", data={"username": inst.username, "password": inst.password})
        r.raise_for_status()
        rid = 0
        while True:
            r = await http.get("/api/v2/sync/maindata", params={"rid": rid})
            now = time.time()
            r.raise_for_status()
            body = r.json()
            rid = body["rid"]
            for row in (body.get("torrents") or {}).values():
                if "name" in row:
                    seen.saw(row["name"], now)
            ready.set()
            await trio.sleep(INTERVAL * (1 + random.uniform(0, 0.1)))


async def measure(inst: QbtInstance, base: str, hashes: list[str], changes: int) -> dict[str, Any]:
    via_sse, via_poll = Seen(), Seen()
    sse_ready, poll_ready = trio.Event(), trio.Event()
    latencies: dict[str, list[float]] = {"sse": [], "poll": []}
    missed = {"sse": 0, "poll": 0}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sse_observer, base, via_sse, sse_ready)
        nursery.start_soon(direct_poller, inst, via_poll, poll_ready)
        with trio.fail_after(30):
            await sse_ready.wait()
            await poll_ready.wait()
        async with httpx2.AsyncClient(base_url=inst.url, trust_env=False, verify=False, timeout=30) as http:
            login = {"username": inst.username, "password": inst.password}
            (await http.post("/api/v2/auth/login", data=login)).raise_for_status()
            for k in range(changes):
                await trio.sleep(random.uniform(0, INTERVAL))
                name = f"{PREFIX}{k:03d}"
                t0 = time.time()
                r = await http.post("/api/v2/torrents/rename", data={"hash": hashes[k % len(hashes)], "name": name})
                r.raise_for_status()
                with trio.move_on_after(15):
                    while name not in via_sse.at or name not in via_poll.at:
                        await (via_sse.changed if name not in via_sse.at else via_poll.changed).wait()
                for key, seen in (("sse", via_sse), ("poll", via_poll)):
                    if name in seen.at:
                        latencies[key].append((seen.at[name] - t0) * 1000)
                    else:
                        missed[key] += 1
        nursery.cancel_scope.cancel()
    return {"latencies_ms": latencies, "missed": missed}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] if ordered else float("nan")

    return {"n": len(values), "p50": q(0.5), "p99": q(0.99), "mean": statistics.fmean(values) if values else 0.0,
            "min": q(0.0), "max": q(1.0)}


def run(changes: int) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = loadavg()
    print(f"  real qbittorrent-nox: {changes} renames, load {load}", flush=True)
    inst = launch_instance(scratch_dir("qbt-bench-"), name="bench", username="admin", password="adminadmin")
    daemon = None
    try:
        hashes = inst.add_torrents(20)
        daemon, base = start_daemon({1: inst.url}, interval=INTERVAL)
        measured = trio.run(measure, inst, base, hashes, changes)
    finally:
        if daemon is not None:
            daemon.stop()
        inst.kill()
    result = {
        "started": started,
        "load": load,
        "changes": changes,
        "interval_s": INTERVAL,
        "refresh_interval_ms": inst.refresh_interval_ms,
        "sse": summary(measured["latencies_ms"]["sse"]),
        "poll": summary(measured["latencies_ms"]["poll"]),
        "missed": measured["missed"],
    }
    for key, label in (("sse", "qsse SSE client"), ("poll", "direct poller")):
        s = result[key]
        print(f"  {label}: p50 {s['p50']:.0f} ms, p99 {s['p99']:.0f} ms, mean {s['mean']:.0f} ms (n={s['n']})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--changes", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.changes or (6 if args.quick else 40))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
