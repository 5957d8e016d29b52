"""A simulated qBittorrent in its own process, for the stream benchmarks.

Run: .venv/bin/python bench/_sim_main.py --torrents 10000 [--tick 1] [--change 0.01] [--refresh-ms 1000]

Prints ``port <n>`` once it accepts connections and serves until killed. Its own process because
the simulator encodes and gzips big bodies synchronously: it must not share a loop (or a core's
measurement) with the daemon or the clients. Counters: ``GET /sim/statistics``.
"""

from __future__ import annotations

import argparse
import math

import trio

from qsse.sim import SimulatedQbt


async def main(args: argparse.Namespace) -> None:
    sim = SimulatedQbt(
        torrents=args.torrents,
        seed=args.seed,
        tick_interval=math.inf if args.tick <= 0 else args.tick,
        change_fraction=args.change,
    )
    # qsse never polls faster than qBittorrent's refresh_interval (1500 ms in the simulator by default).
    sim.library.set_server_state(refresh_interval=args.refresh_ms)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.run)
        print(f"port {port}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--torrents", type=int, default=10_000)
    parser.add_argument("--tick", type=float, default=1.0, help="seconds per tick; 0 = never (idle library)")
    parser.add_argument("--change", type=float, default=0.01, help="fraction of rows changed per tick")
    parser.add_argument("--refresh-ms", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    trio.run(main, parser.parse_args())
