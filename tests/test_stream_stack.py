"""The whole stack on loopback, without fakes: simulated qBittorrent → real InstanceSupervisor and
QbtClient → StreamManager with the real view engine → the HTTP routes.

Real sockets, so the real clock with an absolute cap (autojump would fire timeouts while a reply is
on its way); intervals are short to keep the test quick.
"""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from quart_trio import QuartTrio
from test_stream_http import AsgiStream

from qsse.config import InstanceConfig, SyncConfig
from qsse.qbt.sync import InstanceSupervisor
from qsse.sim.server import SimulatedQbt
from qsse.stream.manager import StreamManager
from qsse.views.engine import ViewEngine
from qsse.web.stream_routes import register_stream_routes


async def _run_cancellable(fn: Any, scope: trio.CancelScope, task_status: trio.TaskStatus[Any]) -> None:
    with scope:
        await fn(task_status=task_status)


async def first_of(response: AsgiStream, *kinds: str) -> dict[str, dict[str, Any]]:
    """The first event of each kind (``activity:<kind>`` for activities), in whatever order they come."""
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < len(kinds):
        name, payload = await response.next_of("activity", *kinds)
        if name == "activity":
            name = "activity:" + payload["activity"]["kind"]
        if name in kinds:
            seen.setdefault(name, payload)
    return seen


async def test_sim_to_sse_init_delta_error_and_release(nursery: trio.Nursery) -> None:
    with trio.fail_after(30):
        sim = SimulatedQbt(torrents=40, seed=3, tick_interval=float("inf"))
        sim_scope = trio.CancelScope()
        await nursery.start(_run_cancellable, sim.run, sim_scope)
        cfg = InstanceConfig(id=1, name="sim", url=sim.url, username=sim.username, password=sim.password)
        supervisor = InstanceSupervisor([cfg], SyncConfig(interval=0.1))
        await nursery.start(supervisor.run)
        manager = StreamManager(supervisor, ViewEngine(), heartbeat=0.5)
        await nursery.start(manager.run)
        app = QuartTrio(__name__)
        register_stream_routes(app, manager)
        query = {"streams": json.dumps([{"key": "k", "instanceId": 1, "limit": 10, "sort": "name"}]),
                 "activity": "1"}

        async with AsgiStream(app, "/stream", query, [("Accept-Encoding", "gzip")]).open() as response:
            [(name, init)] = await response.events(1, gzip=True)
            assert name == "init"
            assert init["data"]["total"] == 40 and len(init["data"]["torrents"]) == 10
            assert supervisor.statistics().active_loops == 1
            first = init["data"]["torrents"][0]["hash"]
            sim.library.delete([first])
            seen = await first_of(response, "delta", "activity:torrent.removed")
            delta, removed = seen["delta"], seen["activity:torrent.removed"]
            assert delta["data"]["total"] == 39
            assert first not in delta["delta"]["order"] and len(delta["delta"]["order"]) == 10
            assert delta["meta"]["rid"] > 0
            assert removed["activity"]["resourceId"] == first and removed["activity"]["instanceId"] == 1

            sim_scope.cancel()  # qBittorrent goes away
            seen = await first_of(response, "stream-error", "activity:instance.disconnected")
            error = seen["stream-error"]
            assert error["error"].startswith("Sync with qBittorrent failed (")
            assert error["meta"]["retryInSeconds"] == 4
            assert "lastSuccessfulSync" in error["meta"]

        # the client left: its subscription released the instance, and the loop stopped
        await trio.testing.wait_all_tasks_blocked()
        assert supervisor.statistics().active_loops == 0
        stats = manager.statistics()
        assert (stats.active_sessions, stats.active_subscriptions, stats.active_groups) == (0, 0, 0)
        assert manager.nursery is not None and len(manager.nursery.child_tasks) == 1
        await manager.shutdown(trio.current_time() + 1)
