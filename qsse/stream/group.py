"""A group: every subscription to one normalised view, and the coalescing task that builds it.

Theory of operation
-------------------
``trigger()`` is synchronous: it sets a pending flag and wakes the group task, so any number
of triggers before the task runs leave exactly one pending tick (latest wins: the build reads
the instances' states when it runs, not when it was triggered). Builds are pure and
synchronous, so a build and the fan-out of its frame happen without a checkpoint in between:
frames of a group are produced strictly in order and every member sees the same sequence.

Joining is atomic with respect to ticks for the same reason: :meth:`attach` runs without a
checkpoint, so it either happens before a tick (the member gets that tick's frame after an init
of the old baseline) or after it (an init of the new baseline), never half-way: no frame is
missed or doubled. A new group waits (at most ``init_wait``) for its instances' first sync
result, so a first subscriber sees real data rather than an empty, not-yet-synced library.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import trio

from qsse.qbt.status import Health, InstanceState
from qsse.stream.session import Member
from qsse.stream.sse import FrameTemplate, Meta, frame, retry_seconds
from qsse.views.options import ViewOptions

Response = dict[str, Any]

log = logging.getLogger(__name__)


class ViewBuilder(Protocol):
    """The view engine as the stream layer needs it (pure and synchronous)."""

    def build(self, options: ViewOptions, states: Sequence[InstanceState], *, now: float) -> Response: ...


class ChainEncoder(Protocol):
    """A group's delta chain (``qsse.views.delta.DeltaEncoder``)."""

    def encode(self, response: Response, *, aggregated: bool) -> tuple[str, Response, Response | None] | None: ...

    @property
    def baseline(self) -> Response | None: ...

    def reset(self) -> None: ...


def sync_error_frame(state: InstanceState) -> FrameTemplate:
    """The ``stream-error`` a failed sync of ``state``'s instance sends to each dependent subscription."""
    return frame(
        "stream-error",
        Meta(
            instance_id=state.instance_id,
            timestamp=time.time(),
            last_successful_sync=state.last_success,
            retry_in_seconds=retry_seconds(state.retry_in),
        ),
        error=state.last_error or "Sync with qBittorrent failed",
    )


def is_failing(state: InstanceState) -> bool:
    return state.health in (Health.DOWN, Health.AUTH_FAILED)


class Group:
    def __init__(
        self,
        key: str,
        options: ViewOptions,
        *,
        engine: ViewBuilder,
        encoder: ChainEncoder,
        state_of: Callable[[int], InstanceState],
        init_wait: float = 10.0,
    ) -> None:
        self.key = key
        self.options = options
        self.instance_ids: tuple[int, ...] = options.instance_ids if options.aggregated else (options.instance_id,)
        self.members: dict[int, Member] = {}
        self.scope = trio.CancelScope()
        self.builds = 0
        self._engine = engine
        self._encoder = encoder
        self._state_of = state_of
        self._init_wait = init_wait
        self._wakeup = trio.Event()
        self._pending = False
        self._pending_full_update = False
        self._init_cache: tuple[Response, FrameTemplate] | None = None

    # -- synchronous API for the manager ------------------------------------------------------------

    def trigger(self, *, full_update: bool = False) -> None:
        """Ask for a tick; coalesces with any tick already pending."""
        self._pending_full_update |= full_update
        self._pending = True
        self._wakeup.set()

    def attach(self, member: Member) -> None:
        """Add a member; if the group has a baseline, its init is produced now (same step)."""
        self.members[member.id] = member
        if self._encoder.baseline is not None:
            self._seed(member)

    def detach(self, member: Member) -> None:
        self.members.pop(member.id, None)

    # -- the task -----------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Build on every tick until cancelled (the manager cancels :attr:`scope` when the group empties).

        Returns: never, unless cancelled.
        """
        with self.scope:
            task_status.started()
            with trio.move_on_after(self._init_wait):
                while not self._ready():
                    self._pending = False
                    await self._wait_for_trigger()
            while True:
                self._pending = False
                self.tick()
                await self._wait_for_trigger()

    async def _wait_for_trigger(self) -> None:
        self._wakeup = trio.Event()
        if self._pending:
            # Triggered during the last build: still a checkpoint, so a build that keeps
            # re-triggering its group cannot starve the other tasks.
            self._wakeup.set()
        await self._wakeup.wait()

    def _ready(self) -> bool:
        return all(self._state_of(i).health is not Health.IDLE for i in self.instance_ids)

    def tick(self) -> None:
        """Build the view once, encode the frame once, fan it out. Synchronous on purpose (see module doc)."""
        full_update, self._pending_full_update = self._pending_full_update, False
        states = [self._state_of(i) for i in self.instance_ids]
        now = time.time()
        self.builds += 1
        try:
            response = self._engine.build(self.options, states, now=now)
        except Exception as exc:  # a bug or bad data in one view must not take the daemon down
            log.exception("building the view of group %s failed", self.key)
            self._fan_out_error(f"Failed to build the view: {exc}", states, now)
            return
        template: FrameTemplate | None = None
        try:
            encoded = self._encoder.encode(response, aggregated=self.options.aggregated)
            if encoded is not None and any(m.seeded for m in self.members.values()):
                kind, data, delta = encoded
                rid = 0 if self.options.aggregated else states[0].data.rid
                meta = Meta(self.options.instance_id, now, rid=rid, full_update=full_update)
                template = frame(kind, meta, data=data, delta=delta)
        except Exception as exc:
            # The chain may have advanced past what members hold: restart it, so the next
            # successful tick sends everyone a full `update`.
            log.exception("encoding the view of group %s failed", self.key)
            self._encoder.reset()
            self._fan_out_error(f"Failed to encode the view: {exc}", states, now)
            return
        if template is not None:
            for member in list(self.members.values()):
                if member.seeded:
                    member.session.offer_frame(template, member.key_json)
        for member in list(self.members.values()):
            if not member.seeded:
                self._seed(member)

    def _seed(self, member: Member) -> None:
        baseline = self._encoder.baseline
        if baseline is None:
            return
        cached = self._init_cache
        if cached is None or cached[0] is not baseline:
            # The template is cached per baseline object: joiners between two ticks share one encoding.
            meta = Meta(self.options.instance_id, time.time(), full_update=True)
            cached = self._init_cache = (baseline, frame("init", meta, data=baseline))
        member.seeded = True
        member.session.offer_init(member, cached[1])
        # A joiner while an instance is failing learns it at once, not at the next retry.
        for instance_id in self.instance_ids:
            state = self._state_of(instance_id)
            if is_failing(state):
                member.session.offer_frame(sync_error_frame(state), member.key_json)

    def _fan_out_error(self, text: str, states: Sequence[InstanceState], now: float) -> None:
        waits = [s.next_poll - now for s in states if s.next_poll is not None]
        template = frame(
            "stream-error",
            Meta(self.options.instance_id, now, retry_in_seconds=retry_seconds(min(waits) if waits else None)),
            error=text,
        )
        for member in list(self.members.values()):
            if member.seeded:
                member.session.offer_frame(template, member.key_json)
            else:
                # Its init cannot be built: tell it why instead of leaving the connection mute.
                # It stays unseeded, so the next successful build sends it an init.
                member.session.offer_init(member, template)
