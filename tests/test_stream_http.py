"""The HTTP adapter: GET /stream and /api/stream, POST /api/activity.

Most tests drive the Quart app through a minimal ASGI client (below) rather than Quart's test
client, whose streaming connection waits forever for a body end after a client disconnect; this
one has a one-chunk buffer, so a test can also play a client that stops reading. One test runs
real hypercorn on a free port with an httpx2 streaming client.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import request
from quart_trio import QuartTrio
from test_stream_fakes import FakeChain, FakeEngine, FakeSupervisor, SseReader, parse_event, torrents

from qsse.stream.manager import StreamManager
from qsse.web.stream_routes import register_stream_routes


class AsgiStream:
    """One HTTP request to an ASGI app, its response body read chunk by chunk."""

    def __init__(
        self,
        app: QuartTrio,
        path: str,
        query: dict[str, str] | None = None,
        headers: list[tuple[str, str]] | None = None,
        *,
        method: str = "GET",
        body: bytes = b"",
        client: tuple[str, int] = ("127.0.0.1", 40000),
    ) -> None:
        self._app = app
        self._scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": urlencode(query or {}).encode(),
            "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in headers or []],
            "client": client, "server": ("127.0.0.1", 8080), "extensions": {},
        }
        self._body = body
        self._disconnected = trio.Event()
        self._request_sent = False
        self._started = trio.Event()
        self._chunks_send, self.chunks = trio.open_memory_channel[bytes](1)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.finished = False
        self._reader: SseReader | None = None
        self._ready: list[tuple[str, dict[str, Any]]] = []

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AsgiStream]:
        """Run the app for this request; leaving disconnects the client and waits (bounded) for the app."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run)
            await self._started.wait()
            try:
                yield self
            finally:
                self._disconnected.set()
                self.chunks.close()
                nursery.cancel_scope.deadline = trio.current_time() + 5

    async def _run(self) -> None:
        async with self._chunks_send:
            await self._app(self._scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for k, v in message["headers"]:
                name = k.decode().lower()
                self.headers[name] = self.headers[name] + ", " + v.decode() if name in self.headers else v.decode()
            self._started.set()
        elif message["type"] == "http.response.body":
            if message.get("body"):
                try:
                    await self._chunks_send.send(message["body"])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await trio.sleep_forever()  # a gone client: the server notices through receive()
            if not message.get("more_body", False):
                self.finished = True

    def disconnect(self) -> None:
        self._disconnected.set()

    async def read_all(self) -> bytes:
        out = b""
        async for chunk in self.chunks:
            out += chunk
        return out

    async def events(self, n: int, *, gzip: bool = False) -> list[tuple[str, dict[str, Any]]]:
        if self._reader is None:
            self._reader = SseReader(gzip=gzip)
        while len(self._ready) < n:
            self._ready.extend(self._reader.feed(await self.chunks.receive()))
        got, self._ready = self._ready[:n], self._ready[n:]
        return got

    async def next_of(self, *kinds: str) -> tuple[str, dict[str, Any]]:
        while True:
            [event] = await self.events(1)
            if event[0] in kinds:
                return event


class Env:
    def __init__(self, supervisor: FakeSupervisor, manager: StreamManager, app: QuartTrio) -> None:
        self.supervisor = supervisor
        self.manager = manager
        self.app = app

    def get(
        self, query: dict[str, str], headers: list[tuple[str, str]] | None = None, path: str = "/stream"
    ) -> AbstractAsyncContextManager[AsgiStream]:
        return AsgiStream(self.app, path, query, headers).open()


@pytest.fixture
async def env(nursery: trio.Nursery) -> AsyncIterator[Env]:
    supervisor = FakeSupervisor((1, 2))
    manager = StreamManager(supervisor, FakeEngine(), new_encoder=FakeChain, init_wait=3.0)
    await nursery.start(manager.run)
    supervisor.succeed(1, torrents("a", "b"))
    supervisor.succeed(2, torrents("c"))
    app = QuartTrio(__name__)
    register_stream_routes(app, manager)
    yield Env(supervisor, manager, app)


def streams(*subs: dict[str, Any]) -> str:
    return json.dumps(list(subs))


async def test_stream_headers_and_init_then_deltas(env: Env, autojump_clock: Any) -> None:
    async with env.get({"streams": streams({"key": "k", "instanceId": 1})}) as response:
        assert response.status == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        [(name, init)] = await response.events(1)
        assert name == "init" and init["data"]["total"] == 2
        env.supervisor.succeed(1, torrents("a"))
        [(name, delta)] = await response.events(1)
        assert name == "delta" and delta["data"]["total"] == 1
    await trio.testing.wait_all_tasks_blocked()
    assert env.manager.statistics().active_sessions == 0


async def test_api_stream_path_and_gzip_decoded_event_by_event(env: Env, autojump_clock: Any) -> None:
    headers = [("Accept-Encoding", "br;q=1"), ("Accept-Encoding", "GZIP;q=0.5")]
    async with env.get({"streams": streams({"key": "k", "instanceId": 1}), "activity": "1"}, headers,
                       path="/api/stream") as response:
        assert response.headers["content-encoding"] == "gzip"
        inflate = zlib.decompressobj(31)
        names: list[str] = []
        # Every chunk decodes to whole events at once: the stream is flushed after each event.
        while "delta" not in names or "activity" not in names:
            if names == ["init", "heartbeat"]:
                env.supervisor.succeed(1, torrents("z"))  # a delta, and a torrent.added activity
            text = inflate.decompress(await response.chunks.receive())
            assert text.endswith(b"\n\n") and inflate.unconsumed_tail == b""
            names.extend(parse_event(raw)[0] for raw in text[:-2].split(b"\n\n"))
        assert names[:2] == ["init", "heartbeat"]


async def test_gzip_refused_with_q0(env: Env, autojump_clock: Any) -> None:
    async with env.get({"activity": "1"}, [("Accept-Encoding", "gzip;q=0, deflate")]) as response:
        assert "content-encoding" not in response.headers
        [(name, _)] = await response.events(1)
        assert name == "heartbeat"


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ({}, 400, {"error": "missing streams parameter", "field": "streams"}),
        ({"activity": "0"}, 400, {"error": "missing streams parameter", "field": "streams"}),
        ({"streams": "[]"}, 400, {"error": "no stream subscriptions requested", "field": "streams"}),
        ({"streams": "[1]"}, 400, {"error": "invalid streams payload", "field": "streams"}),
        ({"streams": '[{"instanceId": 1, "page": -1}]'}, 400, {"error": "invalid page value",
                                                               "field": "streams[0].page"}),
        ({"streams": '[{"instanceId": 1, "sort": "nope"}]'}, 400, {"error": "invalid sort field",
                                                                   "field": "streams[0].sort"}),
        ({"streams": '[{"instanceIds": [1, -2]}]'}, 400, {"error": "invalid instance id",
                                                          "field": "streams[0].instanceIds[1]"}),
        ({"streams": json.dumps([{"instanceId": 1}] * 65)}, 400,
         {"error": "too many stream subscriptions requested", "field": "streams"}),
        ({"streams": '[{"instanceId": 7}]'}, 404, {"error": "instance not found", "field": "streams[0].instanceId"}),
    ],
)
async def test_stream_request_errors_are_json(env: Env, query: dict[str, str], status: int, body: Any) -> None:
    async with env.get(query) as response:
        assert response.status == status
        assert response.headers["content-type"] == "application/json"
        assert json.loads(await response.read_all()) == body
    assert env.manager.statistics().active_sessions == 0


