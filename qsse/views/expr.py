"""The ``expr`` filter: a small, safe boolean language over torrent fields (stream protocol, section 8).

Theory of operation: :func:`compile_expr` parses the text once with an LALR grammar, checks
what can be checked statically (operand kinds, regular expressions, units, nesting depth), and
turns the tree into nested closures. The closure a view gets back runs on every row of every
tick, so the hot shapes (``field OP constant``) get dedicated closures that read the row
directly instead of going through one closure per operand. Nothing in here ever calls
``eval``/``exec``, looks up attributes or calls anything named by the expression: field names
become plain ``row.get(key)`` lookups and operators are a fixed table.

Runtime semantics, in one place (docs/expr.md has the user-facing version):

* a missing field is ``null``; ordering and string comparisons with ``null`` are false, ``==``
  and ``!=`` treat ``null`` as a value, arithmetic on ``null`` gives ``null``;
* a type error while evaluating (``"abc" > 3`` where a field held a string) makes the *whole*
  expression false for that row; operands skipped by ``&&``/``||`` short-circuiting are not
  evaluated, so they cannot cause one.
"""

from __future__ import annotations

import functools
import operator
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from qsse.errors import QsseError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "ExprError", "compile_expr", "field_key"]

#: Longest accepted expression, in characters.
MAX_LENGTH: Final = 4096
#: Deepest accepted expression tree (each operator is one level; parentheses add none).
MAX_DEPTH: Final = 64

Row = Mapping[str, Any]
_Eval = Callable[[Row], Any]
_Kind = Literal["bool", "number", "string", "null", "list", "any"]


class ExprError(QsseError, ValueError):
    """The expression text cannot be compiled.

    ``message`` is human readable and already names the column; ``position`` is the 1-based
    character offset of the problem in the text (0 when there is no meaningful place).
    """

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


class _Mismatch(Exception):
    """An operand had the wrong runtime type; the whole expression is false for this row."""


#: What a row evaluation may raise on odd data; all of it means "this row does not match".
_EVAL_ERRORS: Final = (_Mismatch, TypeError, ValueError, ArithmeticError)

_GRAMMAR: Final = r"""
?start: or_test
?or_test: and_test ((_OR | _OROR) and_test)*
?and_test: not_test ((_AND | _ANDAND) not_test)*
?not_test: (NOT | BANG) not_test -> not_
         | comparison
?comparison: sum comp_op sum
           | sum
comp_op: EQ | NE | LT | LE | GT | GE | IN | NOT IN | CONTAINS | STARTSWITH | ENDSWITH | MATCHES
?sum: sum (PLUS | MINUS) product -> arith
    | product
?product: product (STAR | SLASH | PERCENT) unary -> arith
        | unary
?unary: MINUS unary -> neg
      | atom
?atom: NUMBER -> number
     | STRING -> string
     | RAWSTRING -> rawstring
     | TRUE -> true
     | FALSE -> false
     | (NULL | NIL) -> null
     | NOW -> now
     | NAME -> field
     | "(" or_test ")"
     | "[" "]" -> list
     | "[" sum ("," sum)* ","? "]" -> list

_OR: "or"
_OROR: "||"
_AND: "and"
_ANDAND: "&&"
NOT: "not"
BANG: "!"
EQ: "=="
NE: "!="
LT: "<"
LE: "<="
GT: ">"
GE: ">="
IN: "in"
CONTAINS: "contains"
STARTSWITH: "startsWith"
ENDSWITH: "endsWith"
MATCHES: "matches"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
PERCENT: "%"
TRUE: "true"
FALSE: "false"
NULL: "null"
NIL: "nil"
NOW: "now"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z]*/
STRING: /"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/
RAWSTRING: /`[^`]*`/
%ignore /\s+/
"""


@functools.cache
def _parser() -> lark.Lark:
    # Built on first use: the LALR tables take a few tens of milliseconds.
    return lark.Lark(_GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)


# --- field names -------------------------------------------------------------------------------

