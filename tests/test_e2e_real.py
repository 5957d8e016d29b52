"""End to end: real qbittorrent-nox → the whole daemon (hypercorn, real sockets) → a real SSE client.

Real sockets and processes, so these tests run on the real clock with absolute caps.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
import trio
from sse_client import ClientView, Event, SseStream, open_stream
from testbed import QbtFactory, QbtInstance, free_port

from qsse.config import Config, InstanceConfig, ServerConfig, SyncConfig
from qsse.daemon import Daemon
from qsse.qbt.maindata import MainDataMerger
from qsse.qbt.status import Health, InstanceState
from qsse.views.engine import ViewEngine
from qsse.views.options import parse_streams

VOLATILE = {
    "time_active", "seeding_time", "last_activity", "eta", "availability", "dlspeed", "upspeed", "num_seeds",
    "num_leechs", "num_complete", "num_incomplete", "seen_complete", "reannounce", "popularity",
}


def inst_cfg(ident: int, inst: QbtInstance, **kw: Any) -> InstanceConfig:
    return InstanceConfig(id=ident, name=inst.name, url=inst.url, username=inst.username, password=inst.password,
                          **kw)


@contextlib.asynccontextmanager
async def running_daemon(*instances: InstanceConfig, shutdown_timeout: float = 5.0,
                         interval: float = 0.3) -> AsyncIterator[tuple[Daemon, str]]:
    cfg = Config(server=ServerConfig(port=free_port(), shutdown_timeout=shutdown_timeout),
                 sync=SyncConfig(interval=interval, heartbeat=1.0), instances=instances)
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(daemon.run)
        try:
            yield daemon, bound[0]
        finally:
            daemon.stop()



def fresh_view(inst: QbtInstance, sub: dict[str, Any]) -> dict[str, Any]:
    """The view computed from scratch from a fresh rid=0 fetch."""
    options = parse_streams(json.dumps([sub]))[0].options
    data, _ = MainDataMerger().apply(inst.maindata_full())
    state = InstanceState(instance_id=options.instance_id, name=inst.name, health=Health.SYNCING, data=data)
    return ViewEngine().build(options, [state], now=time.time())


def stable_rows(rows: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


async def until(stream: SseStream, view: ClientView, done: Callable[[], bool], what: str = "") -> list[Event]:
    """Apply view frames until ``done()`` holds (checked after each frame and each quiet second)."""
    seen: list[Event] = []
    with trio.move_on_after(20):
        while True:
            if done():
                return seen
            with trio.move_on_after(1):
                event = await stream.next_of("update", "delta", "stream-error")
                seen.append(event)
                if event.name != "stream-error":
                    view.apply(event)
    raise AssertionError(f"{what}: not caught up after {[e.name for e in seen]}")


def matches_fresh(view: ClientView, inst: QbtInstance, sub: dict[str, Any]) -> Callable[[], bool]:
    """The client's page equals a view computed now from a fresh rid=0 fetch.

    Recomputed at every check: qBittorrent keeps changing after an operation (state refreshes,
    queue positions renumbered after a delete), so a fetch taken once may never match again.
    """

    def check() -> bool:
        expected = fresh_view(inst, sub)
        return (view.data.get("total") == expected["total"]
                and stable_rows(view.page()) == stable_rows(expected["torrents"]))

    return check


async def test_init_frames_for_single_and_aggregated_views(qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, b = qbt_pair
    subs = [
        {"key": "a", "instanceId": 1, "limit": 50, "sort": "name", "order": "asc"},
        {"key": "b", "instanceId": 2, "page": 1, "limit": 20, "sort": "size", "order": "desc"},
        {"key": "all", "instanceIds": [1, 2], "limit": 500, "sort": "name"},
        {"instanceId": 1, "filters": {"categories": ["tv"]}, "limit": 500},
    ]
    async with running_daemon(inst_cfg(1, a), inst_cfg(2, b)) as (_, url), open_stream(url, subs) as stream:
        with trio.fail_after(30):
            inits = [await stream.next() for _ in subs]
    assert [e.name for e in inits] == ["init"] * 4
    assert [e.payload["meta"]["streamKey"] for e in inits[:3]] == ["a", "b", "all"]
    assert inits[3].payload["meta"]["streamKey"].startswith("1|")  # no key: the group key
    assert all(e.payload["meta"]["fullUpdate"] is True for e in inits)

    first = inits[0].payload["data"]
    names = [t.name for t in sorted(a.added.values(), key=lambda t: (t.name.lower(), t.hash))]
    assert first["total"] == len(a.added) and first["hasMore"] is True
    assert [r["name"] for r in first["torrents"]] == names[:50]
    assert all("magnet_uri" not in r for r in first["torrents"])

    second = inits[1].payload["data"]
    sizes = sorted((t.size for t in b.added.values()), reverse=True)
    assert second["total"] == len(b.added) and [r["size"] for r in second["torrents"]] == sizes[20:40]

    aggregated = inits[2].payload
    rows = aggregated["data"]["cross_instance_torrents"]
    assert aggregated["meta"]["instanceId"] == 0 and aggregated["data"]["isCrossInstance"] is True
    assert aggregated["data"]["total"] == len(a.added) + len(b.added) == len(rows)
    assert {(r["instance_id"], r["instance_name"]) for r in rows} == {(1, a.name), (2, b.name)}
    assert {r["hash"] for r in rows if r["instance_id"] == 2} == set(b.added)

    tv = inits[3].payload["data"]
    # with subcategories in use, "tv" also means "tv/anime"
    assert tv["total"] == sum(1 for t in a.added.values() if t.category in ("tv", "tv/anime"))
    assert {r["category"] for r in tv["torrents"]} == {"tv", "tv/anime"}


async def test_changes_in_qbittorrent_arrive_as_deltas(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(torrents=30)
    sub = {"key": "k", "instanceId": 1, "limit": 300, "sort": "name"}
    async with running_daemon(inst_cfg(1, inst)) as (_, url), open_stream(url, [sub]) as stream:
        view = ClientView()
        with trio.fail_after(30):
            view.apply(await stream.next())
        hashes = list(inst.added)
        kinds: list[str] = []
        with inst.session() as http:
            operations: list[tuple[str, dict[str, str]]] = [
                ("torrents/resume", {"hashes": "|".join(hashes[:3])}),
                ("torrents/pause", {"hashes": hashes[0]}),
                ("torrents/setCategory", {"hashes": "|".join(hashes[3:6]), "category": "e2e"}),
                ("torrents/addTags", {"hashes": "|".join(hashes[5:9]), "tags": "one,two"}),
                ("torrents/rename", {"hash": hashes[10], "name": "AAA first by name"}),
                ("torrents/delete", {"hashes": "|".join(hashes[12:14]), "deleteFiles": "false"}),
            ]
            for path, form in operations:
                if path == "torrents/setCategory":
                    http.post("/api/v2/torrents/createCategory", data={"category": "e2e", "savePath": ""})
                http.post(f"/api/v2/{path}", data=form).raise_for_status()
                frames = await until(stream, view, matches_fresh(view, inst, sub), path)
                kinds.extend(e.name for e in frames)
            inst.add_torrents(2, category="e2e", tags=["new"], prefix="zzz")
            await until(stream, view, matches_fresh(view, inst, sub), "add")
    # every frame after the init was a delta (two operations may share one when qBittorrent is quicker)
    assert set(kinds) == {"delta"} and len(kinds) >= 3
    assert view.order[-1] == hashes[10] and view.data["total"] == 30  # name desc: "AAA…" last
    assert view.data["counts"]["categories"]["e2e"]  # counts carried over or refreshed, never lost


async def test_stream_error_while_down_then_frames_again(qbt_factory: QbtFactory,
                                                         fast_backoff: tuple[float, ...]) -> None:
    inst = qbt_factory(torrents=5)
    sub = {"key": "k", "instanceId": 1, "sort": "name"}
    async with running_daemon(inst_cfg(1, inst)) as (_, url), open_stream(url, [sub]) as stream:
        view = ClientView()
        with trio.fail_after(30):
            view.apply(await stream.next())
            inst.stop()
            error = await stream.next_of("stream-error")
        meta = error.payload["meta"]
        assert meta["streamKey"] == "k" and meta["instanceId"] == 1
        assert meta["retryInSeconds"] == fast_backoff[0]
        assert meta["lastSuccessfulSync"].endswith("Z")
        assert error.payload["error"].startswith("Sync with qBittorrent failed (cannot connect to")
        inst.start()
        target = next(iter(inst.added))
        with inst.session() as http:
            http.post("/api/v2/torrents/rename", data={"hash": target, "name": "back again"}).raise_for_status()
        await until(stream, view, lambda: view.rows.get(target, {}).get("name") == "back again")


async def test_64_subscriptions_get_their_inits_and_65_is_refused(
        qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, _ = qbt_pair
    subs = [{"key": f"s{i}", "instanceId": 1, "page": i % 4, "limit": 10 + i} for i in range(64)]
    async with running_daemon(inst_cfg(1, a)) as (daemon, url):
        async with open_stream(url, subs) as stream:
            with trio.fail_after(30):
                inits = [await stream.next() for _ in subs]
            assert [e.payload["meta"]["streamKey"] for e in inits] == [s["key"] for s in subs]
            assert all(e.name == "init" for e in inits)
            assert daemon.streams.statistics().active_subscriptions == 64
        async with httpx2.AsyncClient(base_url=url, trust_env=False) as http:
            too_many = await http.get("/stream", params={"streams": json.dumps([*subs, subs[0]])})
        assert too_many.status_code == 400
        assert too_many.json()["error"] == "too many stream subscriptions requested"


@pytest.mark.parametrize(
    ("params", "status", "error", "field"),
    [
        ({}, 400, "missing streams parameter", None),
        ({"streams": "[]"}, 400, "no stream subscriptions requested", "streams"),
        ({"streams": "{"}, 400, "invalid streams payload", "streams"),
        ({"streams": '[{"instanceId": 9}]'}, 404, "instance not found", "streams[0].instanceId"),
        ({"streams": '[{"instanceId": 1, "limit": 2001}]'}, 400, "invalid limit value", "streams[0].limit"),
        ({"streams": '[{"instanceId": 1, "sort": "nope"}]'}, 400, "invalid sort field", "streams[0].sort"),
        ({"streams": '[{"instanceId": 1, "filters": {"expr": "Ratio >"}}]'}, 400, None, "streams[0].filters.expr"),
    ],
)
async def test_bad_requests_are_json_4xx_over_http(qbt_pair: tuple[QbtInstance, QbtInstance],
                                                   params: dict[str, str], status: int, error: str | None,
                                                   field: str | None) -> None:
    a, _ = qbt_pair
    async with running_daemon(inst_cfg(1, a)) as (daemon, url), httpx2.AsyncClient(base_url=url,
                                                                                  trust_env=False) as http:
        response = await http.get("/stream", params=params)
        assert daemon.supervisor.statistics().active_loops == 0  # a refused request starts nothing
    assert response.status_code == status
    body = response.json()
    if error is not None:
        assert body["error"] == error
    if field is not None:
        assert body["field"] == field
    assert "Traceback" not in response.text


async def never_answer(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def test_shutdown_within_deadline_with_clients_and_a_hanging_qbittorrent(
        qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, _ = qbt_pair
    # A "qBittorrent" that accepts connections and never answers.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    hang_port = listeners[0].socket.getsockname()[1]
    hanging = InstanceConfig(id=2, name="hang", url=f"http://127.0.0.1:{hang_port}", always_warm=True)
    clients = 100
    connected = trio.Semaphore(0)
    ended: list[float] = []

    async def client(url: str, i: int) -> None:
        with contextlib.suppress(httpx2.TransportError):
            async with open_stream(url, [{"key": f"c{i}", "instanceId": 1, "limit": 5}]) as stream:
                await stream.next()
                connected.release()
                with contextlib.suppress(EOFError):
                    while True:
                        await stream.next()
        ended.append(trio.current_time())

    async with trio.open_nursery() as outer:
        outer.start_soon(trio.serve_listeners, never_answer, listeners)
        async with (running_daemon(inst_cfg(1, a), hanging, shutdown_timeout=3.0) as (daemon, url),
                    trio.open_nursery() as nursery):
            for i in range(clients):
                nursery.start_soon(client, url, i)
            with trio.fail_after(60):
                for _ in range(clients):
                    await connected.acquire()
            assert daemon.streams.statistics().active_sessions == clients
            stopped_at = trio.current_time()
            daemon.stop()
        finished = trio.current_time()
        outer.cancel_scope.cancel()
    assert finished - stopped_at < 3.0 + 0.5
    assert len(ended) == clients and max(ended) - stopped_at < 3.5


async def test_aggregated_view_marks_partial_results_when_a_member_fails(
        qbt_pair: tuple[QbtInstance, QbtInstance], qbt_factory: QbtFactory, fast_backoff: tuple[float, ...]) -> None:
    a, _ = qbt_pair
    other = qbt_factory(torrents=4)
    sub = {"key": "all", "instanceIds": [1, 2], "limit": 1000, "sort": "name"}
    async with running_daemon(inst_cfg(1, a), inst_cfg(2, other)) as (_, url), open_stream(url, [sub]) as stream:
        view = ClientView()
        with trio.fail_after(30):
            view.apply(await stream.next())
        assert view.aggregated and not view.data.get("partialResults")
        assert {r["instance_id"] for r in view.page()} == {1, 2} and view.data["total"] == len(a.added) + 4
        other.stop()
        with trio.fail_after(30):
            error = await stream.next_of("stream-error")
        assert error.payload["meta"]["instanceId"] == 2
        await until(stream, view, lambda: bool(view.data.get("partialResults")), "member down")
        # what the failing member can no longer vouch for is left out; the healthy one stays
        assert {r["instance_id"] for r in view.page()} == {1} and view.data["total"] == len(a.added)