async def test_wrong_json_type_for_a_known_key_is_a_400_naming_the_field(env: Env) -> None:
    async with env.get({"streams": '[{"instanceId": 1}, {"instanceId": 1, "limit": "5"}]'}) as response:
        assert response.status == 400
        body = json.loads(await response.read_all())
        assert body["field"] == "streams[1].limit" and body["error"]


async def test_64_subscriptions_over_http_all_get_their_init(env: Env, autojump_clock: Any) -> None:
    subs = [{"key": f"s{i}", "instanceIds": [1, 2], "page": i % 3, "limit": 1 + i} for i in range(64)]
    async with env.get({"streams": json.dumps(subs)}, [("Accept-Encoding", "gzip")]) as response:
        events = await response.events(64, gzip=True)
        assert [e[1]["meta"]["streamKey"] for e in events] == [f"s{i}" for i in range(64)]
        assert {e[0] for e in events} == {"init"}


async def test_503_while_shutting_down_and_sessions_end(env: Env, autojump_clock: Any) -> None:
    async with env.get({"streams": streams({"instanceId": 1})}) as open_response:
        await open_response.events(1)
        start = trio.current_time()
        await env.manager.shutdown(trio.current_time() + 10)
        assert trio.current_time() - start <= 10
        rest = await open_response.read_all()  # the body ends: the response completes
        assert open_response.finished
        assert rest == b""
    async with env.get({"activity": "1"}) as refused:
        assert refused.status == 503
        assert json.loads(await refused.read_all()) == {"error": "server is shutting down"}


