"""One SSE connection: its subscriptions, its bounded queue and its writer task (transport-agnostic).

Theory of operation
-------------------
A session task runs in the stream manager's nursery and is the only writer of the connection.
It hands encoded body bytes to the transport through a zero-buffer channel (:attr:`Session.body`);
the transport (the HTTP response) takes the next chunk only once the previous one is on the
socket, so "the hand-off took longer than ``write_timeout``" is exactly "the previous write
stalled", and the session is dropped as too slow.

Producers never block on a session:

- ``init`` frames arrive through a channel with one slot per subscription (each is filled once),
  and are written in request order before anything else, so 64 inits never count against the
  queue;
- group frames and sync errors go through :meth:`offer_frame`: at most ``queue_size`` may wait,
  one more evicts the session (the other members of the group are not delayed);
- activity events go through :meth:`offer_activity` with their own budget; a full budget drops
  the event, not the session (activity is best effort);
- heartbeats are not queued at all: the writer produces them itself when they fall due, so a
  backlog of frames or a long build elsewhere cannot starve them, and 64 subscriptions falling
  due together cannot overflow the queue.

Ending: :meth:`close` (graceful: pending events are written, then the gzip trailer) or
:meth:`evict` (immediate). Either way the task leaves through its ``finally``, which tells the
manager to unregister everything synchronously and closes :attr:`body`, which ends the response.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from qsse.stream.sse import Encoder, FrameTemplate, Meta, frame
from qsse.views.options import ViewOptions


@dataclass(slots=True)
class Counters:
    """The manager's running totals; mutated only from Trio tasks of one thread, so no lock."""

    events_published: int = 0
    events_dropped: int = 0
    sessions_dropped_slow: int = 0
    bytes_sent: int = 0


@dataclass(eq=False, slots=True)
class Member:
    """One subscription of one session, as a group sees it."""

    id: int
    #: Position in the request, for the order of ``init`` frames.
    index: int
    key: str
    key_json: bytes
    options: ViewOptions
    session: Session
    #: True once the subscriber got its ``init``; until then group frames are not for it.
    seeded: bool = False
    #: True once its first event (normally the init) went through the init slot.
    slot_used: bool = False
    #: False once unregistered: its heartbeats stop.
    active: bool = True

    @property
    def instance_ids(self) -> tuple[int, ...]:
        return self.options.instance_ids if self.options.aggregated else (self.options.instance_id,)


