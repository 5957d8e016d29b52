"""The simulated torrent library: pure state plus a deterministic ``tick`` that makes it live.

Theory of operation: each torrent keeps its public ``maindata`` row as a plain dict (exactly the
fields qBittorrent 4.5 serialises, in its key order) next to a little private simulation state.
Every write goes through :meth:`Library._set`, which records the revision at which that field
changed; :mod:`qsse.sim.maindata` uses those revisions to build partial updates without comparing
50k rows field by field. Rows are mutated in place, so a caller that holds a row must encode it
before the library changes again (the server does so synchronously).

No I/O and no wall clock: time is ``now`` (epoch seconds) advanced by ``tick(dt)``, randomness
comes from one seeded :class:`random.Random`, so a seed and a sequence of calls give the same
library every run.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

from qsse.sim.changelog import ChangeLog

Dialect = Literal["4", "5"]

#: ``eta`` of a torrent that is not downloading (qBittorrent's MAX_ETA).
MAX_ETA: Final = 8_640_000
#: A fixed "now" so a bare ``Library()`` is deterministic; the server passes the wall clock.
DEFAULT_EPOCH: Final = 1_764_806_400

#: The 48 torrent fields of ``sync/maindata`` in qBittorrent 4.5, in its (sorted) key order.
TORRENT_FIELDS: Final = (
    "added_on", "amount_left", "auto_tmm", "availability", "category", "completed", "completion_on",
    "content_path", "dl_limit", "dlspeed", "download_path", "downloaded", "downloaded_session", "eta",
    "f_l_piece_prio", "force_start", "infohash_v1", "infohash_v2", "last_activity", "magnet_uri", "max_ratio",
    "max_seeding_time", "name", "num_complete", "num_incomplete", "num_leechs", "num_seeds", "priority",
    "progress", "ratio", "ratio_limit", "save_path", "seeding_time", "seeding_time_limit", "seen_complete",
    "seq_dl", "size", "state", "super_seeding", "tags", "time_active", "total_size", "tracker",
    "trackers_count", "up_limit", "uploaded", "uploaded_session", "upspeed",
)  # fmt: skip

#: Fields qBittorrent 5.0 added; the "5" dialect sends them so clients prove they parse tolerantly.
DIALECT5_EXTRA_FIELDS: Final = (
    "comment", "has_metadata", "inactive_seeding_time_limit", "max_inactive_seeding_time", "popularity",
    "private", "reannounce", "root_path",
)  # fmt: skip

DEFAULT_SAVE_PATH: Final = "/downloads"

_CATEGORIES: Final = (
    "movies", "movies/4k", "tv", "tv/anime", "tv/shows", "music", "music/flac", "linux", "books", "games",
)  # fmt: skip
_TAGS: Final = ("hd", "4k", "x265", "private", "public", "seedbox", "keep", "archive", "new", "fav")
_TRACKERS: Final = (
    "udp://tracker.opentrackr.org:1337/announce",
    "udp://open.stealth.si:80/announce",
    "udp://tracker.torrent.eu.org:451/announce",
    "http://tracker.example.org:6969/announce",
    "https://tracker.linuxfoundation.example/announce",
    "udp://exodus.desync.com:6969/announce",
    "http://bt.private-tracker.example/announce/abcdef",
)
_WORDS: Final = (
    "alpha", "bravo", "comet", "delta", "ember", "falcon", "glacier", "harbor", "island", "jungle", "kepler",
    "lantern", "meadow", "nebula", "orbit", "prairie", "quartz", "river", "summit", "tundra", "umbra",
    "valley", "willow", "xenon", "yonder", "zephyr", "night", "shadow", "crystal", "iron", "silver", "storm",
)  # fmt: skip
_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")
_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-_!.~*()")
_ASCII_ESCAPES: Final = {c: f"%{c:02x}" for c in range(128) if chr(c) not in _UNRESERVED}
_DISTROS: Final = ("debian", "ubuntu", "fedora", "archlinux", "linuxmint", "opensuse", "alpine", "rocky")


class ActionRejected(Exception):
    """An action qBittorrent refuses; carries the HTTP status and body it answers with."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text


