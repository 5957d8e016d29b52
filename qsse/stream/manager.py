"""The stream manager: registry of sessions, subscriptions and groups, fed by the sync engine.

Theory of operation
-------------------
``run()`` owns one nursery holding every long-lived stream task: one :class:`Group` per
distinct view, one :class:`Session` writer per connection, and the forwarder that turns the
supervisor's sync events into ticks, stream-errors and activity. All registry changes
(register, unregister, group creation and removal, acquire/release of sync loops) are
synchronous methods, so they are atomic with respect to every other task: no locks.

Reference counting: a group acquires each of its instances once when created and releases them
when its last member leaves, so the supervisor's count for an instance is the number of live
groups depending on it; activity-only connections acquire nothing.

Cleanup never awaits: a session ends through its own ``finally`` (graceful close, eviction,
client gone, or nursery cancellation), which calls back :meth:`StreamManager._session_ended`
to unregister synchronously. That is why cancelling the nursery at any moment leaves the
counters at zero.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import trio

from qsse.qbt.status import InstanceState
from qsse.qbt.sync import SupervisorStatistics, SyncEvent, SyncFailed, SyncSucceeded
from qsse.stream.activity import CONFIG_RELOADED, ActivityHub, diff_activity, health_activity
from qsse.stream.group import ChainEncoder, Group, ViewBuilder, sync_error_frame
from qsse.stream.session import Counters, Member, Session
from qsse.stream.sse import encode_key
from qsse.views.options import Subscription, ViewOptionsError, parse_streams

log = logging.getLogger(__name__)


class Supervisor(Protocol):
    """What the stream manager needs of :class:`qsse.qbt.sync.InstanceSupervisor`."""

    def knows(self, instance_id: int) -> bool: ...
    def acquire(self, instance_id: int) -> None: ...
    def release(self, instance_id: int) -> None: ...
    def state(self, instance_id: int) -> InstanceState: ...
    def open_listener(self, buffer: int = ...) -> trio.MemoryReceiveChannel[SyncEvent]: ...
    def statistics(self) -> SupervisorStatistics: ...


class StreamRequestError(Exception):
    """A stream request refused before any byte of the stream: HTTP status, protocol text, field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


@dataclass(frozen=True, slots=True)
class Batch:
    """A validated stream request, ready for :meth:`StreamManager.open_session`."""

    subscriptions: tuple[Subscription, ...]
    activity: bool


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    active_sessions: int
    active_subscriptions: int
    active_groups: int
    active_sync_loops: int
    #: Events accepted for a client (inits, frames, errors, heartbeats, activity).
    events_published: int
    #: Events lost: a full session queue, a full activity buffer, or a sync event lost by our listener.
    events_dropped: int
    sync_errors: int
    sessions_dropped_slow: int
    bytes_sent: int


def _default_encoder() -> ChainEncoder:
    from qsse.views.delta import DeltaEncoder

    return DeltaEncoder()


