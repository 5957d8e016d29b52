"""Run every benchmark and write docs/benchmarks.md: the one command.

Run: .venv/bin/python bench/run_all.py [--quick] [--out FILE]

Full run (~7 min on 2 cores): bench_maindata, bench_views, the stream load benchmark at 10k torrents
(fan-out levels, upstream, simultaneous connects, idle library) and at 50k (fan-out levels), and the
real-qbittorrent-nox latency benchmark; rewrites docs/benchmarks.md. ``--quick`` (< 2 min) uses small
sizes and short windows as a smoke check and writes its report to a temporary file unless ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_latency_real
import bench_stream
from _procs import PYTHON, ROOT, loadavg

P99_TARGET_MS = 500
RSS_TARGET_MB = 300
IDLE_TARGET = 25


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    try:
        qbt = subprocess.run(["qbittorrent-nox", "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        qbt = "qbittorrent-nox not installed"
    return (
        f"{os.cpu_count()} cores ({model}), shared with other agents' work; {mem_kb / 2**20:.1f} GiB RAM; "
        f"Linux {platform.release()}; Python {platform.python_version()}; {qbt.strip()}"
    )


def run_script(name: str, quick: bool) -> tuple[str, str]:
    command = f".venv/bin/python bench/{name}" + (" --quick" if quick else "")
    print(f"== {command}", flush=True)
    load = loadavg()
    out = subprocess.run([PYTHON, f"bench/{name}", *(["--quick"] if quick else [])], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    print(out, flush=True)
    return command, f"load average at start: {load}\n\n" + out


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def verdict(ok: bool, measured: float | None = None, target: float | None = None, unit: str = "") -> str:
    if ok:
        return "**met**"
    if measured is None or target is None:
        return "**missed**"
    return f"**missed** by {fmt(measured - target)} {unit} ({fmt(100 * (measured / target - 1))} %)"


def levels_table(result: dict[str, Any]) -> str:
    head = (
        "| SSE clients | client procs | load avg at start | daemon CPU (% of 1 core) | daemon RSS / peak MB "
        "| delay p50 / p99 ms (frame's own tick) | delay p50 / p99 ms (from the poll's first build) "
        "| delta bytes per client per tick | full frame (init) bytes | full ÷ delta | frames per client per s "
        "| maindata polls/s | view builds per tick p50 / max ms (polls over 500 ms) "
        "| daemon GC pauses >= 5 ms: count, max, total ms | client CPU % |\n"
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for r in result["levels"]:
        ratio = r["init_bytes_mean"] / r["delta_bytes_mean"] if r["delta_bytes_mean"] else float("nan")
        rows.append(
            f"| {r['clients']:,} | {r['client_procs']} | {r['load']} | {fmt(r['daemon_cpu'], 1)} "
            f"| {fmt(r['rss_mb'])} / {fmt(r['hwm_mb'])} | {fmt(r['p50_ms'])} / {fmt(r['p99_ms'])} "
            f"| {fmt(r['p50_tick_ms'])} / {fmt(r['p99_tick_ms'])} | {fmt(r['delta_bytes_mean'])} "
            f"| {fmt(r['init_bytes_mean'])} | {fmt(ratio, 1)}x | {fmt(r['frames_per_client_per_s'], 2)} "
            f"| {fmt(r['maindata_per_s'], 2)} | {spread_cell(r)} | {gc_cell(r)} "
            f"| {' + '.join(fmt(c) for c in r['client_cpu'])} |"
        )
    return head + "\n".join(rows) + "\n"


def busy_rate(result: dict[str, Any]) -> float:
    row = next((r for r in result["levels"] if r["clients"] == 100), result["levels"][0])
    return float(row["delta_bytes_mean"] * row["frames_per_client_per_s"])


def spread_cell(row: dict[str, Any]) -> str:
    if "build_spread_p50_ms" not in row:
        return "-"
    return f"{fmt(row['build_spread_p50_ms'])} / {fmt(row['build_spread_max_ms'])} ({row['slow_ticks']})"


def gc_cell(row: dict[str, Any]) -> str:
    if "gc_pauses" not in row:
        return "-"
    return f"{row['gc_pauses']}, {fmt(row['gc_max_ms'])}, {fmt(row['gc_total_ms'])}"


def burst_counts(row: dict[str, Any]) -> list[str]:
    cells = []
    for cp in row["checkpoints"]:
        reqs = cp["requests"]
        text = ", ".join(f"{k} {v}" for k, v in sorted(reqs.items())) or "none"
        cells.append(f"{text} (total {sum(reqs.values())})")
    return cells


def why_missed(parts: dict[str, Any]) -> list[str]:
    """Explanations computed from the same run, for every level that misses the delay or memory target."""
    lines = ["## Why a target is missed", ""]
    for result in parts["stream"]:
        top = max(result["levels"], key=lambda r: r["clients"])
        p99 = max(top["p99_tick_ms"], top["p99_ms"])
        if p99 >= P99_TARGET_MS:
            busy = top["daemon_cpu"] * 10  # % of one core over a 1 s tick = ms of work per tick
            if "gc_pauses" in top:
                by_gen = top["gc_by_generation"]
                full = by_gen.get(2, by_gen.get("2", 0))
                gc_text = (
                    f"{top['gc_pauses']} garbage-collector pauses of 5 ms or more in the "
                    f"{fmt(top['window_s'])} s window ({full} of them full, generation-2 collections; longest "
                    f"{fmt(top['gc_max_ms'])} ms, {fmt(top['gc_total_ms'])} ms in all, against "
                    f"{fmt(top['daemon_cpu'] * top['window_s'] * 10)} ms of daemon CPU): a collection stops the "
                    "event loop, so when a full one lands inside a tick's fan-out every frame still to be written "
                    "waits for it"
                )
            else:
                gc_text = "garbage-collector pauses (not logged in this run)"
            slow = ""
            if "build_spread_max_ms" in top and top["slow_ticks"]:
                slow = (
                    f" Building the 10 views of one poll takes {fmt(top['build_spread_p50_ms'])} ms at the median "
                    f"(first view's build start to the last one's) but {fmt(top['build_spread_max_ms'])} ms on the "
                    f"slowest poll; {top['slow_ticks']} of {top['polls_with_frames']} polls took over 500 ms. In "
                    "the slow polls looked at so far, every view rebuilt from scratch instead of replaying the "
                    "touched rows (look with `bench_stream.py --raw-ticks`). One cause, a removal that shifted "
                    "every later row's position and looked like half the library changed, is fixed "
                    "(`qsse/views/engine.py::_touched`)."
                )
            lines += [
                f"- **p99 delay, {top['clients']:,} clients, {result['torrents']:,} torrents** ({fmt(p99)} ms): the "
                f"daemon works ~{fmt(busy)} ms of CPU per tick ({fmt(top['daemon_cpu'])} % of a core): 10 view "
                f"builds, then {top['clients']:,} frames written one session after another through the ASGI "
                f"server, so the last sessions of a tick get their frame that much later than the first (p50 "
                f"{fmt(top['p50_tick_ms'])} ms). The tail adds {gc_text}; and on 2 shared cores (load "
                f"{top['load']}) the daemon does not always get a core when the tick starts. The clients are not "
                f"the limit (client CPU {' + '.join(fmt(c) for c in top['client_cpu'])} %).{slow}",
            ]
            if "gc_pauses" in top:
                lines[-1] += (
                    " The daemon already tunes the collector (`qsse/daemon.py::tune_gc`: thresholds 20,000/20/100 "
                    "and a full collection every 5 min; with the defaults the 10k p99 was 610-830 ms, with 7 full "
                    "collections of up to 270 ms per 20 s). Untested: writing a tick's frames with fewer task "
                    "switches per session."
                )
        if top["hwm_mb"] >= RSS_TARGET_MB:
            lines += [
                f"- **RSS at {result['torrents']:,} torrents** ({fmt(top['hwm_mb'])} MB peak): memory grows with the "
                f"library: the merged state alone is ~3 KB per torrent (bench_maindata's last column), "
                f"~{fmt(3 * result['torrents'] / 1024)} MB here, and the 1-client level already holds "
                f"{fmt(result['levels'][0]['rss_mb'])} MB; the rest (view-engine caches, sessions) is not broken "
                "down by this benchmark. The 300 MB target is stated for 10k torrents.",
            ]
    if len(lines) == 2:
        lines.append("- None: every target is met in this run.")
    return [*lines, ""]


def report(args: argparse.Namespace, parts: dict[str, Any], command: str, started: str, elapsed: float) -> str:
    s10 = parts["stream"][0]
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {started} ({elapsed / 60:.1f} min). Machine: {machine()}.",
        "Every figure is printed next to a baseline measured in the same run. The load average printed",
        "with each measurement is the machine's (other agents were working on it), so absolute CPU and",
        "delay figures are pessimistic; the ratios are what carries over.",
        "",
    ]
    # ---- targets
    lines += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for result in parts["stream"]:
        top = max(result["levels"], key=lambda r: r["clients"])
        p99 = max(top["p99_tick_ms"], top["p99_ms"])
        # The issue states these targets for 10k torrents; other sizes are shown against them for reference.
        ref = "" if result["torrents"] == 10_000 else "; the target is stated for 10k, shown for reference"
        lines.append(
            f"| {top['clients']:,} clients on one daemon process: p99 tick-to-client delay < {P99_TARGET_MS} ms "
            f"({result['torrents']:,} torrents{ref}) "
            f"| p99 {fmt(p99)} ms (from the poll's first build; {fmt(top['p99_ms'])} ms from the frame's own "
            f"build) at {result['torrents']:,} torrents | {verdict(p99 < P99_TARGET_MS, p99, P99_TARGET_MS, 'ms')} |"
        )
        lines.append(
            f"| … and RSS < {RSS_TARGET_MB} MB ({result['torrents']:,} torrents{ref}) "
            f"| VmRSS {fmt(top['rss_mb'])} MB, VmHWM (peak) {fmt(top['hwm_mb'])} MB "
            f"| {verdict(top['hwm_mb'] < RSS_TARGET_MB, top['hwm_mb'], RSS_TARGET_MB, 'MB')} |"
        )
    if "burst_sse" in s10:
        first = s10["burst_sse"]["checkpoints"][0]["requests"]
        ok = first.get("auth/login", 0) <= 1 and first.get("sync/maindata", 0) <= 1
        lines.append(
            "| 50 clients connecting at the same moment add no upstream request (beyond one login + first poll) "
            f"| first {s10['burst_sse']['checkpoints'][0]['at']} s: {burst_counts(s10['burst_sse'])[0]}; "
            f"50 direct pollers: {burst_counts(s10['burst_poll'])[0]} | {verdict(ok)} |"
        )
        idle = s10["burst_sse"]["idle_bytes_per_s_per_sub"]
        lines.append(
            f"| idle library ≤ {IDLE_TARGET} B/s per subscription | {fmt(idle, 1)} B/s of SSE "
            f"({fmt(s10['burst_sse']['idle_wire_bytes_per_s_per_sub'], 1)} B/s with HTTP chunk framing) "
            f"| {verdict(idle <= IDLE_TARGET, idle, IDLE_TARGET, 'B/s')} |"
        )
    if "direct" in s10:
        hundred = next((r for r in s10["levels"] if r["clients"] == 100), None)
        if hundred is not None:
            ok = hundred["maindata_per_s"] <= 1.05
            lines.append(
                f"| one poll per instance per interval (1 s) with 100 clients | {fmt(hundred['maindata_per_s'], 2)} "
                f"maindata/s vs {fmt(s10['direct']['maindata_per_s'], 1)}/s for 100 direct pollers "
                f"| {verdict(ok)} |"
            )
    lines += ["", "Notes on the verdicts are in [Reading the numbers](#reading-the-numbers).", ""]

    # ---- (a)
    for result in parts["stream"]:
        lines += [
            f"## Fan-out: {result['torrents']:,} torrents, 1 % changing per tick at 1 tick/s",
            "",
            f"`{result['command']}` — started {result['started']}, load average {result['load']}.",
            "",
            "Simulator, daemon and clients are three separate processes (one client process for all clients of a",
            "level: see its CPU in the last column). Daemon `sync.interval = 1`, 10 distinct views (below),",
            f"`limit = {result['limit']}`, clients spread round-robin over them, one subscription per connection,",
            "no gzip.",
            f"Window {result['window_s']:.0f} s per level after every client has its init and 2.5 s of settling.",
            "CPU is utime+stime from",
            "`/proc/<pid>/stat` over the window; RSS is `VmRSS` at the end of the window and `VmHWM` (peak since",
            "start; levels run in order in the same daemon). Delay: client wall clock on receipt of the whole frame",
            "minus `meta.timestamp`; the second delay column measures from the earliest `meta.timestamp` of any",
            "view built from the same poll (same `rid`), which includes waiting for the other groups' builds.",
            "The baseline for bytes is the full frame of the same view (its `init`).",
            "",
            levels_table(result),
        ]
    views = parts["stream"][0]["views"]
    lines += ["Views: " + "; ".join(f"`{json.dumps(v)}`" for v in views) + ".", ""]

    # ---- (b)
    if "direct" in s10:
        hundred = next((r for r in s10["levels"] if r["clients"] == 100), None)
        d = s10["direct"]
        lines += [
            "## Upstream: what qBittorrent sees",
            "",
            f"`{s10['command']}`, {s10['torrents']:,} simulated torrents, interval 1 s.",
            "",
            "| who polls | load avg at start | maindata requests/s | simulator CPU (% of 1 core) |",
            "|---|---|---:|---:|",
        ]
        if hundred is not None:
            lines.append(f"| qsse with 100 SSE clients connected | {hundred['load']} | "
                         f"{fmt(hundred['maindata_per_s'], 2)} | {fmt(hundred['sim_cpu'], 1)} |")
        lines.append(f"| baseline: 100 clients each polling `sync/maindata` with its own session and rid | "
                     f"{d['load']} | {fmt(d['maindata_per_s'], 1)} | {fmt(d['sim_cpu'], 1)} |")
        b, p = s10["burst_sse"], s10["burst_poll"]
        at = [cp["at"] for cp in b["checkpoints"]]
        lines += [
            "",
            "50 clients connecting at the same moment to an instance nobody watched yet (not `always_warm`, never",
            "polled: a second simulator, idle), counting the simulator's requests after the first connect:",
            "",
            f"| who connects | load avg | requests within {at[0]} s | requests within {at[1]} s | all inits after |",
            "|---|---|---|---|---:|",
            f"| 50 SSE clients via qsse | {b['load']} | {' | '.join(burst_counts(b))} | {fmt(b['all_inits_s'], 2)} s |",
            f"| baseline: 50 direct pollers | {p['load']} | {' | '.join(burst_counts(p))} "
            f"| {fmt(p['all_inits_s'], 2)} s (first answers) |",
            "",
            "## Idle library: heartbeats only",
            "",
            f"50 subscriptions on the idle simulator (it never ticks; the daemon still polls it every second), "
            f"measured over {fmt(b['idle_window_s'])} s after all inits: frames {b['idle_frames']}, "
            f"**{fmt(b['idle_bytes_per_s_per_sub'], 1)} B/s per subscription** of SSE bytes, "
            f"{fmt(b['idle_wire_bytes_per_s_per_sub'], 1)} B/s with HTTP/1.1 chunk framing "
            f"(target ≤ {IDLE_TARGET} B/s; baseline, same run: a subscription on the ticking library received "
            f"{fmt(busy_rate(s10))} B/s of deltas at the 100-client level).",
            "",
        ]

    # ---- (d)
    real = parts.get("real")
    if real is not None:
        lines += [
            "## Change in a real qbittorrent-nox → frame at the client",
            "",
            f"`{real['command']}` — started {real['started']}, load average {real['load']}.",
            "",
            f"qbittorrent-nox (refresh_interval {real['refresh_interval_ms']} ms, 20 torrents), `qsse serve` at its "
            f"default `sync.interval = {real['interval_s']:g}` s in its own process, {real['changes']} renames "
            "through the WebUI API spaced by a random 0-2 s pause; latency from just before the rename request to "
            "the first frame (or poll answer) carrying the new name.",
            "",
            "| observer | changes seen | p50 ms | p99 ms | mean ms | min-max ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        observers = (("sse", "SSE client via qsse"), ("poll", "baseline: direct `sync/maindata` poller, same interval"))
        for key, label in observers:
            s = real[key]
            lines.append(f"| {label} | {s['n']} | {fmt(s['p50'])} | {fmt(s['p99'])} | {fmt(s['mean'])} "
                         f"| {fmt(s['min'])}-{fmt(s['max'])} |")
        lines += [
            "",
            "Expected: a change waits for the next poll, on average half an interval (interval x 1.05 with the",
            "0-10 % jitter: ~1.05 s), plus up to one qBittorrent refresh (250 ms) before maindata shows it, plus the",
            "poll itself; qsse adds its merge, the view build and the write (a few ms). The SSE client and the",
            "direct poller are polled by independent loops, so per change either can be first; their",
            "distributions should match, which is the point: qsse costs no latency over polling yourself.",
            "",
        ]

    # ---- existing benches
    for command, output in parts["scripts"]:
        title = "View engine" if "views" in command else "maindata parse + merge"
        lines += [f"## {title}", "", f"`{command}`", "", "```", output.strip(), "```", ""]

    lines += why_missed(parts)
    lines += [
        "## Reading the numbers",
        "",
        "- Delay is measured inside the daemon's fan-out: `meta.timestamp` is taken when a group starts",
        "  building its view, after the poll has been merged, so it excludes the poll itself (the simulator's",
        "  answer time); the real-qBittorrent table covers the end-to-end path.",
        "- Ticks: the simulator ticks every 1 s and the daemon polls 1 s (+0-10 %) after the end of the previous",
        "  poll, hence ~0.95 polls/s; a poll that finds no change sends nothing, and a slow poll or build at 50k",
        "  lowers the rate (\"frames per client per s\"). \"delta bytes per client per tick\" is the mean size of",
        "  a `delta` frame. The 1-client level has one view, so its \"view builds per tick\" is 0.",
        "- The 50k run measures the fan-out levels only: 100 direct pollers would each fetch a 65 MB full update",
        "  first (~6.5 GB through one client process); the upstream ratio does not depend on the library size.",
        "- Burst baseline: the 50 direct pollers' first answers (full updates) are decompressed by one client",
        "  process, which delays their next polls; the count within the first 0.9 s is the comparison.",
        "- Bytes are uncompressed SSE bytes; a browser asking for gzip gets each frame compressed (flushed per",
        "  event), much smaller again.",
        "- The simulator's `refresh_interval` is set to 1000 ms for these runs (default 1500 ms), because qsse",
        "  never polls faster than qBittorrent refreshes.",
        "- GC pauses: the daemon runs through bench/_daemon_gc.py, which logs every garbage collection of",
        "  5 ms or more (`gc.callbacks`); a collection stops the whole event loop, so a long one delays every",
        "  frame in flight and shows up in p99 while hardly moving the CPU average.",
        "- Client processes parse frames without JSON decoding (event name, `meta.timestamp` and `meta.rid`",
        "  found by position). Their CPU is in the last column; near 100 % would mean the client, not the",
        "  daemon, limits the delay figures.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows (< 2 min smoke check)")
    parser.add_argument("--out", type=Path, default=None, help="report file (default docs/benchmarks.md)")
    parser.add_argument("--render", type=Path, default=None, help="only re-render the report from a saved JSON")
    parser.add_argument("--skip-real", action="store_true", help="skip the real qbittorrent-nox benchmark")
    args = parser.parse_args()
    command = ".venv/bin/python bench/run_all.py" + (" --quick" if args.quick else "")
    out = args.out or (Path(tempfile.gettempdir()) / "qsse-benchmarks-quick.md" if args.quick
                       else ROOT / "docs" / "benchmarks.md")
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        out.write_text(report(args, saved["parts"], saved["command"], saved["started"], saved["elapsed"]))
        print(f"wrote {out}")
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()
    parts: dict[str, Any] = {"scripts": [run_script("bench_maindata.py", args.quick),
                                         run_script("bench_views.py", args.quick)]}
    sizes = [2000] if args.quick else [10_000, 50_000]
    parts["stream"] = []
    for i, torrents in enumerate(sizes):
        levels = [1, 100, 300] if args.quick else [1, 100, 1000]
        print(f"== stream benchmark, {torrents} torrents, levels {levels}", flush=True)
        result = bench_stream.run(torrents, quick=args.quick, levels=levels, upstream=i == 0)
        flags = " --quick" if args.quick else ""
        result["command"] = (f".venv/bin/python bench/bench_stream.py{flags} --torrents {torrents}"
                             + ("" if i == 0 else " --no-upstream"))
        parts["stream"].append(result)
    if not args.skip_real:
        print("== real qbittorrent-nox latency", flush=True)
        changes = 6 if args.quick else 40
        parts["real"] = bench_latency_real.run(changes)
        parts["real"]["command"] = f".venv/bin/python bench/bench_latency_real.py --changes {changes}"
    elapsed = time.monotonic() - t0
    saved_path = Path(tempfile.gettempdir()) / ("qsse-benchmarks-quick.json" if args.quick else "qsse-benchmarks.json")
    saved_path.write_text(json.dumps({"parts": parts, "command": command, "started": started, "elapsed": elapsed}))
    print(f"raw results: {saved_path} (re-render with --render)")
    out.write_text(report(args, parts, command, started, elapsed))
    print(f"\nwrote {out} ({(time.monotonic() - t0) / 60:.1f} min)")


if __name__ == "__main__":
    main()
