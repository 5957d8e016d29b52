"""``qsse demo``: two simulated qBittorrent instances, the daemon against them, and the dashboard.

Nothing of the user's is needed: the simulators run in the same Trio run, on loopback ports
picked by the OS, and the daemon polls them over real HTTP exactly as it polls qBittorrent.
"""

from __future__ import annotations

import logging
import sys

import trio

from qsse.config import Config, InstanceConfig, ServerConfig, SyncConfig
from qsse.daemon import Daemon
from qsse.sim.server import SimulatedQbt

log = logging.getLogger(__name__)


def demo_config(ports: tuple[int, int], *, listen_port: int) -> Config:
    return Config(
        server=ServerConfig(host="127.0.0.1", port=listen_port, shutdown_timeout=5.0),
        sync=SyncConfig(interval=1.0, heartbeat=5.0),
        instances=(
            InstanceConfig(id=1, name="seedbox (simulated 4.x)", url=f"http://127.0.0.1:{ports[0]}",
                           username="admin", password="adminadmin", always_warm=True),
            InstanceConfig(id=2, name="nas (simulated 5.x)", url=f"http://127.0.0.1:{ports[1]}",
                           username="admin", password="adminadmin", always_warm=True),
        ),
        source="<demo>",
    )


async def serve_demo(*, port: int, torrents: int, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    """Run both simulators and the daemon until a signal; started() with the daemon's addresses."""
    first = SimulatedQbt(torrents=torrents, dialect="4", seed=1, tick_interval=1.0, change_fraction=0.01)
    second = SimulatedQbt(torrents=max(1, torrents * 3 // 20), dialect="5", seed=2, tick_interval=1.0,
                          change_fraction=0.02)
    async with trio.open_nursery() as nursery:
        port_a = await nursery.start(first.run)
        port_b = await nursery.start(second.run)
        daemon = Daemon(demo_config((port_a, port_b), listen_port=port), own_process=True)

        async def run_daemon(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await daemon.run(task_status=task_status)
            nursery.cancel_scope.cancel()  # the daemon stopped (signal): the simulators go with it

        bound = await nursery.start(run_daemon)
        print(f"qsse demo: dashboard at {bound[0]}/  (simulated qBittorrent at {first.url} and {second.url};"
              " Ctrl+C stops)", file=sys.stderr, flush=True)
        task_status.started(bound)


def run_demo(*, port: int, torrents: int) -> int:
    trio.run(lambda: serve_demo(port=port, torrents=torrents))
    return 0