@dataclass(frozen=True, slots=True)
class _Queued:
    payload: FrameTemplate | bytes
    key_json: bytes | None
    activity: bool

    def render(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        if self.key_json is None:
            return self.payload.render_without_key()
        return self.payload.render(self.key_json)


@dataclass(order=True, slots=True)
class _Beat:
    due: float
    seq: int
    instance_id: int = field(compare=False)
    member: Member | None = field(compare=False)


class SessionEvicted(Exception):
    """Internal: raised inside the writer when its own write stalled; never leaves the session."""


class Session:
    def __init__(
        self,
        session_id: int,
        *,
        activity: bool,
        gzip: bool,
        counters: Counters,
        on_end: Callable[[Session], None],
        queue_size: int = 16,
        activity_buffer: int = 16,
        write_timeout: float = 10.0,
        heartbeat: float = 5.0,
    ) -> None:
        self.id = session_id
        self.activity = activity
        self.members: list[Member] = []
        self.scope = trio.CancelScope()
        self.end_reason: str | None = None
        self._counters = counters
        self._on_end = on_end
        self._encoder = Encoder(gzip=gzip)
        self._queue_size = queue_size
        self._activity_buffer = activity_buffer
        self._write_timeout = write_timeout
        self._heartbeat = heartbeat
        self._frames_waiting = 0
        self._activity_waiting = 0
        self._queue_send, self._queue = trio.open_memory_channel[_Queued](queue_size + activity_buffer)
        # Opened in attach_members(), once the number of subscriptions is known.
        self._init_send: trio.MemorySendChannel[tuple[int, FrameTemplate | None]] | None = None
        self._inits: trio.MemoryReceiveChannel[tuple[int, FrameTemplate | None]] | None = None
        self._body_send, self.body = trio.open_memory_channel[bytes](0)
        self._ended = False

    # -- called by the manager and groups (synchronous, never block) -----------------------------

    def attach_members(self, members: Sequence[Member]) -> None:
        self.members = list(members)
        self._init_send, self._inits = trio.open_memory_channel[tuple[int, FrameTemplate | None]](max(1, len(members)))

    def offer_init(self, member: Member, event: FrameTemplate) -> None:
        """The first event of ``member`` (its ``init``, or a stream-error if its view cannot be built).

        Written in request order before the queue is drained; never counts against the queue.
        Rendered for the member only when written: a reconnect storm of joiners holds one
        encoded init per group, not one copy per subscriber.
        """
        if self._init_send is None:
            raise RuntimeError("offer_init before attach_members")
        if member.slot_used:
            # Its slot went to an earlier stream-error: this init follows the queue like a frame.
            self.offer_frame(event, member.key_json)
            return
        member.slot_used = True
        try:
            self._init_send.send_nowait((member.index, event))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        self._counters.events_published += 1

    def offer_frame(self, payload: FrameTemplate | bytes, key_json: bytes | None) -> None:
        """Queue one frame for writing; a full queue means the client is too slow: evict it."""
        if self._ended:
            return
        if self._frames_waiting >= self._queue_size:
            self._counters.events_dropped += 1
            self.evict("client too slow: queue full", slow=True)
            return
        try:
            self._queue_send.send_nowait(_Queued(payload, key_json, activity=False))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        self._frames_waiting += 1
        self._counters.events_published += 1

    def offer_activity(self, event: bytes) -> bool:
        if self._ended or self._activity_waiting >= self._activity_buffer:
            return False
        try:
            self._queue_send.send_nowait(_Queued(event, None, activity=True))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self._activity_waiting += 1
        return True

    def forget(self, member: Member) -> None:
        """``member`` was unregistered alone: stop its heartbeats, free its init slot, end if nothing is left."""
        member.active = False
        if not member.slot_used and self._init_send is not None:
            member.slot_used = True
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                self._init_send.send_nowait((member.index, None))
        if not self.activity and not any(m.active for m in self.members):
            self.close("no subscriptions left")

    def close(self, reason: str = "closed") -> None:
        """End gracefully: what is queued is still written (within the write deadline)."""
        if self.end_reason is None:
            self.end_reason = reason
        self._ended = True
        self._queue_send.close()
        if self._init_send is not None:
            self._init_send.close()

    def evict(self, reason: str, *, slow: bool = False) -> None:
        """End now, without writing anything more."""
        if self.end_reason is None:
            self.end_reason = reason
            if slow:
                self._counters.sessions_dropped_slow += 1
        self._ended = True
        self.scope.cancel()

    # -- the writer task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write inits, then frames and heartbeats, until closed, evicted or the client leaves.

        Returns: when the session has ended; the manager has then forgotten it.
        Error handling: a vanished client (``BrokenResourceError`` on the body) ends the session
        quietly; a stalled write evicts it; programming errors propagate.
        """
        try:
            with self.scope:
                task_status.started()
                try:
                    await self._write_inits()
                    await self._write_stream()
                    await self._write_raw(self._encoder.finish())
                except trio.BrokenResourceError:
                    self.end_reason = self.end_reason or "client went away"
                except SessionEvicted:
                    pass
        finally:
            self._ended = True
            self._queue_send.close()
            self._queue.close()
            if self._init_send is not None:
                self._init_send.close()
            if self._inits is not None:
                self._inits.close()
            self._body_send.close()
            self._on_end(self)

    async def _write_inits(self) -> None:
        if self._inits is None or not self.members:
            return
        waiting: dict[int, FrameTemplate | None] = {}
        next_index = 0
        while next_index < len(self.members):
            try:
                index, event = await self._inits.receive()
            except trio.EndOfChannel:
                return
            waiting[index] = event
            ready: list[bytes] = []
            while next_index in waiting:
                template = waiting.pop(next_index)
                if template is not None:  # None: the subscription was unregistered before its init
                    ready.append(template.render(self.members[next_index].key_json))
                next_index += 1
            if ready:
                await self._write(ready)

    async def _write_stream(self) -> None:
        beats = self._schedule_beats()
        if self.activity:
            # An activity connection hears at once that it is live (protocol, section 2).
            self._counters.events_published += 1
            await self._write([frame("heartbeat", Meta(instance_id=0, timestamp=time.time())).render_without_key()])
        while True:
            item: _Queued | None = None
            with trio.move_on_at(beats[0].due if beats else float("inf")):
                try:
                    item = await self._queue.receive()
                except trio.EndOfChannel:
                    return
            events: list[bytes] = []
            if item is not None:
                events.append(self._take(item))
                # Whatever else is already queued goes in the same write (each event still flushed).
                while True:
                    try:
                        events.append(self._take(self._queue.receive_nowait()))
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
            events.extend(self._due_beats(beats))
            if events:
                await self._write(events)

    def _take(self, item: _Queued) -> bytes:
        if item.activity:
            self._activity_waiting -= 1
        else:
            self._frames_waiting -= 1
        return item.render()

    def _schedule_beats(self) -> list[_Beat]:
        now = trio.current_time()
        beats: list[_Beat] = []
        seq = 0
        for member in self.members:
            for instance_id in member.instance_ids:
                beats.append(_Beat(now + self._beat_interval(), seq, instance_id, member))
                seq += 1
        if self.activity:
            beats.append(_Beat(now + self._beat_interval(), seq, 0, None))
        heapq.heapify(beats)
        return beats

    def _beat_interval(self) -> float:
        return self._heartbeat * (1 + random.uniform(0, 0.1))

    def _due_beats(self, beats: list[_Beat]) -> list[bytes]:
        """The heartbeat events that are due, each rescheduled one period (plus jitter) later."""
        now = trio.current_time()
        wall = time.time()
        templates: dict[int, FrameTemplate] = {}
        out: list[bytes] = []
        while beats and beats[0].due <= now:
            beat = heapq.heappop(beats)
            if beat.member is not None and not beat.member.active:
                continue
            template = templates.get(beat.instance_id)
            if template is None:
                template = templates[beat.instance_id] = frame("heartbeat", Meta(beat.instance_id, wall))
            out.append(template.render(beat.member.key_json) if beat.member else template.render_without_key())
            beat.due = now + self._beat_interval()
            heapq.heappush(beats, beat)
        self._counters.events_published += len(out)
        return out

    async def _write(self, events: list[bytes]) -> None:
        await self._write_raw(self._encoder.encode(events))

    async def _write_raw(self, data: bytes) -> None:
        if not data:
            return
        with trio.move_on_after(self._write_timeout) as deadline:
            await self._body_send.send(data)
        if deadline.cancelled_caught:
            self._counters.events_dropped += 1
            self.evict("client too slow: write deadline passed", slow=True)
            raise SessionEvicted
        self._counters.bytes_sent += len(data)
