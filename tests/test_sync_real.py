"""The sync engine against real qbittorrent-nox processes: correctness of the merge, faults, recovery."""

from __future__ import annotations

import random
import re
from typing import Any

import trio
from testbed import QbtFactory, QbtInstance

from qsse.config import InstanceConfig, SyncConfig
from qsse.qbt.maindata import MainData
from qsse.qbt.status import Health
from qsse.qbt.sync import InstanceSupervisor, SyncEvent, SyncFailed, SyncSucceeded

#: Fields that change on their own between two reads of an idle instance.
VOLATILE = {
    "time_active", "seeding_time", "last_activity", "eta", "availability", "dlspeed", "upspeed", "num_seeds",
    "num_leechs", "num_complete", "num_incomplete", "seen_complete", "reannounce", "popularity",
}


def instance_config(inst: QbtInstance, ident: int = 1, **kw: Any) -> InstanceConfig:
    return InstanceConfig(id=ident, name=inst.name, url=inst.url, username=inst.username,
                          password=kw.pop("password", inst.password), **kw)


def comparable(data: MainData | dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, MainData):
        torrents, categories, tags, trackers = data.torrents, data.categories, data.tags, data.trackers
    else:
        torrents = {h: {**row, "hash": h} for h, row in data.get("torrents", {}).items()}
        categories, tags, trackers = data.get("categories", {}), data.get("tags", []), data.get("trackers", {})
    return {
        "torrents": {h: {k: v for k, v in row.items() if k not in VOLATILE} for h, row in torrents.items()},
        "categories": {name: dict(cat) for name, cat in categories.items()},
        "tags": sorted(tags),
        "trackers": {url: sorted(hashes) for url, hashes in trackers.items()},
    }



#: Caps on waits for real processes: generous, since the machine is shared.
EVENT_DEADLINE = 30.0
CONVERGE_DEADLINE = 15.0


async def wait_for(events: trio.MemoryReceiveChannel[SyncEvent], kind: type) -> Any:
    with trio.fail_after(EVENT_DEADLINE):
        async for ev in events:
            if isinstance(ev, kind):
                return ev
    raise AssertionError("listener closed")


async def assert_converges(sup: InstanceSupervisor, events: trio.MemoryReceiveChannel[SyncEvent],
                           inst: QbtInstance) -> None:
    """The merged state equals a fresh rid=0 fetch, once the loop has seen what the fetch saw."""
    last: tuple[dict[str, Any], dict[str, Any]] | None = None
    with trio.move_on_after(CONVERGE_DEADLINE):
        while True:
            fresh = comparable(inst.maindata_full())
            await wait_for(events, SyncSucceeded)
            await wait_for(events, SyncSucceeded)  # a whole poll that started after the fetch
            merged = comparable(sup.state(1).data)
            if merged == fresh:
                return
            last = (merged, fresh)
    assert last is not None
    merged, fresh = last
    assert merged == fresh


