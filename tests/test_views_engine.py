"""The view engine against the reference implementation (property tests) and by table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_views_reference import reference_counts, reference_rows, reference_view

from qsse.qbt.maindata import MainData, MainDataMerger
from qsse.qbt.status import Health, InstanceState
from qsse.views.engine import ViewEngine
from qsse.views.options import Filters, ViewOptions

NOW = 1_760_000_100.0

STATES_4X = [
    "error", "missingFiles", "uploading", "pausedUP", "queuedUP", "stalledUP", "checkingUP", "forcedUP",
    "allocating", "downloading", "metaDL", "pausedDL", "queuedDL", "stalledDL", "checkingDL", "forcedDL",
    "checkingResumeData", "moving", "unknown",
]  # fmt: skip
STATES_5X = [s.replace("paused", "stopped") for s in STATES_4X] + ["forcedMetaDL"]
ALL_STATES = sorted(set(STATES_4X) | set(STATES_5X))
CATEGORIES = ["", "tv", "tv/hd", "tv/sd", "movies", "tvx"]
TAG_STRINGS = ["", "a", "b", "a, b", "b, c", "hd, a"]
WORDS = ["Ubuntu", "ubuntu", "linux", "The", "show", "S01E02", "[grp]", "x264", "big-buck", "bunny", "d.e.b", "ubnutu"]
TRACKER_URLS = ["udp://t1.example.org:80/announce", "https://t2.example.org/a", "http://T1.Example.org/x", "t3.net"]

names = st.lists(st.sampled_from(WORDS), min_size=0, max_size=4).map(
    lambda ws: "".join(w + sep for w, sep in zip(ws, [".", " ", "_", "-"] * 2, strict=False)).strip()
)


@st.composite
def rows(draw: st.DrawFn, h: str) -> dict[str, Any]:
    state = draw(st.sampled_from(ALL_STATES))
    return {
        "hash": h,
        "infohash_v1": h,
        "infohash_v2": draw(st.sampled_from(["", "beef" + h])),
        "name": draw(names),
        "state": state,
        "progress": draw(st.sampled_from([0, 0.25, 0.999, 1, 1.0])),
        "category": draw(st.sampled_from(CATEGORIES)),
        "tags": draw(st.sampled_from(TAG_STRINGS)),
        "tracker": draw(st.sampled_from(["", *TRACKER_URLS])),
        "size": draw(st.integers(0, 10**6)),
        "amount_left": draw(st.integers(0, 10**6)),
        "dlspeed": draw(st.integers(0, 1000)),
        "upspeed": draw(st.integers(0, 1000)),
        "downloaded_session": draw(st.integers(0, 1000)),
        "uploaded_session": draw(st.integers(0, 1000)),
        "eta": draw(st.sampled_from([0, 60, 3600, 8640000])),
        "priority": draw(st.sampled_from([0, 1, 2, 3])),
        "ratio": draw(st.sampled_from([0.0, 0.5, 1, 2.5])),
        "added_on": draw(st.integers(0, 5)),
        "num_seeds": draw(st.integers(0, 3)),
        "magnet_uri": "magnet:?xt=urn:btih:" + h,
    }


HASHES = [f"{i:02x}" * 20 for i in range(40)]


@st.composite
def libraries(draw: st.DrawFn, max_size: int = 25) -> MainData:
    chosen = draw(st.lists(st.sampled_from(HASHES), unique=True, min_size=min(8, max_size), max_size=max_size))
    torrents = {h: draw(rows(h)) for h in chosen}
    trackers: dict[str, tuple[str, ...]] = {}
    for url in TRACKER_URLS[:3]:
        members = draw(st.lists(st.sampled_from(chosen), unique=True)) if chosen else []
        if members:
            trackers[url] = tuple(members)
    return MainData(
        rid=draw(st.integers(1, 10)),
        torrents=torrents,
        categories={c: {"name": c, "savePath": ""} for c in draw(st.sets(st.sampled_from(CATEGORIES[1:])))},
        tags=tuple(draw(st.sets(st.sampled_from(["a", "b", "c", "hd"])))),
        trackers=trackers,
        server_state={"connection_status": "connected"},
    )


SORTS = [
    "name", "size", "progress", "added_on", "state", "priority", "eta", "ratio", "dlspeed", "category",
    "tags", "tracker", "num_seeds", "save_path", "instance",
]  # fmt: skip
SEARCHES = [
    "", "ubuntu", "UBUNTU", "ubnutu", "linux show", "big buck", "d e b", "*bunny*", "ub?ntu*", "[st]*", "0101",
    "beef", "tv", "hd",
]  # fmt: skip
STATUS = ["all", "downloading", "seeding", "uploading", "completed", "paused", "stopped", "running", "resumed",
          "active", "inactive", "stalled", "stalled_uploading", "stalled_downloading", "checking", "errored",
          "moving", "error", "queuedUP", "pausedDL", "stoppedUP"]  # fmt: skip

filters = st.builds(
    Filters,
    hashes=st.lists(st.sampled_from([*HASHES[:10], "beef" + HASHES[0]]), max_size=3).map(
        lambda v: tuple(sorted(set(v)))
    ),
    status=st.lists(st.sampled_from(STATUS), max_size=2).map(lambda v: tuple(sorted(set(v)))),
    exclude_status=st.lists(st.sampled_from(STATUS), max_size=2).map(lambda v: tuple(sorted(set(v)))),
    categories=st.lists(st.sampled_from(["", "tv", "movies", "tv/hd"]), max_size=2).map(
        lambda v: tuple(sorted(set(v)))
    ),
    exclude_categories=st.lists(st.sampled_from(["", "tv", "movies"]), max_size=2).map(lambda v: tuple(sorted(set(v)))),
    tags=st.lists(st.sampled_from(["", "a", "b", "hd"]), max_size=2).map(lambda v: tuple(sorted(set(v)))),
    exclude_tags=st.lists(st.sampled_from(["", "a", "c"]), max_size=2).map(lambda v: tuple(sorted(set(v)))),
    trackers=st.lists(st.sampled_from(["", "t1.example.org", "t2.example.org", "t3.net"]), max_size=2).map(
        lambda v: tuple(sorted(set(v)))
    ),
    exclude_trackers=st.lists(st.sampled_from(["", "t2.example.org"]), max_size=1).map(lambda v: tuple(v)),
    expr=st.sampled_from(
        ["", "", "ratio > 1", 'State == "stalledUP" || progress < 1', "size < 500000 and not (eta > 60)"]
    ),
)


@st.composite
def view_options(draw: st.DrawFn, instance_ids: Sequence[int] = (1,)) -> ViewOptions:
    aggregated = len(instance_ids) > 1
    return ViewOptions(
        instance_id=0 if aggregated else instance_ids[0],
        instance_ids=tuple(instance_ids),
        page=draw(st.sampled_from([0, 0, 1, 2])),
        limit=draw(st.sampled_from([3, 5, 300, 300])),
        sort=draw(st.sampled_from(SORTS)),
        order=draw(st.sampled_from(["asc", "desc"])),
        search=draw(st.one_of(st.just(""), st.sampled_from(SEARCHES))),
        filters=draw(st.one_of(st.just(Filters()), st.just(Filters()), filters)),
    )


def state(data: MainData, iid: int = 1, health: Health = Health.SYNCING, name: str = "") -> InstanceState:
    return InstanceState(
        instance_id=iid,
        name=name or f"inst{iid}",
        health=health,
        data=data,
        version="v4.6.7",
        webapi_version="2.9.3",
        last_success=NOW - 3,
        next_poll=NOW + 1,
    )


def keys_of(response: Mapping[str, Any]) -> list[tuple[int, str]]:
    if response["isCrossInstance"]:
        return [(r["instance_id"], r["hash"]) for r in response["cross_instance_torrents"]]
    return [(response["instanceMeta"] and 1, r["hash"]) for r in response["torrents"]]


def check_against_reference(engine: ViewEngine, options: ViewOptions, states: Sequence[InstanceState]) -> None:
    got = engine.build(options, states, now=NOW)
    want = reference_view(options, states)
    event(f"page rows: {min(len(want['keys']), 3)}{'+' if len(want['keys']) >= 3 else ''}")
    if options.aggregated:
        assert [(r["instance_id"], r["hash"]) for r in got["cross_instance_torrents"]] == want["keys"]
        assert got["torrents"] is None
    else:
        assert [r["hash"] for r in got["torrents"]] == [h for _, h in want["keys"]]
        assert all("magnet_uri" not in r for r in got["torrents"])
    assert got["total"] == want["total"]
    assert got["hasMore"] == want["hasMore"]
    assert got["stats"] == want["stats"]
    assert got["partialResults"] == want["partialResults"]


settings.register_profile("views", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("views")


@settings(max_examples=300)
@given(data=libraries(), options=view_options())
def test_single_view_matches_reference(data: MainData, options: ViewOptions) -> None:
    check_against_reference(ViewEngine(), options, [state(data)])


@settings(max_examples=200)
@given(data=libraries(), options=view_options())
def test_counts_match_reference(data: MainData, options: ViewOptions) -> None:
    got = ViewEngine().build(options, [state(data)], now=NOW)
    assert got["counts"] == reference_counts(data)


@settings(max_examples=150)
@given(
    first=st.one_of(libraries(), st.deferred(lambda: damaged())),
    later=st.lists(st.one_of(libraries(), st.deferred(lambda: damaged())), min_size=1, max_size=4),
    views=st.lists(view_options(), min_size=1, max_size=3),
    keep=st.floats(0, 1),
)
def test_incremental_ticks_match_reference(
    first: MainData, later: list[MainData], views: list[ViewOptions], keep: float
) -> None:
    """A tick that keeps some row objects and replaces others: the cached, replayed view must
    equal the reference computed from scratch, for every view and every tick."""
    engine = ViewEngine()
    current = first
    for options in views:
        check_against_reference(engine, options, [state(current)])
    for nxt in later:
        torrents = dict(nxt.torrents)
        # Keep some row objects of the previous snapshot (unchanged rows), as the merger does.
        for i, (h, row) in enumerate(current.torrents.items()):
            if i < keep * len(current.torrents):
                torrents[h] = row
        current = MainData(
            rid=current.rid + 1,
            torrents=torrents,
            categories=nxt.categories if nxt.rid % 2 else current.categories,
            tags=current.tags,
            trackers=nxt.trackers if nxt.rid % 3 == 0 else current.trackers,
            server_state=current.server_state,
        )
        for options in views:
            check_against_reference(engine, options, [state(current)])
            assert engine.build(options, [state(current)], now=NOW)["counts"] == reference_counts(current)


@settings(max_examples=200)
@given(data=libraries(), options=view_options())
def test_paging_partitions_the_filtered_list(data: MainData, options: ViewOptions) -> None:
    engine = ViewEngine()
    limit = 3
    seen: list[str] = []
    page = 0
    while True:
        paged = ViewOptions(
            instance_id=1,
            instance_ids=(1,),
            page=page,
            limit=limit,
            sort=options.sort,
            order=options.order,
            search=options.search,
            filters=options.filters,
        )
        got = engine.build(paged, [state(data)], now=NOW)
        seen.extend(r["hash"] for r in got["torrents"])
        if not got["hasMore"]:
            break
        page += 1
    full_rows, _ = reference_rows(options, [state(data)])
    assert seen == [r["hash"] for _, r in full_rows]
    assert len(set(seen)) == len(seen)


@settings(max_examples=150)
@given(one=libraries(max_size=12), two=libraries(max_size=12), options=view_options((2, 1)), down=st.booleans())
def test_aggregated_view_matches_reference(one: MainData, two: MainData, options: ViewOptions, down: bool) -> None:
    states = [state(two, 2, Health.DOWN if down else Health.SYNCING, "beta"), state(one, 1, name="Alpha")]
    check_against_reference(ViewEngine(), options, states)
    got = ViewEngine().build(options, states, now=NOW)
    names = {1: "Alpha", 2: "beta"}
    assert all(r["instance_name"] == names[r["instance_id"]] for r in got["cross_instance_torrents"])
    contributing = [one] if down else [one, two]
    assert got["counts"]["total"] == sum(len(d.torrents) for d in contributing)
    assert got["partialResults"] is down


# -- tables -------------------------------------------------------------------------------------


def library(*rows: Mapping[str, Any], **kw: Any) -> MainData:
    torrents = {}
    for i, row in enumerate(rows):
        h = row.get("hash", f"{i:040x}")
        torrents[h] = {"hash": h, "name": f"t{i}", "state": "stalledUP", "progress": 1, **row}
    return MainData(rid=1, torrents=torrents, **kw)


def hashes(data: MainData, **options: Any) -> list[str]:
    opts = ViewOptions(instance_id=1, instance_ids=(1,), **{"sort": "name", "order": "asc", **options})
    return [r["hash"] for r in ViewEngine().build(opts, [state(data)], now=NOW)["torrents"]]


STATUS_TABLE = {
    # name: states matched (progress < 1 unless the state is a seeding one)
    "downloading": {
        "downloading", "stalledDL", "metaDL", "forcedMetaDL", "queuedDL", "allocating", "checkingDL", "forcedDL"
    },
    "seeding": {"uploading", "stalledUP", "queuedUP", "checkingUP", "forcedUP"},
    "uploading": {"uploading", "stalledUP", "queuedUP", "checkingUP", "forcedUP"},
    "paused": {"pausedDL", "pausedUP", "stoppedDL", "stoppedUP"},
    "stopped": {"pausedDL", "pausedUP", "stoppedDL", "stoppedUP"},
    "active": {"downloading", "uploading", "forcedDL", "forcedUP"},
    "stalled": {"stalledUP", "stalledDL"},
    "stalled_uploading": {"stalledUP"},
    "stalled_downloading": {"stalledDL"},
    "checking": {"checkingDL", "checkingUP", "checkingResumeData"},
    "errored": {"error", "missingFiles"},
    "moving": {"moving"},
    "error": {"error"},
    "missingFiles": {"missingFiles"},
    "queuedUP": {"queuedUP"},
}  # fmt: skip


@pytest.mark.parametrize("states", [STATES_4X, STATES_5X], ids=["qbt4", "qbt5"])
@pytest.mark.parametrize("name", [*sorted(STATUS_TABLE), "all", "running", "resumed", "inactive", "completed"])
def test_status_names_on_both_state_sets(states: list[str], name: str) -> None:
    data = library(*({"hash": s.ljust(40, "0"), "state": s, "progress": 1 if "UP" in s else 0.5} for s in states))
    got = set(hashes(data, filters=Filters(status=(name,)), limit=300))
    stopped = {"pausedDL", "pausedUP", "stoppedDL", "stoppedUP"}
    active = STATUS_TABLE["active"]
    expected = {
        "all": set(states),
        "running": set(states) - stopped,
        "resumed": set(states) - stopped,
        "inactive": set(states) - active,
        "completed": {s for s in states if "UP" in s},
    }.get(name, STATUS_TABLE.get(name, set()) & set(states))
    assert got == {s.ljust(40, "0") for s in expected}
    excluded = set(hashes(data, filters=Filters(exclude_status=(name,)), limit=300))
    assert excluded == {s.ljust(40, "0") for s in states} - got


def test_categories_subcategories_and_uncategorised() -> None:
    rows = [{"hash": (c.replace("/", "_") or "none").ljust(40, "0"), "category": c} for c in CATEGORIES]
    flat = library(*rows, categories={"tv": {}, "movies": {}})
    nested = library(*rows, categories={"tv": {}, "tv/hd": {}, "movies": {}})
    assert hashes(flat, filters=Filters(categories=("tv",))) == ["tv".ljust(40, "0")]
    assert sorted(hashes(nested, filters=Filters(categories=("tv",)))) == sorted(
        h.ljust(40, "0") for h in ("tv", "tv_hd", "tv_sd")
    )  # "tvx" is not a subcategory of "tv"
    assert hashes(nested, filters=Filters(categories=("",))) == ["none".ljust(40, "0")]
    assert "none".ljust(40, "0") not in hashes(nested, filters=Filters(exclude_categories=("",)))
    assert sorted(hashes(nested, filters=Filters(exclude_categories=("tv",)))) == sorted(
        h.ljust(40, "0") for h in ("none", "movies", "tvx")
    )


def test_tags_and_untagged() -> None:
    data = library(*({"hash": f"{i:040x}", "tags": t} for i, t in enumerate(TAG_STRINGS)))
    by_tags = {t: f"{i:040x}" for i, t in enumerate(TAG_STRINGS)}
    assert hashes(data, filters=Filters(tags=("",))) == [by_tags[""]]
    assert sorted(hashes(data, filters=Filters(tags=("a",)))) == sorted(by_tags[t] for t in ("a", "a, b", "hd, a"))
    assert sorted(hashes(data, filters=Filters(exclude_tags=("", "b")))) == sorted(by_tags[t] for t in ("a", "hd, a"))


def test_trackers_by_domain_from_map_else_row() -> None:
    data = library(
        {"hash": "a" * 40, "tracker": "udp://other.org/announce"},
        {"hash": "b" * 40, "tracker": "https://Tracker.Example.org:443/announce?passkey=x"},
        {"hash": "c" * 40, "tracker": ""},
        trackers={"udp://tracker.example.org:1337/announce": ("a" * 40,)},
    )
    assert sorted(hashes(data, filters=Filters(trackers=("tracker.example.org",)))) == ["a" * 40, "b" * 40]
    assert hashes(data, filters=Filters(trackers=("",))) == ["c" * 40]
    got = ViewEngine().build(ViewOptions(instance_id=1, instance_ids=(1,)), [state(data)], now=NOW)
    assert got["counts"]["trackers"] == {"": 1, "tracker.example.org": 2}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("*.mkv", ["movie.mkv"]),
        ("MOVIE*", ["movie.mkv"]),
        ("[ab]*", ["alpha.beta"]),
        ("linux iso", ["Ubuntu.Linux_22.04-[iso]"]),  # all words, in any field
        ("linux 22 04", ["Ubuntu.Linux_22.04-[iso]"]),  # normalised: '.' and '_' fold to spaces
        ("ubuntu linux", ["Ubuntu.Linux_22.04-[iso]"]),
        ("ubnutu", ["Ubuntu.Linux_22.04-[iso]"]),  # fuzzy: one transposition
        ("ubunto", ["Ubuntu.Linux_22.04-[iso]"]),  # fuzzy: one substitution
        ("uxyztu", []),  # too many edits
        ("ubu", ["Ubuntu.Linux_22.04-[iso]"]),  # short text: substring only
        ("ubx", []),  # short text: no fuzzy
        ("cafe", ["alpha.beta"]),  # hex text matches the hash
        ("docs", ["alpha.beta"]),  # category
        ("keep", ["movie.mkv"]),  # tag
    ],
)
def test_search_modes(search: str, expected: list[str]) -> None:
    data = library(
        {"hash": "1" * 40, "name": "Ubuntu.Linux_22.04-[iso]", "category": "os"},
        {"hash": "2" * 40, "name": "movie.mkv", "tags": "hd, keep"},
        {"hash": "0cafe".ljust(40, "0"), "name": "alpha.beta", "category": "docs"},
    )
    opts = ViewOptions(instance_id=1, instance_ids=(1,), search=search, sort="name", order="asc")
    got = ViewEngine().build(opts, [state(data)], now=NOW)
    assert [r["name"] for r in got["torrents"]] == expected


def test_special_sort_rules() -> None:
    data = library(
        {"hash": "a" * 40, "name": "b", "eta": 8640000, "priority": 0, "state": "pausedUP"},
        {"hash": "b" * 40, "name": "A", "eta": 30, "priority": 2, "state": "downloading"},
        {"hash": "c" * 40, "name": "c", "eta": 10, "priority": 1, "state": "stalledUP"},
        {"hash": "d" * 40, "name": "a", "eta": 30, "priority": 0, "state": "error"},
    )

    def order(sort: str, order: str) -> list[str]:
        return [h[0] for h in hashes(data, sort=sort, order=order)]

    assert order("eta", "asc") == ["c", "b", "d", "a"]  # ties (eta 30) by name, case-insensitively
    assert order("eta", "desc") == ["b", "d", "c", "a"]  # ∞ still last; ties still by name ascending
    assert order("priority", "asc") == ["c", "b", "d", "a"]  # 0 last, ties by name ("a" < "b")
    assert order("priority", "desc") == ["b", "c", "d", "a"]
    assert order("name", "asc") == ["b", "d", "a", "c"]  # "A" == "a" → the hash breaks the tie
    assert order("state", "asc") == ["b", "c", "a", "d"]  # downloading, seeding, paused, error


def test_single_view_shape_and_stale_instance() -> None:
    data = library({"hash": "a" * 40, "magnet_uri": "magnet:?x"}, server_state={"connection_status": "firewalled"})
    opts = ViewOptions(instance_id=1, instance_ids=(1,))
    fresh = ViewEngine().build(opts, [state(data)], now=NOW)
    assert fresh["isCrossInstance"] is False and fresh["partialResults"] is False
    assert fresh["instanceMeta"] == {"connected": True, "connectionStatus": "firewalled"}
    assert fresh["appInfo"] == {"version": "v4.6.7", "webAPIVersion": "2.9.3"}
    assert fresh["cacheMetadata"]["source"] == "fresh" and fresh["cacheMetadata"]["age"] == 3
    assert fresh["torrents"] == [{"hash": "a" * 40, "name": "t0", "state": "stalledUP", "progress": 1}]
    down = ViewEngine().build(opts, [state(data, health=Health.DOWN)], now=NOW + 60)
    assert down["torrents"] == fresh["torrents"]  # stale data still served
    assert down["instanceMeta"]["connected"] is False
    assert down["cacheMetadata"]["isStale"] is True


def test_aggregated_member_without_data_sets_partial_results() -> None:
    one = library({"hash": "a" * 40})
    opts = ViewOptions(instance_id=0, instance_ids=(1, 2))
    got = ViewEngine().build(opts, [state(one), state(MainData(), 2, Health.SYNCING)], now=NOW)
    assert got["partialResults"] is True
    assert [r["instance_id"] for r in got["cross_instance_torrents"]] == [1]
    assert "instanceMeta" not in got


def test_response_is_not_mutated_by_later_builds() -> None:
    import copy

    engine = ViewEngine()
    opts = ViewOptions(instance_id=1, instance_ids=(1,), sort="name", order="asc")
    data = library({"hash": "a" * 40, "dlspeed": 1}, {"hash": "b" * 40})
    first = engine.build(opts, [state(data)], now=NOW)
    snapshot = copy.deepcopy(first)
    torrents = dict(data.torrents)
    torrents["a" * 40] = {**torrents["a" * 40], "dlspeed": 5}
    torrents["c" * 40] = {"hash": "c" * 40, "name": "c", "state": "downloading", "progress": 0}
    engine.build(opts, [state(MainData(rid=2, torrents=torrents))], now=NOW)
    assert first == snapshot


def test_expr_filter() -> None:
    data = library(
        {"hash": "a" * 40, "ratio": 3, "state": "stalledUP"},
        {"hash": "b" * 40, "ratio": 3, "state": "uploading"},
        {"hash": "c" * 40, "ratio": 1, "state": "stalledUP"},
    )
    assert hashes(data, filters=Filters(expr='Ratio > 2 && State == "stalledUP"')) == ["a" * 40]
    assert hashes(data, filters=Filters(expr="ratio > 2", status=("stalled",))) == ["a" * 40]


@st.composite
def damaged(draw: st.DrawFn) -> MainData:
    """A library whose rows lack fields or carry nulls, as a buggy or future qBittorrent might."""
    data = draw(libraries(max_size=12))
    torrents = {}
    for h, row in data.torrents.items():
        row = dict(row)
        for key in draw(st.lists(st.sampled_from(sorted(set(row) - {"hash"})), max_size=4, unique=True)):
            if draw(st.booleans()):
                del row[key]
            else:
                row[key] = None
        torrents[h] = row
    return MainData(
        rid=data.rid,
        torrents=torrents,
        categories=data.categories,
        tags=data.tags,
        trackers=data.trackers,
        server_state=data.server_state,
    )


@settings(max_examples=150)
@given(data=damaged(), options=view_options())
def test_damaged_rows_still_match_reference(data: MainData, options: ViewOptions) -> None:
    check_against_reference(ViewEngine(), options, [state(data)])
    assert ViewEngine().build(options, [state(data)], now=NOW)["counts"] == reference_counts(data)


@given(st.lists(st.fixed_dictionaries({"name": st.text(), "category": st.text(), "tags": st.text()}), max_size=20))
def test_bulk_search_texts_equal_one_by_one(rows: list[dict[str, Any]]) -> None:
    from qsse.views.search import search_text, search_texts

    assert search_texts(rows) == [search_text(row) for row in rows]


def count_recomputes(engine: ViewEngine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sort field of every view the engine rebuilds from scratch, in order."""
    recomputes: list[str] = []
    original = engine._recompute

    def counting(view: Any, members: Any) -> None:
        recomputes.append(view.key.sort)
        original(view, members)

    monkeypatch.setattr(engine, "_recompute", counting)
    return recomputes


