"""Sync loops (one per instance) and the supervisor that starts and stops them by demand.

Theory of operation
-------------------
The :class:`InstanceSupervisor` owns one nursery. Each instance with at least one dependent
(a reference count driven by :meth:`acquire`/:meth:`release`, or ``always_warm``) has one
:class:`SyncLoop` task in it, inside its own cancel scope; the last :meth:`release` cancels
that scope, which stops the loop cleanly even in the middle of a request.

A loop polls ``sync/maindata`` one request at a time, so two polls of one instance never
overlap. The interval counts from the *end* of the previous poll (a no-change poll still costs
qBittorrent O(torrents) CPU) and never drops below qBittorrent's own ``refresh_interval``.
Failures back off 4, 8, 16, 30, 30... seconds; refused credentials back off far longer, since
every failed login brings qBittorrent's IP ban closer.

Readers never share mutable state with a loop: after each poll the loop publishes a new
immutable :class:`InstanceState` (read with :meth:`InstanceSupervisor.state`) and sends a
:class:`SyncEvent` to every listener channel with ``send_nowait``; a listener that does not
keep up loses events (counted), the loop never waits for it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import trio

from qsse.config import InstanceConfig, SyncConfig
from qsse.errors import UpstreamAuthError, UpstreamBanned, UpstreamError, UpstreamUnavailable
from qsse.qbt.client import AppInfo, QbtClient
from qsse.qbt.maindata import Diff, MainDataMerger
from qsse.qbt.status import Health, InstanceState

log = logging.getLogger(__name__)

#: Deadline of one poll before the first success and during a failure streak (a full update).
FIRST_SYNC_TIMEOUT = 60.0
#: Deadline of one incremental poll.
SYNC_TIMEOUT = 10.0
FAILURE_BACKOFF = (4.0, 8.0, 16.0, 30.0)
#: Refused credentials: qBittorrent bans the IP after 5 failures by default, so try rarely.
AUTH_BACKOFF = (60.0, 120.0, 300.0, 600.0)
BANNED_BACKOFF = 900.0


@dataclass(frozen=True, slots=True)
class SyncSucceeded:
    state: InstanceState
    diff: Diff
    previous_health: Health


@dataclass(frozen=True, slots=True)
class SyncFailed:
    state: InstanceState
    previous_health: Health


SyncEvent = SyncSucceeded | SyncFailed


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    active_loops: int
    sync_errors: int
    events_dropped: int


class Client(Protocol):
    """What a sync loop needs of a qBittorrent client (QbtClient, or a fake in tests)."""

    app_info: AppInfo | None

    @property
    def logged_in(self) -> bool: ...

    async def login(self) -> AppInfo: ...

    async def maindata(self, rid: int) -> bytes: ...

    async def aclose(self) -> None: ...


ClientFactory = Callable[[InstanceConfig], Client]


class Backoff:
    """The retry schedule of one loop: which delay follows the n-th consecutive failure."""

    def __init__(self) -> None:
        self.failures = 0

    def success(self) -> None:
        self.failures = 0

    def failure(self, exc: UpstreamError) -> float:
        self.failures += 1
        if isinstance(exc, UpstreamBanned):
            return BANNED_BACKOFF
        schedule = AUTH_BACKOFF if isinstance(exc, UpstreamAuthError) else FAILURE_BACKOFF
        return schedule[min(self.failures, len(schedule)) - 1]


def error_text(exc: UpstreamError, retry_in: float) -> str:
    """The stream-error text of the protocol, section 4."""
    seconds = f"{retry_in:.0f}s"
    if isinstance(exc, UpstreamBanned):
        return (
            f"Sync with qBittorrent paused: qBittorrent banned this IP after failed logins; "
            f"fix the credentials and restart qBittorrent or wait for the ban to end; retrying in {seconds}"
        )
    if isinstance(exc, UpstreamAuthError):
        return f"Sync with qBittorrent paused: check the username and password; retrying in {seconds}"
    return f"Sync with qBittorrent failed ({exc}); retrying in {seconds}"


class SyncLoop:
    """Polls one instance until cancelled, publishing every result through ``publish``."""

    def __init__(
        self,
        cfg: InstanceConfig,
        sync: SyncConfig,
        client_factory: ClientFactory,
        publish: Callable[[InstanceState, SyncEvent | None], None],
        initial: InstanceState,
    ) -> None:
        self.cfg = cfg
        self.sync = sync
        self._client_factory = client_factory
        self._publish = publish
        self.state = initial
        self._merger = MainDataMerger()
        self._backoff = Backoff()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Returns: never, unless cancelled.

        Resource handling: the client (and its SID) lives exactly as long as this loop.
        Error handling: upstream errors are published and retried; programming errors propagate.
        """
        client = self._client_factory(self.cfg)
        try:
            task_status.started()
            while True:
                delay = await self.poll_once(client)
                self._set(replace(self.state, next_poll=time.time() + delay))
                await trio.sleep(delay)
        finally:
            with trio.move_on_after(2, shield=True):
                await client.aclose()

    async def poll_once(self, client: Client) -> float:
        """One sync round trip and merge; returns the delay until the next one."""
        failing = self._backoff.failures > 0 or self.state.last_success is None
        timeout = FIRST_SYNC_TIMEOUT if failing else SYNC_TIMEOUT
        started = trio.current_time()
        try:
            with trio.fail_after(timeout):
                if not client.logged_in:
                    await client.login()
                body = await client.maindata(self._merger.rid)
            data, diff = self._merger.apply_bytes(body)
        except trio.TooSlowError:
            return self._failed(UpstreamUnavailable(f"no answer within {timeout:.0f}s"))
        except UpstreamError as exc:
            return self._failed(exc)
        self._backoff.success()
        info = client.app_info
        previous = self.state.health
        state = replace(
            self.state,
            health=Health.SYNCING,
            data=data,
            version=info.version if info else "",
            webapi_version=info.webapi_version if info else "",
            last_success=time.time(),
            last_error=None,
            retry_in=None,
            sync_duration=trio.current_time() - started,
        )
        self._set(state, SyncSucceeded(state, diff, previous))
        if previous is not Health.SYNCING:
            log.info("instance %d (%s): syncing, %d torrents", self.cfg.id, self.cfg.name, len(data.torrents))
        refresh_ms = data.server_state.get("refresh_interval")
        floor = refresh_ms / 1000 if isinstance(refresh_ms, int | float) and refresh_ms > 0 else 0.0
        return max(self.sync.interval, floor) * (1 + random.uniform(0, 0.1))

    def _failed(self, exc: UpstreamError) -> float:
        delay = self._backoff.failure(exc)
        text = error_text(exc, delay)
        previous = self.state.health
        health = Health.AUTH_FAILED if isinstance(exc, UpstreamAuthError) else Health.DOWN
        level = logging.WARNING if previous is not health or self._backoff.failures == 1 else logging.DEBUG
        log.log(level, "instance %d (%s): %s", self.cfg.id, self.cfg.name, text)
        state = replace(self.state, health=health, last_error=text, retry_in=delay)
        self._set(state, SyncFailed(state, previous))
        return delay

    def _set(self, state: InstanceState, event: SyncEvent | None = None) -> None:
        self.state = state
        self._publish(state, event)


