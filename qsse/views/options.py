"""Subscription options: parse the ``streams`` query parameter into canonical, hashable views.

Parsing is all-or-nothing (stream protocol, section 1): the first bad entry raises
:class:`ViewOptionsError` naming the offending field, and nothing is registered. Options are
normalised so that two requests for the same view compare equal and share one group key
(section 3): filter lists are de-duplicated and sorted, ``null`` and ``[]`` mean the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_SUBSCRIPTIONS = 64
MAX_INSTANCE_IDS = 64
DEFAULT_LIMIT = 300
MAX_LIMIT = 2000
DEFAULT_SORT = "added_on"

#: Torrent fields a view may sort on, by how they compare (see :mod:`qsse.views.sorting`).
SORT_FIELDS: Mapping[str, str] = {
    "name": "name",
    "state": "state",
    "eta": "eta",
    "priority": "priority",
    "instance": "instance",
    **dict.fromkeys(
        (
            "category",
            "tags",
            "tracker",
            "save_path",
            "download_path",
            "content_path",
            "root_path",
            "hash",
            "infohash_v1",
            "infohash_v2",
            "comment",
            "magnet_uri",
        ),
        "str",
    ),
    **dict.fromkeys(
        (
            "size",
            "total_size",
            "progress",
            "added_on",
            "completion_on",
            "last_activity",
            "seen_complete",
            "ratio",
            "ratio_limit",
            "max_ratio",
            "dlspeed",
            "upspeed",
            "dl_limit",
            "up_limit",
            "num_seeds",
            "num_leechs",
            "num_complete",
            "num_incomplete",
            "uploaded",
            "downloaded",
            "uploaded_session",
            "downloaded_session",
            "amount_left",
            "completed",
            "time_active",
            "seeding_time",
            "seeding_time_limit",
            "max_seeding_time",
            "inactive_seeding_time_limit",
            "max_inactive_seeding_time",
            "availability",
            "popularity",
            "reannounce",
            "trackers_count",
            "auto_tmm",
            "force_start",
            "seq_dl",
            "f_l_piece_prio",
            "super_seeding",
            "private",
            "has_metadata",
            "creation_date",
        ),
        "num",
    ),
}

_FILTER_LISTS = {
    "hashes": "hashes",
    "status": "status",
    "excludeStatus": "exclude_status",
    "categories": "categories",
    "excludeCategories": "exclude_categories",
    "tags": "tags",
    "excludeTags": "exclude_tags",
    "trackers": "trackers",
    "excludeTrackers": "exclude_trackers",
}


class ViewOptionsError(ValueError):
    """A subscription could not be accepted; ``field`` names where, e.g. ``streams[2].limit``."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Filters:
    """Canonical filters: lists sorted and de-duplicated, hashes lower-cased, ``expr`` stripped."""

    hashes: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    exclude_status: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    trackers: tuple[str, ...] = ()
    exclude_trackers: tuple[str, ...] = ()
    expr: str = ""

    def to_json(self) -> dict[str, Any]:
        """The wire form (camelCase keys), with empty members left out."""
        out: dict[str, Any] = {}
        for wire, attr in _FILTER_LISTS.items():
            values = getattr(self, attr)
            if values:
                out[wire] = list(values)
        if self.expr:
            out["expr"] = self.expr
        return out

    @property
    def canonical_json(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """One normalised view. Equal views (whatever the client key) produce equal options."""

    instance_id: int
    instance_ids: tuple[int, ...]
    page: int = 0
    limit: int = DEFAULT_LIMIT
    sort: str = DEFAULT_SORT
    order: str = "desc"
    search: str = ""
    filters: Filters = Filters()

    @property
    def aggregated(self) -> bool:
        return self.instance_id == 0

    @property
    def instance_key(self) -> str:
        if self.aggregated:
            return "multi:" + ",".join(str(i) for i in sorted(self.instance_ids))
        return str(self.instance_id)

    @property
    def group_key(self) -> str:
        """``<instanceKey>|<page>|<limit>|<sort>|<order>|<search>|<filters>`` (protocol section 3)."""
        quoted = [json.dumps(s, ensure_ascii=False) for s in (self.sort, self.order, self.search)]
        return "|".join([self.instance_key, str(self.page), str(self.limit), *quoted, self.filters.canonical_json])


@dataclass(frozen=True, slots=True)
class Subscription:
    key: str
    options: ViewOptions


def parse_streams(raw: str) -> list[Subscription]:
    """Parse the ``streams`` query parameter (a JSON array of subscription objects)."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ViewOptionsError("invalid streams payload", "streams") from exc
    if not isinstance(payload, list) or not all(isinstance(entry, dict) for entry in payload):
        raise ViewOptionsError("invalid streams payload", "streams")
    if not payload:
        raise ViewOptionsError("no stream subscriptions requested", "streams")
    if len(payload) > MAX_SUBSCRIPTIONS:
        raise ViewOptionsError("too many stream subscriptions requested", "streams")
    return [parse_subscription(entry, f"streams[{i}]") for i, entry in enumerate(payload)]


def parse_subscription(entry: Mapping[str, Any], where: str = "streams[0]") -> Subscription:
    """Parse one subscription object; ``where`` prefixes the field named by errors."""
    key = _typed(entry, "key", str, where) or ""
    options = parse_options(entry, where)
    return Subscription(key=key or options.group_key, options=options)


def parse_options(entry: Mapping[str, Any], where: str = "streams[0]") -> ViewOptions:
    raw_ids = _typed(entry, "instanceIds", list, where)
    single = _typed(entry, "instanceId", int, where)
    if raw_ids:
        ids: dict[int, None] = {}
        for i, value in enumerate(raw_ids):
            if not _is_int(value) or value <= 0:
                raise ViewOptionsError("invalid instance id", f"{where}.instanceIds[{i}]")
            ids[value] = None
        if len(ids) > MAX_INSTANCE_IDS:
            raise ViewOptionsError("too many instance ids", f"{where}.instanceIds")
        instance_id, instance_ids = 0, tuple(ids)
    else:
        if single is None or single <= 0:
            raise ViewOptionsError("invalid instance id", f"{where}.instanceId")
        instance_id, instance_ids = single, (single,)

    limit = _typed(entry, "limit", int, where)
    if limit is None or limit <= 0:
        limit = DEFAULT_LIMIT
    elif limit > MAX_LIMIT:
        raise ViewOptionsError("invalid limit value", f"{where}.limit")

    page = _typed(entry, "page", int, where) or 0
    if page < 0:
        raise ViewOptionsError("invalid page value", f"{where}.page")

    sort = (_typed(entry, "sort", str, where) or "").strip() or DEFAULT_SORT
    if sort not in SORT_FIELDS:
        raise ViewOptionsError("invalid sort field", f"{where}.sort")

    order = (_typed(entry, "order", str, where) or "").strip().lower()
    if order != "asc":
        order = "desc"

    search = (_typed(entry, "search", str, where) or "").strip()
    filters = parse_filters(entry.get("filters"), f"{where}.filters")
    return ViewOptions(
        instance_id=instance_id,
        instance_ids=instance_ids,
        page=page,
        limit=limit,
        sort=sort,
        order=order,
        search=search,
        filters=filters,
    )


def parse_filters(raw: Any, where: str = "filters") -> Filters:
    if raw is None:
        return Filters()
    if not isinstance(raw, dict):
        raise ViewOptionsError("invalid filters value: expected an object", where)
    lists: dict[str, tuple[str, ...]] = {}
    for wire, attr in _FILTER_LISTS.items():
        values = _typed(raw, wire, list, where)
        if not values:
            continue
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise ViewOptionsError(f"invalid {wire} value: expected a list of strings", f"{where}.{wire}[{i}]")
        if attr == "hashes":
            values = [v.strip().lower() for v in values]
        lists[attr] = tuple(sorted(set(values)))
    expr = (_typed(raw, "expr", str, where) or "").strip()
    if expr:
        _check_expr(expr, f"{where}.expr")
    return Filters(expr=expr, **lists)


def _check_expr(text: str, where: str) -> None:
    from qsse.views.expr import ExprError, compile_expr

    try:
        compile_expr(text)
    except ExprError as exc:
        raise ViewOptionsError(exc.message, where) from exc


_JSON_TYPE_NAMES = {str: "a string", int: "an integer", list: "an array", dict: "an object"}
#: Keys whose wrong type gets the protocol's own error text.
_PROTOCOL_TEXTS = {
    "limit": "invalid limit value",
    "page": "invalid page value",
    "sort": "invalid sort field",
    "instanceId": "invalid instance id",
    "instanceIds": "invalid instance id",
}


def _typed(obj: Mapping[str, Any], name: str, kind: type[Any], where: str) -> Any:
    """``obj[name]`` when it has the JSON type ``kind``; None when absent or null; else an error."""
    value = obj.get(name)
    if value is None:
        return None
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        message = _PROTOCOL_TEXTS.get(name) or f"invalid {name} value: expected {_JSON_TYPE_NAMES[kind]}"
        raise ViewOptionsError(message, f"{where}.{name}")
    return value


def _is_int(value: Any) -> bool:
    # JSON booleans decode to bool, a subclass of int; `true` is not an instance id.
    return isinstance(value, int) and not isinstance(value, bool)
