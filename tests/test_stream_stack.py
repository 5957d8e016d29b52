"""The whole stack on loopback, without fakes: simulated qBittorrent → real InstanceSupervisor and
QbtClient → StreamManager with the real view engine → the HTTP routes.

Real sockets, so the real clock with an absolute cap (autojump would fire timeouts while a reply is
on its way); intervals are short to keep the test quick.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any
from urllib.parse import urlencode

import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio
from test_stream_fakes import FakeChain, FakeEngine, FakeSupervisor, torrents
from test_stream_http import AsgiStream

from qsse.config import InstanceConfig, SyncConfig
from qsse.qbt.sync import InstanceSupervisor
from qsse.sim.server import SimulatedQbt
from qsse.stream.manager import StreamManager
from qsse.views.engine import ViewEngine
from qsse.web.stream_routes import register_stream_routes, stream_bind


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


async def test_shutdown_within_the_deadline_with_a_client_that_stopped_reading_over_tcp(nursery: trio.Nursery) -> None:
    """hypercorn + manager, one healthy and one TCP-stuck client: everything ends by the deadline."""

    class BigEngine(FakeEngine):
        def build(self, options: Any, states: Any, *, now: float) -> dict[str, Any]:
            response = super().build(options, states, now=now)
            response["padding"] = os.urandom(300_000).hex()  # incompressible: fills socket buffers fast
            return response

    with trio.fail_after(20):
        supervisor = FakeSupervisor((1,))
        manager = StreamManager(supervisor, BigEngine(), new_encoder=FakeChain, write_timeout=60)
        await nursery.start(manager.run)
        app = QuartTrio(__name__)
        register_stream_routes(app, manager)
        config = HypercornConfig()
        # Without TCP_USER_TIMEOUT, hypercorn's shielded socket write to the stuck client never ends.
        config.bind = [stream_bind("127.0.0.1:0", write_timeout=3)]
        config.accesslog = None
        config.graceful_timeout = 2
        stopping = trio.Event()
        served = trio.Event()

        async def serve_app(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(app, config, shutdown_trigger=stopping.wait, task_status=task_status)
            served.set()

        binds: list[str] = await nursery.start(serve_app)
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        target = "/stream?" + urlencode({"streams": json.dumps([{"key": "k", "instanceId": 1}])})
        request = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        stuck = await trio.open_tcp_stream(host, int(port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await stuck.send_all(request)
        reading = await trio.open_tcp_stream(host, int(port))
        await reading.send_all(request)
        received = 0

        async def drain() -> None:
            nonlocal received
            while chunk := await reading.receive_some(1 << 20):
                received += len(chunk)

        nursery.start_soon(drain)
        for i in range(8):
            supervisor.succeed(1, torrents(f"h{i}"))
            await trio.sleep(0.1)
        assert received > 8 * 600_000
        assert manager.statistics().active_sessions == 2  # the stuck one is within its (long) write deadline

        start = trio.current_time()
        stopping.set()
        await manager.shutdown(start + 2)
        with trio.fail_after(3):
            await served.wait()
        assert trio.current_time() - start < 4.5
        assert manager.statistics().active_sessions == 0
        await stuck.aclose()
        await reading.aclose()


def test_stream_bind_sets_the_write_deadline_on_the_listening_socket() -> None:
    for listen, family in (("127.0.0.1:0", socket.AF_INET), ("[::1]:0", socket.AF_INET6)):
        bind = stream_bind(listen, write_timeout=10)
        assert bind.startswith("fd://")
        with socket.socket(fileno=int(bind[5:])) as sock:
            assert sock.family == family
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10_000
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert stream_bind("unix:/run/qsse.sock", write_timeout=10) == "unix:/run/qsse.sock"
