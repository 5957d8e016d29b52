"""Delta frames: init + any sequence of frames, applied by a reference client, rebuilds the view."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_views_engine import NOW, libraries, state, view_options

from qsse.qbt.maindata import MainData
from qsse.views.delta import VOLATILE_FIELDS, DeltaEncoder
from qsse.views.engine import ViewEngine
from qsse.views.options import ViewOptions

ROWS = ("torrents", "cross_instance_torrents")


def key_of(row: Mapping[str, Any], aggregated: bool) -> str:
    return f"{row['instance_id']}:{row['hash']}" if aggregated else row["hash"]


def apply_frame(client: dict[str, Any], kind: str, data: dict[str, Any], delta: dict[str, Any] | None) -> None:
    """The protocol's client rule: upsert changed rows by key, order by ``delta.order`` if present
    (else keep the previous order), take every other field from the frame."""
    if kind == "update":
        client.clear()
        client.update(copy.deepcopy(data))
        return
    assert kind == "delta" and delta is not None
    aggregated = data.get("isCrossInstance", client.get("isCrossInstance"))
    field = "cross_instance_torrents" if aggregated else "torrents"
    by_key = {key_of(r, aggregated): r for r in client.get(field) or []}
    order = [key_of(r, aggregated) for r in client.get(field) or []]
    for row in data.get(field) or []:
        k = key_of(row, aggregated)
        if k not in by_key:
            order.append(k)
        by_key[k] = copy.deepcopy(row)
    if "order" in delta:
        order = list(delta["order"])
    for name, value in data.items():
        if name != field:
            client[name] = copy.deepcopy(value)
    client[field] = [by_key[k] for k in order]


def without_volatile(response: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in response.items() if k != "cacheMetadata"}
    for field in ROWS:
        if out.get(field):
            out[field] = [{k: v for k, v in r.items() if k not in VOLATILE_FIELDS} for r in out[field]]
    return out


def tick(previous: MainData, nxt: MainData, keep: float, volatile_only: bool) -> MainData:
    """The next snapshot: some rows kept (same objects), some replaced by `nxt`'s, some only
    touched in volatile fields."""
    torrents: dict[str, Any] = dict(nxt.torrents)
    for i, (h, row) in enumerate(previous.torrents.items()):
        if i < keep * len(previous.torrents):
            torrents[h] = row
        elif volatile_only and h in torrents:
            torrents[h] = {**row, "eta": row.get("eta", 0) + 1, "num_seeds": row.get("num_seeds", 0) + 1}
    return MainData(
        rid=previous.rid + 1,
        torrents=torrents,
        categories=previous.categories,
        tags=previous.tags,
        trackers=previous.trackers,
        server_state=previous.server_state,
    )


def run_chain(options: ViewOptions, snapshots: list[MainData], two: MainData | None = None) -> None:
    engine = ViewEngine()
    encoder = DeltaEncoder()
    client: dict[str, Any] = {}
    for i, data in enumerate(snapshots):
        states = [state(data)] if two is None else [state(data), state(two, 2)]
        response = engine.build(options, states, now=NOW + i)
        pristine = copy.deepcopy(response)
        frame = encoder.encode(response, aggregated=options.aggregated)
        assert response == pristine, "the encoder must not mutate the shared response"
        if frame is not None:
            kind, data_, delta = frame
            apply_frame(client, kind, data_, delta)
            if kind == "delta":
                assert "order" not in delta or isinstance(delta["order"], list)
        # What the client holds is what the encoder says the chain represents...
        assert client == encoder.baseline
        # ...and it equals the full view but for volatile fields and the clock.
        assert without_volatile(client) == without_volatile(response)


@settings(max_examples=120, deadline=None)
@given(
    first=libraries(),
    later=st.lists(st.tuples(libraries(), st.floats(0, 1), st.booleans()), min_size=1, max_size=5),
    options=view_options(),
)
def test_delta_chain_rebuilds_every_view(
    first: MainData, later: list[tuple[MainData, float, bool]], options: ViewOptions
) -> None:
    snapshots = [first]
    for nxt, keep, volatile_only in later:
        snapshots.append(tick(snapshots[-1], nxt, keep, volatile_only))
    run_chain(options, snapshots)


@settings(max_examples=60, deadline=None)
@given(
    first=libraries(max_size=10),
    two=libraries(max_size=10),
    later=st.lists(st.tuples(libraries(max_size=10), st.floats(0, 1), st.booleans()), min_size=1, max_size=4),
    options=view_options((1, 2)),
)
def test_aggregated_delta_chain(
    first: MainData, two: MainData, later: list[tuple[MainData, float, bool]], options: ViewOptions
) -> None:
    snapshots = [first]
    for nxt, keep, volatile_only in later:
        snapshots.append(tick(snapshots[-1], nxt, keep, volatile_only))
    run_chain(options, snapshots, two)


def opts(**kw: Any) -> ViewOptions:
    return ViewOptions(instance_id=1, instance_ids=(1,), sort="name", order="asc", **kw)


def rows(*names: str, **extra: Any) -> dict[str, dict[str, Any]]:
    return {n * 40: {"hash": n * 40, "name": n, "state": "stalledUP", "progress": 1, **extra} for n in names}


def test_first_frame_is_an_update_and_idle_ticks_send_nothing() -> None:
    engine, encoder = ViewEngine(), DeltaEncoder()
    data = MainData(rid=1, torrents=rows("a", "b"))
    first = engine.build(opts(), [state(data)], now=NOW)
    assert encoder.encode(first, aggregated=False) == ("update", first, None)
    # Same data, the clock moved (cacheMetadata.age): no frame.
    assert encoder.encode(engine.build(opts(), [state(data)], now=NOW + 5), aggregated=False) is None
    # Only volatile fields moved: no frame either, and the baseline keeps the old rows.
    moved = MainData(rid=2, torrents={h: {**r, "eta": 5, "num_seeds": 9} for h, r in data.torrents.items()})
    assert encoder.encode(engine.build(opts(), [state(moved)], now=NOW), aggregated=False) is None
    assert encoder.baseline is not None
    assert encoder.baseline["torrents"] == first["torrents"]


def test_delta_carries_changed_rows_order_and_omits_unchanged_counts() -> None:
    engine, encoder = ViewEngine(), DeltaEncoder()
    data = MainData(rid=1, torrents=rows("a", "b", "c"))
    encoder.encode(engine.build(opts(), [state(data)], now=NOW), aggregated=False)
    changed = dict(data.torrents)
    changed["b" * 40] = {**changed["b" * 40], "ratio": 2.0}
    frame = encoder.encode(engine.build(opts(), [state(MainData(rid=2, torrents=changed))], now=NOW), aggregated=False)
    assert frame is not None
    kind, payload, delta = frame
    assert kind == "delta" and delta == {}
    assert [r["hash"] for r in payload["torrents"]] == ["b" * 40]
    assert "counts" not in payload  # nothing moved between statuses, categories, tags, trackers
    assert payload["total"] == 3

    renamed = dict(changed)
    renamed["a" * 40] = {**renamed["a" * 40], "name": "z"}
    frame = encoder.encode(engine.build(opts(), [state(MainData(rid=3, torrents=renamed))], now=NOW), aggregated=False)
    assert frame is not None
    assert frame[2] == {"order": ["b" * 40, "c" * 40, "a" * 40]}

    paused = dict(renamed)
    paused["c" * 40] = {**paused["c" * 40], "state": "pausedUP"}
    frame = encoder.encode(engine.build(opts(), [state(MainData(rid=4, torrents=paused))], now=NOW), aggregated=False)
    assert frame is not None
    assert frame[1]["counts"]["status"]["paused"] == 1


def test_emptied_page_sends_an_empty_order() -> None:
    engine, encoder = ViewEngine(), DeltaEncoder()
    encoder.encode(engine.build(opts(), [state(MainData(rid=1, torrents=rows("a")))], now=NOW), aggregated=False)
    frame = encoder.encode(engine.build(opts(), [state(MainData(rid=2, torrents={}))], now=NOW), aggregated=False)
    assert frame is not None
    kind, payload, delta = frame
    assert kind == "delta" and delta == {"order": []} and payload["torrents"] == []


def test_reset_starts_a_new_chain() -> None:
    engine, encoder = ViewEngine(), DeltaEncoder()
    response = engine.build(opts(), [state(MainData(rid=1, torrents=rows("a")))], now=NOW)
    encoder.encode(response, aggregated=False)
    encoder.reset()
    assert encoder.baseline is None
    frame = encoder.encode(response, aggregated=False)
    assert frame is not None and frame[0] == "update"
