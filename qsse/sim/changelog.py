"""Revision bookkeeping that lets the simulator answer "what changed since revision R" in O(changes).

Theory of operation: the library bumps one integer revision per mutating call (a tick, an action).
A :class:`ChangeLog` remembers, per key (a torrent hash or a tracker URL), the revision of its last
change. ``touched`` is a dict kept in revision order by deleting and re-inserting a key on every
touch, so "changed since R" walks it backwards and stops at the first key older than R instead of
scanning every key. Removals are kept the same way, together with the revision at which the key's
lineage first appeared: a client whose snapshot predates that lineage never knew the key and must
not be told it was removed (real qBittorrent computes removals by comparing snapshots, so it never
reports a key the client did not have).
"""

from __future__ import annotations


class ChangeLog:
    """Added/touched/removed revisions of a set of string keys."""

    def __init__(self) -> None:
        self._added: dict[str, int] = {}
        # First appearance of a key that was removed and re-added since: such a key may sit in a
        # client's older snapshot, so its removal must still be reported to that client.
        self._born: dict[str, int] = {}
        self._touched: dict[str, int] = {}
        self._removed: dict[str, tuple[int, int]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._added

    def add(self, key: str, rev: int) -> None:
        gone = self._removed.pop(key, None)
        self._born[key] = gone[1] if gone is not None else rev
        self._added[key] = rev
        self.touch(key, rev)

    def touch(self, key: str, rev: int) -> None:
        if self._touched.get(key) != rev:
            self._touched.pop(key, None)
            self._touched[key] = rev

    def remove(self, key: str, rev: int) -> None:
        del self._added[key]
        self._touched.pop(key, None)
        self._removed[key] = (rev, self._born.pop(key))

    def added_rev(self, key: str) -> int:
        return self._added[key]

    def touched_since(self, rev: int) -> list[str]:
        """Keys present now whose last change is newer than ``rev`` (newest first)."""
        out: list[str] = []
        for key, touched in reversed(self._touched.items()):
            if touched <= rev:
                break
            out.append(key)
        return out

    def removed_since(self, rev: int) -> list[str]:
        """Keys removed after ``rev`` that a client holding revision ``rev`` may know."""
        out: list[str] = []
        for key, (removed, born) in reversed(self._removed.items()):
            if removed <= rev:
                break
            if born <= rev:
                out.append(key)
        return out

    def forget_removed_up_to(self, rev: int) -> None:
        """Drop removal records no snapshot at or after ``rev`` can need."""
        while self._removed:
            key = next(iter(self._removed))
            if self._removed[key][0] > rev:
                break
            del self._removed[key]

    @property
    def removed_records(self) -> int:
        return len(self._removed)
