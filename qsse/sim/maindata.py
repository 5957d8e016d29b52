"""``sync/maindata`` with qBittorrent's rid semantics, over a :class:`~qsse.sim.library.Library`.

Theory of operation (mirrors ``generateSyncData`` in qBittorrent's ``synccontroller.cpp``, and
the behaviour measured in docs/qbittorrent-testbed.md §4): every session keeps two snapshots,
``last`` (what the latest answer described, tagged with that answer's rid) and ``accepted`` (the
latest snapshot the client proved it holds by sending its rid back). A request whose rid equals
``last.rid`` promotes ``last`` to ``accepted``; a request whose rid equals ``accepted.rid`` (a
retry) is diffed against ``accepted``; anything else, rid 0 included, gets a full update.
The answered rid is ``previous rid % 1_000_000 + 1``, where a rid <= 0 counts as previous 0 — so
every rid=0 answer has rid 1, while an unknown rid continues the counter.

Snapshots do not copy torrent rows: a snapshot is the library revision plus copies of the small
parts (categories, tags, server_state). Torrent and tracker diffs come from the library's per-row
revisions, so a poll costs O(changes), not O(torrents) as in real qBittorrent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from qsse.sim.library import Library

#: qBittorrent cycles rids between 1 and this.
RID_WRAP: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class _Snapshot:
    rid: int
    revision: int
    categories: dict[str, dict[str, Any]]
    tags: frozenset[str]
    server_state: dict[str, Any]


@dataclass(slots=True)
class _SessionSync:
    last: _Snapshot | None = None
    accepted: _Snapshot | None = None


class MainDataSync:
    """Per-session ``sync/maindata`` answers.

    The payloads returned by :meth:`maindata` reference live library rows: encode them before the
    library changes (the server encodes synchronously right after the call).
    """

    def __init__(self, library: Library) -> None:
        self.library = library
        self._sessions: dict[str, _SessionSync] = {}
        self._calls = 0

    def drop_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._forget()

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def maindata(self, session_id: str, rid: int) -> dict[str, Any]:
        state = self._sessions.setdefault(session_id, _SessionSync())
        base: _Snapshot | None = None
        last_rid = 0
        if rid > 0 and state.last is not None:
            last_rid = state.last.rid
            if last_rid == rid:
                state.accepted = state.last
            if state.accepted is not None and state.accepted.rid == rid:
                base = state.accepted
        if base is None:
            state.accepted = None
        new_rid = last_rid % RID_WRAP + 1
        snapshot = self._snapshot(new_rid)
        payload = self._full(snapshot) if base is None else self._diff(base, snapshot)
        state.last = snapshot
        self._calls += 1
        if self._calls % 64 == 0:
            self._forget()
        return payload

    def _snapshot(self, rid: int) -> _Snapshot:
        lib = self.library
        return _Snapshot(
            rid=rid,
            revision=lib.revision,
            categories={name: dict(cat) for name, cat in lib.categories.items()},
            tags=frozenset(lib.tags),
            server_state=dict(lib.server_state),
        )

    def _full(self, snap: _Snapshot) -> dict[str, Any]:
        lib = self.library
        return {
            "categories": snap.categories,
            "full_update": True,
            "rid": snap.rid,
            "server_state": snap.server_state,
            "tags": lib.tags,
            "torrents": lib.rows(),
            "trackers": lib.trackers(),
        }

    def _diff(self, base: _Snapshot, snap: _Snapshot) -> dict[str, Any]:
        lib = self.library
        out: dict[str, Any] = {}

        categories: dict[str, dict[str, Any]] = {}
        for name, cat in snap.categories.items():
            old = base.categories.get(name)
            if old is None:
                categories[name] = cat
            else:
                patch = {k: v for k, v in cat.items() if old.get(k) != v}
                if patch:
                    categories[name] = patch
        if categories:
            out["categories"] = categories
        categories_removed = [name for name in base.categories if name not in snap.categories]
        if categories_removed:
            out["categories_removed"] = categories_removed

        out["rid"] = snap.rid

        server_state = {k: v for k, v in snap.server_state.items() if base.server_state.get(k) != v}
        if server_state:
            out["server_state"] = server_state

        tags_added = [t for t in lib.tags if t not in base.tags]
        if tags_added:
            out["tags"] = tags_added
        tags_removed = [t for t in base.tags if t not in snap.tags]
        if tags_removed:
            out["tags_removed"] = tags_removed

        if snap.revision != base.revision:
            torrents = lib.torrent_changes_since(base.revision)
            if torrents.upserts:
                out["torrents"] = torrents.upserts
            if torrents.removed:
                out["torrents_removed"] = torrents.removed
            trackers = lib.tracker_changes_since(base.revision)
            if trackers.changed:
                out["trackers"] = trackers.changed
            if trackers.removed:
                out["trackers_removed"] = trackers.removed
        return out

    def _forget(self) -> None:
        """Let the library drop removal records that no session's snapshots can still need."""
        revisions = [
            snap.revision
            for state in self._sessions.values()
            for snap in (state.last, state.accepted)
            if snap is not None
        ]
        self.library.forget_before(min(revisions, default=self.library.revision))
