"""The activity hub: daemon events (section 7 of the protocol) to every ``activity=1`` listener.

Activity is a best-effort signal, never replayed. Publishing is synchronous and never blocks:
each listener owns a bounded buffer and refuses an event when it is full (the event is counted
as dropped for that listener; the listener itself is not evicted, because a burst of
``torrent.added`` after a big import is normal and says nothing about the client's health).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from qsse.qbt.maindata import Diff
from qsse.qbt.status import Health
from qsse.stream.sse import activity_event

INSTANCE_CONNECTED = "instance.connected"
INSTANCE_DISCONNECTED = "instance.disconnected"
INSTANCE_AUTH_FAILED = "instance.auth_failed"
TORRENT_ADDED = "torrent.added"
TORRENT_COMPLETED = "torrent.completed"
TORRENT_REMOVED = "torrent.removed"
CONFIG_RELOADED = "config.reloaded"


class ActivityListener(Protocol):
    def offer_activity(self, event: bytes) -> bool:
        """Queue one encoded ``activity`` event without blocking; False when the buffer is full."""
        ...


class ActivityHub:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._listeners: set[ActivityListener] = set()
        self._clock = clock
        self.published = 0
        self.dropped = 0

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    def add(self, listener: ActivityListener) -> None:
        self._listeners.add(listener)

    def discard(self, listener: ActivityListener) -> None:
        self._listeners.discard(listener)

    def publish(self, kind: str, instance_id: int | None = None, resource_id: str | None = None) -> int:
        """Offer one event to every listener; returns how many took it. Encoded once."""
        if not self._listeners:
            return 0
        event = activity_event(kind, instance_id, resource_id, self._clock())
        delivered = 0
        for listener in list(self._listeners):
            if listener.offer_activity(event):
                delivered += 1
            else:
                self.dropped += 1
        self.published += delivered
        return delivered


def health_activity(previous: Health, current: Health) -> str | None:
    """The activity kind of a health transition, if it is one worth telling."""
    if previous is current:
        return None
    if current is Health.SYNCING:
        return INSTANCE_CONNECTED
    if current is Health.AUTH_FAILED:
        return INSTANCE_AUTH_FAILED
    if current is Health.DOWN and previous is Health.SYNCING:
        return INSTANCE_DISCONNECTED
    return None


def diff_activity(diff: Diff) -> Iterable[tuple[str, str]]:
    """(kind, hash) for the torrent events of one merge; the first merge of a loop tells nothing."""
    if diff.initial:
        return
    for h in sorted(diff.added):
        yield TORRENT_ADDED, h
    for h in sorted(diff.completed):
        yield TORRENT_COMPLETED, h
    for h in sorted(diff.removed):
        yield TORRENT_REMOVED, h
