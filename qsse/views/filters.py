"""The ``filters`` of a view compiled into one row predicate for one instance snapshot.

Kinds AND together, values of one list OR together (protocol section 8). Each kind memoises its
answer on the distinct values it looks at (state, category string, tags string), because a
library of 50k torrents has only dozens of those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from qsse.views.options import Filters
from qsse.views.rows import parse_tags, status_names, tracker_domain

Row = Mapping[str, Any]
Predicate = Callable[[str, Row], bool]


def uses_subcategories(categories: Iterable[str]) -> bool:
    """qBittorrent's ``use_subcategories`` is a preference we do not poll; a ``/`` in a category
    name is the visible sign that subcategories are in use."""
    return any("/" in name for name in categories)


def row_domains(h: str, row: Row, domains_by_hash: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Tracker domains of a torrent: from maindata's ``trackers`` map, else its ``tracker`` URL;
    ``("",)`` when it has none."""
    domains = domains_by_hash.get(h)
    if domains:
        return domains
    url = row.get("tracker")
    if isinstance(url, str) and url:
        return (tracker_domain(url),)
    return ("",)


def domains_by_hash(trackers: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Invert maindata's ``trackers`` map (URL → hashes) into hash → distinct tracker domains."""
    out: dict[str, tuple[str, ...]] = {}
    get = out.get
    for url, hashes in trackers.items():
        domain = tracker_domain(url)
        if not domain:
            continue
        single = (domain,)
        chunk = dict.fromkeys(hashes, single)
        if out.keys().isdisjoint(chunk):
            # The common case (one tracker per torrent so far): merge in C.
            out.update(chunk)
            continue
        for h in chunk:
            current = get(h)
            if current is None:
                out[h] = single
            elif domain not in current:
                out[h] = (*current, domain)
    return out


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _category_test(names: tuple[str, ...], subcategories: bool) -> Callable[[str], bool]:
    wanted = frozenset(names)
    prefixes = tuple(n + "/" for n in names if n) if subcategories else ()
    memo: dict[str, bool] = {}

    def test(category: str) -> bool:
        hit = memo.get(category)
        if hit is None:
            hit = memo[category] = category in wanted or (bool(prefixes) and category.startswith(prefixes))
        return hit

    return test


def _tags_test(names: tuple[str, ...]) -> Callable[[str], bool]:
    wanted = frozenset(n for n in names if n)
    untagged = "" in names
    memo: dict[str, bool] = {}

    def test(tags_text: str) -> bool:
        hit = memo.get(tags_text)
        if hit is None:
            tags = parse_tags(tags_text)
            hit = memo[tags_text] = (untagged and not tags) or not wanted.isdisjoint(tags)
        return hit

    return test


def _status_test(names: tuple[str, ...]) -> Callable[[str, float], bool]:
    wanted = frozenset(names)
    memo: dict[tuple[str, bool], bool] = {}

    def test(state: str, progress: float) -> bool:
        key = (state, progress >= 1)
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = not wanted.isdisjoint(status_names(state, progress))
        return hit

    return test


#: Bound on the value memo of one predicate; a library never has this many distinct combinations
#: of (state, complete, category, tags), but malformed data must not grow it without end.
_MEMO_LIMIT = 1 << 16


def compile_filters(
    filters: Filters,
    *,
    subcategories: bool,
    domains: Mapping[str, tuple[str, ...]],
    expr: Callable[[Row], bool] | None,
    search: Predicate | None,
) -> Predicate | None:
    """One predicate ``(hash, row) -> bool``; None when the view keeps every row.

    Status, category and tags filters depend only on (state, complete, category, tags), so
    they are answered together through one memo keyed on those four values. Cheap tests run
    first so the costly ones (``expr``, ``search``) see only survivors.
    """
    tests: list[Predicate] = []
    value_tests: list[ValueTest] = []

    for names, keep in ((filters.status, True), (filters.exclude_status, False)):
        if names:
            status_test = _status_test(names)
            value_tests.append(_on_status(status_test, keep))
    for names, keep in ((filters.categories, True), (filters.exclude_categories, False)):
        if names:
            category_test = _category_test(names, subcategories)
            value_tests.append(_on_category(category_test, keep))
    for names, keep in ((filters.tags, True), (filters.exclude_tags, False)):
        if names:
            tags_test = _tags_test(names)
            value_tests.append(_on_tags(tags_test, keep))
    if value_tests:
        fields = tuple(
            name
            for name, used in (
                ("state", bool(filters.status or filters.exclude_status)),
                ("category", bool(filters.categories or filters.exclude_categories)),
                ("tags", bool(filters.tags or filters.exclude_tags)),
            )
            if used
        )
        # Only "completed" looks at progress; any other status name depends on the state alone.
        completion = "completed" in filters.status or "completed" in filters.exclude_status
        tests.append(_by_values(tuple(value_tests), fields, completion))

    if filters.hashes:
        hashes = frozenset(filters.hashes)

        def by_hash(h: str, row: Row) -> bool:
            return (
                h.lower() in hashes
                or _str(row.get("infohash_v1")).lower() in hashes
                or _str(row.get("infohash_v2")).lower() in hashes
            )

        tests.append(by_hash)

    for names, keep in ((filters.trackers, True), (filters.exclude_trackers, False)):
        if names:
            tests.append(_by_tracker(frozenset(n.lower() for n in names), keep, domains))

    if expr is not None:
        expr_test = expr
        tests.append(lambda h, row: bool(expr_test(row)))
    if search is not None:
        tests.append(search)

    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda h, row: first(h, row) and second(h, row)
    chain = tuple(tests)
    return lambda h, row: all(t(h, row) for t in chain)


ValueTest = Callable[[str, float, str, str], bool]


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """The filters split for a full pass over an instance's columns: a keep-test per column
    value (answered once per *distinct* value), then a row predicate for the rest."""

    state: Callable[[str], bool] | None
    category: Callable[[str], bool] | None
    tags: Callable[[str], bool] | None
    rest: Predicate | None


def plan_columns(
    filters: Filters,
    *,
    subcategories: bool,
    domains: Mapping[str, tuple[str, ...]],
    expr: Callable[[Row], bool] | None,
    search: Predicate | None,
) -> ColumnPlan | None:
    """None when a filter needs more than one column at once ("completed" reads progress)."""
    if "completed" in filters.status or "completed" in filters.exclude_status:
        return None

    def both(
        names: tuple[str, ...], excluded: tuple[str, ...], make: Callable[[tuple[str, ...]], Callable[[str], bool]]
    ) -> Callable[[str], bool] | None:
        keep = make(names) if names else None
        drop = make(excluded) if excluded else None
        if keep is None and drop is None:
            return None
        return lambda value: (keep is None or keep(value)) and (drop is None or not drop(value))

    def status_of(names: tuple[str, ...]) -> Callable[[str], bool]:
        test = _status_test(names)
        return lambda state: test(state, 0)

    rest = compile_filters(
        Filters(
            hashes=filters.hashes,
            trackers=filters.trackers,
            exclude_trackers=filters.exclude_trackers,
        ),
        subcategories=subcategories,
        domains=domains,
        expr=expr,
        search=search,
    )
    return ColumnPlan(
        state=both(filters.status, filters.exclude_status, status_of),
        category=both(filters.categories, filters.exclude_categories, lambda n: _category_test(n, subcategories)),
        tags=both(filters.tags, filters.exclude_tags, _tags_test),
        rest=rest,
    )


def _on_status(test: Callable[[str, float], bool], keep: bool) -> ValueTest:
    return lambda state, progress, category, tags: test(state, progress) is keep


def _on_category(test: Callable[[str], bool], keep: bool) -> ValueTest:
    return lambda state, progress, category, tags: test(category) is keep


def _on_tags(test: Callable[[str], bool], keep: bool) -> ValueTest:
    return lambda state, progress, category, tags: test(tags) is keep


def _by_values(value_tests: tuple[ValueTest, ...], fields: tuple[str, ...], completion: bool) -> Predicate:
    """Answer the value tests through a memo keyed on exactly the fields they read."""
    memo: dict[Any, bool] = {}
    read = itemgetter(*fields)

    def decide(row: Row) -> bool:
        progress = row.get("progress")
        complete = 1 if isinstance(progress, int | float) and progress >= 1 else 0
        st, c, t = _str(row.get("state")), _str(row.get("category")), _str(row.get("tags"))
        return all(test(st, complete, c, t) for test in value_tests)

    def by_values(h: str, row: Row) -> bool:
        try:
            key = read(row)
        except KeyError:
            key = tuple(row.get(f) for f in fields)
        if completion:
            progress = row.get("progress")
            key = (key, isinstance(progress, int | float) and progress >= 1)
        try:
            hit = memo.get(key)
        except TypeError:  # an unhashable value where qBittorrent sends strings
            return decide(row)
        if hit is None:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            hit = memo[key] = decide(row)
        return hit

    return by_values


def _by_tracker(wanted: frozenset[str], keep: bool, domains: Mapping[str, tuple[str, ...]]) -> Predicate:
    # The domains map is fixed for the life of the predicate: answer it for every hash at once.
    hits = frozenset(h for h, ds in domains.items() if not wanted.isdisjoint(ds))

    def by_tracker(h: str, row: Row) -> bool:
        if h in hits:
            return keep
        if h in domains:
            return not keep
        return wanted.isdisjoint(row_domains(h, row, domains)) is not keep

    return by_tracker
