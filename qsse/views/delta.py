"""Delta frames for one group (protocol section 8, "Delta frames").

The encoder keeps the *baseline*: the full view exactly as a client holds it after applying
every frame so far. A client upserts the rows of a frame by key, orders by ``delta.order``
when present, and takes every other field from the frame (``counts`` and ``preferences`` stay
as they were while a frame leaves them out). Rows whose only changes are in volatile fields
are not resent, so the baseline keeps their older version; that is the version a joining
subscriber's ``init`` must show too, or its chain would differ from everyone else's.

A tick that changes nothing in the view (no row fingerprint, no order, no aggregate, no
counts) produces no frame. ``cacheMetadata`` alone is not a change: its ``age`` moves with the
clock, and an idle library should cost clients only heartbeats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VOLATILE_FIELDS = frozenset(
    {
        "reannounce",
        "time_active",
        "seeding_time",
        "eta",
        "last_activity",
        "seen_complete",
        "popularity",
        "availability",
        "num_complete",
        "num_incomplete",
        "num_leechs",
        "num_seeds",
    }
)
#: Aggregates left out of a delta frame while they equal the baseline's.
OMITTED_WHILE_UNCHANGED = ("counts", "preferences")
#: Aggregates whose change alone does not make a frame.
NOT_A_CHANGE = frozenset({"cacheMetadata"})
_ROW_LISTS = ("torrents", "cross_instance_torrents")

Fingerprint = tuple[tuple[str, Any], ...]
Frame = tuple[str, dict[str, Any], dict[str, Any] | None]


def fingerprint(row: Mapping[str, Any]) -> Fingerprint:
    """The non-volatile content of a row, comparable with ``==``."""
    return tuple(sorted((k, v) for k, v in row.items() if k not in VOLATILE_FIELDS))


def row_key(row: Mapping[str, Any], aggregated: bool) -> str:
    if aggregated:
        return f"{row.get('instance_id')}:{row.get('hash')}"
    return str(row.get("hash"))


def _rows_field(aggregated: bool) -> str:
    return "cross_instance_torrents" if aggregated else "torrents"


class DeltaEncoder:
    """Turns a group's successive full responses into ``update``/``delta`` frames."""

    def __init__(self) -> None:
        self._baseline: dict[str, Any] | None = None
        #: key → (row object sent, its fingerprint), for the rows of the baseline page.
        self._sent: dict[str, tuple[Mapping[str, Any], Fingerprint]] = {}
        self._order: list[str] = []

    @property
    def baseline(self) -> dict[str, Any] | None:
        """The full response the chain currently represents (what every member holds)."""
        return self._baseline

    def reset(self) -> None:
        self._baseline = None
        self._sent = {}
        self._order = []

    def encode(self, response: Mapping[str, Any], *, aggregated: bool) -> Frame | None:
        rows_field = _rows_field(aggregated)
        rows: list[Mapping[str, Any]] = response.get(rows_field) or []
        if self._baseline is None:
            self._baseline = dict(response)
            self._sent = {}
            self._order = []
            for row in rows:
                key = row_key(row, aggregated)
                self._sent[key] = (row, fingerprint(row))
                self._order.append(key)
            return "update", dict(response), None

        old_sent = self._sent
        new_sent: dict[str, tuple[Mapping[str, Any], Fingerprint]] = {}
        order: list[str] = []
        changed: list[Mapping[str, Any]] = []
        held: list[Mapping[str, Any]] = []  # the rows as the client will hold them
        for row in rows:
            key = row_key(row, aggregated)
            order.append(key)
            previous = old_sent.get(key)
            if previous is not None and previous[0] is row:
                new_sent[key] = previous
                held.append(row)
                continue
            fp = fingerprint(row)
            if previous is not None and previous[1] == fp:
                # Only volatile fields moved: the client keeps the row it has.
                new_sent[key] = previous
                held.append(previous[0])
                continue
            new_sent[key] = (row, fp)
            changed.append(row)
            held.append(row)
        order_changed = order != self._order

        baseline = self._baseline
        data: dict[str, Any] = {}
        aggregate_changed = False
        for name, value in response.items():
            if name in _ROW_LISTS:
                continue
            before = baseline.get(name)
            same = before is value or (name in baseline and before == value)
            if name in OMITTED_WHILE_UNCHANGED and same:
                continue
            if not same and name not in NOT_A_CHANGE:
                aggregate_changed = True
            data[name] = value

        if not changed and not order_changed and not aggregate_changed:
            return None

        frame_data: dict[str, Any] = {}
        for name in response:
            if name == rows_field:
                frame_data[name] = changed
            elif name in _ROW_LISTS:
                frame_data[name] = response[name]
            elif name in data:
                frame_data[name] = data[name]

        # A field a frame leaves out stays as the client had it.
        new_baseline = {**baseline, **response}
        new_baseline[rows_field] = held
        self._baseline = new_baseline
        self._sent = new_sent
        self._order = order
        return "delta", frame_data, ({"order": order} if order_changed else {})
