"""Parsing the ``streams`` parameter: defaults, canonical form, group keys, and every error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qsse.views.options import Filters, ViewOptions, ViewOptionsError, parse_streams


def parse_one(entry: dict[str, Any]) -> ViewOptions:
    return parse_streams(json.dumps([entry]))[0].options


def test_defaults_and_normalisation() -> None:
    options = parse_one({"instanceId": 3})
    assert options == ViewOptions(instance_id=3, instance_ids=(3,), page=0, limit=300, sort="added_on", order="desc")
    assert not options.aggregated
    assert parse_one({"instanceId": 3, "limit": 0}).limit == 300
    assert parse_one({"instanceId": 3, "limit": -5}).limit == 300
    assert parse_one({"instanceId": 3, "limit": 2000}).limit == 2000
    assert parse_one({"instanceId": 3, "order": "ASC"}).order == "asc"
    assert parse_one({"instanceId": 3, "order": "sideways"}).order == "desc"
    assert parse_one({"instanceId": 3, "sort": ""}).sort == "added_on"
    assert parse_one({"instanceId": 3, "search": "  ubuntu "}).search == "ubuntu"
    assert parse_one({"instanceId": 3, "unknown": {"ignored": True}}).instance_id == 3


def test_aggregated_ids_deduplicated_in_first_seen_order() -> None:
    options = parse_one({"instanceId": 9, "instanceIds": [5, 2, 5, 1]})
    assert options.aggregated and options.instance_id == 0
    assert options.instance_ids == (5, 2, 1)
    assert options.group_key.startswith("multi:1,2,5|")


def test_null_and_empty_filters_share_a_group() -> None:
    a = parse_one({"instanceId": 1, "filters": None})
    b = parse_one({"instanceId": 1, "filters": {"status": [], "tags": None, "expr": ""}})
    c = parse_one({"instanceId": 1})
    assert a == b == c
    assert a.group_key == b.group_key == '1|0|300|"added_on"|"desc"|""|{}'


def test_filters_canonical_form() -> None:
    options = parse_one(
        {
            "instanceId": 1,
            "filters": {
                "status": ["seeding", "downloading", "seeding"],
                "hashes": ["ABC", "abc"],
                "excludeCategories": ["", "tv"],
                "expr": " ratio > 2 ",
            },
        }
    )
    assert options.filters == Filters(
        hashes=("abc",), status=("downloading", "seeding"), exclude_categories=("", "tv"), expr="ratio > 2"
    )
    assert options.group_key.endswith(
        '|{"excludeCategories":["","tv"],"expr":"ratio > 2","hashes":["abc"],"status":["downloading","seeding"]}'
    )


def test_client_key_defaults_to_group_key() -> None:
    subs = parse_streams(json.dumps([{"instanceId": 1, "key": "mine"}, {"instanceId": 1}]))
    assert subs[0].key == "mine"
    assert subs[1].key == subs[1].options.group_key


@pytest.mark.parametrize(
    ("raw", "message", "field"),
    [
        ("not json", "invalid streams payload", "streams"),
        ('{"instanceId": 1}', "invalid streams payload", "streams"),
        ("[1, 2]", "invalid streams payload", "streams"),
        ("[]", "no stream subscriptions requested", "streams"),
        (json.dumps([{"instanceId": 1}] * 65), "too many stream subscriptions requested", "streams"),
        ('[{"instanceId": 1}, {"instanceId": 1, "limit": 2001}]', "invalid limit value", "streams[1].limit"),
        ('[{"instanceId": 1, "limit": "10"}]', "invalid limit value", "streams[0].limit"),
        ('[{"instanceId": 1, "page": -1}]', "invalid page value", "streams[0].page"),
        ('[{"instanceId": 1, "page": 1.5}]', "invalid page value", "streams[0].page"),
        ('[{"instanceId": 1, "sort": "nope"}]', "invalid sort field", "streams[0].sort"),
        ('[{"instanceId": 1, "sort": 3}]', "invalid sort field", "streams[0].sort"),
        ("[{}]", "invalid instance id", "streams[0].instanceId"),
        ('[{"instanceId": 0}]', "invalid instance id", "streams[0].instanceId"),
        ('[{"instanceId": true}]', "invalid instance id", "streams[0].instanceId"),
        ('[{"instanceId": "1"}]', "invalid instance id", "streams[0].instanceId"),
        ('[{"instanceIds": [1, -2]}]', "invalid instance id", "streams[0].instanceIds[1]"),
        ('[{"instanceIds": "1,2"}]', "invalid instance id", "streams[0].instanceIds"),
        (json.dumps([{"instanceIds": list(range(1, 66))}]), "too many instance ids", "streams[0].instanceIds"),
        ('[{"instanceId": 1, "key": 5}]', "invalid key value: expected a string", "streams[0].key"),
        ('[{"instanceId": 1, "search": []}]', "invalid search value: expected a string", "streams[0].search"),
        ('[{"instanceId": 1, "order": 1}]', "invalid order value: expected a string", "streams[0].order"),
        ('[{"instanceId": 1, "filters": []}]', "invalid filters value: expected an object", "streams[0].filters"),
        (
            '[{"instanceId": 1, "filters": {"status": "seeding"}}]',
            "invalid status value: expected an array",
            "streams[0].filters.status",
        ),
        (
            '[{"instanceId": 1, "filters": {"tags": ["a", 3]}}]',
            "invalid tags value: expected a list of strings",
            "streams[0].filters.tags[1]",
        ),
        (
            '[{"instanceId": 1, "filters": {"expr": 3}}]',
            "invalid expr value: expected a string",
            "streams[0].filters.expr",
        ),
    ],
)
def test_errors_name_the_field(raw: str, message: str, field: str) -> None:
    with pytest.raises(ViewOptionsError) as info:
        parse_streams(raw)
    assert info.value.message == message
    assert str(info.value) == message
    assert info.value.field == field


def test_bad_expr_is_rejected_with_the_compilers_message() -> None:
    from qsse.views.expr import ExprError, compile_expr

    with pytest.raises(ExprError) as expected:
        compile_expr("ratio >")
    with pytest.raises(ViewOptionsError) as info:
        parse_streams('[{"instanceId": 1}, {"instanceId": 1, "filters": {"expr": "ratio >"}}]')
    assert info.value.field == "streams[1].filters.expr"
    assert info.value.message == expected.value.message


def test_good_expr_is_kept() -> None:
    options = parse_one({"instanceId": 1, "filters": {"expr": 'Ratio > 2 && State == "stalledUP"'}})
    assert options.filters.expr == 'Ratio > 2 && State == "stalledUP"'