@dataclass(slots=True)
class _Running:
    loop: SyncLoop
    scope: trio.CancelScope
    done: trio.Event


class InstanceSupervisor:
    """Owns the sync loops; starts an instance's loop on first demand and stops it on the last."""

    def __init__(
        self,
        instances: Sequence[InstanceConfig],
        sync: SyncConfig,
        client_factory: ClientFactory = QbtClient,
    ) -> None:
        self._configs = {i.id: i for i in instances}
        self._sync = sync
        self._client_factory = client_factory
        self._states = {i.id: InstanceState(instance_id=i.id, name=i.name) for i in instances}
        self._demand = dict.fromkeys(self._configs, 0)
        self._running: dict[int, _Running] = {}
        self._listeners: list[trio.MemorySendChannel[SyncEvent]] = []
        self._nursery: trio.Nursery | None = None
        self._sync_errors = 0
        self._events_dropped = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Returns: never, unless cancelled. Ready (started) once loops can be acquired."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for cfg in self._configs.values():
                    if cfg.always_warm:
                        self.acquire(cfg.id)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for send in self._listeners:
                send.close()
            self._listeners.clear()

    def knows(self, instance_id: int) -> bool:
        return instance_id in self._configs

    def state(self, instance_id: int) -> InstanceState:
        return self._states[instance_id]

    def states(self) -> list[InstanceState]:
        return list(self._states.values())

    def demand(self, instance_id: int) -> int:
        return self._demand[instance_id]

    def acquire(self, instance_id: int) -> None:
        """One more dependent of ``instance_id``; the first one starts its loop."""
        if instance_id not in self._configs:
            raise KeyError(instance_id)
        self._demand[instance_id] += 1
        if self._demand[instance_id] == 1:
            self._start(instance_id)

    def release(self, instance_id: int) -> None:
        """One dependent fewer; the last one stops the loop (unless the instance is always warm)."""
        if self._demand.get(instance_id, 0) <= 0:
            raise RuntimeError(f"release of instance {instance_id} without acquire")
        self._demand[instance_id] -= 1
        if self._demand[instance_id] == 0 and (running := self._running.get(instance_id)) is not None:
            running.scope.cancel()

    def reconfigure(self, instances: Sequence[InstanceConfig], sync: SyncConfig) -> list[str]:
        """Apply a reloaded configuration; returns what could not be applied without a restart.

        New instances are added; an instance whose settings changed gets a new loop (a new
        login) if it was running; a new interval applies from the next poll. Instances that
        disappeared stay until a restart: clients may still be subscribed to them.
        """
        self._sync = sync
        for running in self._running.values():
            running.loop.sync = sync
        not_applied = [f"instance {i} was removed (restart to drop it)" for i in self._configs
                       if i not in {c.id for c in instances}]
        for cfg in instances:
            old = self._configs.get(cfg.id)
            if old == cfg:
                continue
            self._configs[cfg.id] = cfg
            if old is None:
                self._states[cfg.id] = InstanceState(instance_id=cfg.id, name=cfg.name)
                self._demand[cfg.id] = 0
            else:
                self._states[cfg.id] = replace(self._states[cfg.id], name=cfg.name)
            if cfg.id in self._running:
                self._running[cfg.id].scope.cancel()
                self._start(cfg.id)
            warm_changed = old is not None and old.always_warm != cfg.always_warm
            if cfg.always_warm and (old is None or warm_changed):
                self.acquire(cfg.id)
            elif warm_changed:
                self.release(cfg.id)
        return not_applied

    def open_listener(self, buffer: int = 1024) -> trio.MemoryReceiveChannel[SyncEvent]:
        """Every future event of every instance; close the returned channel to stop listening."""
        send, receive = trio.open_memory_channel[SyncEvent](buffer)
        self._listeners.append(send)
        return receive

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            active_loops=len(self._running),
            sync_errors=self._sync_errors,
            events_dropped=self._events_dropped,
        )

    def _start(self, instance_id: int) -> None:
        if self._nursery is None:
            raise RuntimeError("InstanceSupervisor is not running")
        loop = SyncLoop(
            self._configs[instance_id],
            self._sync,
            self._client_factory,
            lambda state, event: self._publish(loop, state, event),
            self._states[instance_id],
        )
        running = _Running(loop, trio.CancelScope(), trio.Event())
        previous = self._running.get(instance_id)
        self._running[instance_id] = running
        self._nursery.start_soon(self._supervise, instance_id, running, previous, name=f"sync-loop-{instance_id}")

    async def _supervise(self, instance_id: int, running: _Running, previous: _Running | None) -> None:
        try:
            # A loop restarted right after a stop waits for its predecessor, so one instance
            # never has two polls in flight.
            if previous is not None:
                await previous.done.wait()
            with running.scope:
                await running.loop.run()
        finally:
            running.done.set()
            if self._running.get(instance_id) is running:
                del self._running[instance_id]
                self._states[instance_id] = replace(
                    self._states[instance_id], health=Health.IDLE, next_poll=None, retry_in=None
                )

    def _publish(self, loop: SyncLoop, state: InstanceState, event: SyncEvent | None) -> None:
        running = self._running.get(loop.cfg.id)
        if running is None or running.loop is not loop:
            return  # a stopped loop's last words: its successor owns the state now
        self._states[loop.cfg.id] = state
        if event is None:
            return
        if isinstance(event, SyncFailed):
            self._sync_errors += 1
        for send in list(self._listeners):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self._events_dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._listeners.remove(send)