#: PascalCase/camelCase names whose row key does not follow the generic rule (keyed lowercased).
_FIELD_EXCEPTIONS: Final[Mapping[str, str]] = {
    "dlspeed": "dlspeed",
    "upspeed": "upspeed",
    "firstlastpieceprio": "f_l_piece_prio",
    "flpieceprio": "f_l_piece_prio",
    "automanaged": "auto_tmm",
    "autotmm": "auto_tmm",
}
_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def field_key(name: str) -> str:
    """The row key an identifier refers to: ``AddedOn`` → ``added_on``, ``DlSpeed`` → ``dlspeed``.

    Names without capitals are used as they are, so snake_case row keys work directly.
    """
    if not any(c.isupper() for c in name):
        return name
    special = _FIELD_EXCEPTIONS.get(name.lower())
    if special is not None:
        return special
    return _CAMEL_BOUNDARY.sub("_", name).lower()


#: Keywords (and Python's None) in another case: refused as field names rather than read as null.
_MISCASED_WORDS: Final = frozenset({"true", "false", "null", "nil", "none", "and", "or", "not", "in", "now"})


# --- literals ----------------------------------------------------------------------------------

_SIZE_UNITS: Final[Mapping[str, int]] = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}
_DURATION_UNITS: Final[Mapping[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNITS_HELP: Final = "sizes: B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB; durations: s, m, h, d, w"
_NUMBER_PARTS: Final = re.compile(r"([0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)")


def _number(text: str, position: int) -> int | float:
    match = _NUMBER_PARTS.fullmatch(text)
    assert match is not None, text  # the NUMBER terminal only lets such text through
    digits, unit = match.groups()
    exact = "." not in digits and "e" not in digits.lower()
    if not unit:
        return int(digits) if exact else float(digits)
    multiplier = _DURATION_UNITS.get(unit) or _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        raise ExprError(f"unknown unit {unit!r} in {text!r} at column {position} ({_UNITS_HELP})", position)
    if "e" in digits.lower():
        # An exponent with a unit is never needed and would let "1e999999KB" build a huge integer.
        raise ExprError(f"a number with a unit cannot have an exponent: {text!r} at column {position}", position)
    value = Fraction(digits) * multiplier
    return int(value) if value.denominator == 1 else float(value)


_ESCAPES: Final[Mapping[str, str]] = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_ESCAPE: Final = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


def _unescape_one(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) == 5:
        return chr(int(code[1:], 16))
    # Unknown escapes stay as written so that regular expressions like "\d+" need no doubling.
    return _ESCAPES.get(code, match.group(0))


def _string(token_text: str) -> str:
    return _ESCAPE.sub(_unescape_one, token_text[1:-1])


# --- compiled nodes ----------------------------------------------------------------------------


class _NoConst:
    """Marks a node whose value depends on the row."""


_NO_CONST: Final = _NoConst()


@dataclass(frozen=True, slots=True)
class _Node:
    kind: _Kind
    fn: _Eval
    #: 1-based position of the node's first character, for error messages.
    position: int
    #: The row key when the node is a bare field reference (lets comparisons read the row directly).
    field: str | None = None
    const: Any = _NO_CONST
    items: tuple[_Node, ...] = ()

    @property
    def is_const(self) -> bool:
        return self.const is not _NO_CONST


def _const(value: Any, kind: _Kind, position: int) -> _Node:
    return _Node(kind, lambda row: value, position, const=value)


_KIND_NAMES: Final[Mapping[_Kind, str]] = {
    "bool": "a boolean",
    "number": "a number",
    "string": "a string",
    "null": "null",
    "list": "a list",
    "any": "a field",
}


def _is_number(value: Any) -> bool:
    cls = value.__class__
    return cls is int or cls is float


def _eq(a: Any, b: Any) -> bool:
    # Booleans are not numbers here: true == 1 is false, as in expr-lang.
    if a.__class__ is bool or b.__class__ is bool:
        return a is b
    return bool(a == b)


_ORDERING: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: ``c OP field`` is ``field MIRROR[OP] c``.
_MIRROR: Final[Mapping[str, str]] = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _truthy(node: _Node) -> _Eval:
    """An evaluator that returns a real bool for a node used as a condition."""
    if node.kind == "bool":
        return node.fn
    key = node.field
    if key is not None:
        return lambda row: bool(row.get(key))
    fn = node.fn
    return lambda row: bool(fn(row))


# --- the compiler ------------------------------------------------------------------------------


class _Compiler:
    def compile(self, tree: lark.Tree[lark.Token] | lark.Token) -> _Node:
        if isinstance(tree, lark.Token):  # pragma: no cover - every token sits under a named rule
            raise ExprError(f"unexpected token {tree.value!r}", _token_position(tree))
        method: Callable[[lark.Tree[lark.Token]], _Node] = getattr(self, f"_rule_{tree.data}")
        return method(tree)

    # atoms

    def _rule_number(self, tree: lark.Tree[lark.Token]) -> _Node:
        token = _only_token(tree)
        position = _token_position(token)
        return _const(_number(token.value, position), "number", position)

    def _rule_string(self, tree: lark.Tree[lark.Token]) -> _Node:
        token = _only_token(tree)
        return _const(_string(token.value), "string", _token_position(token))

    def _rule_rawstring(self, tree: lark.Tree[lark.Token]) -> _Node:
        token = _only_token(tree)
        return _const(token.value[1:-1], "string", _token_position(token))

    def _rule_true(self, tree: lark.Tree[lark.Token]) -> _Node:
        return _const(True, "bool", _token_position(_only_token(tree)))

    def _rule_false(self, tree: lark.Tree[lark.Token]) -> _Node:
        return _const(False, "bool", _token_position(_only_token(tree)))

    def _rule_null(self, tree: lark.Tree[lark.Token]) -> _Node:
        return _const(None, "null", _token_position(_only_token(tree)))

    def _rule_now(self, tree: lark.Tree[lark.Token]) -> _Node:
        clock = time.time
        return _Node("number", lambda row: clock(), _token_position(_only_token(tree)))

    def _rule_field(self, tree: lark.Tree[lark.Token]) -> _Node:
        token = _only_token(tree)
        position = _token_position(token)
        name = token.value
        if name.startswith("_"):
            raise ExprError(f"invalid field name {name!r} at column {position}: names start with a letter", position)
        if name.lower() in _MISCASED_WORDS:
            # "True" or "None" would otherwise quietly read a field that no row has.
            keyword = "null" if name.lower() == "none" else name.lower()
            raise ExprError(f"{name!r} at column {position} is not a field; did you mean {keyword!r}?", position)
        key = field_key(name)
        return _Node("any", lambda row: row.get(key), position, field=key)

    def _rule_list(self, tree: lark.Tree[lark.Token]) -> _Node:
        position = _tree_position(tree)
        items = tuple(self.compile(child) for child in tree.children)
        for item in items:
            self._require(item, ("number", "string", "bool", "null", "any"), "a list item must be a value")
        if all(item.is_const for item in items):
            values = tuple(item.const for item in items)
            return _Node("list", lambda row: values, position, const=values, items=items)
        fns = tuple(item.fn for item in items)
        return _Node("list", lambda row: tuple(fn(row) for fn in fns), position, items=items)

    # operators

    def _rule_neg(self, tree: lark.Tree[lark.Token]) -> _Node:
        sign, child = tree.children
        assert isinstance(sign, lark.Token)
        operand = self.compile(child)
        self._require(operand, ("number", "any"), "'-' needs a number")
        fn = operand.fn

        def negate(row: Row) -> Any:
            value = fn(row)
            if _is_number(value):
                return -value
            if value is None:
                return None
            raise _Mismatch

        return self._fold(_Node("number", negate, _token_position(sign)), operand)

    def _rule_arith(self, tree: lark.Tree[lark.Token]) -> _Node:
        left_tree, op_token, right_tree = tree.children
        assert isinstance(op_token, lark.Token)
        left, right = self.compile(left_tree), self.compile(right_tree)
        op = op_token.value
        what = f"{op!r} needs numbers or strings" if op == "+" else f"{op!r} needs numbers"
        allowed: tuple[_Kind, ...] = ("number", "string", "any") if op == "+" else ("number", "any")
        self._require(left, allowed, what)
        self._require(right, allowed, what)
        kinds = {left.kind, right.kind}
        if kinds == {"number", "string"}:
            raise ExprError(
                f"'+' cannot add a number and a string at column {_token_position(op_token)}",
                _token_position(op_token),
            )
        kind: _Kind = "string" if "string" in kinds else "number" if "number" in kinds else "any"
        return self._fold(_Node(kind, _arith(op, left.fn, right.fn), left.position), left, right)

    def _rule_not_(self, tree: lark.Tree[lark.Token]) -> _Node:
        bang, child = tree.children
        assert isinstance(bang, lark.Token)
        operand = self.compile(child)
        self._require(operand, ("bool", "any"), f"{bang.value!r} needs a condition")
        key = operand.field
        if key is not None:
            return _Node("bool", lambda row: not row.get(key), _token_position(bang))
        fn = operand.fn
        return _Node("bool", lambda row: not fn(row), _token_position(bang))

    def _rule_and_test(self, tree: lark.Tree[lark.Token]) -> _Node:
        fns = self._conditions(tree, "'&&' needs conditions")
        if len(fns) == 2:
            first, second = fns
            return _Node("bool", lambda row: first(row) and second(row), _tree_position(tree))

        def all_of(row: Row) -> bool:
            # A plain loop: all() over a generator costs a frame per row on this hot path.
            for fn in fns:  # noqa: SIM110
                if not fn(row):
                    return False
            return True

        return _Node("bool", all_of, _tree_position(tree))

    def _rule_or_test(self, tree: lark.Tree[lark.Token]) -> _Node:
        fns = self._conditions(tree, "'||' needs conditions")
        if len(fns) == 2:
            first, second = fns
            return _Node("bool", lambda row: first(row) or second(row), _tree_position(tree))

        def any_of(row: Row) -> bool:
            for fn in fns:  # noqa: SIM110 - see all_of
                if fn(row):
                    return True
            return False

        return _Node("bool", any_of, _tree_position(tree))

    def _rule_comparison(self, tree: lark.Tree[lark.Token]) -> _Node:
        left_tree, op_tree, right_tree = tree.children
        assert isinstance(op_tree, lark.Tree)
        op_tokens = [t for t in op_tree.children if isinstance(t, lark.Token)]
        op = " ".join(t.value for t in op_tokens)
        op_position = _token_position(op_tokens[0])
        left, right = self.compile(left_tree), self.compile(right_tree)
        position = left.position
        if op in ("==", "!="):
            return _Node("bool", self._equality(op, left, right, op_position), position)
        if op in _ORDERING:
            return _Node("bool", self._ordering(op, left, right, op_position), position)
        if op in ("in", "not in"):
            fn = self._membership(op, left, right)
            if op == "not in":
                inner = fn
                fn = lambda row: not inner(row)  # noqa: E731 - a closure chosen at compile time
            return _Node("bool", fn, position)
        return _Node("bool", self._string_op(op, left, right, op_position), position)

    # comparison builders

    def _equality(self, op: str, left: _Node, right: _Node, op_position: int) -> _Eval:
        scalar: tuple[_Kind, ...] = ("number", "string", "bool", "null", "any")
        self._require(left, scalar, f"{op!r} needs values")
        self._require(right, scalar, f"{op!r} needs values")
        known = {left.kind, right.kind} - {"any", "null"}
        if len(known) == 2:
            raise ExprError(
                f"{op!r} compares {_KIND_NAMES[left.kind]} with {_KIND_NAMES[right.kind]} at column "
                f"{op_position}; they are never equal",
                op_position,
            )
        if right.field is None and left.field is not None and right.is_const:
            fn = _field_equals(left.field, right.const)
        elif left.field is None and right.field is not None and left.is_const:
            fn = _field_equals(right.field, left.const)
        else:
            lf, rf = left.fn, right.fn
            fn = lambda row: _eq(lf(row), rf(row))  # noqa: E731
        if op == "==":
            return fn
        inner = fn
        return lambda row: not inner(row)

    def _ordering(self, op: str, left: _Node, right: _Node, op_position: int) -> _Eval:
        what = f"{op!r} needs numbers or strings"
        self._require(left, ("number", "string", "any"), what)
        self._require(right, ("number", "string", "any"), what)
        if {left.kind, right.kind} == {"number", "string"}:
            raise ExprError(f"{op!r} cannot order a number and a string at column {op_position}", op_position)
        compare = _ORDERING[op]
        if left.field is not None and right.is_const:
            return _field_ordering(left.field, compare, right.const)
        if right.field is not None and left.is_const:
            return _field_ordering(right.field, _ORDERING[_MIRROR[op]], left.const)
        lf, rf = left.fn, right.fn

        def ordering(row: Row) -> bool:
            a = lf(row)
            b = rf(row)
            if a is None or b is None:
                return False
            if (_is_number(a) and _is_number(b)) or (a.__class__ is str and b.__class__ is str):
                return compare(a, b)
            raise _Mismatch

        return ordering

    def _membership(self, op: str, left: _Node, right: _Node) -> _Eval:
        what = f"{op!r}"
        self._require(left, ("number", "string", "bool", "null", "any"), f"{what} needs a value on its left")
        if right.kind == "list":
            if right.is_const and left.field is not None:
                return _field_in_constants(left.field, right.const)
            lf, rf = left.fn, right.fn
            return lambda row: _in_values(lf(row), rf(row))
        self._require(right, ("string", "any"), f"{what} needs a list or a string on its right")
        if right.kind == "string":
            self._require(left, ("string", "any"), f"{what} with a string on its right needs a string on its left")
        lf, rf = left.fn, right.fn

        def member(row: Row) -> bool:
            needle = lf(row)
            haystack = rf(row)
            if haystack.__class__ is str:
                if needle.__class__ is str:
                    return needle in haystack
                if needle is None:
                    return False
                raise _Mismatch
            if haystack is None:
                return False
            if isinstance(haystack, list | tuple):
                return _in_values(needle, haystack)
            if needle is None:
                return False
            raise _Mismatch

        return member

    def _string_op(self, op: str, left: _Node, right: _Node, op_position: int) -> _Eval:
        what = f"{op!r}"
        self._require(left, ("string", "any"), f"{what} needs a string on its left")
        if op == "matches":
            if right.kind != "string" or not right.is_const:
                raise ExprError(f"'matches' needs a string literal pattern at column {right.position}", right.position)
            try:
                pattern = re.compile(right.const)
            except re.error as exc:
                raise ExprError(
                    f"invalid regular expression at column {right.position}: {exc.msg}", right.position
                ) from exc
            test: Callable[[str, str], bool] = lambda value, _: pattern.search(value) is not None  # noqa: E731
            constant: Any = right.const
        else:
            self._require(right, ("string", "any"), f"{what} needs a string on its right")
            test = _STRING_TESTS[op]
            constant = right.const if right.is_const else _NO_CONST
        if left.field is not None and constant is not _NO_CONST:
            return _field_string_test(left.field, test, constant)
        lf, rf = left.fn, right.fn

        def string_test(row: Row) -> bool:
            value = lf(row)
            argument = rf(row)
            if value is None or argument is None:
                return False
            if value.__class__ is str and argument.__class__ is str:
                return test(value, argument)
            raise _Mismatch

        return string_test

    # helpers

    def _conditions(self, tree: lark.Tree[lark.Token], what: str) -> tuple[_Eval, ...]:
        nodes = [self.compile(child) for child in tree.children]
        for node in nodes:
            self._require(node, ("bool", "any"), what)
        return tuple(_truthy(node) for node in nodes)

    @staticmethod
    def _require(node: _Node, kinds: Sequence[_Kind], what: str) -> None:
        """Refuse an operand whose static kind can never work, e.g. ``-"a"`` or ``Ratio + 1 && x``."""
        if node.kind in kinds:
            return
        if node.kind == "list":
            message = f"a list is only allowed after 'in' or 'not in', at column {node.position}"
        else:
            message = f"{what}, not {_KIND_NAMES[node.kind]}, at column {node.position}"
        raise ExprError(message, node.position)

    @staticmethod
    def _fold(node: _Node, *operands: _Node) -> _Node:
        """Evaluate constant arithmetic once, so ``7 * 24h`` costs nothing per row."""
        if not all(operand.is_const for operand in operands):
            return node
        try:
            value = node.fn({})
        except _EVAL_ERRORS as exc:
            message = "division by zero" if isinstance(exc, ZeroDivisionError) else "invalid arithmetic"
            raise ExprError(f"{message} at column {node.position}", node.position) from exc
        return _Node(node.kind, lambda row: value, node.position, const=value)


def _only_token(tree: lark.Tree[lark.Token]) -> lark.Token:
    (token,) = tree.children
    assert isinstance(token, lark.Token)
    return token


def _token_position(token: lark.Token) -> int:
    return (token.start_pos or 0) + 1


def _tree_position(tree: lark.Tree[lark.Token]) -> int:
    return tree.meta.start_pos + 1 if not tree.meta.empty else 0


# --- hot closures ------------------------------------------------------------------------------


def _field_equals(key: str, constant: Any) -> _Eval:
    if constant is None:
        return lambda row: row.get(key) is None
    if constant.__class__ is bool or constant.__class__ is str:
        if constant.__class__ is bool:
            return lambda row: row.get(key) is constant
        return lambda row: row.get(key) == constant

    def number_equals(row: Row) -> bool:
        value = row.get(key)
        return value == constant and value.__class__ is not bool

    return number_equals


def _field_ordering(key: str, compare: Callable[[Any, Any], bool], constant: Any) -> _Eval:
    if constant.__class__ is str:

        def string_ordering(row: Row) -> bool:
            value = row.get(key)
            if value.__class__ is str:
                return compare(value, constant)
            if value is None:
                return False
            raise _Mismatch

        return string_ordering

    def number_ordering(row: Row) -> bool:
        value = row.get(key)
        cls = value.__class__
        if cls is float or cls is int:
            return compare(value, constant)
        if value is None:
            return False
        raise _Mismatch

    return number_ordering


def _in_values(needle: Any, values: Sequence[Any]) -> bool:
    return any(_eq(needle, value) for value in values)


def _field_in_constants(key: str, values: Sequence[Any]) -> _Eval:
    strings = frozenset(v for v in values if v.__class__ is str)
    if len(strings) == len(values):

        def in_strings(row: Row) -> bool:
            value = row.get(key)
            return value.__class__ is str and value in strings

        return in_strings
    numbers = frozenset(v for v in values if _is_number(v))
    booleans = frozenset(v for v in values if v.__class__ is bool)
    has_null = any(v is None for v in values)

    def in_constants(row: Row) -> bool:
        value = row.get(key)
        cls = value.__class__
        if cls is str:
            return value in strings
        if cls is int or cls is float:
            return value in numbers
        if cls is bool:
            return value in booleans
        if value is None:
            return has_null
        return False

    return in_constants


_STRING_TESTS: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "contains": lambda value, argument: argument in value,
    "startsWith": str.startswith,
    "endsWith": str.endswith,
}


def _field_string_test(key: str, test: Callable[[str, str], bool], constant: str) -> _Eval:
    def field_string_test(row: Row) -> bool:
        value = row.get(key)
        if value.__class__ is str:
            return test(value, constant)
        if value is None:
            return False
        raise _Mismatch

    return field_string_test


def _arith(op: str, lf: _Eval, rf: _Eval) -> _Eval:
    compute: Callable[[Any, Any], Any] = {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
        "/": operator.truediv,
        "%": operator.mod,
    }[op]
    concatenates = op == "+"

    def arith(row: Row) -> Any:
        a = lf(row)
        b = rf(row)
        if a is None or b is None:
            return None
        if _is_number(a) and _is_number(b):
            return compute(a, b)
        if concatenates and a.__class__ is str and b.__class__ is str:
            return a + b
        raise _Mismatch

    return arith


# --- entry point -------------------------------------------------------------------------------


def compile_expr(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """Compile ``text`` into a predicate over torrent rows.

    Raises :class:`ExprError` when the text is empty, too long, too deeply nested, not valid
    syntax, or statically ill-typed. The predicate never raises: an evaluation error on a row
    makes it return False for that row.
    """
    return _compile_cached(text)


@functools.lru_cache(maxsize=512)
def _compile_cached(text: str) -> Callable[[Mapping[str, Any]], bool]:
    # Views with the same expression share one predicate; it holds no per-view state.
    if not text.strip():
        raise ExprError("empty expression", 0)
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression too long ({len(text)} characters, at most {MAX_LENGTH})", MAX_LENGTH + 1)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    _check_depth(tree)
    node = _Compiler().compile(tree)
    _Compiler._require(node, ("bool", "any"), "the expression must be a condition")
    evaluate = _truthy(node)

    def predicate(row: Mapping[str, Any]) -> bool:
        try:
            return evaluate(row)  # type: ignore[no-any-return]
        except _EVAL_ERRORS:
            return False

    return predicate


def _check_depth(tree: lark.Tree[lark.Token]) -> None:
    # Iterative on purpose: the point is to refuse trees that would exhaust the recursion limit.
    stack: list[tuple[lark.Tree[lark.Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            position = _tree_position(node)
            raise ExprError(
                f"expression nested too deeply (more than {MAX_DEPTH} levels) at column {position}", position
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, lark.Tree))


_OPERATOR_CHARS: Final = frozenset("=&|~^<>!?:")
_OPERATOR_HINTS: Final[Mapping[str, str]] = {
    "=": "; use '==' to compare",
    "&": "; use '&&' or 'and'",
    "|": "; use '||' or 'or'",
    "===": "; use '=='",
    "!==": "; use '!='",
    "<>": "; use '!='",
    "=<": "; use '<='",
    "=>": "; use '>='",
}
_IDENTIFIER_END: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _syntax_error(text: str, exc: UnexpectedInput) -> ExprError:
    """Turn lark's error into one sentence with a 1-based position."""
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            position = len(text.rstrip()) + 1
            return ExprError(f"unexpected end of expression at column {position}", position)
        start = token.start_pos or 0
        value = str(token.value)
    elif isinstance(exc, UnexpectedCharacters):
        start = exc.pos_in_stream or 0
        value = text[start]
    else:  # pragma: no cover - the LALR frontend raises only the two above
        return ExprError(str(exc), 0)
    position = start + 1
    before = text[:start].rstrip()
    callee = _IDENTIFIER_END.search(before)
    if value == "(" and callee is not None:
        name_start = callee.start()
        return ExprError(f"function calls are not supported at column {name_start + 1}", name_start + 1)
    if value.startswith(".") and (_IDENTIFIER_END.search(text[:start]) or text[:start].endswith((")", "]", '"', "'"))):
        return ExprError(f"attribute access is not supported at column {position}", position)
    if value == "[" and callee is not None:
        return ExprError(f"indexing is not supported at column {position}", position)
    if value[0] in "\"'`" and isinstance(exc, UnexpectedCharacters):
        return ExprError(f"unterminated string starting at column {position}", position)
    if value[0] in _OPERATOR_CHARS:
        run_start = start
        while run_start > 0 and text[run_start - 1] in _OPERATOR_CHARS:
            run_start -= 1
        run_end = start
        while run_end < len(text) and text[run_end] in _OPERATOR_CHARS:
            run_end += 1
        run = text[run_start:run_end]
        if isinstance(exc, UnexpectedCharacters) or run != value:
            hint = _OPERATOR_HINTS.get(run, "")
            return ExprError(f"unknown operator {run!r} at column {run_start + 1}{hint}", run_start + 1)
    if isinstance(exc, UnexpectedCharacters):
        return ExprError(f"unexpected character {value!r} at column {position}", position)
    return ExprError(f"unexpected token {value!r} at column {position}", position)
