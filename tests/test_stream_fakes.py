"""Fakes shared by the stream tests: a hand-fed supervisor, a trivial view engine, an SSE reader.

(Named ``test_*`` only so that it sits among the stream tests; it defines no tests itself.)
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import trio

from qsse.qbt.maindata import Diff, MainData
from qsse.qbt.status import Health, InstanceState
from qsse.qbt.sync import SupervisorStatistics, SyncEvent, SyncFailed, SyncSucceeded
from qsse.views.options import ViewOptions


class FakeSupervisor:
    """Same API as InstanceSupervisor; states change only when a test says so."""

    def __init__(self, ids: Sequence[int] = (1, 2, 3), *, health: Health = Health.SYNCING) -> None:
        self._states = {
            i: InstanceState(instance_id=i, name=f"qbt{i}", health=health, data=MainData(rid=1, torrents={}),
                             last_success=1_700_000_000.0 if health is Health.SYNCING else None)
            for i in ids
        }
        self.demand = dict.fromkeys(ids, 0)
        self._listeners: list[trio.MemorySendChannel[SyncEvent]] = []
        self.sync_errors = 0

    def knows(self, instance_id: int) -> bool:
        return instance_id in self._states

    def acquire(self, instance_id: int) -> None:
        self.demand[instance_id] += 1

    def release(self, instance_id: int) -> None:
        assert self.demand[instance_id] > 0, f"release of {instance_id} without acquire"
        self.demand[instance_id] -= 1

    def state(self, instance_id: int) -> InstanceState:
        return self._states[instance_id]

    def states(self) -> list[InstanceState]:
        return list(self._states.values())

    def open_listener(self, buffer: int = 1024) -> trio.MemoryReceiveChannel[SyncEvent]:
        send, receive = trio.open_memory_channel[SyncEvent](buffer)
        self._listeners.append(send)
        return receive

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            active_loops=sum(1 for d in self.demand.values() if d > 0),
            sync_errors=self.sync_errors,
            events_dropped=0,
        )

    # -- driving it ---------------------------------------------------------------------------------

    def succeed(
        self,
        instance_id: int,
        torrents: Mapping[str, Mapping[str, Any]],
        *,
        full_update: bool = False,
        initial: bool = False,
        changed: frozenset[str] | None = None,
    ) -> None:
        old = self._states[instance_id]
        data = MainData(rid=old.data.rid + 1, torrents=dict(torrents))
        added = frozenset(torrents) - frozenset(old.data.torrents)
        removed = frozenset(old.data.torrents) - frozenset(torrents)
        completed = frozenset(
            h for h, row in torrents.items()
            if row.get("progress") == 1 and old.data.torrents.get(h, {}).get("progress") != 1 and h not in added
        )
        state = replace(old, health=Health.SYNCING, data=data, last_success=1_700_000_100.0 + data.rid,
                        last_error=None, retry_in=None)
        self._states[instance_id] = state
        diff = Diff(full_update=full_update, initial=initial, added=added,
                    changed=frozenset(torrents) if changed is None else changed, removed=removed, completed=completed)
        self._send(SyncSucceeded(state, diff, old.health))

    def fail(self, instance_id: int, *, retry_in: float = 8.0, auth: bool = False) -> None:
        old = self._states[instance_id]
        text = f"Sync with qBittorrent failed (connection refused); retrying in {retry_in:.0f}s"
        state = replace(old, health=Health.AUTH_FAILED if auth else Health.DOWN, last_error=text, retry_in=retry_in)
        self._states[instance_id] = state
        self.sync_errors += 1
        self._send(SyncFailed(state, old.health))

    def set_health(self, instance_id: int, health: Health) -> None:
        self._states[instance_id] = replace(self._states[instance_id], health=health)

    def _send(self, event: SyncEvent) -> None:
        for send in self._listeners:
            send.send_nowait(event)


class FakeEngine:
    """A trivial view: the rows of the view's instances sorted by hash, and their count."""

    def __init__(self) -> None:
        self.builds = 0
        self.fail_with: Exception | None = None
        #: When set, the next response carries a value JSON cannot encode.
        self.poison = False

    def build(self, options: ViewOptions, states: Sequence[InstanceState], *, now: float) -> dict[str, Any]:
        self.builds += 1
        if self.fail_with is not None:
            raise self.fail_with
        rows = [dict(row) for state in states for _, row in sorted(state.data.torrents.items())]
        response: dict[str, Any] = {"torrents": rows, "total": len(rows), "connected": [s.connected for s in states]}
        if self.poison:
            self.poison = False
            response["bad"] = object()
        return response


class FakeChain:
    """A delta chain with the DeltaEncoder contract: update first, then the full data as 'delta', None if equal."""

    def __init__(self) -> None:
        self._baseline: dict[str, Any] | None = None

    @property
    def baseline(self) -> dict[str, Any] | None:
        return self._baseline

    def reset(self) -> None:
        self._baseline = None

    def encode(self, response: dict[str, Any], *, aggregated: bool) -> tuple[str, dict[str, Any], Any] | None:
        if self._baseline is None:
            self._baseline = response
            return "update", response, None
        if response == self._baseline:
            return None
        self._baseline = response
        return "delta", response, {"order": [r["hash"] for r in response["torrents"]]}


def torrents(*hashes: str, **fields: Any) -> dict[str, dict[str, Any]]:
    return {h: {"hash": h, "name": f"t-{h}", **fields} for h in hashes}


class SseReader:
    """Splits a byte stream (optionally gzip) into events, decoding each as soon as it is complete."""

    def __init__(self, *, gzip: bool = False) -> None:
        self._inflate = zlib.decompressobj(31) if gzip else None
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
        if self._inflate is not None:
            chunk = self._inflate.decompress(chunk)
        self._buffer += chunk
        events = []
        while b"\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            events.append(parse_event(raw))
        return events

    @property
    def pending(self) -> bytes:
        return self._buffer

    @property
    def gzip_complete(self) -> bool:
        """True once the gzip trailer arrived (the body ended cleanly)."""
        return self._inflate is not None and self._inflate.eof


def parse_event(raw: bytes) -> tuple[str, dict[str, Any]]:
    lines = raw.decode().split("\n")
    assert len(lines) == 2, raw
    assert lines[0].startswith("event: ") and lines[1].startswith("data: "), raw
    name = lines[0][len("event: "):]
    payload = json.loads(lines[1][len("data: "):])
    assert payload["type"] == name
    return name, payload


class Client:
    """Reads one session body event by event (what an SSE client sees), over the raw body channel."""

    def __init__(self, body: trio.MemoryReceiveChannel[bytes], *, gzip: bool = False) -> None:
        self.body = body
        self.reader = SseReader(gzip=gzip)
        self._ready: list[tuple[str, dict[str, Any]]] = []

    async def next(self) -> tuple[str, dict[str, Any]]:
        while not self._ready:
            self._ready.extend(self.reader.feed(await self.body.receive()))
        return self._ready.pop(0)

    async def next_of(self, *kinds: str) -> tuple[str, dict[str, Any]]:
        while True:
            event = await self.next()
            if event[0] in kinds:
                return event

    def buffered(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._ready
