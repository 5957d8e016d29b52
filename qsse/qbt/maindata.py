"""Sans-I/O merge of qBittorrent's ``sync/maindata`` answers (stream protocol, section 6).

Theory of operation: the merger owns the only mutable reference to an instance's state and
publishes an immutable :class:`MainData` after every successful merge. Immutability is by
construction rather than by copying everything: a merge builds a new top-level ``torrents``
dict (a shallow C-level copy) and new row dicts only for the rows it touched, so a published
row object is never mutated afterwards. Readers (the view engine) can therefore keep caches
keyed by row identity, and the sync loop can hand the snapshot to other tasks without locks.

A merge is all-or-nothing: the payload is validated and the new state built before anything
is swapped in, so a malformed answer keeps the old state and the old rid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from qsse.errors import UpstreamProtocolError

#: One torrent row: every field qBittorrent sent for it, plus ``hash``. Never mutated once published.
Torrent = Mapping[str, Any]

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class MainData:
    """The merged state of one instance after some rid."""

    rid: int = 0
    torrents: Mapping[str, Torrent] = field(default_factory=dict)
    categories: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    trackers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    server_state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Diff:
    """What one merge changed, by torrent hash."""

    full_update: bool
    #: True for the first merge of a merger (nothing to compare with).
    initial: bool
    added: frozenset[str] = frozenset()
    #: Hashes whose row object was replaced (added rows included).
    changed: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    #: Hashes whose progress reached 1 in this merge.
    completed: frozenset[str] = frozenset()
    #: Whether categories, tags, trackers or server_state changed.
    meta_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.changed or self.removed or self.meta_changed or self.full_update)


def decode(body: bytes) -> dict[str, Any]:
    """Parse a maindata body; anything but a JSON object with an integer rid is a protocol error."""
    try:
        payload = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(f"malformed JSON from sync/maindata: {exc}") from exc
    if not isinstance(payload, dict):
        raise UpstreamProtocolError("sync/maindata did not answer a JSON object")
    return payload


class MainDataMerger:
    """Keeps one instance's merged state; :meth:`apply` merges one maindata answer."""

    def __init__(self) -> None:
        self._state = MainData()

    @property
    def state(self) -> MainData:
        return self._state

    @property
    def rid(self) -> int:
        return self._state.rid

    def reset(self) -> None:
        """Forget everything: the next request asks for rid 0 (a full update)."""
        self._state = MainData()

    def apply_bytes(self, body: bytes) -> tuple[MainData, Diff]:
        return self.apply(decode(body))

    def apply(self, payload: Mapping[str, Any]) -> tuple[MainData, Diff]:
        rid = payload.get("rid")
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise UpstreamProtocolError("sync/maindata answer has no integer rid")
        old = self._state
        initial = old.rid == 0 and not old.torrents
        if payload.get("full_update"):
            new, diff = _full(old, payload, rid, initial)
        else:
            new, diff = _partial(old, payload, rid, initial)
        self._state = new
        return new, diff


def _obj(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UpstreamProtocolError(f"sync/maindata key {key!r} is not an object")
    return value


def _strings(payload: Mapping[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UpstreamProtocolError(f"sync/maindata key {key!r} is not a list of strings")
    return value


def _objects(payload: Mapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """A map of objects (``torrents`` by hash, ``categories`` by name)."""
    objects = _obj(payload, key)
    for name, value in objects.items():
        if not isinstance(value, dict):
            raise UpstreamProtocolError(f"sync/maindata {key}[{name!r}] is not an object")
    return objects


def _trackers(payload: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for url, hashes in _obj(payload, "trackers").items():
        if not isinstance(hashes, list):
            raise UpstreamProtocolError(f"sync/maindata tracker {url!r} is not a list")
        out[url] = tuple(hashes)
    return out


def _is_complete(row: Mapping[str, Any] | None) -> bool:
    return row is not None and row.get("progress", 0) >= 1


def _full(old: MainData, payload: Mapping[str, Any], rid: int, initial: bool) -> tuple[MainData, Diff]:
    rows = _objects(payload, "torrents")
    for h, row in rows.items():
        row["hash"] = h
    new = MainData(
        rid=rid,
        torrents=rows,
        categories=_objects(payload, "categories"),
        tags=tuple(dict.fromkeys(_strings(payload, "tags"))),
        trackers=_trackers(payload),
        server_state=_obj(payload, "server_state"),
    )
    old_rows = old.torrents
    added = frozenset(h for h in rows if h not in old_rows)
    completed = frozenset(
        h for h, row in rows.items() if _is_complete(row) and not initial and not _is_complete(old_rows.get(h))
    )
    removed = frozenset(h for h in old_rows if h not in rows)
    diff = Diff(
        full_update=True,
        initial=initial,
        added=added,
        changed=frozenset(rows),
        removed=removed,
        completed=completed,
        meta_changed=True,
    )
    return new, diff


def _partial(old: MainData, payload: Mapping[str, Any], rid: int, initial: bool) -> tuple[MainData, Diff]:
    patches = _objects(payload, "torrents")
    removed_list = _strings(payload, "torrents_removed")
    torrents: Mapping[str, Torrent] = old.torrents
    added: set[str] = set()
    completed: set[str] = set()
    removed: set[str] = set()
    if patches or removed_list:
        rows = dict(old.torrents)
        for h, patch in patches.items():
            before = rows.get(h)
            if before is None:
                patch["hash"] = h
                rows[h] = patch
                added.add(h)
                if _is_complete(patch) and not initial:
                    completed.add(h)
            else:
                row = {**before, **patch}
                rows[h] = row
                if "progress" in patch and _is_complete(row) and not _is_complete(before):
                    completed.add(h)
        for h in removed_list:
            if rows.pop(h, None) is not None:
                removed.add(h)
        torrents = rows

    meta_changed = False
    categories: Mapping[str, Mapping[str, Any]] = old.categories
    cat_patches = _objects(payload, "categories")
    cats_removed = _strings(payload, "categories_removed")
    if cat_patches or cats_removed:
        merged = dict(old.categories)
        for name, patch in cat_patches.items():
            merged[name] = {**merged.get(name, {}), **patch}
        for name in cats_removed:
            merged.pop(name, None)
        categories, meta_changed = merged, True

    tags = old.tags
    tags_added = _strings(payload, "tags")
    tags_removed = _strings(payload, "tags_removed")
    if tags_added or tags_removed:
        gone = set(tags_removed)
        tags = tuple(t for t in dict.fromkeys((*old.tags, *tags_added)) if t not in gone)
        meta_changed = True

    trackers = old.trackers
    tracker_patches = _trackers(payload)
    trackers_removed = _strings(payload, "trackers_removed")
    if tracker_patches or trackers_removed:
        merged_trackers = {**old.trackers, **tracker_patches}
        for url in trackers_removed:
            merged_trackers.pop(url, None)
        trackers, meta_changed = merged_trackers, True

    server_state = old.server_state
    state_patch = _obj(payload, "server_state")
    if state_patch:
        server_state = {**old.server_state, **state_patch}
        meta_changed = True

    new = MainData(
        rid=rid,
        torrents=torrents,
        categories=categories,
        tags=tags,
        trackers=trackers,
        server_state=server_state,
    )
    diff = Diff(
        full_update=False,
        initial=initial,
        added=frozenset(added),
        changed=frozenset(patches) - removed,
        removed=frozenset(removed),
        completed=frozenset(completed),
        meta_changed=meta_changed,
    )
    return new, diff

