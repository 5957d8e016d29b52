"""The ``expr`` filter language: every construct, every rejection, and a property test against a reference evaluator."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qsse.views.expr import MAX_DEPTH, MAX_LENGTH, ExprError, compile_expr, field_key

ROW: dict[str, Any] = {
    "name": "Ubuntu 24.04 Desktop",
    "hash": "abc123",
    "size": 6 * 10**9,
    "progress": 1.0,
    "dlspeed": 0,
    "upspeed": 2048,
    "ratio": 2.5,
    "state": "stalledUP",
    "category": "linux",
    "tags": "iso, linux",
    "tracker": "https://tracker.example.org/announce",
    "added_on": 1_700_000_000,
    "completion_on": 1_700_003_600,
    "eta": 8640000,
    "num_seeds": 12,
    "num_leechs": 0,
    "save_path": "/data/linux",
    "amount_left": 0,
    "uploaded": 15 * 10**9,
    "downloaded": 6 * 10**9,
    "time_active": 90_000,
    "seeding_time": 86_400,
    "priority": 0,
    "force_start": False,
    "auto_tmm": True,
    "f_l_piece_prio": False,
    "empty": "",
}


def matches(text: str, row: Any = ROW) -> bool:
    return compile_expr(text)(row)


# --- what each construct means -------------------------------------------------------------------

CASES: list[tuple[str, bool]] = [
    # the two examples of the brief, in both naming styles
    ('Ratio > 2 && State == "stalledUP"', True),
    ('ratio > 2 and state == "stalledUP"', True),
    ('Ratio > 3 && State == "stalledUP"', False),
    # every comparison operator, numbers
    ("Ratio == 2.5", True),
    ("Ratio != 2.5", False),
    ("Ratio < 2.5", False),
    ("Ratio <= 2.5", True),
    ("Ratio > 2.4", True),
    ("Ratio >= 2.6", False),
    ("NumSeeds == 12.0", True),  # ints and floats compare by value
    ("2 < Ratio", True),  # constant on the left
    ("3 <= Ratio", False),
    # strings compare by code point
    ('State < "u"', True),
    ('State >= "z"', False),
    ('Name == "ubuntu 24.04 desktop"', False),  # case-sensitive
    # field to field
    ("Uploaded > Downloaded", True),
    ("Size == Downloaded", True),
    ("Category < State", True),
    # logic, both spellings, and precedence
    ("true", True),
    ("false", False),
    ("true || false && false", True),  # && binds tighter than ||
    ("(true || false) && false", False),
    ("true or false and false", True),
    ("!false", True),
    ("not true", False),
    ("not Ratio > 3", True),  # 'not' and '!' bind looser than comparisons
    ("!Ratio > 3", True),
    ("not Ratio > 2 and Ratio > 3", False),  # ...but tighter than and/or
    ("not not true", True),
    ("! ! true", True),
    ("false && false || true", True),
    ("true && true && true && false", False),
    ("false || false || false || true", True),
    ("Ratio > 3 or Ratio > 2 and State == 'stalledUP'", True),
    # arithmetic and its precedence
    ("1 + 2 * 3 == 7", True),
    ("(1 + 2) * 3 == 9", True),
    ("10 - 4 - 3 == 3", True),  # left associative
    ("2 * 3 % 4 == 2", True),
    ("7 / 2 == 3.5", True),  # '/' is true division
    ("7 % 3 == 1", True),
    ("-7 % 3 == 2", True),  # the sign of the divisor, as in Python
    ("-Ratio == -2.5", True),
    ("- -Ratio == 2.5", True),
    ("Uploaded / Size > 2", True),
    ("Size - AmountLeft == Size", True),
    ("Ratio * 2 - 1 == 4", True),
    ('Category + "/" + State == "linux/stalledUP"', True),  # '+' joins strings
    ("Ratio / 0 > 1", False),  # division by zero at run time: no match
    ("Ratio % 0 == 0", False),
    # units
    ("Size == 6GB", True),
    ("Size > 5.5GB", True),
    ("Size < 6GiB", True),  # 6 GiB is 6.44e9
    ("Size == 6000MB", True),
    ("Size == 6e9", True),
    ("UpSpeed == 2KiB", True),
    ("UpSpeed == 2kib", True),  # size units ignore case
    ("UpSpeed == 2048B", True),
    ("UpSpeed < 2.5KB", True),
    ("0.5KiB == 512", True),
    ("1TB == 1000GB", True),
    ("1TiB == 1024GiB", True),
    ("1PiB == 1024TiB", True),
    ("SeedingTime == 1d", True),
    ("SeedingTime == 24h", True),
    ("SeedingTime == 1440m", True),
    ("SeedingTime == 86400s", True),
    ("1w == 7d", True),
    ("1.5h == 90m", True),
    ("TimeActive > 1d && TimeActive < 2d", True),
    ("7 * 24h == 1w", True),  # constant arithmetic is folded at compile time
    ("AddedOn < now - 7d", True),
    ("AddedOn > now", False),
    # lists and 'in'
    ('State in ["stalledUP", "uploading"]', True),
    ('State in ["uploading"]', False),
    ('State not in ["uploading"]', True),
    ('State not in ["stalledUP"]', False),
    ("NumSeeds in [1, 12, 'x']", True),
    ("NumSeeds in [12.0]", True),
    ("Priority in [false]", False),  # booleans are not numbers
    ("ForceStart in [0]", False),
    ("ForceStart in [false]", True),
    ("Missing in [null]", True),
    ("Missing in [1, 2]", False),
    ("Missing not in [1, 2]", True),
    ("Ratio in []", False),
    ("Ratio in [1, 2.5,]", True),  # a trailing comma is fine
    ("Ratio in [NumSeeds, Ratio]", True),  # items may read fields
    ("Ratio in [2 + 0.5]", True),
    ('"iso" in Tags', True),  # 'in' with a string on the right is a substring test
    ('"is" in Tags', True),
    ('"tv" in Tags', False),
    ('"tv" not in Tags', True),
    # string operators (case-sensitive)
    ('Tags contains "linux"', True),
    ('Tags contains "Linux"', False),
    ('Name startsWith "Ubuntu"', True),
    ('Name startsWith "ubuntu"', False),
    ('Name endsWith "Desktop"', True),
    ('Name endsWith "Server"', False),
    ('Tracker contains "example.org"', True),
    ("Name contains Category", False),
    ('SavePath startsWith "/data/" + Category', True),
    # regular expressions, searched anywhere in the value
    ('Name matches "\\d+\\.\\d+"', True),  # unknown escapes are kept: "\d" stays \d
    ("Name matches `^Ubuntu \\d`", True),  # backticks: raw strings
    ('Name matches "^Desktop"', False),
    ('Name matches "(?i)ubuntu"', True),
    ('Tags matches "(^|, )iso(,|$)"', True),  # one exact tag
    ('Tags matches "(^|, )is(,|$)"', False),
    ("Missing matches 'x'", False),
    # string literals
    ("Name == 'Ubuntu 24.04 Desktop'", True),
    ('"a\\"b" == \'a"b\'', True),
    ("'it\\'s' == \"it's\"", True),
    ('"tab\\there" contains "\\t"', True),
    ('"\\u0041" == "A"', True),
    ('"back\\\\slash" endsWith "\\\\slash"', True),
    # null handling
    ("Missing == null", True),
    ("Missing == nil", True),
    ("Missing != null", False),
    ("Ratio == null", False),
    ("Ratio != null", True),
    ("null == null", True),
    ("Missing > 3", False),
    ("Missing < 3", False),
    ("3 > Missing", False),
    ("not Missing > 3", True),  # only the comparison is false, not the whole expression
    ("Missing == 3", False),
    ("Missing != 3", True),
    ("Missing + 1 == null", True),  # arithmetic on null is null
    ("-Missing == null", True),
    ("Missing + 1 > 0", False),
    ('Missing contains "x"', False),
    ('Missing startsWith "x"', False),
    ('"x" in Missing', False),
    # bare fields are tested for truthiness
    ("AutoTmm", True),
    ("ForceStart", False),
    ("!ForceStart", True),
    ("Category", True),
    ("Empty", False),
    ("Missing", False),
    ("!Missing", True),
    ("DlSpeed || UpSpeed", True),
    ("Category && Ratio > 2", True),
    ("(Category && Empty) == false", True),  # logical results are real booleans
    # booleans
    ("AutoTmm == true", True),
    ("ForceStart == false", True),
    ("ForceStart == 0", False),  # a boolean never equals a number
    ("AutoTmm != 1", True),
    ("FirstLastPiecePrio == false", True),
    # type errors at run time make the whole expression false
    ("Name > 3", False),
    ("!(Name > 3)", False),
    ("not (Name > 3) or true", False),  # evaluated first, so the type error wins
    ("true or Name > 3", True),  # skipped by short-circuit: never evaluated
    ("false and Name > 3", False),
    ("Name > 3 or true", False),
    ("Ratio contains 'x'", False),
    ("!(Ratio contains 'x')", False),
    ("Name + 1 > 0", False),
    ("-Name == null", False),
    ("ForceStart > 0", False),  # booleans do not order
    ("Ratio matches 'x'", False),
    ('"x" in Ratio', False),
    ("Name == 3", False),  # equality across types is just false, not an error
    ("!(Name == 3)", True),
    ("Name matches 'U' + 'b'", True),  # a constant pattern may be an expression
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_evaluates(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_field_names() -> None:
    assert field_key("Ratio") == "ratio"
    assert field_key("AddedOn") == "added_on"
    assert field_key("NumLeechs") == "num_leechs"
    assert field_key("DlSpeed") == "dlspeed"
    assert field_key("UpSpeed") == "upspeed"
    assert field_key("dlSpeed") == "dlspeed"
    assert field_key("InfohashV1") == "infohash_v1"
    assert field_key("MagnetURI") == "magnet_uri"
    assert field_key("AutoTMM") == "auto_tmm"
    assert field_key("AutoManaged") == "auto_tmm"
    assert field_key("FirstLastPiecePrio") == "f_l_piece_prio"
    assert field_key("ETA") == "eta"
    assert field_key("seeding_time") == "seeding_time"
    assert field_key("custom_field2") == "custom_field2"


def test_every_brief_field_reaches_its_row_key() -> None:
    pascal = [
        "Name",
        "Hash",
        "Size",
        "Progress",
        "DlSpeed",
        "UpSpeed",
        "Ratio",
        "State",
        "Category",
        "Tags",
        "Tracker",
        "AddedOn",
        "CompletionOn",
        "Eta",
        "NumSeeds",
        "NumLeechs",
        "SavePath",
        "AmountLeft",
        "Uploaded",
        "Downloaded",
        "TimeActive",
        "SeedingTime",
        "Priority",
    ]
    for name in pascal:
        key = field_key(name)
        assert key in ROW, name
        assert matches(f"{name} == {key}"), name


@pytest.mark.parametrize(
    "text",
    [
        "Flag == One",  # two fields: the generic path
        "Flag == 1",  # field and constant
        "1 == Flag",
        "Zero == false",
        "Flag in [1, 'x']",  # constant list, mixed types
        "Flag in [One]",  # list read from the row
        "One in [true]",
        "Flag in [1.0]",
    ],
)
def test_booleans_are_not_numbers(text: str) -> None:
    row = {"flag": True, "one": 1, "zero": 0}
    assert matches(text, row) is False
    assert matches(f"not ({text})", row) is True


def test_unknown_fields_read_as_null() -> None:
    assert matches("SomeFutureField == null")
    assert matches("some_future_field == 3", {"some_future_field": 3})
    assert matches("SomeFutureField == 3", {"some_future_field": 3})


def test_any_mapping_works() -> None:
    assert matches("Ratio > 2", MappingProxyType(ROW))


@pytest.mark.parametrize(
    "value",
    [[1, 2], {"a": 1}, (1,), object(), float("nan"), float("inf"), b"bytes", 10**400],
)
def test_odd_row_values_never_raise(value: Any) -> None:
    row = {"ratio": value, "name": value}
    for text in [
        "Ratio > 2",
        "Ratio == 2",
        "Ratio in [1, 'a', null, true]",
        "Ratio in ['a', 'b']",
        "Name contains 'x'",
        "Name matches 'x'",
        "Ratio + 1 > 2",
        "Ratio / 3 > 2",
        "-Ratio < 0",
        "Ratio",
        "'x' in Ratio",
        "Ratio == Name",
        "Ratio > Name",
    ]:
        assert isinstance(compile_expr(text)(row), bool), text


def test_same_text_compiles_once() -> None:
    assert compile_expr("Ratio > 1") is compile_expr("Ratio > 1")


def test_limits_are_inclusive() -> None:
    padded = "Ratio > 1" + " " * (MAX_LENGTH - len("Ratio > 1"))
    assert compile_expr(padded)(ROW)
    # The comparison, 62 negations and the field: exactly MAX_DEPTH levels.
    nested = "-" * (MAX_DEPTH - 2) + "Ratio < 0"
    assert compile_expr(nested)(ROW) is False
    parens = "(" * 1000 + "Ratio > 1" + ")" * 1000  # parentheses add no depth
    assert compile_expr(parens)(ROW)
    wide = " or ".join(f'State == "s{i}"' for i in range(200))  # and/or chains are flat
    assert compile_expr(wide)(ROW) is False


# --- what is refused, with where -----------------------------------------------------------------

REJECTIONS: list[tuple[str, str, int]] = [
    ("", "empty expression", 0),
    ("   \n\t", "empty expression", 0),
    (
        "x" * (MAX_LENGTH + 1),
        f"expression too long ({MAX_LENGTH + 1} characters, at most {MAX_LENGTH})",
        MAX_LENGTH + 1,
    ),
    (
        "-" * (MAX_DEPTH - 1) + "Ratio < 0",
        f"expression nested too deeply (more than {MAX_DEPTH} levels) at column {MAX_DEPTH}",
        MAX_DEPTH,
    ),
    # syntax
    ("Ratio > > 2", "unexpected token '>' at column 9", 9),
    ("Ratio >", "unexpected end of expression at column 8", 8),
    ("Ratio > 2 &&   ", "unexpected end of expression at column 13", 13),
    ("(Ratio > 2", "unexpected end of expression at column 11", 11),
    ("Ratio > 2)", "unexpected token ')' at column 10", 10),
    ("Ratio 2", "unexpected token '2' at column 7", 7),
    ("1 < Ratio < 3", "unexpected token '<' at column 11", 11),  # comparisons do not chain
    ("Ratio > 2 State", "unexpected token 'State' at column 11", 11),
    ("Ratio > #", "unexpected character '#' at column 9", 9),
    ('Name == "abc', "unterminated string starting at column 9", 9),
    ("Name == 'abc", "unterminated string starting at column 9", 9),
    ("Name matches `abc", "unterminated string starting at column 14", 14),
    ("[1, 2", "unexpected end of expression at column 6", 6),
    # unknown operators
    ("Ratio = 2", "unknown operator '=' at column 7; use '==' to compare", 7),
    ("Ratio === 2", "unknown operator '===' at column 7; use '=='", 7),
    ("Ratio !== 2", "unknown operator '!==' at column 7; use '!='", 7),
    ("Ratio <> 2", "unknown operator '<>' at column 7; use '!='", 7),
    ("Ratio => 2", "unknown operator '=>' at column 7; use '>='", 7),
    ("Ratio >> 2", "unknown operator '>>' at column 7", 7),
    ("Ratio > 1 & true", "unknown operator '&' at column 11; use '&&' or 'and'", 11),
    ("Ratio > 1 | true", "unknown operator '|' at column 11; use '||' or 'or'", 11),
    ("Ratio ~ 2", "unknown operator '~' at column 7", 7),
    ("Ratio ? 1 : 2", "unknown operator '?' at column 7", 7),
    ("Ratio ** 2 > 1", "unexpected token '*' at column 8", 8),
    # calls, attributes, indexing, dunders
    ("len(Name) > 3", "function calls are not supported at column 1", 1),
    ("Ratio > 1 && exit ()", "function calls are not supported at column 14", 14),
    ("now() > 1", "function calls are not supported at column 1", 1),
    ("__import__('os')", "function calls are not supported at column 1", 1),
    ("Name.upper == 'X'", "attribute access is not supported at column 5", 5),
    ("Name.__class__", "attribute access is not supported at column 5", 5),
    ("'x'.join == 1", "attribute access is not supported at column 4", 4),
    ("Tags[0] == 'x'", "indexing is not supported at column 5", 5),
    ("__class__ == 1", "invalid field name '__class__' at column 1: names start with a letter", 1),
    ("_private", "invalid field name '_private' at column 1: names start with a letter", 1),
    ("ForceStart == True", "'True' at column 15 is not a field; did you mean 'true'?", 15),
    ("Category == None", "'None' at column 13 is not a field; did you mean 'null'?", 13),
    # static kinds
    ("Ratio + 1", "the expression must be a condition, not a number, at column 1", 1),
    ("'abc'", "the expression must be a condition, not a string, at column 1", 1),
    ("null", "the expression must be a condition, not null, at column 1", 1),
    ("[1, 2]", "a list is only allowed after 'in' or 'not in', at column 1", 1),
    ("Ratio > 1 && 5", "'&&' needs conditions, not a number, at column 14", 14),
    ("'a' or Ratio > 1", "'||' needs conditions, not a string, at column 1", 1),
    ("!5", "'!' needs a condition, not a number, at column 2", 2),
    ("not 'a'", "'not' needs a condition, not a string, at column 5", 5),
    ("-'a' == 1", "'-' needs a number, not a string, at column 2", 2),
    ("-true == 1", "'-' needs a number, not a boolean, at column 2", 2),
    ("Ratio - 'a' > 1", "'-' needs numbers, not a string, at column 9", 9),
    ("Ratio + true > 1", "'+' needs numbers or strings, not a boolean, at column 9", 9),
    ("1 + 'a' == 1", "'+' cannot add a number and a string at column 3", 3),
    ("Ratio + 1 > 'a'", "'>' cannot order a number and a string at column 11", 11),
    ("5 > 'a'", "'>' cannot order a number and a string at column 3", 3),
    ("Ratio > true", "'>' needs numbers or strings, not a boolean, at column 9", 9),
    ("Ratio < null", "'<' needs numbers or strings, not null, at column 9", 9),
    ("1 == 'a'", "'==' compares a number with a string at column 3; they are never equal", 3),
    ("true != 1", "'!=' compares a boolean with a number at column 6; they are never equal", 6),
    ("Ratio == [1]", "a list is only allowed after 'in' or 'not in', at column 10", 10),
    ("Ratio + [1] > 1", "a list is only allowed after 'in' or 'not in', at column 9", 9),
    ("Ratio in 3", "'in' needs a list or a string on its right, not a number, at column 10", 10),
    ("Ratio not in true", "'not in' needs a list or a string on its right, not a boolean, at column 14", 14),
    ("1 in 'abc'", "'in' with a string on its right needs a string on its left, not a number, at column 1", 1),
    ("[1] in [[1]]", "a list is only allowed after 'in' or 'not in', at column 9", 9),
    ("Ratio in [[1]]", "a list is only allowed after 'in' or 'not in', at column 11", 11),
    ("5 contains 'a'", "'contains' needs a string on its left, not a number, at column 1", 1),
    ("Name startsWith 5", "'startsWith' needs a string on its right, not a number, at column 17", 17),
    ("Name endsWith null", "'endsWith' needs a string on its right, not null, at column 15", 15),
    # regular expressions
    ("Name matches '('", "invalid regular expression at column 14: missing ), unterminated subpattern", 14),
    ("Name matches '[a-'", "invalid regular expression at column 14: unterminated character set", 14),
    ("Name matches '*x'", "invalid regular expression at column 14: nothing to repeat", 14),
    ("Name matches Category", "'matches' needs a string literal pattern at column 14", 14),
    ("Name matches Category + 'b'", "'matches' needs a string literal pattern at column 14", 14),
    # numbers
    ("Size > 5XB", "unknown unit 'XB' in '5XB' at column 8", 8),
    ("Size > 5M", "unknown unit 'M' in '5M' at column 8", 8),  # minutes are lower case 'm'
    ("Size > 1e3KB", "a number with a unit cannot have an exponent: '1e3KB' at column 8", 8),
    ("Ratio > 2and", "unknown unit 'and' in '2and' at column 9", 9),
    ("Ratio > 2and true", "unexpected token 'true' at column 14", 14),
    ("1 / 0 == 1", "division by zero at column 1", 1),
    ("Ratio > 5 % (2 - 2)", "division by zero at column 9", 9),
]


@pytest.mark.parametrize(("text", "message", "position"), REJECTIONS)
def test_rejects(text: str, message: str, position: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(text)
    assert info.value.message.startswith(message)
    assert str(info.value) == info.value.message
    assert info.value.position == position


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty expression"):
        compile_expr("")


# --- property: the compiler agrees with a reference evaluator ------------------------------------
#
# Trees are generated with their static types in mind (the compiler refuses ill-typed ones and
# the table above covers that), rendered with the fewest parentheses the precedence allows plus
# some redundant ones, and evaluated here by a plain recursive interpreter of the documented
# semantics.

FIELDS = [
    ("ratio", "Ratio"),
    ("num_seeds", "NumSeeds"),
    ("name", "Name"),
    ("state", "State"),
    ("dlspeed", "DlSpeed"),
    ("force_start", "ForceStart"),
]
LEVEL = {"or": 1, "and": 2, "not": 3, "cmp": 4, "add": 5, "mul": 6, "neg": 7, "atom": 8}


class RefError(Exception):
    pass


@dataclass(frozen=True)
class N:
    kind: str
    args: tuple[Any, ...]
    paren: bool = False


def ref_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}
ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
STROPS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda a, b: b in a,
    "startsWith": lambda a, b: a.startswith(b),
    "endsWith": lambda a, b: a.endswith(b),
}


def ref(node: N, row: dict[str, Any]) -> Any:
    k, a = node.kind, node.args
    if k == "lit":
        return a[0]
    if k == "field":
        return row.get(a[0])
    if k == "neg":
        v = ref(a[0], row)
        if v is None:
            return None
        if is_num(v):
            return -v
        raise RefError
    if k == "arith":
        x, y = ref(a[1], row), ref(a[2], row)
        if x is None or y is None:
            return None
        if is_num(x) and is_num(y):
            try:
                return ARITH[a[0]](x, y)
            except ArithmeticError as exc:
                raise RefError from exc
        if a[0] == "+" and isinstance(x, str) and isinstance(y, str):
            return x + y
        raise RefError
    if k == "cmp":
        op, x, y = a[0], ref(a[1], row), ref(a[2], row)
        if op == "==":
            return ref_eq(x, y)
        if op == "!=":
            return not ref_eq(x, y)
        if x is None or y is None:
            return False
        if (is_num(x) and is_num(y)) or (isinstance(x, str) and isinstance(y, str)):
            return ORDER[op](x, y)
        raise RefError
    if k == "in":
        negated, x, items = a
        v = ref(x, row)
        found = any(ref_eq(v, ref(item, row)) for item in items)
        return found != negated
    if k == "strin":
        negated, x, y = a
        needle, hay = ref(x, row), ref(y, row)
        if needle is None or hay is None:
            result = False
        elif isinstance(needle, str) and isinstance(hay, str):
            result = needle in hay
        else:
            raise RefError
        return result != negated
    if k == "strop":
        x, y = ref(a[1], row), ref(a[2], row)
        if x is None or y is None:
            return False
        if isinstance(x, str) and isinstance(y, str):
            return STROPS[a[0]](x, y)
        raise RefError
    if k == "matches":
        x = ref(a[0], row)
        if x is None:
            return False
        if isinstance(x, str):
            return re.search(a[1], x) is not None
        raise RefError
    if k == "not":
        return not ref(a[1], row)
    if k == "and":
        return all(bool(ref(c, row)) for c in a[1])  # all() stops at the first false, like &&
    if k == "or":
        return any(bool(ref(c, row)) for c in a[1])
    raise AssertionError(k)


def ref_predicate(node: N, row: dict[str, Any]) -> bool:
    try:
        return bool(ref(node, row))
    except RefError:
        return False


def quote(value: str, q: str) -> str:
    body = value.replace("\\", "\\\\").replace(q, "\\" + q).replace("\n", "\\n").replace("\t", "\\t")
    return q + body + q


def render(node: N) -> tuple[str, int]:
    k, a = node.kind, node.args
    if k == "lit" or k == "field":
        text, level = a[1], LEVEL["atom"]
    elif k == "neg":
        text, level = "-" + wrap(a[0], LEVEL["neg"]), LEVEL["neg"]
    elif k == "arith":
        level = LEVEL["add"] if a[0] in "+-" else LEVEL["mul"]
        text = f"{wrap(a[1], level)} {a[0]} {wrap(a[2], level + 1)}"
    elif k == "cmp":
        text, level = f"{wrap(a[1], LEVEL['add'])} {a[0]} {wrap(a[2], LEVEL['add'])}", LEVEL["cmp"]
    elif k == "in":
        items = ", ".join(wrap(i, LEVEL["add"]) for i in a[2])
        text, level = f"{wrap(a[1], LEVEL['add'])} {'not in' if a[0] else 'in'} [{items}]", LEVEL["cmp"]
    elif k == "strin":
        text = f"{wrap(a[1], LEVEL['add'])} {'not in' if a[0] else 'in'} {wrap(a[2], LEVEL['add'])}"
        level = LEVEL["cmp"]
    elif k == "strop":
        text, level = f"{wrap(a[1], LEVEL['add'])} {a[0]} {wrap(a[2], LEVEL['add'])}", LEVEL["cmp"]
    elif k == "matches":
        text, level = f"{wrap(a[0], LEVEL['add'])} matches `{a[1]}`", LEVEL["cmp"]
    elif k == "not":
        text, level = f"{a[0]}{wrap(a[1], LEVEL['not'])}", LEVEL["not"]
    elif k in ("and", "or"):
        level = LEVEL[k]
        text = f" {a[0]} ".join(wrap(c, level + 1) for c in a[1])
    else:
        raise AssertionError(k)
    if node.paren:
        return f"({text})", LEVEL["atom"]
    return text, level


def wrap(node: N, minimum: int) -> str:
    text, level = render(node)
    return text if level >= minimum else f"({text})"


NUMBER_LITERALS = [
    ("0", 0),
    ("1", 1),
    ("2", 2),
    ("12", 12),
    ("0.5", 0.5),
    ("2.5", 2.5),
    (".25", 0.25),
    ("1e2", 100.0),
    ("3KiB", 3072),
    ("1.5KB", 1500),
    ("2m", 120),
    ("1h", 3600),
]
TEXT = st.text(alphabet="ab cS'\"\\\n\t", max_size=4)
#: Redundant parentheses, now and then.
parens = st.sampled_from([False, False, False, True])


def num_lit() -> st.SearchStrategy[N]:
    plain = st.one_of(st.integers(min_value=0, max_value=50), st.sampled_from([0, 1])).map(
        lambda i: N("lit", (i, str(i)))
    )
    table = st.sampled_from(NUMBER_LITERALS).map(lambda p: N("lit", (p[1], p[0])))
    return st.one_of(plain, table)


def str_lit() -> st.SearchStrategy[N]:
    return st.builds(lambda s, q: N("lit", (s, quote(s, q))), TEXT, st.sampled_from(['"', "'"]))


fields = st.builds(
    lambda f, pascal, p: N("field", (f[0], f[1] if pascal else f[0]), p), st.sampled_from(FIELDS), st.booleans(), parens
)


def numeric() -> st.SearchStrategy[N]:
    """Static kind number or field."""
    return st.recursive(
        st.one_of(num_lit(), fields),
        lambda inner: st.one_of(
            st.builds(lambda x, p: N("neg", (x,), p), inner, parens),
            st.builds(
                lambda op, x, y, p: N("arith", (op, x, y), p), st.sampled_from(list(ARITH)), inner, inner, parens
            ),
        ),
        max_leaves=4,
    )


def stringy() -> st.SearchStrategy[N]:
    """Static kind string or field."""
    return st.recursive(
        st.one_of(str_lit(), fields),
        lambda inner: st.builds(lambda x, y, p: N("arith", ("+", x, y), p), inner, inner, parens),
        max_leaves=3,
    )


def comparisons() -> st.SearchStrategy[N]:
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    pairs = st.one_of(
        st.tuples(numeric(), numeric()),
        st.tuples(stringy(), stringy()),
        st.tuples(fields, st.one_of(numeric(), stringy())),
        st.tuples(fields, fields),
    )
    ordered = st.builds(lambda op, pair: N("cmp", (op, *pair)), ops, pairs)
    equality_extra = st.builds(
        lambda op, f, lit: N("cmp", (op, f, lit)),
        st.sampled_from(["==", "!="]),
        fields,
        st.sampled_from([N("lit", (None, "null")), N("lit", (True, "true")), N("lit", (False, "false"))]),
    )
    item = st.one_of(
        num_lit(), str_lit(), fields, st.sampled_from([N("lit", (None, "null")), N("lit", (True, "true"))])
    )
    membership = st.builds(
        lambda neg, x, items: N("in", (neg, x, tuple(items))),
        st.booleans(),
        st.one_of(fields, num_lit(), str_lit()),
        st.lists(item, max_size=4),
    )
    substring = st.builds(lambda neg, x, y: N("strin", (neg, x, y)), st.booleans(), stringy(), stringy())
    strop = st.builds(lambda op, x, y: N("strop", (op, x, y)), st.sampled_from(list(STROPS)), stringy(), stringy())
    regex = st.builds(
        lambda x, pat: N("matches", (x, pat)), stringy(), st.sampled_from(["^a", "b$", "a.c", "(?i)AB", "\\d", "S|'"])
    )
    # Weighted towards the comparisons with the most semantics to get wrong.
    return st.one_of(ordered, ordered, ordered, equality_extra, membership, membership, substring, strop, regex)


conditions = st.recursive(
    st.one_of(
        comparisons(),
        fields,
        st.sampled_from([N("lit", (True, "true")), N("lit", (False, "false"))]),
    ),
    lambda inner: st.one_of(
        st.builds(lambda spell, x, p: N("not", (spell, x), p), st.sampled_from(["!", "not "]), inner, parens),
        st.builds(
            lambda spell, xs, p: N("and", (spell, tuple(xs)), p),
            st.sampled_from(["&&", "and"]),
            st.lists(inner, min_size=2, max_size=3),
            parens,
        ),
        st.builds(
            lambda spell, xs, p: N("or", (spell, tuple(xs)), p),
            st.sampled_from(["||", "or"]),
            st.lists(inner, min_size=2, max_size=3),
            parens,
        ),
    ),
    max_leaves=6,
)

# Rows mostly hold the type a field is meant to have, from the same small pools the literals
# use (so comparisons hit equality), and sometimes null, a boolean or the other type.
odd = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2, max_value=3), TEXT)
numbers = st.one_of(
    st.sampled_from([value for _, value in NUMBER_LITERALS]),
    st.integers(min_value=-5, max_value=60),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
)
strings = st.one_of(TEXT, st.sampled_from(["a", "ab", "abc", "S", "b"]))
rows = st.fixed_dictionaries(
    {},
    optional={
        "ratio": st.one_of(numbers, numbers, odd),
        "num_seeds": st.one_of(numbers, numbers, odd),
        "dlspeed": st.one_of(numbers, numbers, odd),
        "name": st.one_of(strings, strings, odd),
        "state": st.one_of(strings, strings, odd),
        # booleans next to the numbers they must not equal
        "force_start": st.one_of(st.booleans(), st.sampled_from([0, 1, 1.0, 0.0, None])),
    },
)


def const_division_by_zero(node: N) -> bool:
    """Whether a row-independent arithmetic subtree divides by zero (the compiler folds and refuses those)."""

    def constant(n: N) -> bool:
        return n.kind == "lit" or (n.kind in ("neg", "arith") and all(constant(c) for c in n.args if isinstance(c, N)))

    children = [c for c in node.args if isinstance(c, N)] + [
        c for arg in node.args if isinstance(arg, tuple) for c in arg if isinstance(c, N)
    ]
    if node.kind in ("neg", "arith") and constant(node):
        try:
            ref(node, {})
        except RefError:
            return True
    return any(const_division_by_zero(c) for c in children)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=conditions, row_list=st.lists(rows, min_size=1, max_size=4))
def test_agrees_with_reference(tree: N, row_list: list[dict[str, Any]]) -> None:
    text, _ = render(tree)
    try:
        predicate = compile_expr(text)
    except ExprError as exc:
        assert exc.message.startswith("division by zero"), (text, exc.message)
        assert const_division_by_zero(tree), text
        assume(False)
        return
    for row in row_list:
        assert predicate(row) is ref_predicate(tree, row), (text, row)


def test_reference_renderer_keeps_precedence() -> None:
    # The renderer must not add parentheses the precedence already implies, or the property
    # test would never exercise precedence: spot-check two shapes.
    one, two = N("lit", (1, "1")), N("lit", (2, "2"))
    summed = N("arith", ("+", one, N("arith", ("*", two, two))))
    assert render(summed)[0] == "1 + 2 * 2"
    grouped = N("arith", ("*", N("arith", ("+", one, two)), two))
    assert render(grouped)[0] == "(1 + 2) * 2"
    assert not math.isnan(float(render(one)[0]))


# --- docs/expr.md stays true ----------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "expr.md"


def doc_blocks() -> list[list[str]]:
    blocks = re.findall(r"```text\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [block.strip().splitlines() for block in blocks]


def test_doc_examples_compile() -> None:
    examples = doc_blocks()[0]
    assert examples
    for text in examples:
        compile_expr(text)


def test_doc_error_table_is_accurate() -> None:
    lines = doc_blocks()[-1]
    assert len(lines) >= 5
    for line in lines:
        text, message = re.split(r"\s{2,}", line, maxsplit=1)
        with pytest.raises(ExprError) as info:
            compile_expr(text)
        shown = message.split("…")[0]  # the docs shorten long messages with an ellipsis
        assert info.value.message.startswith(shown), line
