"""The view engine: one TorrentResponse (protocol section 8) per view per tick, pure and synchronous.

Theory of operation. Views are recomputed on every tick of their instances, but a tick usually
replaces a few percent of the rows (the merger builds a new row object only for rows that
changed, and never mutates a published one). The engine therefore keeps two layers of caches:

- per instance (:class:`_Instance`): the last snapshot seen, a short history of which hashes
  each new snapshot touched (found by row *identity*, once per snapshot whoever asks first),
  the whole-library counts kept up to date by subtracting old rows and adding new ones, the
  tracker domains of each hash (recomputed only when the ``trackers`` map object changes), and
  the page-row dicts (a row without ``magnet_uri``), reused while the row object is the same;
- per view *query* (:class:`_View`): the options minus page and limit, plus the contributing
  members. It holds the filtered, sorted entry list and the running stats of the filtered set.
  Views that differ only by page share it. On a tick it replays only the touched hashes:
  remove the old entry (bisect), re-test the new row, insert its entry (bisect). When too much
  changed, or the instance's filter context changed (trackers map, subcategory mode), it
  recomputes from scratch.

Nothing here does I/O or knows about Trio; the returned dict is shared by every subscriber of a
group and is never mutated after it is returned.
"""

from __future__ import annotations

import collections
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter
from typing import Any

from qsse.qbt.maindata import MainData
from qsse.qbt.status import InstanceState
from qsse.timefmt import rfc3339
from qsse.views import sorting
from qsse.views.filters import (
    Predicate,
    compile_filters,
    domains_by_hash,
    plan_columns,
    row_domains,
    uses_subcategories,
)
from qsse.views.options import Filters, ViewOptions
from qsse.views.rows import CHECKING, DOWNLOADING, ERRORED, PAUSED, SEEDING, STATUS_NAMES, parse_tags, status_names
from qsse.views.search import SearchText, compile_search, search_text, search_texts

Row = Mapping[str, Any]
ExprFn = Callable[[Row], bool]

#: How long after a successful sync the data still counts as fresh in ``cacheMetadata``.
FRESH_WINDOW = 10.0
#: Snapshots of touched hashes kept per instance, so a view that missed a few ticks still
#: updates incrementally.
HISTORY = 16
#: Above this share of touched rows a view recomputes from scratch instead of replaying.
REPLAY_LIMIT = 0.25
MAX_VIEWS = 512

_STATS_KEYS = (
    "total", "downloading", "seeding", "paused", "error", "checking", "totalDownloadSpeed", "totalUploadSpeed",
    "totalDownloadData", "totalUploadData", "totalSize", "totalRemainingSize", "totalSeedingSize",
)  # fmt: skip


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- stats over a filtered set --------------------------------------------------------------

_group_memo: dict[str, tuple[int, int, int, int, int]] = {}


def _groups(state: str) -> tuple[int, int, int, int, int]:
    g = _group_memo.get(state)
    if g is None:
        g = _group_memo[state] = (
            int(state in DOWNLOADING),
            int(state in SEEDING),
            int(state in PAUSED),
            int(state in ERRORED),
            int(state in CHECKING),
        )
    return g


def _contribution(row: Row) -> tuple[int, ...]:
    """What one row adds to the stats accumulators (everything but ``total``)."""
    d, s, p, e, c = _groups(_str(row.get("state")))
    size = _int(row.get("size"))
    return (
        d,
        s,
        p,
        e,
        c,
        _int(row.get("dlspeed")),
        _int(row.get("upspeed")),
        _int(row.get("downloaded_session")),
        _int(row.get("uploaded_session")),
        size,
        _int(row.get("amount_left")),
        size if s else 0,
    )


_ZERO_STATS = (0,) * 12


_STATS_FIELDS = ("state", "dlspeed", "upspeed", "downloaded_session", "uploaded_session", "size", "amount_left")


def _columns(rows: list[Row], fields: Sequence[str]) -> list[list[Any]]:
    """One list per field, read in C (``KeyError`` when a row lacks one)."""
    return [list(map(itemgetter(f), rows)) for f in fields]


