"""``qsse serve`` with the garbage collector's long pauses logged, for the stream benchmarks.

Run: .venv/bin/python bench/_daemon_gc.py LOGFILE [qsse arguments...]

Appends ``<generation> <start epoch> <milliseconds>`` to LOGFILE for every collection that took at
least 5 ms: a stop-the-world pause that delays every frame in flight, which CPU figures cannot show.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from qsse.cli import main

THRESHOLD_S = 0.005


def install(path: str) -> None:
    log = open(path, "a", buffering=1)  # noqa: SIM115  # lives as long as the process
    started = [0.0, 0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0], started[1] = time.perf_counter(), time.time()
        else:
            took = time.perf_counter() - started[0]
            if took >= THRESHOLD_S:
                log.write(f"{info['generation']} {started[1]:.3f} {took * 1000:.1f}\n")

    gc.callbacks.append(callback)


if __name__ == "__main__":
    install(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