class StreamManager:
    def __init__(
        self,
        supervisor: Supervisor,
        engine: ViewBuilder,
        *,
        heartbeat: float = 5.0,
        queue_size: int = 16,
        write_timeout: float = 10.0,
        activity_buffer: int = 16,
        init_wait: float = 10.0,
        new_encoder: Callable[[], ChainEncoder] = _default_encoder,
    ) -> None:
        self._supervisor = supervisor
        self._engine = engine
        self._heartbeat = heartbeat
        self._queue_size = queue_size
        self._write_timeout = write_timeout
        self._activity_buffer = activity_buffer
        self._init_wait = init_wait
        self._new_encoder = new_encoder
        self.counters = Counters()
        self.activity = ActivityHub()
        self._ids = itertools.count(1)
        self._sessions: dict[int, Session] = {}
        self._members: dict[int, Member] = {}
        self._groups: dict[str, Group] = {}
        self._groups_by_instance: dict[int, set[Group]] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self._sessions_gone = trio.Event()
        self._finished = trio.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def nursery(self) -> trio.Nursery | None:
        """The nursery of every stream task (for tests proving that nothing is left behind)."""
        return self._nursery

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run groups, sessions and the sync-event forwarder.

        Returns: after :meth:`shutdown`; otherwise never, unless cancelled.
        Resource handling: every session ends (and unregisters) when this nursery is cancelled.
        """
        listener = self._supervisor.open_listener()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._forward_sync_events, listener, name="stream-sync-events")
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._stopping = True
            listener.close()
            self._finished.set()

    async def shutdown(self, deadline: float) -> None:
        """Refuse new requests, end every session, stop all stream tasks; return by ``deadline``.

        ``deadline`` is absolute, on the Trio clock. Sessions first get a graceful end (what is
        queued is written, then the gzip trailer); whatever is still running at the deadline is
        cancelled.
        """
        self._stopping = True
        for session in list(self._sessions.values()):
            session.close("server shutting down")
        if self._sessions:
            with trio.move_on_at(deadline):
                await self._sessions_gone.wait()
        for session in list(self._sessions.values()):
            session.evict("shutdown deadline passed")
            self._session_ended(session)  # its task may need a checkpoint to end: count it gone now
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel(reason="stream manager shut down")
            with trio.move_on_at(deadline):
                await self._finished.wait()

    # -- requests -----------------------------------------------------------------------------------

    def prepare_batch(self, raw_streams: str | None, activity: bool) -> Batch:
        """Validate a stream request all-or-nothing, in the protocol's order of errors.

        Raises :class:`StreamRequestError`: 503 when stopping, 400 for a bad or missing
        ``streams``, 404 for an instance that is not configured.
        """
        if self._stopping or self._nursery is None:
            raise StreamRequestError(503, "server is shutting down")
        subscriptions: list[Subscription] = []
        if raw_streams:
            try:
                subscriptions = parse_streams(raw_streams)
            except ViewOptionsError as exc:
                raise StreamRequestError(400, exc.message, exc.field) from exc
        if not subscriptions and not activity:
            raise StreamRequestError(400, "missing streams parameter", "streams")
        for i, sub in enumerate(subscriptions):
            options = sub.options
            ids = options.instance_ids if options.aggregated else (options.instance_id,)
            for instance_id in ids:
                if not self._supervisor.knows(instance_id):
                    name = "instanceIds" if options.aggregated else "instanceId"
                    raise StreamRequestError(404, "instance not found", f"streams[{i}].{name}")
        return Batch(tuple(subscriptions), activity)

    def open_session(self, batch: Batch, *, gzip: bool = False) -> SessionStream:
        """``async with manager.open_session(batch, gzip=...) as body:`` — ``body`` yields the
        encoded response bytes until the session ends; leaving the block unregisters everything.
        """
        return SessionStream(self, batch, gzip)

    def unregister(self, subscription_id: int) -> None:
        """Remove one subscription; its session ends when it has nothing left to stream."""
        member = self._members.get(subscription_id)
        if member is None:
            return
        self._detach(member)
        member.session.forget(member)

    def subscription_ids(self, session_id: int) -> list[int]:
        session = self._sessions.get(session_id)
        return [] if session is None else [m.id for m in session.members if m.active]

    # -- activity -----------------------------------------------------------------------------------

    def publish_activity(self, kind: str, instance_id: int | None = None, resource_id: str | None = None) -> int:
        """Send one activity event to every ``activity=1`` connection; returns how many took it."""
        return self.activity.publish(kind, instance_id, resource_id)

    def config_reloaded(self) -> None:
        self.activity.publish(CONFIG_RELOADED)

    # -- statistics ---------------------------------------------------------------------------------

    def statistics(self) -> StreamStatistics:
        upstream = self._supervisor.statistics()
        return StreamStatistics(
            active_sessions=len(self._sessions),
            active_subscriptions=len(self._members),
            active_groups=len(self._groups),
            active_sync_loops=upstream.active_loops,
            events_published=self.counters.events_published + self.activity.published,
            events_dropped=self.counters.events_dropped + self.activity.dropped + upstream.events_dropped,
            sync_errors=upstream.sync_errors,
            sessions_dropped_slow=self.counters.sessions_dropped_slow,
            bytes_sent=self.counters.bytes_sent,
        )

    def group(self, key: str) -> Group | None:
        return self._groups.get(key)

    # -- internals ----------------------------------------------------------------------------------

    def _open_session(self, batch: Batch, *, gzip: bool) -> Session:
        session = Session(
            next(self._ids),
            activity=batch.activity,
            gzip=gzip,
            counters=self.counters,
            on_end=self._session_ended,
            queue_size=self._queue_size,
            activity_buffer=self._activity_buffer,
            write_timeout=self._write_timeout,
            heartbeat=self._heartbeat,
        )
        members = [
            Member(next(self._ids), index, sub.key, encode_key(sub.key), sub.options, session)
            for index, sub in enumerate(batch.subscriptions)
        ]
        session.attach_members(members)
        nursery = self._nursery
        if nursery is None or self._stopping:
            # Raced with shutdown after validation: an empty, already finished body.
            session.evict("server shutting down")
            session.body.close()
            return session
        self._sessions[session.id] = session
        nursery.start_soon(session.run, name=f"stream-session-{session.id}")
        try:
            if batch.activity:
                self.activity.add(session)
            for member in members:
                self._members[member.id] = member
                self._group_for(member).attach(member)
        except BaseException:
            # The caller gets no body to leave, so nothing else would undo a half registration.
            session.evict("registration failed")
            self._session_ended(session)
            raise
        return session

    def _group_for(self, member: Member) -> Group:
        key = member.options.group_key
        group = self._groups.get(key)
        if group is not None:
            return group
        assert self._nursery is not None
        group = Group(
            key,
            member.options,
            engine=self._engine,
            encoder=self._new_encoder(),
            state_of=self._supervisor.state,
            init_wait=self._init_wait,
        )
        acquired: list[int] = []
        try:
            for instance_id in group.instance_ids:
                self._supervisor.acquire(instance_id)
                acquired.append(instance_id)
        except BaseException:
            for instance_id in acquired:
                self._supervisor.release(instance_id)
            raise
        self._groups[key] = group
        for instance_id in group.instance_ids:
            self._groups_by_instance.setdefault(instance_id, set()).add(group)
        self._nursery.start_soon(group.run, name=f"stream-group {key}")
        return group

    def _detach(self, member: Member) -> None:
        if self._members.pop(member.id, None) is None:
            return
        group = self._groups.get(member.options.group_key)
        if group is None:
            return
        group.detach(member)
        if group.members:
            return
        del self._groups[group.key]
        group.scope.cancel()
        for instance_id in group.instance_ids:
            dependents = self._groups_by_instance.get(instance_id)
            if dependents is not None:
                dependents.discard(group)
                if not dependents:
                    del self._groups_by_instance[instance_id]
            self._supervisor.release(instance_id)

    def _session_ended(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        reason = session.end_reason or "ended"
        level = logging.WARNING if reason.startswith("client too slow") else logging.DEBUG
        log.log(level, "stream session %d (%d subscriptions) ended: %s", session.id, len(session.members), reason)
        self.activity.discard(session)
        for member in session.members:
            member.active = False
            self._detach(member)
        if self._stopping and not self._sessions:
            self._sessions_gone.set()

    async def _forward_sync_events(self, listener: trio.MemoryReceiveChannel[SyncEvent]) -> None:
        with listener:
            async for event in listener:
                self._on_sync_event(event)
                # Handle the whole burst before yielding: its triggers then coalesce into one
                # tick per group instead of racing each group task event by event.
                while True:
                    try:
                        self._on_sync_event(listener.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break

    def _on_sync_event(self, event: SyncEvent) -> None:
        state = event.state
        groups = list(self._groups_by_instance.get(state.instance_id, ()))
        if isinstance(event, SyncSucceeded):
            # A poll that changed nothing (and no health change) cannot change any view: an idle
            # library costs no builds at all, not just no frames.
            if not (event.diff.empty and event.previous_health is state.health):
                for group in groups:
                    group.trigger(full_update=event.diff.full_update)
            for kind, torrent_hash in diff_activity(event.diff):
                self.activity.publish(kind, state.instance_id, torrent_hash)
        elif isinstance(event, SyncFailed) and groups:
            template = sync_error_frame(state)
            for group in groups:
                for member in list(group.members.values()):
                    if member.seeded:
                        member.session.offer_frame(template, member.key_json)
                if event.previous_health is not state.health:
                    group.trigger()  # instanceMeta.connected changed
        transition = health_activity(event.previous_health, state.health)
        if transition is not None:
            self.activity.publish(transition, state.instance_id)


class SessionStream:
    """The body of one stream response: an async context manager around one session.

    Resource handling: entering registers the session and its subscriptions (synchronously, so
    a cancellation cannot leave half a registration); leaving — normally, by error or by
    cancellation — ends the session and unregisters everything, without awaiting.
    """

    def __init__(self, manager: StreamManager, batch: Batch, gzip: bool) -> None:
        self._manager = manager
        self._batch = batch
        self._gzip = gzip
        self.session: Session | None = None

    async def __aenter__(self) -> trio.MemoryReceiveChannel[bytes]:
        self.session = self._manager._open_session(self._batch, gzip=self._gzip)
        return self.session.body

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.session is not None:
            self.session.body.close()
            self.session.evict("client went away")
            # Unregister now rather than when the writer task next runs: counters are exact at once.
            self._manager._session_ended(self.session)