@dataclass(slots=True, eq=False)
class _Torrent:
    hash: str
    row: dict[str, Any]
    trackers: list[str]
    tags: set[str]
    paused: bool
    queued: bool = False
    has_metadata: bool = True
    #: Field -> revision of its last change; absent means unchanged since the torrent was added.
    field_rev: dict[str, int] = field(default_factory=dict)
    #: Simulated clock of the last progress update, so rarely picked rows catch up in one step.
    updated_at: float = 0.0
    dl_target: float = 0.0
    ul_target: float = 0.0


@dataclass(frozen=True, slots=True)
class TorrentChanges:
    """Torrent rows changed after a revision: new ones in full, changed ones partially."""

    upserts: dict[str, dict[str, Any]]
    removed: list[str]


@dataclass(frozen=True, slots=True)
class TrackerChanges:
    """Tracker URLs whose torrent list changed after a revision, with their full new lists."""

    changed: dict[str, list[str]]
    removed: list[str]


class Library:
    """N torrents, categories, tags, trackers and server_state of one simulated qBittorrent."""

    def __init__(
        self,
        *,
        torrents: int = 1000,
        dialect: Dialect | str = "4",
        seed: int = 0,
        change_fraction: float = 0.01,
        add_remove_rate: float | None = None,
        now: float = DEFAULT_EPOCH,
    ) -> None:
        if dialect not in ("4", "5"):
            raise ValueError(f"dialect must be '4' or '5', not {dialect!r}")
        if not 0.0 <= change_fraction <= 1.0:
            raise ValueError("change_fraction must be within [0, 1]")
        self.dialect: Dialect = "4" if dialect == "4" else "5"
        self.change_fraction = change_fraction
        #: Expected torrent additions per tick, each paired with a removal so the size stays near N.
        #: Kept independent of N: each one resends the full hash list of every tracker URL it uses.
        self.add_remove_rate = 5 * change_fraction if add_remove_rate is None else add_remove_rate
        self.now = float(now)
        self._rng = random.Random(seed)
        self._rev = 0
        self._torrents: dict[str, _Torrent] = {}
        # Hash list for O(1) random picks; ``_index`` maps a hash to its slot (swap-remove on delete).
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._log = ChangeLog()
        self._tracker_log = ChangeLog()
        self._trackers: dict[str, dict[str, None]] = {}
        self._categories: dict[str, dict[str, Any]] = {}
        self._tags: dict[str, None] = {}
        self._queue_next = 1
        self._dl_total = 0
        self._ul_total = 0
        self._server_state = _initial_server_state()
        self._paused_word = "paused" if self.dialect == "4" else "stopped"
        if torrents:
            # An empty library is a fresh qBittorrent: no categories, no tags.
            for name in _CATEGORIES:
                self._categories[name] = {"name": name, "savePath": self._category_path(name)}
            for tag in _TAGS:
                self._tags[tag] = None
        for _ in range(torrents):
            self._add_generated(initial=True)
        self._refresh_server_state()

    # ------------------------------------------------------------------ reading

    @property
    def revision(self) -> int:
        """Bumped by every mutating call; maindata snapshots remember it."""
        return self._rev

    def __len__(self) -> int:
        return len(self._torrents)

    def __contains__(self, infohash: str) -> bool:
        return infohash in self._torrents

    def hashes(self) -> list[str]:
        return list(self._torrents)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Hash -> live row. Encode before the library changes again."""
        return {h: t.row for h, t in self._torrents.items()}

    def row(self, infohash: str) -> dict[str, Any]:
        return self._torrents[infohash].row

    @property
    def categories(self) -> Mapping[str, Mapping[str, Any]]:
        return self._categories

    @property
    def tags(self) -> list[str]:
        return list(self._tags)

    @property
    def server_state(self) -> Mapping[str, Any]:
        return self._server_state

    def trackers(self) -> dict[str, list[str]]:
        return {url: list(hashes) for url, hashes in self._trackers.items()}

    def torrent_trackers(self, infohash: str) -> list[str]:
        return list(self._torrents[infohash].trackers)

    def torrent_changes_since(self, rev: int) -> TorrentChanges:
        upserts: dict[str, dict[str, Any]] = {}
        for h in self._log.touched_since(rev):
            t = self._torrents[h]
            if self._log.added_rev(h) > rev:
                upserts[h] = t.row
            else:
                row = t.row
                upserts[h] = {k: row[k] for k, r in t.field_rev.items() if r > rev}
        return TorrentChanges(upserts=upserts, removed=self._log.removed_since(rev))

    def tracker_changes_since(self, rev: int) -> TrackerChanges:
        changed = {url: list(self._trackers[url]) for url in self._tracker_log.touched_since(rev)}
        return TrackerChanges(changed=changed, removed=self._tracker_log.removed_since(rev))

    def forget_before(self, rev: int) -> None:
        """No client holds a snapshot older than ``rev``: removal records up to it can go."""
        self._log.forget_removed_up_to(rev)
        self._tracker_log.forget_removed_up_to(rev)

    # ------------------------------------------------------------------ actions

    def add_torrent(
        self,
        *,
        infohash: str,
        name: str,
        size: int,
        trackers: Sequence[str] = (),
        category: str = "",
        tags: Iterable[str] = (),
        paused: bool = False,
        save_path: str | None = None,
        has_metadata: bool = True,
    ) -> bool:
        """Add one torrent as ``torrents/add`` does; False if it is already there (qBittorrent's ``Fails.``)."""
        infohash = infohash.lower()
        if infohash in self._torrents:
            return False
        self._bump()
        if category:
            self._ensure_category(category)
        ordered = [t for t in (s.strip() for s in tags) if t]
        for tag in ordered:
            self._tags.setdefault(tag, None)
        tag_set = set(ordered)
        self._insert(
            infohash=infohash,
            name=name,
            size=size,
            trackers=list(dict.fromkeys(trackers)),
            category=category,
            tags=tag_set,
            paused=paused,
            save_path=save_path,
            has_metadata=has_metadata,
            progress=0.0,
            added_on=int(self.now),
        )
        return True

    def add_generated(
        self, count: int, *, paused: bool = False, category: str | None = None, tags: Sequence[str] | None = None
    ) -> list[str]:
        """Add ``count`` made-up torrents (new, 0 %); returns their hashes."""
        self._bump()
        out = []
        for _ in range(count):
            out.append(self._add_generated(initial=False, paused=paused, category=category, tags=tags))
        return out

    def delete(self, hashes: Iterable[str]) -> int:
        self._bump()
        n = 0
        for h in hashes:
            if h in self._torrents:
                self._remove(h)
                n += 1
        return n

    def pause(self, hashes: Iterable[str]) -> None:
        """``torrents/pause`` (4.x) and ``torrents/stop`` (5.x)."""
        self._bump()
        for t in self._pick(hashes):
            if not t.paused:
                self._advance(t)
                t.paused = True
                t.queued = False
                self._set_speeds(t, 0, 0)
                self._set(t, "num_seeds", 0)
                self._set(t, "num_leechs", 0)
                self._set(t, "force_start", False)
                self._update_state(t)

    def resume(self, hashes: Iterable[str]) -> None:
        """``torrents/resume`` (4.x) and ``torrents/start`` (5.x)."""
        self._bump()
        for t in self._pick(hashes):
            if t.paused:
                t.paused = False
                t.updated_at = self.now
                self._update_state(t)

    def set_category(self, hashes: Iterable[str], category: str) -> None:
        if category and category not in self._categories:
            raise ActionRejected(409, "Incorrect category name")
        self._bump()
        for t in self._pick(hashes):
            self._set(t, "category", category)

    def create_category(self, name: str, save_path: str = "") -> None:
        if not _valid_category(name) or name in self._categories:
            raise ActionRejected(409, "Unable to create category")
        self._bump()
        self._categories[name] = {"name": name, "savePath": save_path}

    def edit_category(self, name: str, save_path: str) -> None:
        if name not in self._categories:
            raise ActionRejected(409, "Unable to edit category")
        self._bump()
        self._categories[name] = {**self._categories[name], "savePath": save_path}

    def remove_categories(self, names: Iterable[str]) -> None:
        self._bump()
        gone = {n for n in names if self._categories.pop(n, None) is not None}
        if gone:
            for t in self._torrents.values():
                if t.row["category"] in gone:
                    self._set(t, "category", "")

    def create_tags(self, tags: Iterable[str]) -> None:
        self._bump()
        for tag in tags:
            if tag.strip():
                self._tags.setdefault(tag.strip(), None)

    def delete_tags(self, tags: Iterable[str]) -> None:
        self._bump()
        gone = {t for t in tags if t in self._tags}
        for tag in gone:
            del self._tags[tag]
        if gone:
            for t in self._torrents.values():
                if t.tags & gone:
                    t.tags -= gone
                    self._set(t, "tags", _join_tags(t.tags))

    def add_tags(self, hashes: Iterable[str], tags: Iterable[str]) -> None:
        self._bump()
        ordered = [t.strip() for t in tags if t.strip()]
        for tag in ordered:
            self._tags.setdefault(tag, None)
        new = set(ordered)
        for t in self._pick(hashes):
            if not new <= t.tags:
                t.tags |= new
                self._set(t, "tags", _join_tags(t.tags))

    def remove_tags(self, hashes: Iterable[str], tags: Iterable[str]) -> None:
        """Untag; with no tags given, clear every tag of those torrents (as qBittorrent does)."""
        self._bump()
        gone = {t.strip() for t in tags if t.strip()}
        for t in self._pick(hashes):
            if t.tags and (not gone or t.tags & gone):
                t.tags = t.tags - gone if gone else set()
                self._set(t, "tags", _join_tags(t.tags))

    def rename(self, infohash: str, name: str) -> None:
        t = self._torrents.get(infohash.lower())
        if t is None:
            raise ActionRejected(404, "Not Found")
        if not name.strip():
            raise ActionRejected(409, "Incorrect torrent name")
        self._bump()
        self._set(t, "name", name)

    def set_server_state(self, **fields: Any) -> None:
        """Direct control for tests (e.g. ``dl_rate_limit``)."""
        self._bump()
        self._server_state.update(fields)

    # ------------------------------------------------------------------ life

    def tick(self, dt: float) -> None:
        """Advance the clock by ``dt`` seconds and change about ``change_fraction`` of the rows."""
        self._bump()
        self.now += dt
        rng = self._rng
        n = len(self._order)
        if n and self.change_fraction > 0:
            picks = _stochastic_round(rng, n * self.change_fraction)
            for i in rng.sample(range(n), min(picks, n)):
                self._evolve(self._torrents[self._order[i]], rng)
            for _ in range(_stochastic_round(rng, self.add_remove_rate)):
                self._remove(self._order[rng.randrange(len(self._order))])
                self._add_generated(initial=False)
            if rng.random() < 0.002:
                self._category_churn(rng)
        self._refresh_server_state()

    # ------------------------------------------------------------------ internals

    def _bump(self) -> None:
        self._rev += 1

    def _pick(self, hashes: Iterable[str]) -> list[_Torrent]:
        out = []
        for h in hashes:
            t = self._torrents.get(h.lower())
            if t is not None:
                out.append(t)
        return out

    def _set(self, t: _Torrent, key: str, value: Any) -> None:
        row = t.row
        if row[key] != value or type(row[key]) is not type(value):
            row[key] = value
            t.field_rev[key] = self._rev
            self._log.touch(t.hash, self._rev)

    def _set_speeds(self, t: _Torrent, dl: int, ul: int) -> None:
        self._dl_total += dl - t.row["dlspeed"]
        self._ul_total += ul - t.row["upspeed"]
        self._set(t, "dlspeed", dl)
        self._set(t, "upspeed", ul)

    def _category_path(self, name: str) -> str:
        return "" if len(name) % 3 else f"/data/{name}"

    def _ensure_category(self, name: str) -> None:
        if name not in self._categories:
            self._categories[name] = {"name": name, "savePath": ""}

    def _insert(
        self,
        *,
        infohash: str,
        name: str,
        size: int,
        trackers: list[str],
        category: str,
        tags: set[str],
        paused: bool,
        save_path: str | None,
        has_metadata: bool,
        progress: float,
        added_on: int,
    ) -> _Torrent:
        rev = self._rev
        save = save_path or DEFAULT_SAVE_PATH
        complete = progress >= 1.0
        completed = size if complete else int(size * progress)
        magnet = f"magnet:?xt=urn:btih:{infohash}&dn={_escape(name)}" + "".join(
            f"&tr={_escape(url)}" for url in trackers
        )
        priority = 0
        if not complete:
            priority = self._queue_next
            self._queue_next += 1
        row: dict[str, Any] = {
            "added_on": added_on,
            "amount_left": size - completed,
            "auto_tmm": False,
            "availability": 0,
            "category": category,
            "completed": completed,
            "completion_on": added_on + 3600 if complete else 0,
            "content_path": f"{save}/{name}" if has_metadata else "",
            "dl_limit": 0,
            "dlspeed": 0,
            "download_path": "",
            "downloaded": completed,
            "downloaded_session": 0,
            "eta": MAX_ETA,
            "f_l_piece_prio": False,
            "force_start": False,
            "infohash_v1": infohash,
            "infohash_v2": "",
            "last_activity": added_on,
            "magnet_uri": magnet,
            "max_ratio": -1,
            "max_seeding_time": -1,
            "name": name,
            "num_complete": 0,
            "num_incomplete": 0,
            "num_leechs": 0,
            "num_seeds": 0,
            "priority": priority,
            "progress": 1 if complete else progress,
            "ratio": 0,
            "ratio_limit": -2,
            "save_path": save,
            "seeding_time": 0,
            "seeding_time_limit": -2,
            "seen_complete": added_on + 3600 if complete else 0,
            "seq_dl": False,
            "size": size,
            "state": "",
            "super_seeding": False,
            "tags": _join_tags(tags),
            "time_active": 0,
            "total_size": size if has_metadata else -1,
            "tracker": "",
            "trackers_count": len(trackers),
            "up_limit": 0,
            "uploaded": 0,
            "uploaded_session": 0,
            "upspeed": 0,
        }
        if self.dialect == "5":
            row.update(
                comment="",
                has_metadata=has_metadata,
                inactive_seeding_time_limit=-2,
                max_inactive_seeding_time=-1,
                popularity=0,
                private=False,
                reannounce=0,
                root_path=row["content_path"],
            )
        t = _Torrent(hash=infohash, row=row, trackers=trackers, tags=tags, paused=paused, has_metadata=has_metadata)
        t.updated_at = self.now
        self._torrents[infohash] = t
        self._index[infohash] = len(self._order)
        self._order.append(infohash)
        self._log.add(infohash, rev)
        for url in trackers:
            self._tracker_add(url, infohash)
        row["state"] = self._state_of(t)
        return t

    def _remove(self, infohash: str) -> None:
        t = self._torrents.pop(infohash)
        self._dl_total -= t.row["dlspeed"]
        self._ul_total -= t.row["upspeed"]
        slot = self._index.pop(infohash)
        last = self._order.pop()
        if last != infohash:
            self._order[slot] = last
            self._index[last] = slot
        self._log.remove(infohash, self._rev)
        for url in t.trackers:
            users = self._trackers[url]
            del users[infohash]
            if users:
                self._tracker_log.touch(url, self._rev)
            else:
                del self._trackers[url]
                self._tracker_log.remove(url, self._rev)

    def _tracker_add(self, url: str, infohash: str) -> None:
        users = self._trackers.get(url)
        if users is None:
            self._trackers[url] = {infohash: None}
            self._tracker_log.add(url, self._rev)
        else:
            users[infohash] = None
            self._tracker_log.touch(url, self._rev)

    def _new_hash(self) -> str:
        while True:
            h = f"{self._rng.getrandbits(160):040x}"
            if h not in self._torrents:
                return h

    def _add_generated(
        self,
        *,
        initial: bool,
        paused: bool = False,
        category: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> str:
        rng = self._rng
        name, size = _make_name(rng)
        if category is None:
            category = rng.choice(_CATEGORIES) if rng.random() < 0.85 else ""
        else:
            self._ensure_category(category)
        if tags is None:
            tag_set = set(rng.sample(_TAGS, rng.choice((0, 0, 1, 1, 2, 3))))
        else:
            for tag in tags:
                if tag:
                    self._tags.setdefault(tag, None)
            tag_set = {t for t in tags if t}
        trackers = rng.sample(_TRACKERS, rng.choice((0, 1, 1, 2, 3)))
        roll = rng.random()
        if initial:
            # A library that has been running for a while: mostly seeding, some downloading.
            progress = 1.0 if roll < 0.75 else round(rng.random(), 4)
            paused = rng.random() < 0.1
            added_on = int(self.now) - rng.randrange(60, 3 * 365 * 86400)
        else:
            progress = 0.0
            added_on = int(self.now)
        save_path = f"/data/{category}" if category and rng.random() < 0.5 else None
        t = self._insert(
            infohash=self._new_hash(),
            name=name,
            size=size,
            trackers=trackers,
            category=category,
            tags=tag_set,
            paused=paused,
            save_path=save_path,
            has_metadata=True,
            progress=progress,
            added_on=added_on,
        )
        if initial:
            self._age(t, rng)
        elif not paused:
            self._pick_targets(t, rng)
            self._apply_activity(t, rng)
            self._update_state(t)
        return t.hash

    def _age(self, t: _Torrent, rng: random.Random) -> None:
        """Give an initial torrent a plausible history and current activity."""
        row = t.row
        age = int(self.now) - row["added_on"]
        uploaded = int(row["size"] * rng.random() * rng.choice((0.1, 0.5, 1, 3)))
        row["uploaded"] = uploaded
        row["ratio"] = _ratio(uploaded, row["downloaded"])
        row["time_active"] = rng.randrange(0, max(1, age))
        row["last_activity"] = int(self.now) - rng.randrange(0, 7 * 86400)
        row["num_complete"] = rng.randrange(0, 500)
        row["num_incomplete"] = rng.randrange(0, 60)
        if row["progress"] == 1:
            row["seeding_time"] = row["time_active"] // 2
            row["completion_on"] = min(int(self.now), row["added_on"] + rng.randrange(60, 86400))
            row["seen_complete"] = int(self.now) - rng.randrange(0, 86400)
        if not t.paused:
            t.queued = row["progress"] < 1 and rng.random() < 0.1
            self._pick_targets(t, rng)
            self._apply_activity(t, rng)
        row["state"] = self._state_of(t)

    def _pick_targets(self, t: _Torrent, rng: random.Random) -> None:
        complete = t.row["progress"] >= 1
        t.dl_target = 0.0 if complete or rng.random() < 0.3 else rng.lognormvariate(13.0, 1.2)
        t.ul_target = 0.0 if rng.random() < (0.8 if complete else 0.5) else rng.lognormvariate(11.5, 1.3)

    def _apply_activity(self, t: _Torrent, rng: random.Random) -> None:
        """Set speeds and peer counts around the torrent's targets (jitter of ±30 %)."""
        if t.paused or t.queued:
            self._set_speeds(t, 0, 0)
            return
        dl = int(t.dl_target * rng.uniform(0.7, 1.3)) if t.row["progress"] < 1 else 0
        ul = int(t.ul_target * rng.uniform(0.7, 1.3))
        self._set_speeds(t, dl, ul)
        self._set(t, "num_seeds", rng.randrange(1, 40) if dl else 0)
        self._set(t, "num_leechs", rng.randrange(1, 20) if ul else 0)
        self._set(t, "availability", round(rng.uniform(0.5, 20.0), 3) if t.row["progress"] < 1 else -1)
        left = t.row["amount_left"]
        self._set(t, "eta", min(MAX_ETA, math.ceil(left / dl)) if dl else MAX_ETA)
        if t.trackers:
            self._set(t, "tracker", t.trackers[0])

    def _advance(self, t: _Torrent) -> None:
        """Account the transfer since the row's last update at its current speeds."""
        elapsed = max(0.0, self.now - t.updated_at)
        t.updated_at = self.now
        if elapsed <= 0 or t.paused:
            return
        row = t.row
        self._set(t, "time_active", row["time_active"] + int(elapsed))
        if row["progress"] >= 1:
            self._set(t, "seeding_time", row["seeding_time"] + int(elapsed))
        got = min(int(row["dlspeed"] * elapsed), row["amount_left"])
        sent = int(row["upspeed"] * elapsed)
        if got:
            self._set(t, "downloaded", row["downloaded"] + got)
            self._set(t, "downloaded_session", row["downloaded_session"] + got)
            completed = row["completed"] + got
            self._set(t, "completed", completed)
            self._set(t, "amount_left", row["size"] - completed)
            self._set(t, "progress", round(completed / row["size"], 6) if completed < row["size"] else 1)
            self._server_state["alltime_dl"] += got
            self._server_state["dl_info_data"] += got
        if sent:
            self._set(t, "uploaded", row["uploaded"] + sent)
            self._set(t, "uploaded_session", row["uploaded_session"] + sent)
            self._server_state["alltime_ul"] += sent
            self._server_state["up_info_data"] += sent
        if got or sent:
            self._set(t, "ratio", _ratio(row["uploaded"], row["downloaded"]))
            # qBittorrent only reports last_activity moves of 15 s or more.
            if self.now - row["last_activity"] >= 15:
                self._set(t, "last_activity", int(self.now))
        if row["progress"] >= 1 and row["completion_on"] == 0:
            self._complete(t)

    def _complete(self, t: _Torrent) -> None:
        now = int(self.now)
        self._set(t, "completion_on", now)
        self._set(t, "seen_complete", now)
        self._set(t, "priority", 0)
        self._set(t, "eta", MAX_ETA)
        self._set(t, "availability", -1)
        t.dl_target = 0.0

    def _evolve(self, t: _Torrent, rng: random.Random) -> None:
        self._advance(t)
        roll = rng.random()
        if t.paused:
            if roll < 0.05:
                t.paused = False
                t.updated_at = self.now
                self._pick_targets(t, rng)
        elif roll < 0.01:
            t.paused = True
            t.queued = False
            self._set(t, "num_seeds", 0)
            self._set(t, "num_leechs", 0)
        elif t.queued:
            t.queued = roll > 0.2
        elif roll < 0.15:
            self._pick_targets(t, rng)
        if not t.paused:
            self._apply_activity(t, rng)
        else:
            self._set_speeds(t, 0, 0)
        if roll > 0.97:
            self._tag_churn(t, rng)
        self._update_state(t)

    def _tag_churn(self, t: _Torrent, rng: random.Random) -> None:
        tags = list(self._tags)
        if rng.random() < 0.5 and tags:
            t.tags = t.tags | {rng.choice(tags)}
        elif t.tags:
            t.tags = t.tags - {rng.choice(sorted(t.tags))}
        self._set(t, "tags", _join_tags(t.tags))
        if rng.random() < 0.3:
            self._set(t, "category", rng.choice(list(self._categories)))

    def _category_churn(self, rng: random.Random) -> None:
        name = f"{rng.choice(_CATEGORIES).split('/')[0]}/{rng.choice(_WORDS)}"
        if name in self._categories:
            self.remove_categories([name])
        else:
            self._categories[name] = {"name": name, "savePath": ""}

    def _state_of(self, t: _Torrent) -> str:
        row = t.row
        up = row["progress"] >= 1
        if t.paused:
            return f"{self._paused_word}{'UP' if up else 'DL'}"
        if not t.has_metadata:
            return "metaDL"
        if t.queued and not up:
            return "queuedDL"
        if up:
            return "uploading" if row["upspeed"] else "stalledUP"
        return "downloading" if row["dlspeed"] else "stalledDL"

    def _update_state(self, t: _Torrent) -> None:
        self._set(t, "state", self._state_of(t))

    def _refresh_server_state(self) -> None:
        ss = self._server_state
        ss["dl_info_speed"] = self._dl_total
        ss["up_info_speed"] = self._ul_total
        ss["total_peer_connections"] = min(500, (self._dl_total + self._ul_total) // 50_000)
        dl = ss["alltime_dl"]
        ss["global_ratio"] = f"{ss['alltime_ul'] / dl:.2f}" if dl else "-"


def _initial_server_state() -> dict[str, Any]:
    return {
        "alltime_dl": 7_412_345_678_901,
        "alltime_ul": 15_234_567_890_123,
        "average_time_queue": 0,
        "connection_status": "connected",
        "dht_nodes": 312,
        "dl_info_data": 0,
        "dl_info_speed": 0,
        "dl_rate_limit": 0,
        "free_space_on_disk": 2_345_678_901_234,
        "global_ratio": "-",
        "queued_io_jobs": 0,
        "queueing": True,
        "read_cache_hits": "0",
        "read_cache_overload": "0",
        "refresh_interval": 1500,
        "total_buffers_size": 0,
        "total_peer_connections": 0,
        "total_queued_size": 0,
        "total_wasted_session": 0,
        "up_info_data": 0,
        "up_info_speed": 0,
        "up_rate_limit": 0,
        "use_alt_speed_limits": False,
        "write_cache_overload": "0",
    }


def _escape(text: str) -> str:
    # As libtorrent's escape_string: "-_!.~*()" and alphanumerics stay, the rest is %-escaped in lowercase hex.
    if text.isascii():
        return text.translate(_ASCII_ESCAPES)  # the fast path: building 100k rows calls this ~250k times
    return _ESCAPE.sub(lambda m: m.group().lower(), quote(text, safe="!*()"))


def _join_tags(tags: Iterable[str]) -> str:
    return ", ".join(sorted(tags, key=str.casefold))


def _ratio(uploaded: int, downloaded: int) -> float | int:
    if downloaded <= 0:
        return 0 if uploaded == 0 else -1
    return round(uploaded / downloaded, 4)


def _valid_category(name: str) -> bool:
    # qBittorrent rejects empty names, empty path components and leading/trailing slashes.
    return bool(name) and not name.startswith("/") and not name.endswith("/") and "//" not in name


def _stochastic_round(rng: random.Random, x: float) -> int:
    whole = int(x)
    return whole + (1 if rng.random() < x - whole else 0)


def _make_name(rng: random.Random) -> tuple[str, int]:
    kind = rng.random()
    w = rng.choice
    if kind < 0.35:
        name = (
            f"{w(_WORDS).title()}.{w(_WORDS).title()}.S{rng.randrange(1, 12):02d}E{rng.randrange(1, 24):02d}"
            f".{w(('720p', '1080p', '2160p'))}.WEB.{w(('h264', 'x265'))}-{w(('NTb', 'FLUX', 'GRP', 'EDITH'))}"
        )
        size = rng.randrange(300 << 20, 6 << 30)
    elif kind < 0.6:
        name = (
            f"{w(_WORDS).title()} {w(_WORDS).title()} ({rng.randrange(1960, 2026)}) "
            f"[{w(('1080p', '2160p'))}] [{w(('BluRay', 'WEBRip'))}]"
        )
        size = rng.randrange(1 << 30, 60 << 30)
    elif kind < 0.75:
        name = f"{w(_DISTROS)}-{rng.randrange(8, 42)}.{rng.randrange(0, 10)}-{w(('amd64', 'x86_64', 'arm64'))}.iso"
        size = rng.randrange(400 << 20, 5 << 30)
    elif kind < 0.9:
        name = f"{w(_WORDS).title()} - {w(_WORDS).title()} ({rng.randrange(1970, 2026)}) [FLAC]"
        size = rng.randrange(200 << 20, 2 << 30)
    else:
        suffix = "".join(rng.choices(string.ascii_lowercase + string.digits, k=6))
        name = f"{w(_WORDS)}_{w(_WORDS)}_{suffix}"
        size = rng.randrange(1 << 20, 20 << 30)
    return name, size
