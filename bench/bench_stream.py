"""Load benchmark of the SSE stream: simulator, daemon and clients as three separate processes.

Run: .venv/bin/python bench/bench_stream.py [--quick] [--torrents 10000] [--json out.json]

(a) 1 / 100 / 1,000 SSE clients spread over 10 distinct views (limit 100) of a simulated instance
    changing 1 % of its rows per tick at 1 tick/s, daemon ``sync.interval = 1``: daemon CPU and RSS,
    p50/p99 delay from the tick (``meta.timestamp``) to the client, bytes per client per tick of
    ``delta`` frames vs the full frame of the same view (its ``init``).
(b) Upstream: maindata requests/s with 100 SSE clients vs 100 direct ``sync/maindata`` pollers, with
    the simulator's CPU; and 50 clients connecting at once to an idle, never-polled instance vs 50
    direct pollers starting at once.
(c) Idle library (a second simulator that never ticks): bytes per second per subscription.

Every figure is printed next to its baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import ClientProcess, CpuWindow, Proc, gc_pauses, get_json, loadavg, metrics, start_daemon, start_sim

LIMIT = 100
#: Set by --raw-ticks: where each level's raw frame timings are written.
RAW_TICKS: Path | None = None
#: Ten distinct views of one instance: different sorts, status/category/tag filters, searches, an expression.
VIEWS: list[dict[str, Any]] = [
    {"sort": "added_on", "order": "desc"},
    {"sort": "name", "order": "asc"},
    {"sort": "size", "order": "desc"},
    {"sort": "dlspeed", "order": "desc", "filters": {"status": ["downloading"]}},
    {"sort": "upspeed", "order": "desc", "filters": {"status": ["seeding"]}},
    {"sort": "progress", "order": "asc", "filters": {"categories": ["tv"]}},
    {"sort": "ratio", "order": "desc", "filters": {"tags": ["seedbox"]}},
    {"sort": "name", "order": "asc", "search": "1080p"},
    {"sort": "added_on", "order": "desc", "search": "linux", "filters": {"status": ["active"]}},
    {"sort": "eta", "order": "asc", "filters": {"expr": "Ratio > 1 && Size > 1000000000"}},
]


def subscriptions(n: int, instance_id: int) -> list[dict[str, Any]]:
    return [
        {"key": f"c{i}", "instanceId": instance_id, "limit": LIMIT, **VIEWS[i % len(VIEWS)]} for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def note(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_clients(specs: list[dict[str, Any]], window: float, watch: dict[str, Proc], sim_url: str) -> dict[str, Any]:
    """Start client processes, wait for every init, settle, then measure one window."""
    procs = [ClientProcess(spec) for spec in specs]
    try:
        for p in procs:
            p.wait_ready()
        time.sleep(2.5)  # let the connect burst and the first ticks after it pass
        load = loadavg()
        watched = {**watch, **{f"clients{i}": p for i, p in enumerate(procs)}}
        cpu = CpuWindow(watched)
        before = get_json(sim_url + "/sim/statistics")
        cpu.start()
        for p in procs:
            p.send("start")
        time.sleep(window)
        usage = cpu.stop()
        results = [p.finish() for p in procs]
        after = get_json(sim_url + "/sim/statistics")
    finally:
        for p in procs:
            p.stop()
    maindata = after["requests"].get("sync/maindata", 0) - before["requests"].get("sync/maindata", 0)
    return {"load": load, "cpu": usage, "results": results, "maindata": maindata, "window": window}


def sse_level(n: int, daemon: Proc, sim: Proc, base: str, sim_url: str, window: float, procs: int) -> dict[str, Any]:
    subs = subscriptions(n, 1)
    specs = [{"mode": "sse", "base": base, "subs": subs[k::procs]} for k in range(procs)]
    m = run_clients(specs, window, {"daemon": daemon, "simulator": sim}, sim_url)
    rss, hwm = daemon.memory_mb()
    results = m["results"]
    ticks = [t for r in results for t in r["ticks"]]
    # The tick's start: the earliest meta.timestamp of any view built from the same poll (same rid).
    first_ts: dict[int, float] = defaultdict(lambda: float("inf"))
    for _, rid, ts, _ in ticks:
        first_ts[rid] = min(first_ts[rid], ts)
    last_ts: dict[int, float] = defaultdict(lambda: float("-inf"))
    for _, rid, ts, _ in ticks:
        last_ts[rid] = max(last_ts[rid], ts)
    # Per poll: from the first view's build start to the last one's, i.e. the time spent building views.
    spreads = [(last_ts[rid] - first_ts[rid]) * 1000 for rid in first_ts]
    own = [(recv - ts) * 1000 for _, _, ts, recv in ticks]
    from_tick = [(recv - first_ts[rid]) * 1000 for _, rid, _, recv in ticks]
    frames: dict[str, int] = defaultdict(int)
    frame_bytes: dict[str, int] = defaultdict(int)
    for r in results:
        for k, v in r["frames"].items():
            frames[k] += v
        for k, v in r["frame_bytes"].items():
            frame_bytes[k] += v
    init_sizes = [s for r in results for s in r["init_sizes"]]
    polls_with_frames = len(first_ts)
    errors = [e for r in results for e in r["errors"]]
    pauses = gc_pauses(daemon, *results[0]["window"])
    if RAW_TICKS is not None:
        # (view index, rid, meta.timestamp, receive time) of every frame, for a closer look at slow ticks.
        raw = [(i % len(VIEWS), rid, ts, recv) for r in results for i, rid, ts, recv in r["ticks"]]
        RAW_TICKS.with_suffix(f".{n}.json").write_text(json.dumps({"ticks": raw, "gc": pauses}))
    row = {
        "clients": n,
        "client_procs": procs,
        "load": m["load"],
        "window_s": window,
        "daemon_cpu": m["cpu"]["daemon"],
        "sim_cpu": m["cpu"]["simulator"],
        "client_cpu": [m["cpu"][f"clients{i}"] for i in range(procs)],
        "rss_mb": rss,
        "hwm_mb": hwm,
        "p50_ms": percentile(own, 0.5),
        "p99_ms": percentile(own, 0.99),
        "p50_tick_ms": percentile(from_tick, 0.5),
        "p99_tick_ms": percentile(from_tick, 0.99),
        "max_tick_ms": max(from_tick, default=float("nan")),
        "delta_frames": frames.get("delta", 0),
        "update_frames": frames.get("update", 0),
        "delta_bytes_mean": frame_bytes.get("delta", 0) / max(1, frames.get("delta", 0)),
        "delta_bytes_per_client_per_poll": frame_bytes.get("delta", 0) / n / max(1, m["maindata"]),
        "init_bytes_mean": statistics.fmean(init_sizes) if init_sizes else float("nan"),
        "polls": m["maindata"],
        "polls_with_frames": polls_with_frames,
        "maindata_per_s": m["maindata"] / window,
        "frames_per_client_per_s": (frames.get("delta", 0) + frames.get("update", 0)) / n / window,
        "dropped": metrics(base).get("qsse_sessions_dropped_slow_total", 0.0),
        "build_spread_p50_ms": percentile(spreads, 0.5),
        "build_spread_max_ms": max(spreads, default=float("nan")),
        "slow_ticks": sum(1 for x in spreads if x > 500),
        "gc_pauses": len(pauses),
        "gc_max_ms": max((ms for _, ms in pauses), default=0.0),
        "gc_total_ms": sum(ms for _, ms in pauses),
        "gc_by_generation": {g: sum(1 for gen, _ in pauses if gen == g) for g in (0, 1, 2)},
        "errors": errors[:5],
    }
    note(
        f"{n} clients: daemon {row['daemon_cpu']:.0f}% CPU, RSS {rss:.0f} MB, p50/p99 {row['p50_ms']:.0f}/"
        f"{row['p99_ms']:.0f} ms (from tick start {row['p50_tick_ms']:.0f}/{row['p99_tick_ms']:.0f} ms), "
        f"delta {row['delta_bytes_mean']:.0f} B vs init {row['init_bytes_mean']:.0f} B, "
        f"{row['maindata_per_s']:.2f} maindata/s, view builds per tick p50 {row['build_spread_p50_ms']:.0f} ms, "
        f"max {row['build_spread_max_ms']:.0f} ms, GC pauses >= 5 ms: {len(pauses)} (max {row['gc_max_ms']:.0f} ms, "
        f"total {row['gc_total_ms']:.0f} ms), load {m['load']}"
    )
    return row


def direct_pollers(n: int, sim: Proc, sim_url: str, window: float, interval: float) -> dict[str, Any]:
    spec = {"mode": "poll", "sim": sim_url, "n": n, "interval": interval}
    m = run_clients([spec], window, {"simulator": sim}, sim_url)
    row = {
        "pollers": n,
        "load": m["load"],
        "maindata_per_s": m["maindata"] / window,
        "sim_cpu": m["cpu"]["simulator"],
        "client_cpu": m["cpu"]["clients0"],
    }
    note(f"{n} direct pollers: {row['maindata_per_s']:.1f} maindata/s, simulator {row['sim_cpu']:.0f}% CPU")
    return row


def burst(mode: str, n: int, base: str, sim_url: str, idle_window: float) -> dict[str, Any]:
    """``n`` clients (SSE, or direct pollers) starting at the same moment against the idle simulator."""
    checkpoints = [0.9, 3.0]
    if mode == "sse":
        spec: dict[str, Any] = {"mode": "sse", "base": base, "subs": subscriptions(n, 2), "parallel": n}
    else:
        spec = {"mode": "poll", "sim": sim_url, "n": n, "interval": 1.0}
    spec.update({"sim": sim_url, "checkpoints": checkpoints})
    before = get_json(sim_url + "/sim/statistics")["requests"]
    load = loadavg()
    p = ClientProcess(spec)
    try:
        p.wait_ready()
        # The client samples its checkpoints relative to its own start, a little after p.started.
        time.sleep(max(0.0, p.started + checkpoints[-1] + 2.0 - time.time()))
        p.send("start")
        time.sleep(idle_window)
        result = p.finish()
    finally:
        p.stop()
    counts = []
    for cp in result["checkpoints"]:
        delta = {k: v - before.get(k, 0) for k, v in cp["requests"].items() if v - before.get(k, 0)}
        counts.append({"at": cp["at"], "requests": delta})
    frames_total = sum(result["frame_bytes"].values())
    window = result["window"][1] - result["window"][0]
    row = {
        "mode": mode,
        "clients": n,
        "load": load,
        "checkpoints": counts,
        "all_inits_s": result["all_inits_at"],
        "idle_window_s": window,
        "idle_frames": result["frames"],
        "idle_bytes_per_s_per_sub": frames_total / window / n if mode == "sse" else None,
        "idle_wire_bytes_per_s_per_sub": result["wire_bytes"] / window / n if mode == "sse" else None,
        "errors": result["errors"][:5],
    }
    note(f"burst of {n} {mode}: upstream requests {counts}, all inits after {row['all_inits_s']:.2f} s")
    if mode == "sse":
        note(
            f"idle: {row['idle_bytes_per_s_per_sub']:.1f} B/s per subscription (SSE bytes), "
            f"{row['idle_wire_bytes_per_s_per_sub']:.1f} B/s on the wire, frames {result['frames']}"
        )
    return row


def run(torrents: int, *, quick: bool, levels: list[int], upstream: bool, client_procs: int = 1) -> dict[str, Any]:
    window = 6.0 if quick else 20.0
    out: dict[str, Any] = {"torrents": torrents, "limit": LIMIT, "views": VIEWS, "window_s": window,
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load": loadavg()}
    note(f"{torrents} torrents: starting simulator(s), load {out['load']}")
    sim, sim_url = start_sim(torrents, tick=1.0, change=0.01)
    procs: list[Proc] = [sim]
    try:
        idle_url = ""
        if upstream:
            idle, idle_url = start_sim(torrents, tick=0)
            procs.append(idle)
        instances = {1: sim_url, **({2: idle_url} if upstream else {})}
        daemon, base = start_daemon(instances, interval=1.0)
        procs.append(daemon)
        out["levels"] = []
        for n in levels:
            # One client process parses 1,000 streams at a few % of a core (see the client CPU column), so no
            # split is needed; client_procs > 1 would spread them.
            out["levels"].append(sse_level(n, daemon, sim, base, sim_url, window, client_procs))
        if upstream:
            time.sleep(2.5)  # the last client left: instance 1's loop stops
            out["direct"] = direct_pollers(100, sim, sim_url, window, 1.0)
            # About four heartbeat periods (5 s + 0-10 % jitter): the subscriptions start in phase.
            idle_window = 6.0 if quick else 21.0
            out["burst_sse"] = burst("sse", 50, base, idle_url, idle_window)
            time.sleep(2.5)
            out["burst_poll"] = burst("poll", 50, base, idle_url, 1.0)
    finally:
        for p in reversed(procs):
            p.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows (smoke check)")
    parser.add_argument("--torrents", type=int, default=None)
    parser.add_argument("--levels", default=None, help="comma-separated client counts (default 1,100,1000)")
    parser.add_argument("--no-upstream", action="store_true", help="skip (b) and (c)")
    parser.add_argument("--client-procs", type=int, default=1, help="spread the SSE clients over N processes")
    parser.add_argument("--raw-ticks", type=Path, default=None, help="write raw frame timings to FILE.<clients>.json")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    global RAW_TICKS
    RAW_TICKS = args.raw_ticks
    torrents = args.torrents or (2000 if args.quick else 10_000)
    levels = [int(x) for x in args.levels.split(",")] if args.levels else ([1, 100, 300] if args.quick else
                                                                            [1, 100, 1000])
    result = run(torrents, quick=args.quick, levels=levels, upstream=not args.no_upstream,
                 client_procs=args.client_procs)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