async def test_client_disconnect_unregisters_everything(env: Env, autojump_clock: Any) -> None:
    for _ in range(20):
        async with env.get({"streams": streams({"instanceId": 1}, {"instanceIds": [1, 2]})}) as response:
            await response.events(1)
            response.disconnect()
            await trio.sleep(0.1)
            assert env.manager.statistics().active_sessions == 0
    await trio.testing.wait_all_tasks_blocked()
    stats = env.manager.statistics()
    assert (stats.active_subscriptions, stats.active_groups, stats.active_sync_loops) == (0, 0, 0)
    assert env.manager.nursery is not None and len(env.manager.nursery.child_tasks) == 1


async def test_a_client_that_stops_reading_is_dropped_within_the_write_deadline(env: Env, autojump_clock: Any) -> None:
    async with env.get({"streams": streams({"instanceId": 1})}) as stuck, \
            env.get({"streams": streams({"instanceId": 1})}) as reading:
        await stuck.events(1)
        await reading.events(1)
        start = trio.current_time()
        for i in range(8):
            env.supervisor.succeed(1, torrents(*(f"h{n}" for n in range(i + 2))))
            _, frame = await reading.next_of("delta")
            assert frame["data"]["total"] == i + 2
            await trio.sleep(2)
        stats = env.manager.statistics()
        assert stats.sessions_dropped_slow == 1
        assert stats.active_sessions == 1
        assert trio.current_time() - start <= 16 + 1
        assert await stuck.read_all() != b""  # what it had buffered, then the end of the body


# -- POST /api/activity ------------------------------------------------------------------------------


async def post(env: Env, payload: Any, client: tuple[str, int] = ("127.0.0.1", 1)) -> tuple[int, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with AsgiStream(env.app, "/api/activity", method="POST", body=raw, client=client,
                          headers=[("Content-Type", "application/json")]).open() as response:
        return response.status, json.loads(await response.read_all())


async def test_post_activity_reaches_activity_connections(env: Env, autojump_clock: Any) -> None:
    async with env.get({"activity": "1"}) as listener:
        await listener.events(1)
        status, body = await post(env, {"kind": "tool.done", "instanceId": 2, "resourceId": "abc"})
        assert (status, body) == (202, {"delivered": 1})
        [(name, event)] = await listener.events(1)
        assert name == "activity"
        assert event["activity"]["kind"] == "tool.done"
        assert event["activity"]["instanceId"] == 2 and event["activity"]["resourceId"] == "abc"
        assert (await post(env, {"kind": "tool.done"}, client=("::1", 1)))[0] == 202


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"not json", "body"),
        ([1], "body"),
        ({}, "kind"),
        ({"kind": ""}, "kind"),
        ({"kind": 3}, "kind"),
        ({"kind": "x" * 200}, "kind"),
        ({"kind": "k", "instanceId": 0}, "instanceId"),
        ({"kind": "k", "instanceId": True}, "instanceId"),
        ({"kind": "k", "instanceId": "1"}, "instanceId"),
        ({"kind": "k", "resourceId": 5}, "resourceId"),
    ],
)
async def test_post_activity_rejects_bad_input(env: Env, payload: Any, field: str) -> None:
    status, body = await post(env, payload)
    assert status == 400
    assert body["field"] == field and body["error"]


