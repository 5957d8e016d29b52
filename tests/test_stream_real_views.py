"""The stream manager with the real view engine and delta chain: frames applied to an init give the fresh view."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from test_stream_fakes import Client, FakeSupervisor

from qsse.stream.manager import StreamManager
from qsse.views.delta import VOLATILE_FIELDS
from qsse.views.engine import ViewEngine
from qsse.views.options import parse_streams


def row(h: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "hash": h, "infohash_v1": h, "infohash_v2": "", "name": f"Torrent {n:03d}", "state": "pausedUP",
        "progress": 1, "category": "tv" if n % 2 else "movies", "tags": "hd" if n % 3 == 0 else "",
        "tracker": "", "size": 1000 + n, "amount_left": 0, "dlspeed": 0, "upspeed": 0, "downloaded_session": 0,
        "uploaded_session": 0, "eta": 8640000, "priority": 0, "ratio": 1.0, "added_on": 1_700_000_000 + n,
        "num_seeds": 0, "time_active": 10, "magnet_uri": "magnet:?", **fields,
    }


def library(count: int) -> dict[str, dict[str, Any]]:
    return {f"{n:040x}": row(f"{n:040x}", n) for n in range(count)}


def apply(held: dict[str, Any], name: str, data: dict[str, Any], delta: dict[str, Any] | None,
          aggregated: bool) -> dict[str, Any]:
    """The client rule of the protocol: upsert rows by key, reorder by delta.order, take other fields."""
    field = "cross_instance_torrents" if aggregated else "torrents"
    if name in ("init", "update"):
        return dict(data)

    def key(r: dict[str, Any]) -> str:
        return f"{r['instance_id']}:{r['hash']}" if aggregated else str(r["hash"])

    by_key = {key(r): r for r in held[field] or []}
    for r in data.get(field) or []:
        by_key[key(r)] = r
    order = delta["order"] if delta and "order" in delta else [key(r) for r in held[field] or []]
    out = {**held, **{k: v for k, v in data.items() if k != field}}
    out[field] = [by_key[k] for k in order]
    return out


def comparable(view: dict[str, Any], aggregated: bool) -> dict[str, Any]:
    field = "cross_instance_torrents" if aggregated else "torrents"
    out = {k: v for k, v in view.items() if k not in ("cacheMetadata", field)}
    out[field] = [{k: v for k, v in r.items() if k not in VOLATILE_FIELDS} for r in view[field] or []]
    return out


@pytest.fixture
async def manager(nursery: trio.Nursery) -> AsyncIterator[tuple[FakeSupervisor, StreamManager]]:
    supervisor = FakeSupervisor((1, 2))
    supervisor.succeed(1, library(60), full_update=True, initial=True)
    supervisor.succeed(2, library(25), full_update=True, initial=True)
    manager = StreamManager(supervisor, ViewEngine())
    await nursery.start(manager.run)
    yield supervisor, manager


@pytest.mark.parametrize(
    "sub",
    [
        {"key": "s", "instanceId": 1, "limit": 10, "sort": "name", "order": "asc"},
        {"key": "f", "instanceId": 1, "limit": 7, "page": 1, "filters": {"categories": ["tv"]}},
        {"key": "a", "instanceIds": [1, 2], "limit": 15, "sort": "size"},
    ],
)
async def test_frames_applied_to_the_init_equal_a_fresh_view(
    manager: tuple[FakeSupervisor, StreamManager], sub: dict[str, Any], autojump_clock: Any
) -> None:
    supervisor, streams = manager
    raw = json.dumps([sub])
    aggregated = "instanceIds" in sub
    async with streams.open_session(streams.prepare_batch(raw, False), gzip=True) as body:
        client = Client(body, gzip=True)
        name, payload = await client.next()
        assert name == "init"
        held = apply({}, name, payload["data"], None, aggregated)
        rows = library(60)
        changes = [
            lambda r: r[next(iter(r))].update(state="uploading", upspeed=5),
            lambda r: r.pop(sorted(r)[3]),
            lambda r: r.update({"f" * 40: row("f" * 40, 999, name="AAA first")}),
            lambda r: r[sorted(r)[5]].update(category="tv", size=1),
            lambda r: r[sorted(r)[6]].update(time_active=99),  # volatile only: no frame needed
        ]
        frames: list[int] = []
        for change in changes:
            rows = {h: dict(r) for h, r in rows.items()}
            change(rows)
            supervisor.succeed(1, rows)
            frames.append(0)
            with trio.move_on_after(1):
                while True:
                    name, payload = await client.next_of("delta", "update")
                    assert name == "delta"
                    frames[-1] += 1
                    held = apply(held, name, payload["data"], payload.get("delta"), aggregated)
            [subscription] = parse_streams(raw)
            states = [supervisor.state(i) for i in (subscription.options.instance_ids or (1,))]
            fresh = ViewEngine().build(subscription.options, states, now=0)
            assert comparable(held, aggregated) == comparable(fresh, aggregated)
        assert all(n <= 1 for n in frames) and sum(frames) >= 3, frames
        assert frames[-1] == 0  # a volatile-only change sends nothing


async def test_a_member_going_down_updates_the_views_that_depend_on_it(
    manager: tuple[FakeSupervisor, StreamManager], autojump_clock: Any
) -> None:
    supervisor, mgr = manager
    subs = [{"key": "a", "instanceIds": [1, 2], "limit": 100}, {"key": "s", "instanceId": 2}]
    batch = mgr.prepare_batch(json.dumps(subs), False)
    async with mgr.open_session(batch) as body:
        client = Client(body)
        (_, agg), (_, single) = await client.next(), await client.next()
        assert agg["data"]["total"] == 85 and not agg["data"].get("partialResults")
        assert single["data"]["instanceMeta"]["connected"] is True
        # Instance 1 stays idle (no poll changes anything): the failure alone must update the views.
        supervisor.fail(2)
        frames: dict[str, dict[str, Any]] = {}
        with trio.fail_after(5):
            while len(frames) < 2:
                _, payload = await client.next_of("delta", "update")
                frames[payload["meta"]["streamKey"]] = payload
        assert frames["a"]["data"]["partialResults"] is True and frames["a"]["data"]["total"] == 60
        assert frames["s"]["data"]["instanceMeta"]["connected"] is False
