"""Total orders over torrent rows (protocol section 8, sort fields).

A row's place is an *entry* tuple ``(last, value, name_key, hash, instance_id)``:

- ``last`` is 1 for values that sort last in *both* orders (``eta`` ∞, ``priority`` 0, a missing
  or mistyped value) and 0 otherwise; it always compares ascending;
- ``value`` compares ascending or descending with the view's order;
- ``name_key`` (case-folded name), ``hash`` and ``instance_id`` break ties, always ascending, so
  a page boundary never depends on dict order.

Ascending views are plain tuple order, so the C ``bisect``/``sort`` apply. Descending views sort
in three stable passes and bisect with a small Python comparator (log n steps per insert).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

from qsse.views.options import SORT_FIELDS

Entry = tuple[int, Any, str, str, int]
Row = Mapping[str, Any]

ETA_INFINITE = 8640000

#: Where each qBittorrent state sorts for ``sort=state``: active downloads first, then seeding,
#: housekeeping, stopped, and broken torrents last.
STATE_RANK: Mapping[str, int] = {
    state: rank
    for rank, states in enumerate(
        (
            ("forcedDL", "downloading"),
            ("forcedMetaDL", "metaDL"),
            ("allocating",),
            ("stalledDL",),
            ("queuedDL",),
            ("checkingDL",),
            ("forcedUP", "uploading"),
            ("stalledUP",),
            ("queuedUP",),
            ("checkingUP",),
            ("checkingResumeData",),
            ("moving",),
            ("pausedDL", "stoppedDL"),
            ("pausedUP", "stoppedUP"),
            ("missingFiles",),
            ("error",),
            ("unknown",),
        )
    )
    for state in states
}
_UNRANKED = len(STATE_RANK)


def _number(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float):
        return 0, value
    return 1, 0


def _text(value: Any) -> tuple[int, Any]:
    if isinstance(value, str):
        return 0, value.casefold()
    return 1, ""


def _eta(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float):
        return (1, 0) if value >= ETA_INFINITE else (0, value)
    return 1, 0


def _priority(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float):
        return (1, 0) if value <= 0 else (0, value)
    return 1, 0


def _state(value: Any) -> tuple[int, Any]:
    if isinstance(value, str):
        return 0, STATE_RANK.get(value, _UNRANKED)
    return 1, 0


_KINDS: Mapping[str, Callable[[Any], tuple[int, Any]]] = {
    "num": _number,
    "str": _text,
    "name": _text,
    "eta": _eta,
    "priority": _priority,
    "state": _state,
}


def name_key(row: Row) -> str:
    name = row.get("name")
    return name.casefold() if isinstance(name, str) else ""


def entry_maker(field: str, instance_names: Mapping[int, str]) -> Callable[[Row, str, int], Entry]:
    """A function building the entry of ``row`` (with ``hash`` and instance id) for ``field``."""
    kind = SORT_FIELDS[field]
    if kind == "instance":

        def instance_entry(row: Row, h: str, iid: int) -> Entry:
            return 0, (instance_names.get(iid, "").casefold(), iid), name_key(row), h, iid

        return instance_entry
    if kind == "name":

        def by_name(row: Row, h: str, iid: int) -> Entry:
            name = row.get("name")
            if isinstance(name, str):
                key = name.casefold()
                return 0, key, key, h, iid
            return 1, "", "", h, iid  # no name: last, like any missing value

        return by_name
    convert = _KINDS[kind]

    def entry(row: Row, h: str, iid: int) -> Entry:
        last, value = convert(row.get(field))
        return last, value, name_key(row), h, iid

    return entry


_TIES = itemgetter(2, 3, 4)
_VALUE = itemgetter(1)
_LAST = itemgetter(0)


def sort_entries(entries: list[Entry], descending: bool) -> None:
    """Sort in place into the view's total order."""
    if not descending:
        entries.sort()
        return
    # Python's sort is stable, also with reverse=True: sort by the tie-breaks first, then by
    # value (descending), then by the `last` flag (ascending).
    entries.sort(key=_TIES)
    entries.sort(key=_VALUE, reverse=True)
    entries.sort(key=_LAST)


def _before_desc(a: Entry, b: Entry) -> bool:
    if a[0] != b[0]:
        return a[0] < b[0]
    if a[1] != b[1]:
        return bool(a[1] > b[1])
    return a[2:] < b[2:]


def position(entries: list[Entry], entry: Entry, descending: bool) -> int:
    """Leftmost index at which ``entry`` belongs (where it is, when present)."""
    if not descending:
        return bisect.bisect_left(entries, entry)
    lo, hi = 0, len(entries)
    while lo < hi:
        mid = (lo + hi) // 2
        if _before_desc(entries[mid], entry):
            lo = mid + 1
        else:
            hi = mid
    return lo


def insert(entries: list[Entry], entry: Entry, descending: bool) -> None:
    entries.insert(position(entries, entry, descending), entry)


def remove(entries: list[Entry], entry: Entry, descending: bool) -> None:
    i = position(entries, entry, descending)
    if i < len(entries) and entries[i] == entry:
        del entries[i]
    else:  # pragma: no cover - the engine only removes entries it inserted
        entries.remove(entry)
