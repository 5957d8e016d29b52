"""The sans-I/O maindata merger, replayed against the sequence observed on real qBittorrent 4.5.2."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsse.errors import UpstreamProtocolError
from qsse.qbt.maindata import MainDataMerger, decode

H0, H1, H2 = "a" * 40, "b" * 40, "c" * 40
TR1, TR2 = "http://127.0.0.1:18099/announce", "http://127.0.0.1:18098/announce"


def row(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "state": "pausedDL", "progress": 0.0, "category": "", "tags": "", **extra}


def full(rid: int = 1) -> dict[str, Any]:
    return {
        "rid": rid,
        "full_update": True,
        "torrents": {H0: row("T0"), H1: row("T1"), H2: row("T2")},
        "categories": {},
        "tags": [],
        "trackers": {TR1: [H1, H0]},
        "server_state": {"dl_rate_limit": 0, "up_rate_limit": 0, "refresh_interval": 1500},
    }


def test_full_update_adds_hash_and_reports_initial() -> None:
    m = MainDataMerger()
    state, diff = m.apply(full())
    assert state.rid == 1
    assert state.torrents[H0]["hash"] == H0
    assert diff.full_update and diff.initial
    assert diff.added == {H0, H1, H2}
    assert state.trackers == {TR1: (H1, H0)}


def test_observed_sequence() -> None:
    """The rows of qbittorrent-testbed.md section 4, applied in order."""
    m = MainDataMerger()
    m.apply(full())
    steps: list[dict[str, Any]] = [
        {"rid": 2},
        {"categories": {"c1": {"name": "c1", "savePath": "/x/c1"}}, "rid": 3, "tags": ["b", "a"]},
        {"rid": 6, "torrents": {H2: {"state": "stalledDL", "time_active": 1}}},
        {"rid": 8, "torrents": {H0: {"category": "c1"}, H2: {"state": "pausedDL", "time_active": 3}}},
        {"rid": 9, "torrents": {H0: {"tags": "a, b"}, H1: {"tags": "a, b"}}},
        {"rid": 11, "tags_removed": ["b"], "torrents": {H0: {"tags": "a"}, H1: {"tags": ""}}},
        {"rid": 12, "torrents": {H1: {"name": "renamed-T1"}}},
        {"rid": 13, "torrents": {H2: {"trackers_count": 1}}, "trackers": {TR2: [H2]}},
        {"rid": 14, "torrents": {H0: {"trackers_count": 0}}, "trackers": {TR1: [H1]}},
        {"rid": 15, "torrents": {H1: {"trackers_count": 0}}, "trackers_removed": [TR1]},
        {"categories_removed": ["c1"], "rid": 16, "torrents": {H0: {"category": ""}}},
        {"categories": {"c2": {"name": "c2", "savePath": "/x"}}, "rid": 17},
        {"categories": {"c2": {"savePath": "/y"}}, "rid": 18},
        {"rid": 19, "server_state": {"dl_rate_limit": 1048576}},
        {"rid": 22, "torrents": {H0: {"priority": 1}, H1: {"priority": 2}}, "torrents_removed": [H2],
         "trackers_removed": [TR2]},
    ]
    diffs = [m.apply(step)[1] for step in steps]
    s = m.state
    assert s.rid == 22
    assert set(s.torrents) == {H0, H1}
    assert s.torrents[H1]["name"] == "renamed-T1"
    assert s.torrents[H0]["tags"] == "a" and s.torrents[H1]["tags"] == ""
    assert s.torrents[H0]["category"] == "" and s.torrents[H0]["priority"] == 1
    assert s.categories == {"c2": {"name": "c2", "savePath": "/y"}}
    assert s.tags == ("a",)
    assert s.trackers == {}
    assert s.server_state["dl_rate_limit"] == 1048576 and s.server_state["refresh_interval"] == 1500
    assert diffs[0].empty
    assert diffs[-1].removed == {H2} and diffs[-1].changed == {H0, H1}


def test_published_rows_are_never_mutated() -> None:
    m = MainDataMerger()
    before, _ = m.apply(full())
    row_before = before.torrents[H0]
    snapshot = json.dumps(before.torrents, sort_keys=True)
    after, diff = m.apply({"rid": 2, "torrents": {H0: {"name": "new"}, "d" * 40: row("T3")},
                           "torrents_removed": [H1]})
    assert json.dumps(before.torrents, sort_keys=True) == snapshot
    assert after.torrents[H0] is not row_before and after.torrents[H2] is before.torrents[H2]
    assert diff.added == {"d" * 40} and diff.removed == {H1}


def test_no_change_keeps_collections_identical() -> None:
    m = MainDataMerger()
    before, _ = m.apply(full())
    after, diff = m.apply({"rid": 2})
    assert after.torrents is before.torrents and after.categories is before.categories
    assert diff.empty and after.rid == 2


def test_completion_is_detected_once() -> None:
    m = MainDataMerger()
    m.apply(full())
    _, diff = m.apply({"rid": 2, "torrents": {H0: {"progress": 1.0, "state": "stalledUP"}}})
    assert diff.completed == {H0}
    _, diff = m.apply({"rid": 3, "torrents": {H0: {"progress": 1.0}}})
    assert diff.completed == frozenset()


def test_full_update_after_state_reports_real_changes_only() -> None:
    m = MainDataMerger()
    m.apply(full())
    payload = full(rid=7)
    del payload["torrents"][H2]
    _, diff = m.apply(payload)
    assert not diff.initial and diff.removed == {H2} and diff.added == frozenset()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"rid": "x"}', b'{"rid": 2, "torrents": []}', b'{"rid": 2, "torrents": {"h": 1}}',
     b'{"rid": 2, "tags": "a"}', b'{"rid": 2, "trackers": {"u": "h"}}'],
)
def test_malformed_answer_keeps_old_state(body: bytes) -> None:
    m = MainDataMerger()
    before, _ = m.apply(full())
    with pytest.raises(UpstreamProtocolError):
        m.apply_bytes(body)
    assert m.state is before and m.rid == 1


def test_decode_rejects_non_objects() -> None:
    with pytest.raises(UpstreamProtocolError, match="JSON object"):
        decode(b"3")


# A property: merging a random diff sequence produces what applying the same edits to a plain
# dictionary model produces (the "fresh rid=0 fetch" of the model).
edit = st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abcdef"), st.sampled_from(["name", "category", "tags"]),
              st.text(max_size=3)),
    st.tuples(st.just("del"), st.sampled_from("abcdef"), st.just(""), st.just("")),
    st.tuples(st.just("cat"), st.sampled_from("xyz"), st.just("savePath"), st.text(max_size=3)),
    st.tuples(st.just("uncat"), st.sampled_from("xyz"), st.just(""), st.just("")),
    st.tuples(st.just("tag"), st.sampled_from("pqr"), st.just(""), st.just("")),
    st.tuples(st.just("untag"), st.sampled_from("pqr"), st.just(""), st.just("")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(edit, max_size=6), max_size=8))
def test_merge_equals_model(batches: list[list[tuple[str, str, str, str]]]) -> None:
    model: dict[str, Any] = {"torrents": {}, "categories": {}, "tags": []}
    m = MainDataMerger()
    m.apply({"rid": 1, "full_update": True, "torrents": {}, "categories": {}, "tags": []})
    for rid, batch in enumerate(batches, start=2):
        payload: dict[str, Any] = {"rid": rid}
        for op, key, fld, value in batch:
            if op == "set":
                if key in payload.get("torrents_removed", []):
                    # qBittorrent diffs a hash against its last snapshot: a torrent deleted and
                    # re-added between two polls is a field diff of a fixed schema, not modelled here.
                    continue
                model["torrents"].setdefault(key, {"hash": key})[fld] = value
                payload.setdefault("torrents", {}).setdefault(key, {})[fld] = value
            elif op == "del" and key in model["torrents"]:
                del model["torrents"][key]
                payload.setdefault("torrents", {}).pop(key, None)
                payload.setdefault("torrents_removed", []).append(key)
            elif op == "cat":
                model["categories"].setdefault(key, {})[fld] = value
                payload.setdefault("categories", {}).setdefault(key, {})[fld] = value
            elif op == "uncat" and key in model["categories"]:
                del model["categories"][key]
                payload.setdefault("categories", {}).pop(key, None)
                payload.setdefault("categories_removed", []).append(key)
            elif op == "tag" and key not in model["tags"]:
                model["tags"].append(key)
                payload.setdefault("tags", []).append(key)
            elif op == "untag" and key in model["tags"]:
                model["tags"].remove(key)
                payload.setdefault("tags_removed", []).append(key)
        # qBittorrent never lists a tag as both added and removed in one answer.
        for t in set(payload.get("tags", [])) & set(payload.get("tags_removed", [])):
            payload["tags"].remove(t)
            payload["tags_removed"].remove(t)
            if t in model["tags"]:
                payload["tags"].append(t)
            else:
                payload["tags_removed"].append(t)
        # Nor a category as both changed and removed: it sends the final state.
        for c in set(payload.get("categories", {})) & set(payload.get("categories_removed", [])):
            payload["categories_removed"].remove(c)
            if c in model["categories"]:
                payload["categories"][c] = dict(model["categories"][c])
            else:
                del payload["categories"][c]
                payload["categories_removed"].append(c)
        m.apply(json.loads(json.dumps(payload)))
    s = m.state
    assert {h: dict(r) for h, r in s.torrents.items()} == model["torrents"]
    assert {n: dict(c) for n, c in s.categories.items()} == model["categories"]
    assert sorted(s.tags) == sorted(model["tags"])
