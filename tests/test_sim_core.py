"""The simulator's pure core: the library, the change log and maindata's rid semantics (no I/O)."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from qsse.qbt.maindata import MainDataMerger
from qsse.sim.changelog import ChangeLog
from qsse.sim.library import DIALECT5_EXTRA_FIELDS, TORRENT_FIELDS, ActionRejected, Library
from qsse.sim.maindata import RID_WRAP, MainDataSync

H1 = "1" * 40
H2 = "2" * 40


def _sync(torrents: int = 20, **kwargs: Any) -> MainDataSync:
    return MainDataSync(Library(torrents=torrents, seed=7, **kwargs))


def _wire(payload: dict[str, Any]) -> dict[str, Any]:
    """What a client sees: payloads reference live library rows until they are encoded."""
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(payload))
    return decoded


def _merged_equals_full(merger: MainDataMerger, full: dict[str, Any]) -> None:
    state = merger.state
    assert {h: {k: v for k, v in row.items() if k != "hash"} for h, row in state.torrents.items()} == full["torrents"]
    assert dict(state.categories) == full["categories"]
    assert sorted(state.tags) == sorted(full["tags"])
    assert {url: sorted(hs) for url, hs in state.trackers.items()} == {
        url: sorted(hs) for url, hs in full["trackers"].items()
    }
    assert dict(state.server_state) == full["server_state"]


# ---------------------------------------------------------------------------- library


def test_library_is_deterministic_by_seed() -> None:
    a, b = Library(torrents=200, seed=3), Library(torrents=200, seed=3)
    for lib in (a, b):
        for _ in range(20):
            lib.tick(1.0)
    assert a.rows() == b.rows()
    assert a.server_state == b.server_state
    assert Library(torrents=200, seed=4).hashes() != a.hashes()


def test_rows_have_the_48_fields_of_qbittorrent_4_5_in_order() -> None:
    lib = Library(torrents=50, seed=1)
    for row in lib.rows().values():
        assert tuple(row) == TORRENT_FIELDS
        assert isinstance(row["tags"], str)
        assert 0 <= row["progress"] <= 1
        assert row["amount_left"] == row["size"] - row["completed"]
    assert len(TORRENT_FIELDS) == 48


def test_dialects_name_paused_states_differently() -> None:
    four = {r["state"] for r in Library(torrents=300, dialect="4").rows().values()}
    five_lib = Library(torrents=300, dialect="5")
    five = {r["state"] for r in five_lib.rows().values()}
    assert {"pausedUP", "pausedDL"} <= four and not {"stoppedUP", "stoppedDL"} & four
    assert {"stoppedUP", "stoppedDL"} <= five and not {"pausedUP", "pausedDL"} & five
    assert set(DIALECT5_EXTRA_FIELDS) <= set(next(iter(five_lib.rows().values())))
    with pytest.raises(ValueError):
        Library(dialect="3")


def test_tick_changes_about_change_fraction_of_rows() -> None:
    lib = Library(torrents=2000, seed=2, change_fraction=0.05)
    changed = []
    for _ in range(10):
        rev = lib.revision
        lib.tick(1.0)
        changed.append(len(lib.torrent_changes_since(rev).upserts))
    # ~100 rows are evolved per tick; a few evolved rows do not change any field.
    assert 50 <= sum(changed) / len(changed) <= 130


def test_tick_makes_progress_and_completes_torrents() -> None:
    lib = Library(torrents=300, seed=5, change_fraction=0.5, add_remove_rate=0.2)
    start = lib.now
    before = {h: r["progress"] for h, r in lib.rows().items()}
    for _ in range(400):
        lib.tick(60.0)
    after = lib.rows()
    advanced = [h for h, p in before.items() if h in after and after[h]["progress"] > p]
    assert advanced
    completed = [h for h in advanced if after[h]["progress"] == 1]
    assert completed
    for h in completed:
        row = after[h]
        assert row["completion_on"] >= start and row["amount_left"] == 0 and row["priority"] == 0
        assert row["state"] in ("uploading", "stalledUP", "pausedUP")
    assert set(after) != set(before), "additions and removals happen"
    assert 250 <= len(after) <= 350
    assert lib.server_state["dl_info_data"] > 0


def test_actions_validate_like_qbittorrent() -> None:
    lib = Library(torrents=3)
    h = lib.hashes()[0]
    with pytest.raises(ActionRejected) as exc:
        lib.set_category([h], "no-such-category")
    assert (exc.value.status, exc.value.text) == (409, "Incorrect category name")
    with pytest.raises(ActionRejected) as exc:
        lib.create_category("movies")
    assert exc.value.status == 409
    with pytest.raises(ActionRejected) as exc:
        lib.rename(H1, "x")
    assert exc.value.status == 404
    assert lib.add_torrent(infohash=H1, name="a", size=10) is True
    assert lib.add_torrent(infohash=H1, name="a", size=10) is False


def test_add_torrent_creates_its_category_and_tags() -> None:
    lib = Library(torrents=0)
    lib.add_torrent(infohash=H1, name="x", size=5, category="new/sub", tags=["b", "a"], paused=True)
    row = lib.row(H1)
    assert row["category"] == "new/sub" and row["tags"] == "a, b" and row["state"] == "pausedDL"
    assert "new/sub" in lib.categories
    assert {"a", "b"} <= set(lib.tags)


# ---------------------------------------------------------------------------- change log


def test_changelog_reports_only_what_a_snapshot_can_know() -> None:
    log = ChangeLog()
    log.add("a", 1)
    log.add("b", 2)
    log.touch("a", 3)
    assert log.touched_since(1) == ["a", "b"]
    assert log.touched_since(3) == []
    log.remove("b", 4)
    assert log.removed_since(3) == ["b"]
    assert log.removed_since(1) == [], "a client at rev 1 never knew b"
    # Removed and re-added, then removed again: a client that knew the first b must hear of it.
    log.add("b", 5)
    log.remove("b", 6)
    assert log.removed_since(3) == ["b"]
    log.forget_removed_up_to(6)
    assert log.removed_records == 0


# ---------------------------------------------------------------------------- rid semantics


def test_rid_zero_is_always_a_full_update_with_rid_1() -> None:
    sync = _sync()
    for _ in range(3):
        payload = sync.maindata("s", 0)
        assert payload["rid"] == 1
        assert payload["full_update"] is True
        assert set(payload) == {"categories", "full_update", "rid", "server_state", "tags", "torrents", "trackers"}


def test_incremental_without_change_is_just_the_rid() -> None:
    sync = _sync()
    sync.maindata("s", 0)
    assert sync.maindata("s", 1) == {"rid": 2}
    assert sync.maindata("s", 2) == {"rid": 3}


def test_retry_of_the_previous_rid_is_incremental_then_superseded_rid_is_full() -> None:
    sync = _sync()
    sync.maindata("s", 0)  # -> 1
    sync.maindata("s", 1)  # -> 2 (1 accepted)
    h = sync.library.hashes()[0]
    sync.library.rename(h, "renamed")
    retry = sync.maindata("s", 1)  # the answer with rid 2 was lost; 1 is still accepted
    assert retry == {"rid": 3, "torrents": {h: {"name": "renamed"}}}
    superseded = sync.maindata("s", 2)
    assert superseded["full_update"] is True and superseded["rid"] == 4


def test_unknown_rid_gives_a_full_update_and_the_counter_continues() -> None:
    sync = _sync()
    sync.maindata("s", 0)
    sync.maindata("s", 1)
    payload = sync.maindata("s", 987654)
    assert payload["full_update"] is True and payload["rid"] == 3
    assert sync.maindata("s", -5)["rid"] == 1


def test_rid_state_is_per_session() -> None:
    sync = _sync()
    a1 = sync.maindata("a", 0)
    b1 = sync.maindata("b", 0)
    assert "full_update" not in sync.maindata("a", a1["rid"])
    assert "full_update" not in sync.maindata("b", b1["rid"])
    # Two pollers sharing one session trample each other's rid (testbed doc §4).
    shared = _sync()
    rids = {"A": 0, "B": 0}
    rounds = []
    for _ in range(4):
        fulls = []
        for poller in "AB":
            payload = shared.maindata("s", rids[poller])
            rids[poller] = payload["rid"]
            fulls.append(payload.get("full_update", False))
        rounds.append(tuple(fulls))
    assert rounds == [(True, True), (False, False), (True, True), (True, True)]


def test_rid_wraps_at_one_million() -> None:
    sync = _sync(torrents=1)
    sync.maindata("s", 0)
    state = sync._sessions["s"]
    assert state.last is not None
    object.__setattr__(state.last, "rid", RID_WRAP)
    assert sync.maindata("s", RID_WRAP)["rid"] == 1


# ---------------------------------------------------------------------------- diffs


def _next(sync: MainDataSync, rid: int) -> dict[str, Any]:
    payload = sync.maindata("s", rid)
    assert "full_update" not in payload
    return payload


def test_each_action_shows_in_the_next_diff_with_only_its_fields() -> None:
    sync = _sync(torrents=5)
    lib = sync.library
    rid = sync.maindata("s", 0)["rid"]
    h = lib.hashes()[0]
    lib.create_category("c1", "/x")

    steps: list[tuple[Any, dict[str, Any]]] = [
        (lambda: lib.rename(h, "new name"), {"torrents": {h: {"name": "new name"}}}),
        (lambda: lib.set_category([h], "c1"), {"torrents": {h: {"category": "c1"}}}),
        (lambda: lib.add_tags([h], ["zz1", "zz2"]), {"tags": ["zz1", "zz2"], "torrents": {h: {"tags": "zz1, zz2"}}}),
        (lambda: lib.remove_tags([h], ["zz1"]), {"torrents": {h: {"tags": "zz2"}}}),
        (lambda: lib.edit_category("c1", "/y"), {"categories": {"c1": {"savePath": "/y"}}}),
        (lambda: lib.create_category("c2"), {"categories": {"c2": {"name": "c2", "savePath": ""}}}),
        (
            lambda: lib.remove_categories(["c1", "c2"]),
            {"categories_removed": ["c1", "c2"], "torrents": {h: {"category": ""}}},
        ),
        (lambda: lib.delete_tags(["zz2"]), {"tags_removed": ["zz2"], "torrents": {h: {"tags": ""}}}),
        (lambda: lib.set_server_state(dl_rate_limit=1024), {"server_state": {"dl_rate_limit": 1024}}),
    ]
    lib.remove_tags([h], [])  # no tags: clears them all, so the expected strings below are exact
    rid = sync.maindata("s", rid)["rid"]
    for act, expected in steps:
        act()
        payload = _next(sync, rid)
        rid = payload.pop("rid")
        assert payload == expected


def test_pause_resume_add_delete_in_diffs() -> None:
    sync = _sync(torrents=0)
    lib = sync.library
    rid = sync.maindata("s", 0)["rid"]
    tracker = "http://t.example/announce"
    lib.add_torrent(infohash=H1, name="one", size=100, trackers=[tracker], category="cat", tags=["t"], paused=True)
    lib.add_torrent(infohash=H2, name="two", size=100, trackers=[tracker], paused=True)
    added = _next(sync, rid)
    assert set(added["torrents"]) == {H1, H2}
    assert tuple(added["torrents"][H1]) == TORRENT_FIELDS, "new torrents come in full"
    assert added["trackers"] == {tracker: [H1, H2]}
    assert added["categories"] == {"cat": {"name": "cat", "savePath": ""}}
    assert added["tags"] == ["t"]
    rid = added["rid"]

    lib.resume([H1])
    resumed = _next(sync, rid)
    assert resumed["torrents"][H1]["state"] == "stalledDL"
    rid = resumed["rid"]
    lib.pause([H1])
    paused = _next(sync, rid)
    assert paused["torrents"][H1]["state"] == "pausedDL"
    rid = paused["rid"]

    lib.delete([H1])
    deleted = _next(sync, rid)
    assert deleted["torrents_removed"] == [H1]
    assert deleted["trackers"] == {tracker: [H2]}, "the changed URL's full new list"
    rid = deleted["rid"]
    lib.delete([H2])
    last = _next(sync, rid)
    assert last["torrents_removed"] == [H2]
    assert last["trackers_removed"] == [tracker]


def test_torrent_added_and_removed_between_polls_is_not_reported() -> None:
    sync = _sync(torrents=0)
    rid = sync.maindata("s", 0)["rid"]
    sync.library.add_torrent(infohash=H1, name="x", size=1)
    sync.library.delete([H1])
    assert _next(sync, rid) == {"rid": rid + 1}


@pytest.mark.parametrize("seed", range(6))
def test_merging_diffs_equals_a_fresh_full_update_after_random_churn(seed: int) -> None:
    rng = random.Random(seed)
    sync = _sync(torrents=300, change_fraction=0.2)
    lib = sync.library
    merger = MainDataMerger()
    rid = 0
    for step in range(60):
        match rng.randrange(8):
            case 0:
                lib.add_generated(rng.randrange(1, 4), paused=rng.random() < 0.5, tags=["churn"])
            case 1:
                lib.delete(rng.sample(lib.hashes(), 3))
            case 2:
                lib.set_category(rng.sample(lib.hashes(), 5), rng.choice(list(lib.categories)))
            case 3:
                lib.add_tags(rng.sample(lib.hashes(), 5), [f"tag{rng.randrange(5)}"])
            case 4:
                lib.pause(rng.sample(lib.hashes(), 5))
                lib.resume(rng.sample(lib.hashes(), 5))
            case 5:
                name = f"cat{rng.randrange(4)}"
                if name in lib.categories:
                    lib.remove_categories([name])
                else:
                    lib.create_category(name)
            case _:
                lib.tick(rng.choice((0.5, 1.0, 30.0)))
        if rng.random() < 0.2:
            continue  # several changes between two polls
        if rng.random() < 0.1 and rid > 1:
            payload = sync.maindata("s", rid)  # answer lost: retry the same rid
        payload = sync.maindata("s", rid)
        assert ("full_update" in payload) == (rid == 0)
        merger.apply(_wire(payload))
        rid = payload["rid"]
        if step % 20 == 0:
            _merged_equals_full(merger, _wire(MainDataSync(lib).maindata("fresh", 0)))
    lib.tick(1.0)
    merger.apply(_wire(sync.maindata("s", rid)))
    _merged_equals_full(merger, _wire(MainDataSync(lib).maindata("fresh", 0)))