def _bulk_stats(rows: Iterable[Row]) -> list[int]:
    """The stats accumulators of many rows at once: column sums in C when the rows are
    well-formed (every field present, integers), row by row otherwise."""
    rows = list(rows)
    try:
        states, dl, up, dl_data, up_data, sizes, left = _columns(rows, _STATS_FIELDS)
    except KeyError:
        return _slow_stats(rows)
    try:
        sums = [sum(dl), sum(up), sum(dl_data), sum(up_data), sum(sizes), sum(left)]
    except TypeError:  # a null or a string where a number belongs
        return _slow_stats(rows)
    if not all(type(v) is int for v in sums) or not all(type(v) is str for v in states):
        return _slow_stats(rows)
    groups = [0, 0, 0, 0, 0]
    for state, n in Counter(states).items():
        for i, flag in enumerate(_groups(state)):
            groups[i] += flag * n
    seeding_size = sum([size for state, size in zip(states, sizes, strict=True) if state in SEEDING])
    return [*groups, *sums, seeding_size]


def _slow_stats(rows: Iterable[Row]) -> list[int]:
    acc = list(_ZERO_STATS)
    for contribution in map(_contribution, rows):
        for i, v in enumerate(contribution):
            acc[i] += v
    return acc


# -- whole-library counts ---------------------------------------------------------------------


_COUNT_FIELDS = ("state", "progress", "category", "tags", "size")


class _Columns:
    """One snapshot's rows as columns (read in C), for full passes: counting and the first
    filtering of a new view. ``ok`` is False when some row is malformed (a missing field, a
    non-string state, category or tags); full passes then go row by row."""

    __slots__ = ("categories", "complete", "distinct", "hashes", "ok", "rows", "sizes", "states", "tags")

    def __init__(self, torrents: Mapping[str, Row]) -> None:
        self.hashes = list(torrents)
        self.rows = list(torrents.values())
        self.distinct: dict[str, set[str]] = {}
        try:
            self.states, progress, self.categories, self.tags, self.sizes = _columns(self.rows, _COUNT_FIELDS)
            for name, column in (("state", self.states), ("category", self.categories), ("tags", self.tags)):
                values = self.distinct[name] = set(column)
                if not all(type(v) is str for v in values):
                    raise TypeError("non-string value")
            self.complete = list(map(operator.ge, progress, repeat(1)))
            self.ok = True
        except (KeyError, TypeError):
            self.ok = False