async def test_two_instances_sync_with_their_own_credentials(qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, b = qbt_pair
    sup = InstanceSupervisor([instance_config(a, 1), instance_config(b, 2)], SyncConfig(interval=0.3))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        events = sup.open_listener()
        sup.acquire(1)
        sup.acquire(2)
        seen: set[int] = set()
        with trio.fail_after(20):
            async for ev in events:
                assert isinstance(ev, SyncSucceeded), getattr(ev.state, "last_error", None)
                seen.add(ev.state.instance_id)
                if seen == {1, 2}:
                    break
        for ident, inst in ((1, a), (2, b)):
            state = sup.state(ident)
            assert state.health is Health.SYNCING
            assert state.version.startswith("v4.") and state.webapi_version.startswith("2.")
            assert set(state.data.torrents) == set(inst.added)
            assert comparable(state.data) == comparable(inst.maindata_full())
            cats = {row["category"] for row in state.data.torrents.values()}
            assert cats == {"movies", "tv", "tv/anime", "linux", ""}
        nursery.cancel_scope.cancel()


async def test_randomized_operations_converge(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(torrents=40)
    rng = random.Random(7)
    sup = InstanceSupervisor([instance_config(inst)], SyncConfig(interval=0.25))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        events = sup.open_listener()
        sup.acquire(1)
        await wait_for(events, SyncSucceeded)
        with inst.session() as http:
            for burst in range(6):
                for _ in range(8):
                    random_operation(inst, http, rng)
                await assert_converges(sup, events, inst)
                assert sup.state(1).health is Health.SYNCING, f"burst {burst}"
        nursery.cancel_scope.cancel()


def random_operation(inst: QbtInstance, http: Any, rng: random.Random) -> None:
    hashes = list(inst.maindata_full()["torrents"])
    some = "|".join(rng.sample(hashes, min(len(hashes), rng.randint(1, 5)))) if hashes else ""
    op = rng.choice(["add", "delete", "pause", "resume", "category", "addTags", "removeTags", "rename",
                     "createCategory", "removeCategory"])

    def post(path: str, **data: str) -> None:
        r = http.post(f"/api/v2/{path}", data=data)
        if r.status_code != 409:  # 409: the category already exists / does not exist; fine for a random walk
            r.raise_for_status()

    if op == "add" or not hashes:
        inst.add_torrents(rng.randint(1, 3), category=rng.choice([None, "movies", "tv/anime"]),
                          tags=rng.sample(["x", "y", "z"], rng.randint(0, 2)), paused=rng.random() < 0.5,
                          wait=False)
    elif op == "delete":
        post("torrents/delete", hashes=some, deleteFiles="false")
    elif op == "pause":
        post("torrents/pause", hashes=some)
    elif op == "resume":
        post("torrents/resume", hashes=some)
    elif op == "category":
        cats = list(inst.maindata_full()["categories"])
        post("torrents/setCategory", hashes=some, category=rng.choice([*cats, ""]))
    elif op == "addTags":
        post("torrents/addTags", hashes=some, tags=",".join(rng.sample(["x", "y", "z", "w"], 2)))
    elif op == "removeTags":
        post("torrents/removeTags", hashes=some, tags=rng.choice(["x", "y", "z", "w"]))
    elif op == "rename":
        post("torrents/rename", hash=some.split("|")[0], name=f"renamed-{rng.randint(0, 999)}")
    elif op == "createCategory":
        post("torrents/createCategory", category=f"cat{rng.randint(0, 5)}", savePath="")
    elif op == "removeCategory":
        post("torrents/removeCategories", categories=f"cat{rng.randint(0, 5)}")


async def test_instance_stopped_then_back(qbt_factory: QbtFactory, fast_backoff: tuple[float, ...]) -> None:
    inst = qbt_factory(torrents=5)
    sup = InstanceSupervisor([instance_config(inst)], SyncConfig(interval=0.25))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        events = sup.open_listener()
        sup.acquire(1)
        first = await wait_for(events, SyncSucceeded)
        inst.stop()
        failures = [await wait_for(events, SyncFailed) for _ in range(3)]
        assert [f.state.retry_in for f in failures] == list(fast_backoff[:3])
        assert all(f.state.health is Health.DOWN for f in failures)
        assert "Sync with qBittorrent failed (cannot connect to" in (failures[0].state.last_error or "")
        assert all(f.state.last_success == failures[0].state.last_success for f in failures)
        assert failures[0].state.last_success is not None
        assert failures[0].state.last_success >= first.state.last_success
        inst.start()
        recovered = await wait_for(events, SyncSucceeded)
        # a restarted qBittorrent forgot our session: re-login and a full resync
        assert recovered.diff.full_update and recovered.previous_health is Health.DOWN
        assert comparable(sup.state(1).data) == comparable(inst.maindata_full())
        nursery.cancel_scope.cancel()


async def test_wrong_password_is_reported_and_not_hammered(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(max_auth_fail_count=3)
    sup = InstanceSupervisor([instance_config(inst, password="wrong")], SyncConfig(interval=0.25))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        events = sup.open_listener()
        sup.acquire(1)
        failed = await wait_for(events, SyncFailed)
        assert failed.state.health is Health.AUTH_FAILED
        assert failed.state.last_error == (
            "Sync with qBittorrent paused: check the username and password; retrying in 60s"
        )
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    failures = re.findall("WebAPI login failure", inst.qbt_log.read_text(errors="replace"))
    assert len(failures) == 1
    # and the instance is not banned: the right password still works
    assert inst.maindata_full()["rid"] == 1


async def test_expired_session_relogs_in_silently(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(torrents=3, session_timeout=1)
    sup = InstanceSupervisor([instance_config(inst)], SyncConfig(interval=2.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        events = sup.open_listener()
        sup.acquire(1)
        got: list[SyncEvent] = []
        with trio.fail_after(30):
            async for ev in events:
                got.append(ev)
                if len(got) == 4:
                    break
        nursery.cancel_scope.cancel()
    assert all(isinstance(ev, SyncSucceeded) for ev in got), [getattr(e.state, "last_error", "") for e in got]
    logins = re.findall("WebAPI login success", inst.qbt_log.read_text(errors="replace"))
    assert len(logins) >= 3  # the SID expired between polls and was renewed each time
