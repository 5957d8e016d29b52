"""The simulator over real loopback HTTP: auth, rid semantics, actions, gzip, dialects.

Every test runs on a frozen ``mock_clock``: nothing ticks, no session expires and no client timeout fires
unless a test jumps the clock itself.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import msgspec
import pytest
import trio
import trio.testing
from testbed import info_hash, make_torrent

from qsse.qbt.maindata import MainDataMerger
from qsse.sim.library import TORRENT_FIELDS
from qsse.sim.server import BAN_TEXT, SimulatedQbt

API = "/api/v2"


async def _start(nursery: trio.Nursery, **kwargs: Any) -> SimulatedQbt:
    kwargs.setdefault("torrents", 40)
    kwargs.setdefault("seed", 11)
    sim = SimulatedQbt(**kwargs)
    await nursery.start(sim.run)
    return sim


@pytest.fixture
async def sim(nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> SimulatedQbt:
    return await _start(nursery, max_auth_fail_count=3, ban_duration=60, session_timeout=600)


@asynccontextmanager
async def _client(sim: SimulatedQbt, *, login: bool = True, **kwargs: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=sim.url + API, trust_env=False, **kwargs) as client:
        if login:
            r = await client.post("/auth/login", data={"username": sim.username, "password": sim.password})
            assert (r.status_code, r.text) == (200, "Ok.")
        yield client


async def _maindata(client: httpx2.AsyncClient, rid: int) -> dict[str, Any]:
    r = await client.get("/sync/maindata", params={"rid": rid})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    payload: dict[str, Any] = r.json()
    return payload


async def _ok(client: httpx2.AsyncClient, path: str, **data: str) -> None:
    r = await client.post(path, data=data)
    assert r.status_code == 200, (path, r.status_code, r.text)


# ---------------------------------------------------------------------------- auth


async def test_requests_without_a_valid_sid_are_forbidden(sim: SimulatedQbt) -> None:
    async with _client(sim, login=False) as client:
        for path in ("/app/version", "/sync/maindata", "/torrents/info", "/nonexistent"):
            r = await client.get(path)
            assert (r.status_code, r.text) == (403, "Forbidden")
        r = await client.get("/app/version", headers={"Cookie": "SID=bogus"})
        assert r.status_code == 403


async def test_login_answers_like_qbittorrent(sim: SimulatedQbt) -> None:
    async with _client(sim, login=False) as client:
        r = await client.post("/auth/login", data={"username": "admin", "password": "wrong"})
        assert (r.status_code, r.text) == (200, "Fails.")
        assert "set-cookie" not in r.headers
        r = await client.get("/auth/login")
        assert r.status_code == 405
        r = await client.post("/auth/login", data={"username": "admin", "password": "adminadmin"})
        assert (r.status_code, r.text) == (200, "Ok.")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("SID=") and cookie.endswith("; HttpOnly; path=/")
        assert len(cookie.split(";")[0]) == len("SID=") + 32
        assert (await client.get("/app/version")).text == "v4.5.2"
        assert (await client.get("/app/webapiVersion")).text == "2.8.19"
        prefs = (await client.get("/app/preferences")).json()
        assert prefs["refresh_interval"] == 1500 and prefs["web_ui_username"] == "admin"
        # A valid session short-circuits a second login, even with a wrong password.
        r = await client.post("/auth/login", data={"username": "admin", "password": "wrong"})
        assert (r.text, "set-cookie" in r.headers) == ("Ok.", False)


async def test_logout_ends_the_session(sim: SimulatedQbt) -> None:
    async with _client(sim) as client:
        r = await client.post("/auth/logout")
        assert r.status_code == 200 and r.headers["set-cookie"].startswith("SID=;")
        assert (await client.get("/app/version")).status_code == 403


async def test_ban_after_failed_logins_spares_existing_sessions(
    sim: SimulatedQbt, mock_clock: trio.testing.MockClock
) -> None:
    async with _client(sim) as existing, _client(sim, login=False) as client:
        bad = {"username": "admin", "password": "nope"}
        good = {"username": "admin", "password": "adminadmin"}
        for _ in range(3):
            assert (await client.post("/auth/login", data=bad)).text == "Fails."
        r = await client.post("/auth/login", data=good)
        assert (r.status_code, r.text) == (403, BAN_TEXT)
        assert (await existing.get("/app/version")).status_code == 200
        mock_clock.jump(61)
        assert (await client.post("/auth/login", data=good)).text == "Ok."


async def test_sessions_expire_after_idle_timeout(sim: SimulatedQbt, mock_clock: trio.testing.MockClock) -> None:
    async with _client(sim) as client:
        mock_clock.jump(500)
        assert (await client.get("/app/version")).status_code == 200, "the timeout slides"
        mock_clock.jump(500)
        assert (await client.get("/app/version")).status_code == 200
        mock_clock.jump(601)
        assert (await client.get("/app/version")).status_code == 403


async def test_idle_sessions_are_dropped_at_the_next_login(
    sim: SimulatedQbt, mock_clock: trio.testing.MockClock
) -> None:
    async with _client(sim), _client(sim):
        assert sim.statistics().sessions == 2
        mock_clock.jump(601)
        async with _client(sim):
            assert sim.statistics().sessions == 1


# ---------------------------------------------------------------------------- maindata


async def test_rid_semantics_over_http(sim: SimulatedQbt) -> None:
    async with _client(sim) as a, _client(sim) as b:
        full = await _maindata(a, 0)
        assert full["rid"] == 1 and full["full_update"] is True
        assert set(full) == {"categories", "full_update", "rid", "server_state", "tags", "torrents", "trackers"}
        assert len(full["torrents"]) == 40
        assert all(tuple(row) == TORRENT_FIELDS for row in full["torrents"].values())
        assert (await _maindata(a, 0))["rid"] == 1
        assert await _maindata(a, 1) == {"rid": 2}
        assert await _maindata(a, 1) == {"rid": 3}, "retry of the accepted rid"
        assert (await _maindata(a, 2))["full_update"] is True, "superseded rid"
        assert (await _maindata(a, 987654))["rid"] == 5, "unknown rid: full, the counter continues"
        r = await a.get("/sync/maindata", params={"rid": "abc"})
        assert r.json()["rid"] == 1
        # b has its own rid state.
        assert (await _maindata(b, 0))["rid"] == 1
        assert await _maindata(b, 1) == {"rid": 2}


async def test_every_action_shows_in_the_next_diff(sim: SimulatedQbt) -> None:
    tracker = "http://127.0.0.1:1/announce"
    torrent = make_torrent("Some.Show.S01E01", 50 * 1024 * 1024, trackers=[tracker], seed=1)
    h = info_hash(torrent)
    magnet_hash = "ab" * 20
    async with _client(sim) as client:
        rid = (await _maindata(client, 0))["rid"]

        async def diff() -> dict[str, Any]:
            nonlocal rid
            payload = await _maindata(client, rid)
            assert "full_update" not in payload
            rid = payload.pop("rid")
            return payload

        files = {"torrents": ("a.torrent", torrent, "application/x-bittorrent")}
        form = {"paused": "true", "category": "brand/new", "tags": "n1,n2"}
        r = await client.post("/torrents/add", data=form, files=files)
        assert (r.status_code, r.text) == (200, "Ok.")
        added = await diff()
        assert set(added) == {"categories", "tags", "torrents", "trackers"}
        row = added["torrents"][h]
        assert tuple(row) == TORRENT_FIELDS
        assert (row["name"], row["size"], row["state"], row["category"], row["tags"]) == (
            "Some.Show.S01E01",
            50 * 1024 * 1024,
            "pausedDL",
            "brand/new",
            "n1, n2",
        )
        assert row["magnet_uri"].endswith("&tr=http%3a%2f%2f127.0.0.1%3a1%2fannounce")
        assert added["categories"] == {"brand/new": {"name": "brand/new", "savePath": ""}}
        assert added["tags"] == ["n1", "n2"]
        assert added["trackers"] == {tracker: [h]}

        await _ok(client, "/torrents/add", urls=f"magnet:?xt=urn:btih:{magnet_hash}&dn=mag", paused="true")
        magnet = (await diff())["torrents"][magnet_hash]
        assert (magnet["name"], magnet["size"], magnet["total_size"], magnet["state"]) == ("mag", 0, -1, "pausedDL")

        steps: list[tuple[str, dict[str, str], dict[str, Any]]] = [
            ("/torrents/rename", {"hash": h, "name": "renamed"}, {"torrents": {h: {"name": "renamed"}}}),
            ("/torrents/createCategory", {"category": "c1", "savePath": "/c1"}, {
                "categories": {"c1": {"name": "c1", "savePath": "/c1"}}
            }),
            ("/torrents/setCategory", {"hashes": h, "category": "c1"}, {"torrents": {h: {"category": "c1"}}}),
            ("/torrents/addTags", {"hashes": h, "tags": "n3"}, {
                "tags": ["n3"], "torrents": {h: {"tags": "n1, n2, n3"}}
            }),
            ("/torrents/removeTags", {"hashes": h, "tags": "n1"}, {"torrents": {h: {"tags": "n2, n3"}}}),
            ("/torrents/resume", {"hashes": h}, {"torrents": {h: {"state": "stalledDL"}}}),
            ("/torrents/pause", {"hashes": h}, {"torrents": {h: {"state": "pausedDL"}}}),
            ("/torrents/removeCategories", {"categories": "c1\nbrand/new"}, {
                "categories_removed": ["c1", "brand/new"],
                "torrents": {h: {"category": ""}},
            }),
            ("/torrents/delete", {"hashes": f"{h}|{magnet_hash}", "deleteFiles": "false"}, {
                "torrents_removed": [magnet_hash, h],
                "trackers_removed": [tracker],
            }),
        ]  # fmt: skip
        for path, data, expected in steps:
            await _ok(client, path, **data)
            got = await diff()
            for key in ("torrents_removed", "categories_removed"):
                for payload in (got, expected):
                    payload.get(key, []).sort()  # qBittorrent sends removals in no particular order
            assert got == expected, path


async def test_actions_refuse_bad_input_like_qbittorrent(sim: SimulatedQbt) -> None:
    h = sim.library.hashes()[0]
    torrent = make_torrent("dup", 1024 * 1024, seed=2)
    async with _client(sim) as client:
        cases = [
            ("/torrents/setCategory", {"hashes": h, "category": "nope"}, 409, "Incorrect category name"),
            ("/torrents/createCategory", {"category": "movies"}, 409, "Unable to create category"),
            ("/torrents/createCategory", {"category": ""}, 400, "Category cannot be empty"),
            ("/torrents/rename", {"hash": "f" * 40, "name": "x"}, 404, "Not Found"),
            ("/torrents/delete", {"hashes": "zz"}, 400, "Bad Request"),
            ("/torrents/addTags", {"tags": "x"}, 400, "Bad Request"),
            ("/torrents/stop", {"hashes": h}, 404, "Not Found"),
            ("/torrents/start", {"hashes": h}, 404, "Not Found"),
            ("/torrents/add", {"paused": "true"}, 200, "Fails."),
        ]
        for path, data, status, text in cases:
            r = await client.post(path, data=data)
            assert (r.status_code, r.text) == (status, text), path
        assert (await client.get("/torrents/pause")).status_code == 405
        files = [("torrents", ("ok.torrent", torrent)), ("torrents", ("bad.torrent", b"not bencode"))]
        r = await client.post("/torrents/add", data={"paused": "true"}, files=files)
        assert (r.status_code, r.text) == (415, "Error: 'bad.torrent' is not a valid torrent file.")
        assert info_hash(torrent) not in sim.library, "parts go in filename order and stop at the first bad one"
        r = await client.post("/torrents/add", files={"torrents": ("ok.torrent", torrent)})
        assert r.text == "Ok."
        r = await client.post("/torrents/add", files={"torrents": ("ok.torrent", torrent)})
        assert r.text == "Fails.", "duplicate torrent"


async def test_torrents_info_filters_sorts_and_pages(sim: SimulatedQbt) -> None:
    lib = sim.library
    async with _client(sim) as client:
        rows = (await client.get("/torrents/info")).json()
        assert len(rows) == 40 and all(row["hash"] in lib for row in rows)
        category = rows[0]["category"]
        only = (await client.get("/torrents/info", params={"category": category})).json()
        assert only and {r["category"] for r in only} == {category}
        paused = (await client.get("/torrents/info", params={"filter": "paused"})).json()
        assert {r["state"] for r in paused} <= {"pausedUP", "pausedDL"}
        assert len(paused) == sum(r["state"].startswith("paused") for r in rows)
        page = (await client.get("/torrents/info", params={"sort": "size", "reverse": "true", "limit": 5})).json()
        assert [r["size"] for r in page] == sorted((r["size"] for r in rows), reverse=True)[:5]
        two = "|".join(lib.hashes()[:2])
        assert len((await client.get("/torrents/info", params={"hashes": two})).json()) == 2


async def test_gzip_only_when_accepted(sim: SimulatedQbt) -> None:
    async with _client(sim) as client:
        r = await client.get("/sync/maindata", params={"rid": 0}, headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert int(r.headers["content-length"]) < len(r.content) / 3
        assert r.json()["rid"] == 1
        r = await client.get("/sync/maindata", params={"rid": 0}, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in r.headers
        assert int(r.headers["content-length"]) == len(r.content)
    # The raw body really is gzip (not only something httpx2 decodes).
    async with httpx2.AsyncClient(trust_env=False) as raw:
        await raw.post(sim.url + API + "/auth/login", data={"username": "admin", "password": "adminadmin"})
        async with raw.stream("GET", sim.url + API + "/sync/maindata", headers={"Accept-Encoding": "gzip"}) as r:
            body = b"".join([chunk async for chunk in r.aiter_raw()])
        assert msgspec.json.decode(gzip.decompress(body))["full_update"] is True


async def test_dialect_5_has_stop_start_and_stopped_states(nursery: trio.Nursery, mock_clock: Any) -> None:
    sim = await _start(nursery, dialect="5", tick_interval=float("inf"))
    h = sim.library.hashes()[0]
    async with _client(sim) as client:
        assert (await client.get("/app/version")).text == "v5.0.5"
        assert (await client.get("/app/webapiVersion")).text == "2.11.2"
        full = await _maindata(client, 0)
        assert {r["state"] for r in full["torrents"].values()} & {"stoppedUP", "stoppedDL"}
        assert not {r["state"] for r in full["torrents"].values()} & {"pausedUP", "pausedDL"}
        assert (await client.post("/torrents/pause", data={"hashes": h})).status_code == 404
        assert (await client.post("/torrents/resume", data={"hashes": h})).status_code == 404
        await _ok(client, "/torrents/stop", hashes=h)
        assert (await _maindata(client, 1))["torrents"][h]["state"] in ("stoppedUP", "stoppedDL")
        await _ok(client, "/torrents/start", hashes=h)
        assert not (await _maindata(client, 2))["torrents"][h]["state"].startswith("stopped")
        torrent = make_torrent("five", 1024 * 1024, seed=5)
        r = await client.post("/torrents/add", data={"stopped": "true"}, files={"torrents": ("f.torrent", torrent)})
        assert r.text == "Ok."
        assert sim.library.row(info_hash(torrent))["state"] == "stoppedDL"


async def test_ticker_changes_the_library_every_interval(sim: SimulatedQbt, mock_clock: trio.testing.MockClock) -> None:
    async with _client(sim) as client:
        rid = (await _maindata(client, 0))["rid"]
        revision = sim.library.revision
        mock_clock.jump(1.0)
        await trio.testing.wait_all_tasks_blocked()
        assert sim.library.revision == revision + 1
        payload = await _maindata(client, rid)
        assert "server_state" in payload or "torrents" in payload


async def test_merged_diffs_equal_a_fresh_full_update_after_churn(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    sim = await _start(nursery, torrents=500, change_fraction=0.1)
    merger = MainDataMerger()
    async with _client(sim) as poller, _client(sim) as actor, _client(sim) as fresh:
        rid = 0
        hashes = sim.library.hashes()
        for i in range(12):
            mock_clock.jump(1.0)
            await trio.testing.wait_all_tasks_blocked()
            h = hashes[i]
            if h in sim.library:
                await _ok(actor, "/torrents/addTags", hashes=h, tags=f"t{i % 3}")
                await _ok(actor, "/torrents/rename", hash=h, name=f"renamed {i}")
            r = await poller.get("/sync/maindata", params={"rid": rid})
            merger.apply_bytes(r.content)
            rid = merger.rid
        full = await _maindata(fresh, 0)
    state = merger.state
    assert {h: {k: v for k, v in row.items() if k != "hash"} for h, row in state.torrents.items()} == full["torrents"]
    assert dict(state.categories) == full["categories"]
    assert set(state.tags) == set(full["tags"])
    assert {u: list(hs) for u, hs in state.trackers.items()} == full["trackers"]
    assert dict(state.server_state) == full["server_state"]


async def test_statistics_count_requests_per_endpoint(sim: SimulatedQbt) -> None:
    async with _client(sim) as client:
        for rid in range(3):
            await _maindata(client, rid)
        await client.get("/app/version")
    stats = sim.statistics()
    assert stats.requests == {"auth/login": 1, "sync/maindata": 3, "app/version": 1}
    assert stats.total_requests == 5
    assert stats.sessions == 1 and stats.torrents == 40
    assert stats.bytes_sent > 0


async def test_shared_full_update_bodies_follow_library_changes(sim: SimulatedQbt) -> None:
    h = sim.library.hashes()[0]
    async with _client(sim) as a, _client(sim) as b:
        first = await a.get("/sync/maindata", params={"rid": 0})
        second = await b.get("/sync/maindata", params={"rid": 0})
        assert first.content == second.content
        await _ok(a, "/torrents/rename", hash=h, name="after the cache")
        third = await b.get("/sync/maindata", params={"rid": 0}, headers={"Accept-Encoding": "gzip"})
        assert third.json()["torrents"][h]["name"] == "after the cache"
        # A full update for an unknown rid continues the counter, so it is not the rid=0 body.
        fourth = await _maindata(b, 424242)
        assert fourth["full_update"] is True and fourth["rid"] == 2


async def test_concurrent_full_updates_share_one_gzip(nursery: trio.Nursery, mock_clock: Any) -> None:
    sim = await _start(nursery, torrents=1500)  # > 1 MiB of JSON: compressed in a worker thread
    bodies: list[bytes] = []

    async def fetch() -> None:
        async with _client(sim) as client:
            r = await client.get("/sync/maindata", params={"rid": 0}, headers={"Accept-Encoding": "gzip"})
            assert r.headers["content-encoding"] == "gzip"
            bodies.append(r.content)

    async with trio.open_nursery() as clients:
        for _ in range(5):
            clients.start_soon(fetch)
    assert len(bodies) == 5 and len(set(bodies)) == 1
    assert len(msgspec.json.decode(bodies[0])["torrents"]) == 1500
    assert len(sim._full_bodies) == 1
    assert next(iter(sim._full_bodies.values())).gzipped is not None