class _Counts:
    """Whole-library counts of one instance, kept by the distinct *values* they derive from
    (states, category strings, tags strings, domain tuples): a library has thousands of rows
    but only dozens of each, so a row costs a few counter updates and expanding the values to
    names happens once per snapshot. Counting the columns with ``Counter`` keeps the full pass
    in C."""

    __slots__ = (
        "by_category",
        "by_domains",
        "by_state",
        "by_tags",
        "category_size",
        "complete_by_state",
        "tags_size",
        "total",
    )

    def __init__(self) -> None:
        self.by_state: Counter[str] = Counter()
        self.complete_by_state: Counter[str] = Counter()
        self.by_category: Counter[str] = Counter()
        self.category_size: Counter[str] = Counter()
        self.by_tags: Counter[str] = Counter()
        self.tags_size: Counter[str] = Counter()
        self.by_domains: Counter[tuple[str, ...]] = Counter()
        self.total = 0

    def recount(self, torrents: Mapping[str, Row], domains: Mapping[str, tuple[str, ...]], cols: _Columns) -> None:
        rows = cols.rows
        if cols.ok:
            states, complete, categories, tags, sizes = (
                cols.states,
                cols.complete,
                cols.categories,
                cols.tags,
                cols.sizes,
            )
        else:  # malformed rows: normalise them one by one
            states = [_str(row.get("state")) for row in rows]
            complete = [_complete(row) for row in rows]
            categories = [_str(row.get("category")) for row in rows]
            tags = [_str(row.get("tags")) for row in rows]
            sizes = [row.get("size") for row in rows]
        self.by_state = Counter(states)
        self.complete_by_state = Counter(compress(states, complete))
        self.by_category = Counter(categories)
        self.by_tags = Counter(tags)
        self.category_size, self.tags_size = _sums(categories, tags, sizes)
        self.recount_domains(torrents, domains)
        self.total = len(rows)

    def recount_domains(self, torrents: Mapping[str, Row], domains: Mapping[str, tuple[str, ...]]) -> None:
        by_domains: Counter[tuple[str, ...] | None] = Counter(map(domains.get, torrents))
        unmapped = by_domains.pop(None, 0)
        if unmapped:
            for h in torrents.keys() - domains.keys():
                by_domains[_fallback_domains(torrents[h])] += 1
        self.by_domains = by_domains  # type: ignore[assignment]

    def add(self, h: str, row: Row, domains: Mapping[str, tuple[str, ...]] | None, sign: int) -> None:
        """Add (sign 1) or remove (-1) one row; with ``domains`` None its tracker count is left
        alone (the caller recounts domains)."""
        state = _str(row.get("state"))
        self.by_state[state] += sign
        if _complete(row):
            self.complete_by_state[state] += sign
        size = _int(row.get("size")) * sign
        category = _str(row.get("category"))
        self.by_category[category] += sign
        self.category_size[category] += size
        tags = _str(row.get("tags"))
        self.by_tags[tags] += sign
        self.tags_size[tags] += size
        if domains is not None:
            self.by_domains[domains.get(h) or _fallback_domains(row)] += sign
        self.total += sign

    def to_json(self, data: MainData) -> dict[str, Any]:
        status = dict.fromkeys(STATUS_NAMES, 0)
        for state, n in self.by_state.items():
            done = self.complete_by_state.get(state, 0)
            for count, progress in ((n - done, 0), (done, 1)):
                if count:
                    for name in status_names(state, progress):
                        if name in status:
                            status[name] += count
        categories = dict.fromkeys(data.categories, 0)
        category_sizes = dict.fromkeys(data.categories, 0)
        for category, n in self.by_category.items():
            if n:
                categories[category] = categories.get(category, 0) + n
                category_sizes[category] = category_sizes.get(category, 0) + self.category_size[category]
        tags = dict.fromkeys(data.tags, 0)
        tag_sizes = dict.fromkeys(data.tags, 0)
        for text, n in self.by_tags.items():
            if not n:
                continue
            size = self.tags_size[text]
            for tag in parse_tags(text) or ("",):
                tags[tag] = tags.get(tag, 0) + n
                tag_sizes[tag] = tag_sizes.get(tag, 0) + size
        trackers: dict[str, int] = {}
        for ds, n in self.by_domains.items():
            if n:
                for d in ds:
                    trackers[d] = trackers.get(d, 0) + n
        return {
            "status": status,
            "categories": categories,
            "categorySizes": category_sizes,
            "tags": tags,
            "tagSizes": tag_sizes,
            "trackers": dict(sorted(trackers.items())),
            "total": self.total,
        }


def _complete(row: Row) -> bool:
    progress = row.get("progress")
    return isinstance(progress, int | float) and progress >= 1


def _sums(categories: list[str], tags: list[str], sizes: list[Any]) -> tuple[Counter[str], Counter[str]]:
    """Total size per category and per tags string, in one pass."""
    by_category: dict[str, int] = {}
    by_tags: dict[str, int] = {}
    category_get, tags_get = by_category.get, by_tags.get
    for category, t, size in zip(categories, tags, sizes, strict=True):
        if type(size) is not int:
            size = _int(size)
        by_category[category] = category_get(category, 0) + size
        by_tags[t] = tags_get(t, 0) + size
    return Counter(by_category), Counter(by_tags)


def _fallback_domains(row: Row) -> tuple[str, ...]:
    return row_domains("", row, {})


