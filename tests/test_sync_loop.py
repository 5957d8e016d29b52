"""Sync loop timing, backoff and demand, driven by a scripted client under Trio's MockClock."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from qsse.config import InstanceConfig, SyncConfig
from qsse.errors import UpstreamAuthError, UpstreamBanned, UpstreamError, UpstreamUnavailable
from qsse.qbt.client import AppInfo
from qsse.qbt.status import Health
from qsse.qbt.sync import (
    FIRST_SYNC_TIMEOUT,
    SYNC_TIMEOUT,
    InstanceSupervisor,
    SyncEvent,
    SyncFailed,
    SyncSucceeded,
    error_text,
)

Step = Callable[[int], Any]  # rid -> payload dict, or an exception to raise, or a float to hang


class ScriptedClient:
    """A fake qBittorrent client: each maindata call consumes the next step of the script."""

    def __init__(self, script: list[Any], log: list[tuple[float, str, int]]) -> None:
        self.script = script
        self.log = log
        self.app_info: AppInfo | None = None
        self.closed = False
        self.login_error: UpstreamError | None = None

    @property
    def logged_in(self) -> bool:
        return self.app_info is not None

    async def login(self) -> AppInfo:
        self.log.append((trio.current_time(), "login", 0))
        if self.login_error is not None:
            raise self.login_error
        self.app_info = AppInfo("v4.5.2", "2.8.19")
        return self.app_info

    async def maindata(self, rid: int) -> bytes:
        self.log.append((trio.current_time(), "maindata", rid))
        step = self.script.pop(0) if self.script else {"rid": rid + 1}
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, float):
            await trio.sleep(step)
            step = {"rid": rid + 1}
        return json.dumps(step).encode()

    async def aclose(self) -> None:
        self.closed = True


def full(rid: int = 1, refresh_interval: int = 1500) -> dict[str, Any]:
    return {"rid": rid, "full_update": True, "torrents": {"h1": {"name": "a"}}, "categories": {}, "tags": [],
            "server_state": {"refresh_interval": refresh_interval}}


class Harness:
    def __init__(self, script: list[Any], interval: float = 2.0, login_error: UpstreamError | None = None) -> None:
        self.log: list[tuple[float, str, int]] = []
        self.clients: list[ScriptedClient] = []
        self.cfg = InstanceConfig(id=1, name="one", url="http://127.0.0.1:1")

        def factory(cfg: InstanceConfig) -> ScriptedClient:
            client = ScriptedClient(script, self.log)
            client.login_error = login_error
            self.clients.append(client)
            return client

        self.supervisor = InstanceSupervisor([self.cfg], SyncConfig(interval=interval), factory)

    def polls(self) -> list[float]:
        return [t for t, what, _ in self.log if what == "maindata"]


async def collect(h: Harness, seconds: float) -> list[SyncEvent]:
    events: list[SyncEvent] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(h.supervisor.run)
        listener = h.supervisor.open_listener()
        h.supervisor.acquire(1)
        with trio.move_on_after(seconds):
            async for ev in listener:
                events.append(ev)
        nursery.cancel_scope.cancel()
    return events


async def test_backoff_sequence_and_reset(autojump_clock: trio.testing.MockClock) -> None:
    down = UpstreamUnavailable("cannot connect to http://127.0.0.1:1: connection refused")
    h = Harness([full(), down, down, down, down, down, {"rid": 2}, {"rid": 3}], interval=1.0)
    events = await collect(h, 200)
    gaps = [round(b - a, 3) for a, b in zip(h.polls(), h.polls()[1:], strict=False)]
    # success -> interval (>= refresh_interval 1.5 s, +<=10 % jitter), then 4, 8, 16, 30, 30, then interval again
    assert 1.5 <= gaps[0] <= 1.65
    assert gaps[1:6] == [4.0, 8.0, 16.0, 30.0, 30.0]
    assert 1.5 <= gaps[6] <= 1.65
    failed = [e for e in events if isinstance(e, SyncFailed)]
    assert [e.state.retry_in for e in failed] == [4.0, 8.0, 16.0, 30.0, 30.0]
    assert failed[0].state.last_error == (
        "Sync with qBittorrent failed (cannot connect to http://127.0.0.1:1: connection refused); retrying in 4s"
    )
    first_success = events[0].state.last_success
    assert all(e.state.last_success == first_success for e in failed)
    assert failed[0].previous_health is Health.SYNCING
    recovered = [e for e in events if isinstance(e, SyncSucceeded)][1]
    assert recovered.previous_health is Health.DOWN and recovered.state.health is Health.SYNCING


async def test_rid_kept_on_failure_and_sent_again(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([full(rid=5), UpstreamUnavailable("reset"), {"rid": 6}])
    await collect(h, 20)
    rids = [rid for _, what, rid in h.log if what == "maindata"]
    assert rids[:3] == [0, 5, 5]


async def test_timeouts_60_before_first_success_then_10(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([59.0, 11.0, {"rid": 3}], interval=2.0)
    events = await collect(h, 80)
    # 59 s is within the first-sync deadline; 11 s exceeds the incremental one.
    assert isinstance(events[0], SyncSucceeded)
    assert isinstance(events[1], SyncFailed)
    assert f"no answer within {SYNC_TIMEOUT:.0f}s" in (events[1].state.last_error or "")
    assert FIRST_SYNC_TIMEOUT == 60.0


async def test_interval_counts_from_end_of_poll(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([full(refresh_interval=100), 3.0, 3.0], interval=2.0)
    await collect(h, 30)
    starts = h.polls()
    # the second poll took 3 s, so the third starts >= 3 + 2 s later, never overlapping
    assert 5.0 <= starts[2] - starts[1] <= 5.0 + 0.2 + 1e-9


async def test_auth_failure_backs_off_slowly(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([], login_error=UpstreamAuthError("qBittorrent refused the credentials of user 'x'"))
    events = await collect(h, 200)
    logins = [t for t, what, _ in h.log if what == "login"]
    assert len(logins) == 3  # at 0, 60, 180: a ban (5 failures by default) is far away
    assert all(e.state.health is Health.AUTH_FAILED for e in events)
    assert events[0].state.last_error == (
        "Sync with qBittorrent paused: check the username and password; retrying in 60s"
    )


def test_banned_text() -> None:
    text = error_text(UpstreamBanned("banned"), 900)
    assert text.startswith("Sync with qBittorrent paused:") and text.endswith("retrying in 900s")


async def test_demand_starts_and_stops_the_loop(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([full()])
    async with trio.open_nursery() as nursery:
        await nursery.start(h.supervisor.run)
        sup = h.supervisor
        assert sup.statistics().active_loops == 0
        sup.acquire(1)
        sup.acquire(1)
        await trio.sleep(5)
        assert sup.statistics().active_loops == 1 and len(h.clients) == 1
        assert sup.state(1).health is Health.SYNCING and len(sup.state(1).data.torrents) == 1
        sup.release(1)
        await trio.sleep(5)
        assert sup.statistics().active_loops == 1
        sup.release(1)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.statistics().active_loops == 0
        assert h.clients[0].closed and sup.state(1).health is Health.IDLE
        polls = len(h.polls())
        await trio.sleep(30)
        assert len(h.polls()) == polls
        with pytest.raises(RuntimeError):
            sup.release(1)
        with pytest.raises(KeyError):
            sup.acquire(99)
        nursery.cancel_scope.cancel()


async def test_cancel_mid_request_stops_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([30.0])  # the first poll hangs for 30 s
    async with trio.open_nursery() as nursery:
        await nursery.start(h.supervisor.run)
        h.supervisor.acquire(1)
        await trio.sleep(1)
        h.supervisor.release(1)
        await trio.testing.wait_all_tasks_blocked()
        assert h.supervisor.statistics().active_loops == 0
        assert h.clients[0].closed
        # restart right away: a new client (a new SID), a fresh rid 0
        h.supervisor.acquire(1)
        await trio.sleep(1)
        assert len(h.clients) == 2 and h.log[-1] == (pytest.approx(trio.current_time() - 1, abs=0.01), "maindata", 0)
        nursery.cancel_scope.cancel()


async def test_slow_listener_loses_events_not_the_loop(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([full()], interval=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.supervisor.run)
        slow = h.supervisor.open_listener(buffer=2)
        h.supervisor.acquire(1)
        await trio.sleep(20)
        assert len(h.polls()) > 5
        assert h.supervisor.statistics().events_dropped == len(h.polls()) - 2
        slow.close()
        nursery.cancel_scope.cancel()


async def test_reconfigure_restarts_changed_loops_and_adds_instances(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness([full()])
    async with trio.open_nursery() as nursery:
        await nursery.start(h.supervisor.run)
        sup = h.supervisor
        sup.acquire(1)
        await trio.sleep(5)
        assert len(h.clients) == 1
        changed = InstanceConfig(id=1, name="renamed", url="http://127.0.0.1:1", password="new")
        added = InstanceConfig(id=2, name="two", url="http://127.0.0.1:2", always_warm=True)
        not_applied = sup.reconfigure([changed, added], SyncConfig(interval=7.0))
        assert not_applied == []
        await trio.sleep(20)
        assert h.clients[0].closed and len(h.clients) == 3  # a new login for 1, a first one for 2
        assert sup.state(1).name == "renamed" and sup.knows(2) and sup.demand(2) == 1
        assert sup.statistics().active_loops == 2
        # unchanged config: nothing restarts; a removed instance is reported, not dropped
        assert sup.reconfigure([added], SyncConfig(interval=7.0)) == ["instance 1 was removed (restart to drop it)"]
        await trio.sleep(5)
        assert len(h.clients) == 3 and sup.knows(1)
        nursery.cancel_scope.cancel()