async def test_post_activity_only_from_loopback(env: Env) -> None:
    status, body = await post(env, {"kind": "k"}, client=("192.168.1.20", 5555))
    assert status == 403 and body["error"]


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
async def test_post_activity_through_a_local_reverse_proxy_is_not_local(env: Env, header: str) -> None:
    async with AsgiStream(env.app, "/api/activity", method="POST", body=b'{"kind": "k"}',
                          headers=[("Content-Type", "application/json"), (header, "203.0.113.9")]).open() as response:
        assert response.status == 403


# -- real hypercorn ------------------------------------------------------------------------------------


async def test_over_real_hypercorn_with_httpx2(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):  # real sockets, real clock: an absolute cap
        supervisor = FakeSupervisor((1,))
        manager = StreamManager(supervisor, FakeEngine(), new_encoder=FakeChain, heartbeat=0.2)
        await nursery.start(manager.run)
        supervisor.succeed(1, torrents("a", "b"))
        app = QuartTrio(__name__)
        register_stream_routes(app, manager)
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        stopping = trio.Event()
        binds: list[str] = await nursery.start(lambda task_status: serve(app, config, shutdown_trigger=stopping.wait,
                                                                         task_status=task_status))
        url = binds[0].replace("0.0.0.0", "127.0.0.1") + "/stream"
        query = {"streams": streams({"key": "k", "instanceId": 1})}
        async with httpx2.AsyncClient() as http, http.stream(
            "GET", url, params=query, headers={"Accept-Encoding": "gzip"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-encoding"] == "gzip"
            assert response.headers["content-type"] == "text/event-stream"
            reader = SseReader(gzip=True)
            seen: list[str] = []
            shutting_down = False
            # Read until the server ends the body: a graceful session end, gzip trailer included.
            async for chunk in response.aiter_raw():
                seen.extend(name for name, _ in reader.feed(chunk))
                if seen == ["init"]:
                    supervisor.succeed(1, torrents("a"))
                if "delta" in seen and "heartbeat" in seen and not shutting_down:
                    shutting_down = True
                    bad = await http.get(url)
                    assert bad.status_code == 400
                    assert bad.json() == {"error": "missing streams parameter", "field": "streams"}
                    nursery.start_soon(manager.shutdown, trio.current_time() + 2)
            assert seen[:2] == ["init", "delta"] or seen[:2] == ["init", "heartbeat"]
            assert reader.pending == b""
            assert reader.gzip_complete
        stopping.set()


async def test_authorize_hook_gives_401_after_the_other_checks_and_opens_post_activity(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    supervisor = FakeSupervisor((1,))
    manager = StreamManager(supervisor, FakeEngine(), new_encoder=FakeChain)
    await nursery.start(manager.run)
    app = QuartTrio(__name__)
    register_stream_routes(app, manager, authorize=lambda: request.headers.get("X-API-Key") == "secret")
    env = Env(supervisor, manager, app)
    async with env.get({"streams": streams({"instanceId": 9})}) as response:
        assert response.status == 404  # validation first, as the protocol orders the errors
    async with env.get({"activity": "1"}) as response:
        assert response.status == 401
        assert json.loads(await response.read_all()) == {"error": "unauthorized"}
    async with env.get({"activity": "1"}, [("X-API-Key", "secret")]) as response:
        assert response.status == 200
    assert (await post(env, {"kind": "k"}, client=("192.168.1.20", 5555)))[0] == 401
    async with AsgiStream(app, "/api/activity", method="POST", body=b'{"kind": "k"}', client=("192.168.1.20", 1),
                          headers=[("X-API-Key", "secret")]).open() as response:
        assert response.status == 202