def _sum_counts(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("status", "categories", "categorySizes", "tags", "tagSizes", "trackers"):
        merged: dict[str, int] = {}
        for part in parts:
            for name, n in part[key].items():
                merged[name] = merged.get(name, 0) + n
        out[key] = merged
    out["total"] = sum(part["total"] for part in parts)
    return out


def _touched(old: Mapping[str, Row], new: Mapping[str, Row]) -> frozenset[str]:
    """Hashes whose row object differs between two snapshots (added and removed included).

    The merger copies the old dict and replaces values in place, so both snapshots list their
    rows in the same order: comparing the value lists position by position (in C) flags every
    replaced row, since a new row object cannot sit where the old dict held that same object.
    A removal shifts every later position, so the flagged candidates are then checked by key:
    one torrent removed from a 50k library must not look like 25k changed rows (which made
    every view rebuild from scratch).
    """
    new_keys = list(new)
    flagged = list(compress(new_keys, map(operator.is_not, new.values(), old.values())))
    if len(new_keys) > len(old):
        flagged += new_keys[len(old) :]
    old_get = old.get
    touched = {h for h in flagged if old_get(h) is not new[h]}
    if len(new_keys) != len(old) or flagged:
        touched.update(old.keys() - new.keys())
    return frozenset(touched)


# -- per-instance cache -------------------------------------------------------------------


class _Instance:
    """What the engine derived from the snapshots of one instance."""

    def __init__(self, instance_id: int) -> None:
        self.instance_id = instance_id
        self.data: MainData | None = None
        self.gen = 0
        #: (gen, hashes touched by the step to gen; None for "everything").
        self.history: collections.deque[tuple[int, frozenset[str] | None]] = collections.deque(maxlen=HISTORY)
        self.trackers_ref: Mapping[str, Any] | None = None
        self.categories_ref: Mapping[str, Any] | None = None
        #: Bumped when the tracker domains, or the subcategory mode, change: only views that
        #: filter on trackers, or on categories, must then start over.
        self.trackers_gen = 0
        self.subcategories_gen = 0
        self.domains: dict[str, tuple[str, ...]] = {}
        self.subcategories = False
        self.counts = _Counts()
        self._counts_json: tuple[int, dict[str, Any]] | None = None
        self._tags_json: tuple[tuple[str, ...], list[str]] | None = None
        self._columns: tuple[int, _Columns] | None = None
        self.page_rows: dict[str, tuple[Row, dict[str, Any]]] = {}
        self.search_texts: dict[str, tuple[Row, SearchText]] = {}
        self.cross_rows: dict[str, tuple[Row, str, dict[str, Any]]] = {}

    def advance(self, data: MainData) -> None:
        if data is self.data:
            return
        old = self.data
        new_rows = data.torrents
        old_domains = self.domains
        trackers_changed = data.trackers is not self.trackers_ref
        if trackers_changed:
            self.trackers_ref = data.trackers
            self.domains = domains_by_hash(data.trackers)
            self.trackers_gen += 1
        if data.categories is not self.categories_ref:
            self.categories_ref = data.categories
            subcategories = uses_subcategories(data.categories)
            if subcategories != self.subcategories:
                self.subcategories = subcategories
                self.subcategories_gen += 1

        touched: frozenset[str] | None
        if old is None:
            touched = None
        elif new_rows is old.torrents:
            touched = frozenset()
        else:
            touched = _touched(old.torrents, new_rows)
        if old is None or touched is None or len(touched) > len(new_rows) * REPLAY_LIMIT:
            self.counts.recount(new_rows, self.domains, self._columns_of(data))
        else:
            # A new trackers map (qBittorrent sends one whenever a torrent's trackers change,
            # e.g. on every addition) only invalidates the tracker counts.
            before_domains = None if trackers_changed else old_domains
            after_domains = None if trackers_changed else self.domains
            for h in touched:
                before = old.torrents.get(h)
                if before is not None:
                    self.counts.add(h, before, before_domains, -1)
                after = new_rows.get(h)
                if after is not None:
                    self.counts.add(h, after, after_domains, 1)
            if trackers_changed:
                self.counts.recount_domains(new_rows, self.domains)
        if touched is None:
            self.page_rows.clear()
            self.cross_rows.clear()
            self.search_texts.clear()
        else:
            for h in touched:
                self.page_rows.pop(h, None)
                self.cross_rows.pop(h, None)
                self.search_texts.pop(h, None)
        self.gen += 1
        self.history.append((self.gen, touched))
        self.data = data

    def _columns_of(self, data: MainData) -> _Columns:
        cols = _Columns(data.torrents)
        self._columns = (self.gen + 1, cols)  # advance() is about to move to gen + 1
        return cols

    def columns(self) -> _Columns:
        assert self.data is not None
        if self._columns is None or self._columns[0] != self.gen:
            self._columns = (self.gen, _Columns(self.data.torrents))
        return self._columns[1]

    def touched_since(self, gen: int) -> set[str] | None:
        """Hashes touched after snapshot ``gen``; None when the history does not reach back."""
        if gen == self.gen:
            return set()
        if not self.history or self.history[0][0] > gen + 1:
            return None
        out: set[str] = set()
        for g, touched in self.history:
            if g > gen:
                if touched is None:
                    return None
                out |= touched
        return out

    def counts_json(self) -> dict[str, Any]:
        assert self.data is not None
        if self._counts_json is None or self._counts_json[0] != self.gen:
            self._counts_json = (self.gen, self.counts.to_json(self.data))
        return self._counts_json[1]

    def tags_json(self) -> list[str]:
        assert self.data is not None
        if self._tags_json is None or self._tags_json[0] is not self.data.tags:
            self._tags_json = (self.data.tags, list(self.data.tags))
        return self._tags_json[1]

    def prepare_search_texts(self, hashes: Sequence[str], rows: Sequence[Row]) -> None:
        """Fill the search-text cache for these rows in bulk (a new view's first pass)."""
        cache = self.search_texts
        missing = [i for i, h in enumerate(hashes) if (c := cache.get(h)) is None or c[0] is not rows[i]]
        if len(missing) < 64:
            return  # not worth a bulk pass; search_text() fills these one by one
        texts = search_texts([rows[i] for i in missing])
        for i, text in zip(missing, texts, strict=True):
            cache[hashes[i]] = (rows[i], text)

    def search_text(self, h: str, row: Row) -> SearchText:
        cached = self.search_texts.get(h)
        if cached is not None and cached[0] is row:
            return cached[1]
        text = search_text(row)
        self.search_texts[h] = (row, text)
        return text

    def page_row(self, h: str, row: Row) -> dict[str, Any]:
        cached = self.page_rows.get(h)
        if cached is not None and cached[0] is row:
            return cached[1]
        out = dict(row)
        out.pop("magnet_uri", None)
        self.page_rows[h] = (row, out)
        return out

    def cross_row(self, h: str, row: Row, name: str) -> dict[str, Any]:
        cached = self.cross_rows.get(h)
        if cached is not None and cached[0] is row and cached[1] == name:
            return cached[2]
        out = dict(row)
        out.pop("magnet_uri", None)
        out["instance_id"] = self.instance_id
        out["instance_name"] = name
        self.cross_rows[h] = (row, name, out)
        return out


# -- per-query view cache -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _QueryKey:
    members: tuple[int, ...]
    sort: str
    order: str
    search: str
    filters: Filters
    names: tuple[str, ...]


@dataclass(slots=True)
class _View:
    key: _QueryKey
    descending: bool
    make_entry: Callable[[Row, str, int], sorting.Entry]
    entries: list[sorting.Entry] = field(default_factory=list)
    #: instance id → hash → row, for every row in the filtered set.
    rows: dict[int, dict[str, Row]] = field(default_factory=dict)
    gens: dict[int, int] = field(default_factory=dict)
    contexts: dict[int, tuple[int, int]] = field(default_factory=dict)
    predicates: dict[int, Predicate | None] = field(default_factory=dict)
    stats: list[int] = field(default_factory=lambda: list(_ZERO_STATS))
    stats_gens: tuple[int, ...] = ()
    stats_json: dict[str, int] = field(default_factory=dict)


def _context(filters: Filters, inst: _Instance) -> tuple[int, int]:
    """The generations of the instance context that a view's predicate depends on."""
    return (
        inst.trackers_gen if filters.trackers or filters.exclude_trackers else 0,
        inst.subcategories_gen if filters.categories or filters.exclude_categories else 0,
    )


class ViewEngine:
    """Builds TorrentResponses; one per daemon, holding the caches of every instance and view."""

    def __init__(self, *, max_views: int = MAX_VIEWS) -> None:
        self._instances: dict[int, _Instance] = {}
        self._views: collections.OrderedDict[_QueryKey, _View] = collections.OrderedDict()
        self._max_views = max_views
        self._exprs: dict[str, ExprFn] = {}
        self._searches: dict[str, Callable[[SearchText], bool] | None] = {}
        self._agg_counts: dict[tuple[tuple[int, int], ...], dict[str, Any]] = {}

    def build(self, options: ViewOptions, states: Sequence[InstanceState], *, now: float) -> dict[str, Any]:
        """The TorrentResponse of ``options`` over ``states`` (the members, in ``instance_ids`` order)."""
        aggregated = options.aggregated
        members: list[tuple[InstanceState, _Instance]] = []
        partial = False
        for state in states:
            has_data = state.data.rid != 0 or bool(state.data.torrents)
            if aggregated and not (state.connected and has_data):
                partial = True
                continue
            inst = self._instances.get(state.instance_id)
            if inst is None:
                inst = self._instances[state.instance_id] = _Instance(state.instance_id)
            inst.advance(state.data)
            members.append((state, inst))
        if aggregated and len(members) < len(options.instance_ids):
            partial = True

        if not aggregated and not members:
            raise ValueError("a single-instance view needs the state of its instance")
        view = self._view(options, members)
        total = len(view.entries)
        offset = options.page * options.limit
        page = view.entries[offset : offset + options.limit]
        if aggregated:
            by_id = {inst.instance_id: (state, inst) for state, inst in members}
            cross = []
            for entry in page:
                h, iid = entry[3], entry[4]
                state, inst = by_id[iid]
                cross.append(inst.cross_row(h, view.rows[iid][h], state.name))
            return _without_none(self._aggregated_response(members, view, cross, total, offset, partial, now))
        state, inst = members[0]
        rows = view.rows[inst.instance_id]
        torrents = [inst.page_row(entry[3], rows[entry[3]]) for entry in page]
        data = state.data
        return _without_none(
            {
                "torrents": torrents,
                "total": total,
                "activeTaskCount": 0,
                "stats": self._stats_json(view),
                "counts": inst.counts_json(),
                "categories": data.categories,
                "tags": inst.tags_json(),
                "serverState": data.server_state,
                "appInfo": {"version": state.version, "webAPIVersion": state.webapi_version},
                "useSubcategories": inst.subcategories,
                "hasMore": offset + len(page) < total,
                "cacheMetadata": _cache_metadata([state], now),
                "isCrossInstance": False,
                "partialResults": False,
                "instanceMeta": {
                    "connected": state.connected,
                    "connectionStatus": _connection_status(state),
                },
            }
        )

    # -- pieces of the response --------------------------------------------------------------

    def _aggregated_response(
        self,
        members: list[tuple[InstanceState, _Instance]],
        view: _View,
        cross: list[dict[str, Any]],
        total: int,
        offset: int,
        partial: bool,
        now: float,
    ) -> dict[str, Any]:
        gens = tuple((inst.instance_id, inst.gen) for _, inst in members)
        counts = self._agg_counts.get(gens)
        if counts is None:
            if len(self._agg_counts) > self._max_views:
                self._agg_counts.clear()
            counts = self._agg_counts[gens] = _sum_counts([inst.counts_json() for _, inst in members])
        categories: dict[str, Any] = {}
        tags: dict[str, None] = {}
        server_state: dict[str, Any] = {}
        for state, _ in members:
            for name, category in state.data.categories.items():
                categories.setdefault(name, category)
            tags.update(dict.fromkeys(state.data.tags))
            for key, value in state.data.server_state.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    previous = server_state.get(key, 0)
                    server_state[key] = previous + value if isinstance(previous, int | float) else value
                else:
                    server_state.setdefault(key, value)
        return {
            "torrents": None,
            "cross_instance_torrents": cross,
            "total": total,
            "activeTaskCount": 0,
            "stats": self._stats_json(view),
            "counts": counts,
            "categories": categories,
            "tags": list(tags),
            "serverState": server_state,
            "useSubcategories": any(inst.subcategories for _, inst in members),
            "hasMore": offset + len(cross) < total,
            "cacheMetadata": _cache_metadata([state for state, _ in members], now),
            "isCrossInstance": True,
            "partialResults": partial,
        }

    def _stats_json(self, view: _View) -> dict[str, int]:
        gens = tuple(view.gens.values())
        if view.stats_gens != gens or not view.stats_json:
            view.stats_gens = gens
            view.stats_json = dict(zip(_STATS_KEYS, (len(view.entries), *view.stats), strict=True))
        return view.stats_json

    # -- the filtered, sorted list -------------------------------------------------------------

    def _view(self, options: ViewOptions, members: list[tuple[InstanceState, _Instance]]) -> _View:
        names = tuple(state.name for state, _ in members) if options.sort == "instance" else ()
        key = _QueryKey(
            members=tuple(sorted(inst.instance_id for _, inst in members)),
            sort=options.sort,
            order=options.order,
            search=options.search,
            filters=options.filters,
            names=names,
        )
        view = self._views.get(key)
        if view is None:
            instance_names = {state.instance_id: state.name for state, _ in members}
            view = _View(
                key=key,
                descending=options.order != "asc",
                make_entry=sorting.entry_maker(options.sort, instance_names),
            )
            self._views[key] = view
            while len(self._views) > self._max_views:
                self._views.popitem(last=False)
            self._recompute(view, members)
            return view
        self._views.move_to_end(key)
        self._update(view, members)
        return view

    def _predicate(self, view: _View, inst: _Instance) -> Predicate | None:
        filters = view.key.filters
        expr = self._expr(filters.expr) if filters.expr else None
        return compile_filters(
            filters,
            subcategories=inst.subcategories,
            domains=inst.domains,
            expr=expr,
            search=self._search_predicate(view, inst),
        )

    def _search_predicate(self, view: _View, inst: _Instance) -> Predicate | None:
        matcher = self._search(view.key.search)
        if matcher is None:
            return None
        text_of = inst.search_text
        return lambda h, row: matcher(text_of(h, row))

    def _recompute(self, view: _View, members: list[tuple[InstanceState, _Instance]]) -> None:
        entries: list[sorting.Entry] = []
        view.rows = {}
        make = view.make_entry
        stats = list(_ZERO_STATS)
        for _, inst in members:
            assert inst.data is not None
            iid = inst.instance_id
            predicate = self._predicate(view, inst)
            view.predicates[iid] = predicate
            view.gens[iid] = inst.gen
            view.contexts[iid] = _context(view.key.filters, inst)
            matched = self._full_pass(view, inst, predicate)
            view.rows[iid] = matched
            entries.extend([make(row, h, iid) for h, row in matched.items()])
            for i, v in enumerate(_bulk_stats(matched.values())):
                stats[i] += v
        sorting.sort_entries(entries, view.descending)
        view.entries = entries
        view.stats = stats
        view.stats_json = {}

    def _full_pass(self, view: _View, inst: _Instance, predicate: Predicate | None) -> dict[str, Row]:
        """The filtered rows of one instance, from scratch: the single-column filters once per
        distinct value over the columns, the rest row by row on the survivors."""
        assert inst.data is not None
        torrents = inst.data.torrents
        if predicate is None:
            return dict(torrents)
        cols = inst.columns()
        plan = (
            plan_columns(
                view.key.filters,
                subcategories=inst.subcategories,
                domains=inst.domains,
                expr=self._expr(view.key.filters.expr) if view.key.filters.expr else None,
                search=self._search_predicate(view, inst),
            )
            if cols.ok
            else None
        )
        if plan is None:
            return {h: row for h, row in torrents.items() if predicate(h, row)}
        selected: Sequence[int] = range(len(cols.hashes))
        for name, column, test in (
            ("state", cols.states, plan.state),
            ("category", cols.categories, plan.category),
            ("tags", cols.tags, plan.tags),
        ):
            if test is not None:
                allowed = {value for value in cols.distinct[name] if test(value)}
                selected = list(compress(selected, map(allowed.__contains__, map(column.__getitem__, selected))))
        hashes, rows, rest = cols.hashes, cols.rows, plan.rest
        if view.key.search:
            inst.prepare_search_texts([hashes[i] for i in selected], [rows[i] for i in selected])
        if rest is None:
            return {hashes[i]: rows[i] for i in selected}
        return {hashes[i]: rows[i] for i in selected if rest(hashes[i], rows[i])}

    def _update(self, view: _View, members: list[tuple[InstanceState, _Instance]]) -> None:
        plan: list[tuple[_Instance, set[str]]] = []
        replay = 0
        for _, inst in members:
            iid = inst.instance_id
            touched = inst.touched_since(view.gens.get(iid, -1))
            if touched is None or view.contexts.get(iid) != _context(view.key.filters, inst):
                self._recompute(view, members)
                return
            plan.append((inst, touched))
            replay += len(touched)
        if replay == 0:
            for inst, _ in plan:
                view.gens[inst.instance_id] = inst.gen
            return
        # Replaying costs per touched row; recomputing costs per row of the library.
        library = sum(len(inst.data.torrents) for inst, _ in plan if inst.data is not None)
        if replay > max(64, REPLAY_LIMIT * library):
            self._recompute(view, members)
            return
        make = view.make_entry
        descending = view.descending
        entries = view.entries
        stats = view.stats
        for inst, touched in plan:
            assert inst.data is not None
            iid = inst.instance_id
            predicate = view.predicates[iid]
            matched = view.rows[iid]
            torrents = inst.data.torrents
            for h in touched:
                old = matched.pop(h, None)
                if old is not None:
                    sorting.remove(entries, make(old, h, iid), descending)
                    for i, v in enumerate(_contribution(old)):
                        stats[i] -= v
                row = torrents.get(h)
                if row is not None and (predicate is None or predicate(h, row)):
                    matched[h] = row
                    sorting.insert(entries, make(row, h, iid), descending)
                    for i, v in enumerate(_contribution(row)):
                        stats[i] += v
            view.gens[iid] = inst.gen
        view.stats_json = {}

    def _expr(self, text: str) -> ExprFn:
        fn = self._exprs.get(text)
        if fn is None:
            from qsse.views.expr import compile_expr

            if len(self._exprs) > self._max_views:
                self._exprs.clear()
            fn = self._exprs[text] = compile_expr(text)
        return fn

    def _search(self, text: str) -> Callable[[SearchText], bool] | None:
        if text not in self._searches:
            if len(self._searches) > self._max_views:
                self._searches.clear()
            self._searches[text] = compile_search(text)
        return self._searches[text]


def _without_none(response: dict[str, Any]) -> dict[str, Any]:
    # cacheMetadata is left out (not null) while no sync has succeeded, as qui does.
    if response.get("cacheMetadata") is None:
        response.pop("cacheMetadata", None)
    return response


def _cache_metadata(states: Sequence[InstanceState], now: float) -> dict[str, Any] | None:
    successes = [s.last_success for s in states if s.last_success is not None]
    if not states or len(successes) < len(states):
        return None
    oldest = min(successes)
    age = max(now - oldest, 0.0)
    fresh = all(s.connected for s in states) and age <= FRESH_WINDOW
    polls = [s.next_poll for s in states if s.next_poll is not None]
    next_refresh = min(polls) if polls else oldest + FRESH_WINDOW
    return {
        "source": "fresh" if fresh else "cache",
        "age": int(age),
        "isStale": not fresh,
        "nextRefresh": rfc3339(next_refresh),
    }


def _connection_status(state: InstanceState) -> str:
    if not state.connected:
        return "disconnected"
    status = state.data.server_state.get("connection_status")
    return status.strip().lower() if isinstance(status, str) and status.strip() else "connected"
