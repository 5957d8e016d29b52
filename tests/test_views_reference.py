"""A straightforward reference implementation of a view (protocol section 8), written apart from
the engine: the property tests compare the engine with it, and bench/bench_views.py uses it as
the cache-less baseline. It favours being obviously right over being fast, but stays O(n log n)
so that it is a fair baseline.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

from qsse.qbt.maindata import MainData
from qsse.qbt.status import InstanceState
from qsse.views.options import Filters, ViewOptions

Row = Mapping[str, Any]

DL = {"downloading", "stalledDL", "metaDL", "forcedMetaDL", "queuedDL", "allocating", "checkingDL", "forcedDL"}
UP = {"uploading", "stalledUP", "queuedUP", "checkingUP", "forcedUP"}
STOPPED = {"pausedDL", "pausedUP", "stoppedDL", "stoppedUP"}
ACTIVE = {"downloading", "uploading", "forcedDL", "forcedUP"}


def status_matches(name: str, row: Row) -> bool:
    state = row.get("state")
    progress = row.get("progress")
    table = {
        "all": True,
        "downloading": state in DL,
        "seeding": state in UP,
        "uploading": state in UP,
        "completed": isinstance(progress, int | float) and progress >= 1,
        "paused": state in STOPPED,
        "stopped": state in STOPPED,
        "running": state not in STOPPED,
        "resumed": state not in STOPPED,
        "active": state in ACTIVE,
        "inactive": state not in ACTIVE,
        "stalled": state in ("stalledUP", "stalledDL"),
        "stalled_uploading": state == "stalledUP",
        "stalled_downloading": state == "stalledDL",
        "checking": state in ("checkingDL", "checkingUP", "checkingResumeData"),
        "errored": state in ("error", "missingFiles"),
        "moving": state == "moving",
    }
    return table.get(name, state == name)


def tags_of(row: Row) -> list[str]:
    text = row.get("tags")
    if not isinstance(text, str):
        return []
    return [t.strip() for t in text.split(",") if t.strip()]


def domain_of(url: str) -> str:
    url = url.strip()
    if not url:
        return ""
    try:
        host = urlsplit(url if "://" in url else "//" + url).hostname
    except ValueError:
        host = None
    return (host or url).lower()


def hash_to_domains(h: str, row: Row, inverse: Mapping[str, set[str]]) -> set[str]:
    found = inverse.get(h, set()) - {""}
    if found:
        return found
    url = row.get("tracker")
    return {domain_of(url)} if isinstance(url, str) and url else {""}


def s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def norm(text: str) -> str:
    text = text.lower()
    for c in "._-[](){}":
        text = text.replace(c, " ")
    return " ".join(text.split())


def search_matches(text: str, row: Row) -> bool:
    text = text.strip()
    if not text:
        return True
    name, category, tags = s(row.get("name")).lower(), s(row.get("category")).lower(), tags_of(row)
    tags = [t.lower() for t in tags]
    if any(c in text for c in "*?["):
        return any(fnmatch.fnmatchcase(f, text.lower()) for f in [name, category, *tags])
    low = text.lower()
    if any(low in f for f in [name, category, *tags]):
        return True
    if re.fullmatch("[0-9a-f]+", low) and any(
        low in s(row.get(k)).lower() for k in ("hash", "infohash_v1", "infohash_v2")
    ):
        return True
    n = norm(text)
    if not n:
        return False
    fields = [norm(f) for f in [name, category, *tags]]
    if any(n in f for f in fields):
        return True
    words = n.split()
    if len(words) > 1 and all(any(w in f for f in fields) for w in words):
        return True
    nname = norm(name)
    if len(n) >= 4 and len(nname) >= len(n):
        edits = 1 if len(n) < 8 else 2
        in_order = LCSseq.similarity(n, nname) >= len(n) - edits
        return in_order and fuzz.partial_ratio(n, nname) >= 100 * (1 - edits / len(n)) - 1e-9
    return False


def filters_match(f: Filters, h: str, row: Row, inverse: Mapping[str, set[str]], subcats: bool) -> bool:
    if f.hashes and not {h.lower(), s(row.get("infohash_v1")).lower(), s(row.get("infohash_v2")).lower()} & set(
        f.hashes
    ):
        return False
    if f.status and not any(status_matches(n, row) for n in f.status):
        return False
    if f.exclude_status and any(status_matches(n, row) for n in f.exclude_status):
        return False
    cat = s(row.get("category"))

    def cat_in(values: Sequence[str]) -> bool:
        return any(v == cat or (subcats and v != "" and cat.startswith(v + "/")) for v in values)

    if f.categories and not cat_in(f.categories):
        return False
    if f.exclude_categories and cat_in(f.exclude_categories):
        return False
    tags = tags_of(row)

    def tag_in(values: Sequence[str]) -> bool:
        return any((v == "" and not tags) or (v != "" and v in tags) for v in values)

    if f.tags and not tag_in(f.tags):
        return False
    if f.exclude_tags and tag_in(f.exclude_tags):
        return False
    ds = hash_to_domains(h, row, inverse)
    if f.trackers and not ds & {t.lower() for t in f.trackers}:
        return False
    if f.exclude_trackers and ds & {t.lower() for t in f.exclude_trackers}:
        return False
    if f.expr:
        from qsse.views.expr import compile_expr

        if not compile_expr(f.expr)(row):
            return False
    return True


STRING_FIELDS = {
    "name", "category", "tags", "tracker", "save_path", "download_path", "content_path", "root_path", "hash",
    "infohash_v1", "infohash_v2", "comment", "magnet_uri",
}  # fmt: skip
STATE_ORDER = [
    "forcedDL downloading", "forcedMetaDL metaDL", "allocating", "stalledDL", "queuedDL", "checkingDL",
    "forcedUP uploading", "stalledUP", "queuedUP", "checkingUP", "checkingResumeData", "moving",
    "pausedDL stoppedDL", "pausedUP stoppedUP", "missingFiles", "error", "unknown",
]  # fmt: skip


def sort_value(field: str, row: Row, instance_name: str, iid: int) -> tuple[bool, Any]:
    """(sorts last in both orders, value)."""
    if field == "instance":
        return False, (instance_name.casefold(), iid)
    v = row.get(field)
    if field == "state":
        if not isinstance(v, str):
            return True, 0
        for rank, group in enumerate(STATE_ORDER):
            if v in group.split():
                return False, rank
        return False, len(STATE_ORDER)
    if field in STRING_FIELDS:
        return (False, v.casefold()) if isinstance(v, str) else (True, "")
    if not isinstance(v, int | float):
        return True, 0
    if field == "eta" and v >= 8640000:
        return True, 0
    if field == "priority" and v <= 0:
        return True, 0
    return False, v


def reference_rows(options: ViewOptions, states: Sequence[InstanceState]) -> tuple[list[tuple[int, Row]], bool]:
    """Every row of the filtered set, in view order, with its instance id; and partialResults."""
    picked: list[tuple[int, str, Row]] = []
    partial = False
    for st in states:
        data: MainData = st.data
        if options.aggregated and not (st.connected and (data.rid or data.torrents)):
            partial = True
            continue
        inverse: dict[str, set[str]] = {}
        for url, hashes in data.trackers.items():
            for h in hashes:
                inverse.setdefault(h, set()).add(domain_of(url))
        subcats = any("/" in c for c in data.categories)
        for h, row in data.torrents.items():
            if filters_match(options.filters, h, row, inverse, subcats) and search_matches(options.search, row):
                picked.append((st.instance_id, h, row))
    names = {st.instance_id: st.name for st in states}

    def ties(item: tuple[int, str, Row]) -> tuple[str, str, int]:
        return s(item[2].get("name")).casefold(), item[1], item[0]

    picked.sort(key=ties)
    normal = [p for p in picked if not sort_value(options.sort, p[2], names[p[0]], p[0])[0]]
    last = [p for p in picked if sort_value(options.sort, p[2], names[p[0]], p[0])[0]]
    normal.sort(key=lambda p: sort_value(options.sort, p[2], names[p[0]], p[0])[1], reverse=options.order == "desc")
    return [(iid, row) for iid, _, row in normal + last], partial


def reference_stats(rows: Sequence[Row]) -> dict[str, int]:
    def total(key: str, which: Sequence[Row] = rows) -> int:
        return sum(int(r.get(key) or 0) for r in which if isinstance(r.get(key), int | float))

    state = [r.get("state") for r in rows]
    return {
        "total": len(rows),
        "downloading": sum(x in DL for x in state),
        "seeding": sum(x in UP for x in state),
        "paused": sum(x in STOPPED for x in state),
        "error": sum(x in ("error", "missingFiles") for x in state),
        "checking": sum(x in ("checkingDL", "checkingUP", "checkingResumeData") for x in state),
        "totalDownloadSpeed": total("dlspeed"),
        "totalUploadSpeed": total("upspeed"),
        "totalDownloadData": total("downloaded_session"),
        "totalUploadData": total("uploaded_session"),
        "totalSize": total("size"),
        "totalRemainingSize": total("amount_left"),
        "totalSeedingSize": total("size", [r for r in rows if r.get("state") in UP]),
    }


def reference_view(options: ViewOptions, states: Sequence[InstanceState]) -> dict[str, Any]:
    """The parts of a TorrentResponse that depend on filtering, sorting and paging."""
    rows, partial = reference_rows(options, states)
    start = options.page * options.limit
    page = rows[start : start + options.limit]
    return {
        "keys": [(iid, s(row.get("hash"))) for iid, row in page],
        "total": len(rows),
        "hasMore": start + len(page) < len(rows),
        "stats": reference_stats([row for _, row in rows]),
        "partialResults": partial,
    }


def test_reference_sorts_eta_infinity_last_both_ways() -> None:
    from qsse.qbt.status import Health

    rows = {
        "a": {"hash": "a", "name": "A", "eta": 8640000},
        "b": {"hash": "b", "name": "B", "eta": 10},
        "c": {"hash": "c", "name": "C", "eta": 20},
    }
    st = InstanceState(1, "one", Health.SYNCING, MainData(rid=1, torrents=rows))
    for order, expected in (("asc", ["b", "c", "a"]), ("desc", ["c", "b", "a"])):
        options = ViewOptions(instance_id=1, instance_ids=(1,), sort="eta", order=order)
        assert [h for _, h in reference_view(options, [st])["keys"]] == expected


STATUS_NAMES = [
    "all", "downloading", "seeding", "uploading", "completed", "paused", "stopped", "running", "resumed",
    "active", "inactive", "stalled", "stalled_uploading", "stalled_downloading", "checking", "errored", "moving",
]  # fmt: skip


def reference_counts(data: MainData) -> dict[str, Any]:
    """Whole-library sidebar counts of one instance."""
    inverse: dict[str, set[str]] = {}
    for url, hashes in data.trackers.items():
        for h in hashes:
            inverse.setdefault(h, set()).add(domain_of(url))
    rows = list(data.torrents.items())
    categories = dict.fromkeys(data.categories, 0)
    category_sizes = dict.fromkeys(data.categories, 0)
    tags = dict.fromkeys(data.tags, 0)
    tag_sizes = dict.fromkeys(data.tags, 0)
    trackers: dict[str, int] = {}
    for h, row in rows:
        size = row.get("size") if isinstance(row.get("size"), int) else 0
        cat = s(row.get("category"))
        categories[cat] = categories.get(cat, 0) + 1
        category_sizes[cat] = category_sizes.get(cat, 0) + size
        for tag in tags_of(row) or [""]:
            tags[tag] = tags.get(tag, 0) + 1
            tag_sizes[tag] = tag_sizes.get(tag, 0) + size
        for d in hash_to_domains(h, row, inverse):
            trackers[d] = trackers.get(d, 0) + 1
    return {
        "status": {name: sum(status_matches(name, row) for _, row in rows) for name in STATUS_NAMES},
        "categories": categories,
        "categorySizes": category_sizes,
        "tags": tags,
        "tagSizes": tag_sizes,
        "trackers": dict(sorted(trackers.items())),
        "total": len(rows),
    }