def test_a_tick_replays_instead_of_recomputing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the touched rows are re-checked; a new trackers map (sent on every torrent addition)
    restarts only the views that filter on trackers."""
    torrents = {
        f"{i:040x}": {"hash": f"{i:040x}", "name": f"n{i}", "state": "stalledUP", "progress": 1} for i in range(200)
    }
    data = MainData(rid=1, torrents=torrents, trackers={"udp://a.org/x": (f"{0:040x}",)})
    engine = ViewEngine()
    recomputes = count_recomputes(engine, monkeypatch)
    plain = ViewOptions(instance_id=1, instance_ids=(1,), sort="name", order="asc")
    by_tracker = ViewOptions(instance_id=1, instance_ids=(1,), sort="size", filters=Filters(trackers=("b.org",)))
    for options in (plain, by_tracker):
        engine.build(options, [state(data)], now=NOW)
    assert recomputes == ["name", "size"]

    changed = dict(torrents)
    changed[f"{5:040x}"] = {**changed[f"{5:040x}"], "name": "zz"}
    data = MainData(rid=2, torrents=changed, trackers=data.trackers)
    for options in (plain, by_tracker):
        engine.build(options, [state(data)], now=NOW)
    assert recomputes == ["name", "size"]

    data = MainData(rid=3, torrents=changed, trackers={"udp://b.org/x": (f"{7:040x}",)})
    got = [engine.build(options, [state(data)], now=NOW) for options in (plain, by_tracker)]
    assert recomputes == ["name", "size", "size"]
    assert [r["hash"] for r in got[1]["torrents"]] == [f"{7:040x}"]
    assert got[0]["counts"]["trackers"] == {"": 199, "b.org": 1}
    assert got[0]["torrents"][-1]["name"] == "zz"


def test_removing_one_torrent_replays_instead_of_recomputing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal shifts the positions of every later row in the merged dict; that must not look
    like a change of half the library (which used to rebuild every view from scratch)."""
    merger = MainDataMerger()
    rows = {f"{i:040x}": {"name": f"n{i:04d}", "state": "stalledUP", "progress": 1, "size": i} for i in range(400)}
    data, _ = merger.apply({"rid": 1, "full_update": True, "torrents": rows})
    engine = ViewEngine()
    recomputes = count_recomputes(engine, monkeypatch)
    options = ViewOptions(instance_id=1, instance_ids=(1,), sort="name", order="asc", limit=10)
    engine.build(options, [state(data)], now=NOW)
    data, _ = merger.apply({"rid": 2, "torrents_removed": [f"{3:040x}"],
                            "torrents": {f"{999:040x}": {"name": "n0000a", "state": "stalledUP", "progress": 1}}})
    got = engine.build(options, [state(data)], now=NOW)
    assert recomputes == ["name"]  # only the first build
    assert [r["name"] for r in got["torrents"][:3]] == ["n0000", "n0000a", "n0001"]
    assert got["total"] == 400 and all(r["name"] != "n0003" for r in got["torrents"])
