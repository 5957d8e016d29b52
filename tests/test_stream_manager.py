"""The stream manager without HTTP: sessions read straight from their body channel.

The supervisor is a hand-fed fake; the view engine and the delta chain are trivial fakes, so
these tests are about the machinery (order, coalescing, isolation, lifetimes), not the views.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing
from test_stream_fakes import Client, FakeChain, FakeEngine, FakeSupervisor, torrents

from qsse.qbt.status import Health
from qsse.stream.manager import Batch, StreamManager, StreamRequestError


@dataclass
class Env:
    supervisor: FakeSupervisor
    engine: FakeEngine
    manager: StreamManager
    nursery: trio.Nursery

    def batch(self, *subs: dict[str, Any], activity: bool = False) -> Batch:
        return self.manager.prepare_batch(json.dumps(list(subs)) if subs else None, activity)


@pytest.fixture
async def env(nursery: trio.Nursery) -> AsyncIterator[Env]:
    supervisor = FakeSupervisor((1, 2, 3))
    engine = FakeEngine()
    manager = StreamManager(supervisor, engine, new_encoder=FakeChain, init_wait=3.0)
    await nursery.start(manager.run)
    for i in (1, 2, 3):
        supervisor.succeed(i, torrents(f"{i}a", f"{i}b"), full_update=True, initial=True)
    await trio.testing.wait_all_tasks_blocked()
    yield Env(supervisor, engine, manager, nursery)


def assert_idle(env: Env) -> None:
    stats = env.manager.statistics()
    assert (stats.active_sessions, stats.active_subscriptions, stats.active_groups) == (0, 0, 0)
    assert stats.active_sync_loops == 0
    assert set(env.supervisor.demand.values()) == {0}
    assert env.manager.nursery is not None
    assert [t.name for t in env.manager.nursery.child_tasks] == ["stream-sync-events"]


# -- init ------------------------------------------------------------------------------------------


async def test_inits_come_first_in_request_order_and_wait_for_a_first_sync(env: Env, autojump_clock: Any) -> None:
    env.supervisor.set_health(2, Health.IDLE)  # instance 2 has not synced yet: its group waits
    batch = env.batch({"key": "two", "instanceId": 2}, {"key": "one", "instanceId": 1}, {"instanceIds": [3, 1]})
    async with env.manager.open_session(batch) as body:
        client = Client(body)
        await trio.sleep(1)
        assert list(client.buffered()) == []
        env.supervisor.succeed(2, torrents("2a", "2b", "2c"))
        first, second, third = await client.next(), await client.next(), await client.next()
    assert [e[0] for e in (first, second, third)] == ["init", "init", "init"]
    assert first[1]["meta"]["streamKey"] == "two"
    assert first[1]["data"]["total"] == 3
    assert first[1]["meta"]["fullUpdate"] is True and "rid" not in first[1]["meta"]
    assert first[1]["meta"]["instanceId"] == 2
    assert second[1]["meta"]["streamKey"] == "one"
    assert second[1]["data"]["total"] == 2
    # An aggregated subscription without a key gets its group key, and instanceId 0.
    assert third[1]["meta"]["instanceId"] == 0
    assert third[1]["meta"]["streamKey"].startswith("multi:1,3|")
    assert third[1]["data"]["total"] == 4
    await trio.testing.wait_all_tasks_blocked()
    assert_idle(env)


async def test_init_is_built_anyway_after_init_wait(env: Env, autojump_clock: Any) -> None:
    env.supervisor.set_health(2, Health.IDLE)
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 2})) as body:
        start = trio.current_time()
        name, _ = await Client(body).next()
        assert name == "init"
        assert trio.current_time() - start == pytest.approx(3.0)


async def test_joiner_init_matches_the_group_baseline_and_no_frame_is_missed_or_doubled(
    env: Env, autojump_clock: Any
) -> None:
    sub = {"key": "k", "instanceId": 1}
    async with env.manager.open_session(env.batch(sub)) as body_a:
        a = Client(body_a)
        assert (await a.next())[0] == "init"
        env.supervisor.succeed(1, torrents("1a", "1b", "1c"))
        name, frame = await a.next_of("delta", "update")
        assert name == "delta" and frame["data"]["total"] == 3
        async with env.manager.open_session(env.batch(sub)) as body_b:
            b = Client(body_b)
            name, init = await b.next()
            assert name == "init"
            assert init["data"] == frame["data"]  # the baseline a holds now
            env.supervisor.succeed(1, torrents("1a"))
            _, after_a = await a.next_of("delta", "update")
            _, after_b = await b.next_of("delta", "update")
            assert after_a["data"] == after_b["data"] and after_a["data"]["total"] == 1
            assert after_a["meta"]["rid"] == after_b["meta"]["rid"] == env.supervisor.state(1).data.rid
        assert env.engine.builds == 3  # one group, one build per tick, whatever the number of members


# -- ticks -------------------------------------------------------------------------------------------


async def test_unchanged_view_sends_nothing_but_heartbeats(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        client = Client(body)
        await client.next()
        for _ in range(3):
            env.supervisor.succeed(1, torrents("1a", "1b"))
            await trio.sleep(2)
        env.supervisor.succeed(1, torrents("1a"), full_update=True)
        seen = []
        while (event := await client.next())[0] == "heartbeat":
            seen.append(event)
        assert event[0] == "delta"
        assert event[1]["meta"]["fullUpdate"] is True
        assert len(seen) == 1  # 6 s of silence but one heartbeat


async def test_a_poll_that_changed_nothing_costs_no_build(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        await Client(body).next()
        builds = env.engine.builds
        for _ in range(5):
            env.supervisor.succeed(1, torrents("1a", "1b"), changed=frozenset())
            await trio.sleep(2)
        assert env.engine.builds == builds
        env.supervisor.fail(1)
        env.supervisor.succeed(1, torrents("1a", "1b"), changed=frozenset())  # back to syncing: rebuilt
        await trio.testing.wait_all_tasks_blocked()
        assert env.engine.builds == builds + 1


async def test_burst_of_sync_events_coalesces_into_one_build(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        client = Client(body)
        await client.next()
        builds = env.engine.builds
        for n in range(20):
            env.supervisor.succeed(1, torrents(*(f"x{i}" for i in range(n + 1))))
        _, frame = await client.next_of("delta")
        await trio.testing.wait_all_tasks_blocked()
        assert env.engine.builds - builds == 1
        assert frame["data"]["total"] == 20  # latest wins


async def test_triggers_during_a_build_leave_exactly_one_pending_tick(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        await Client(body).next()
        group = env.manager.group(next(iter(env.manager._groups)))
        assert group is not None
        builds = env.engine.builds
        real_build = env.engine.build
        retriggers = [10]

        def build_and_retrigger(*args: Any, **kwargs: Any) -> dict[str, Any]:
            if retriggers[0]:
                for _ in range(retriggers.pop()):
                    group.trigger()  # arrive while this build is in flight
                retriggers.append(0)
            return real_build(*args, **kwargs)

        env.engine.build = build_and_retrigger  # type: ignore[method-assign]
        group.trigger()
        group.trigger()
        await trio.testing.wait_all_tasks_blocked()
        assert env.engine.builds - builds == 2  # the one in flight, then the single pending one


async def test_sync_of_one_instance_ticks_every_dependent_group_only(env: Env, autojump_clock: Any) -> None:
    batch = env.batch({"key": "one", "instanceId": 1}, {"key": "agg", "instanceIds": [1, 2]},
                      {"key": "three", "instanceId": 3})
    async with env.manager.open_session(batch) as body:
        client = Client(body)
        for _ in range(3):
            await client.next()
        env.supervisor.succeed(1, torrents("1z"))
        got = {(await client.next_of("delta"))[1]["meta"]["streamKey"] for _ in range(2)}
        assert got == {"one", "agg"}
        assert not [e for e in client.buffered() if e[0] == "delta"]
        await trio.sleep(1)
        assert not [e for e in client.buffered() if e[0] == "delta"]


# -- errors ------------------------------------------------------------------------------------------


async def test_sync_failure_sends_stream_error_to_every_dependent_subscription(env: Env, autojump_clock: Any) -> None:
    batch = env.batch({"key": "one", "instanceId": 1}, {"key": "agg", "instanceIds": [2, 1]},
                      {"key": "three", "instanceId": 3})
    async with env.manager.open_session(batch) as body:
        client = Client(body)
        for _ in range(3):
            await client.next()
        last_success = env.supervisor.state(1).last_success
        env.supervisor.fail(1, retry_in=8)
        errors = [(await client.next_of("stream-error"))[1] for _ in range(2)]
        assert {e["meta"]["streamKey"] for e in errors} == {"one", "agg"}
        for error in errors:
            assert error["error"].startswith("Sync with qBittorrent failed (")
            assert error["meta"]["retryInSeconds"] == 8
            assert error["meta"]["instanceId"] == 1
            assert error["meta"]["lastSuccessfulSync"].endswith("Z")
        assert last_success is not None
        # health changed: the views are rebuilt (instanceMeta.connected), as deltas
        _, frame = await client.next_of("delta")
        assert False in frame["data"]["connected"]


async def test_joiner_while_instance_is_down_gets_init_then_stream_error(env: Env, autojump_clock: Any) -> None:
    env.supervisor.fail(1)
    await trio.testing.wait_all_tasks_blocked()
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        client = Client(body)
        assert (await client.next())[0] == "init"
        name, error = await client.next()
        assert name == "stream-error" and error["meta"]["retryInSeconds"] == 8


async def test_failed_build_sends_stream_error_to_the_group(env: Env, autojump_clock: Any) -> None:
    batch = env.batch({"key": "k", "instanceId": 1}, {"key": "j", "instanceId": 2})
    async with env.manager.open_session(batch) as body:
        client = Client(body)
        await client.next()
        await client.next()
        env.engine.fail_with = RuntimeError("boom")
        env.supervisor.succeed(1, torrents("1q"))
        _, error = await client.next_of("stream-error")
        assert error["meta"]["streamKey"] == "k"
        assert "boom" in error["error"]
        assert error["meta"]["retryInSeconds"] >= 1
        env.engine.fail_with = None
        env.supervisor.succeed(1, torrents("1q", "1r"))
        _, frame = await client.next_of("delta")
        assert frame["data"]["total"] == 2


async def test_unencodable_view_restarts_the_chain_with_an_update(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        client = Client(body)
        await client.next()
        env.engine.poison = True
        env.supervisor.succeed(1, torrents("1q"))
        _, error = await client.next_of("stream-error")
        assert "encode" in error["error"]
        env.supervisor.succeed(1, torrents("1q", "1r"))
        name, frame = await client.next_of("delta", "update")
        assert name == "update"  # the chain restarted: full data, no delta object
        assert frame["data"]["total"] == 2 and "delta" not in frame
        env.supervisor.succeed(1, torrents("1r"))
        name, frame = await client.next_of("delta", "update")
        assert name == "delta"


async def test_first_build_failing_does_not_leave_the_connection_mute(env: Env, autojump_clock: Any) -> None:
    env.engine.fail_with = RuntimeError("boom")
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        client = Client(body)
        name, _ = await client.next()
        assert name == "stream-error"
        env.engine.fail_with = None
        env.supervisor.succeed(1, torrents("1a"))
        name, init = await client.next_of("init")
        assert init["data"]["total"] == 1


# -- heartbeats ----------------------------------------------------------------------------------------


async def test_heartbeats_per_subscription_per_instance_with_jitter(env: Env, autojump_clock: Any) -> None:
    batch = env.batch({"key": "one", "instanceId": 1}, {"key": "agg", "instanceIds": [2, 3]})
    async with env.manager.open_session(batch) as body:
        client = Client(body)
        await client.next()
        await client.next()
        start = trio.current_time()
        beats: list[tuple[float, str, int]] = []
        while trio.current_time() - start < 30:
            name, payload = await client.next()
            assert name == "heartbeat"
            beats.append((trio.current_time() - start, payload["meta"]["streamKey"], payload["meta"]["instanceId"]))
    for pair in (("one", 1), ("agg", 2), ("agg", 3)):
        times = [t for t, *p in beats if tuple(p) == pair]
        gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
        assert len(times) >= 5
        assert all(5.0 <= gap <= 5.5 + 1e-9 for gap in gaps), (pair, gaps)


async def test_heartbeats_keep_their_period_while_frames_flow(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1})) as body:
        client = Client(body)
        await client.next()
        start = trio.current_time()
        seen: list[tuple[float, str]] = []

        async def read() -> None:
            while True:
                name, _ = await client.next()
                seen.append((trio.current_time() - start, name))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for i in range(12):
                env.supervisor.succeed(1, torrents(f"n{i}"))
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
        assert [name for _, name in seen].count("delta") == 12
        beats = [t for t, name in seen if name == "heartbeat"]
        assert len(beats) == 2
        assert 5.0 <= beats[0] <= 5.5 and 10.0 <= beats[1] <= 11.0


async def test_activity_connection_gets_an_immediate_heartbeat_and_activity(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch(activity=True)) as body:
        client = Client(body)
        start = trio.current_time()
        name, beat = await client.next()
        assert name == "heartbeat" and trio.current_time() == start
        assert beat["meta"] == {"instanceId": 0, "timestamp": beat["meta"]["timestamp"]}
        assert env.manager.publish_activity("tool.ran", 2, "x") == 1
        name, activity = await client.next()
        assert name == "activity"
        assert activity["activity"]["kind"] == "tool.ran"
        assert activity["activity"]["instanceId"] == 2
        # no sync loop started for an activity-only connection
        assert env.manager.statistics().active_sync_loops == 0
        env.supervisor.succeed(1, {**torrents("1a", "1b", "n1"), "1a": {"hash": "1a", "progress": 1}})
        env.supervisor.fail(1)
        kinds = [(await client.next_of("activity"))[1]["activity"] for _ in range(3)]
        assert [(k["kind"], k.get("resourceId")) for k in kinds] == [
            ("torrent.added", "n1"), ("torrent.completed", "1a"), ("instance.disconnected", None),
        ]
        env.manager.config_reloaded()
        assert (await client.next_of("activity"))[1]["activity"]["kind"] == "config.reloaded"


async def test_activity_burst_drops_events_not_the_session(env: Env, autojump_clock: Any) -> None:
    async with env.manager.open_session(env.batch({"key": "k", "instanceId": 1}, activity=True)) as body:
        client = Client(body)
        assert (await client.next())[0] == "init"
        assert (await client.next())[0] == "heartbeat"  # the immediate one of an activity connection
        for i in range(100):
            env.manager.publish_activity("burst", None, str(i))
        got = 0
        while (await client.next_of("activity", "heartbeat"))[0] == "activity":
            got += 1
        assert 0 < got < 100
        assert env.manager.statistics().events_dropped == 100 - got
        assert env.manager.statistics().sessions_dropped_slow == 0


# -- slow clients --------------------------------------------------------------------------------------


async def test_slow_client_is_dropped_within_the_write_deadline_and_the_other_keeps_every_tick(
    env: Env, autojump_clock: Any
) -> None:
    sub = {"key": "k", "instanceId": 1}
    async with env.manager.open_session(env.batch(sub)) as fast_body, env.manager.open_session(env.batch(sub)) as slow:
        fast = Client(fast_body)
        await fast.next()
        start = trio.current_time()
        ended_at: float | None = None
        for tick in range(12):
            env.supervisor.succeed(1, torrents(*(f"t{i}" for i in range(tick + 1))))
            _, frame = await fast.next_of("delta")
            assert frame["data"]["total"] == tick + 1
            assert trio.current_time() - start == pytest.approx(tick * 2.0)
            if ended_at is None and env.manager.statistics().active_sessions == 1:
                ended_at = trio.current_time() - start
            await trio.sleep(2.0)
        # Never read: its first write (the init) stalled and it was evicted 10 s later.
        assert ended_at is not None and ended_at <= 10.0 + 2.0
        with pytest.raises(trio.EndOfChannel):
            await slow.receive()
    stats = env.manager.statistics()
    assert stats.sessions_dropped_slow == 1
    assert stats.active_sessions == 0
    await trio.testing.wait_all_tasks_blocked()
    assert_idle(env)


async def test_full_queue_evicts_only_that_session(nursery: trio.Nursery, autojump_clock: Any) -> None:
    supervisor = FakeSupervisor((1,))
    manager = StreamManager(supervisor, FakeEngine(), new_encoder=FakeChain, write_timeout=1000, queue_size=4)
    await nursery.start(manager.run)
    batch = manager.prepare_batch(json.dumps([{"key": "k", "instanceId": 1}]), False)
    async with manager.open_session(batch) as fast_body, manager.open_session(batch) as stuck_body:
        fast, stuck = Client(fast_body), Client(stuck_body)
        await fast.next()
        await stuck.next()
        for tick in range(7):  # one frame in the hand-off, four queued, one too many
            supervisor.succeed(1, torrents(*(f"t{i}" for i in range(tick + 1))))
            assert (await fast.next_of("delta"))[1]["data"]["total"] == tick + 1
        assert manager.statistics().sessions_dropped_slow == 1
        assert manager.statistics().active_sessions == 1


# -- registration, unregister, lifecycle ----------------------------------------------------------------------


async def test_groups_share_views_and_drive_sync_loop_reference_counts(env: Env, autojump_clock: Any) -> None:
    a = env.batch({"key": "x", "instanceId": 1}, {"key": "y", "instanceId": 1, "limit": 0},
                  {"key": "z", "instanceIds": [1, 2]})
    async with env.manager.open_session(a) as body:
        client = Client(body)
        for _ in range(3):
            await client.next()
        stats = env.manager.statistics()
        assert (stats.active_subscriptions, stats.active_groups, stats.active_sync_loops) == (3, 2, 2)
        assert env.supervisor.demand == {1: 2, 2: 1, 3: 0}
        ids = env.manager.subscription_ids(next(iter(env.manager._sessions)))
        env.manager.unregister(ids[2])
        assert env.supervisor.demand == {1: 1, 2: 0, 3: 0}
        env.manager.unregister(ids[0])
        assert env.manager.statistics().active_groups == 1
        env.manager.unregister(ids[1])
        # nothing left to stream: the session ends by itself
        with pytest.raises(trio.EndOfChannel):
            while True:
                await client.next()
    await trio.testing.wait_all_tasks_blocked()
    assert_idle(env)


async def test_unregistering_a_subscription_still_waiting_for_its_init_unblocks_the_next(
    env: Env, autojump_clock: Any
) -> None:
    env.supervisor.set_health(2, Health.IDLE)
    batch = env.batch({"key": "waiting", "instanceId": 2}, {"key": "ready", "instanceId": 1})
    async with env.manager.open_session(batch) as body:
        client = Client(body)
        await trio.sleep(1)
        [waiting, _] = env.manager.subscription_ids(next(iter(env.manager._sessions)))
        start = trio.current_time()
        env.manager.unregister(waiting)
        name, init = await client.next()
        assert (name, init["meta"]["streamKey"]) == ("init", "ready")
        assert trio.current_time() == start
        assert env.supervisor.demand[2] == 0


async def test_many_connect_disconnect_cycles_leave_nothing_behind(env: Env, autojump_clock: Any) -> None:
    rng = random.Random(7)
    views = [{"instanceId": 1}, {"instanceId": 2, "sort": "name"}, {"instanceIds": [1, 3]}, {"instanceId": 3}]

    left = {"before_inits": 0, "after_frames": 0}

    async def one_client(n: int) -> None:
        subs = rng.sample(views, rng.randint(1, 3))
        batch = env.batch(*subs, activity=rng.random() < 0.3)
        names: list[str] = []
        with trio.move_on_after(rng.choice([0, 0.001, 0.5, 3, 7])):
            async with env.manager.open_session(batch) as body:
                client = Client(body)
                for _ in range(rng.randint(0, 6)):
                    names.append((await client.next())[0])
        if names.count("init") < len(subs):
            left["before_inits"] += 1
        elif "delta" in names or "stream-error" in names:
            left["after_frames"] += 1

    async with trio.open_nursery() as clients:
        for n in range(1000):
            clients.start_soon(one_client, n)
            if n % 10 == 0:
                env.supervisor.succeed(1 + n % 3, torrents(*(f"h{i}" for i in range(n % 7))))
            if n % 25 == 0:
                env.supervisor.fail(2)
            if n % 100 == 50:
                env.supervisor.set_health(3, Health.IDLE)  # new groups on 3 now wait: clients leave mid-init
            if n % 100 == 80:
                env.supervisor.succeed(3, torrents("3a"))
            await trio.sleep(rng.choice([0, 0.01, 0.3]))
    await trio.testing.wait_all_tasks_blocked()
    assert_idle(env)
    assert env.manager.statistics().events_published > 1000
    assert left["before_inits"] > 50 and left["after_frames"] > 50, left


async def test_an_instance_gone_between_validation_and_registration_leaves_nothing_behind(
    env: Env, autojump_clock: Any
) -> None:
    batch = env.batch({"key": "ok", "instanceId": 1}, {"key": "gone", "instanceIds": [2, 3]})
    real_acquire = env.supervisor.acquire

    def acquire(instance_id: int) -> None:
        if instance_id == 3:
            raise KeyError(instance_id)  # removed from the configuration by a reload meanwhile
        real_acquire(instance_id)

    env.supervisor.acquire = acquire  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        async with env.manager.open_session(batch):
            pytest.fail("the session should not open")
    await trio.testing.wait_all_tasks_blocked()
    assert_idle(env)


# -- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("streams", "activity", "status", "message", "field"),
    [
        (None, False, 400, "missing streams parameter", "streams"),
        ("", False, 400, "missing streams parameter", "streams"),
        ("[]", True, 400, "no stream subscriptions requested", "streams"),
        ("{", False, 400, "invalid streams payload", "streams"),
        ('[{"instanceId": 1, "limit": 5000}]', False, 400, "invalid limit value", "streams[0].limit"),
        ('[{"instanceId": 1}, {"instanceId": 0}]', False, 400, "invalid instance id", "streams[1].instanceId"),
        (json.dumps([{"instanceId": 1}] * 65), False, 400, "too many stream subscriptions requested", "streams"),
        ('[{"instanceId": 1}, {"instanceId": 9}]', False, 404, "instance not found", "streams[1].instanceId"),
        ('[{"instanceIds": [1, 9]}]', False, 404, "instance not found", "streams[0].instanceIds"),
    ],
)
async def test_prepare_batch_errors(
    env: Env, streams: str | None, activity: bool, status: int, message: str, field: str
) -> None:
    with pytest.raises(StreamRequestError) as caught:
        env.manager.prepare_batch(streams, activity)
    assert (caught.value.status, caught.value.message, caught.value.field) == (status, message, field)


async def test_prepare_batch_accepts_64_and_activity_only(env: Env) -> None:
    batch = env.manager.prepare_batch(json.dumps([{"instanceId": 1, "page": i} for i in range(64)]), False)
    assert len(batch.subscriptions) == 64
    assert env.manager.prepare_batch(None, True) == Batch((), True)


async def test_64_subscriptions_get_their_inits_without_overflowing(env: Env, autojump_clock: Any) -> None:
    subs = [{"key": f"k{i}", "instanceIds": [1, 2, 3], "page": i} for i in range(64)]
    async with env.manager.open_session(env.batch(*subs)) as body:
        client = Client(body)
        keys = [(await client.next())[1]["meta"]["streamKey"] for _ in range(64)]
        assert keys == [f"k{i}" for i in range(64)]
        # 64 x 3 heartbeats fall due together: they are written, never queued, so nobody is evicted
        beats = 0
        with trio.move_on_after(12):
            while True:
                name, _ = await client.next()
                assert name == "heartbeat"
                beats += 1
        assert beats == 2 * 64 * 3
        assert env.manager.statistics().sessions_dropped_slow == 0


# -- shutdown ------------------------------------------------------------------------------------------------


async def test_shutdown_refuses_new_requests_and_ends_sessions_within_the_deadline(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    supervisor = FakeSupervisor((1,))
    manager = StreamManager(supervisor, FakeEngine(), new_encoder=FakeChain)
    done = trio.Event()

    async def run_manager(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await manager.run(task_status=task_status)
        done.set()

    await nursery.start(run_manager)
    batch = manager.prepare_batch(json.dumps([{"key": "k", "instanceId": 1}]), True)
    async with manager.open_session(batch) as reading, manager.open_session(batch) as stuck:
        reader = Client(reading)
        await reader.next()
        start = trio.current_time()
        await manager.shutdown(trio.current_time() + 10)
        assert trio.current_time() - start <= 10
        with pytest.raises(StreamRequestError) as caught:
            manager.prepare_batch(None, True)
        assert caught.value.status == 503
        with pytest.raises(trio.EndOfChannel):
            while True:
                await reader.next()
        with pytest.raises(trio.EndOfChannel):
            while True:
                await stuck.receive()
    await done.wait()
    assert manager.statistics().active_sessions == 0
    assert supervisor.demand == {1: 0}
