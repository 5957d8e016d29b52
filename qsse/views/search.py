"""The ``search`` text of a view, compiled once into a predicate over torrent rows.

Protocol section 8: a pattern containing ``*``, ``?`` or ``[`` is a case-insensitive glob that
must match the whole name, category or one tag. Any other text matches when it is

1. a case-insensitive substring of the name, the category or one tag;
2. (hex-only text) a substring of ``hash``, ``infohash_v1`` or ``infohash_v2``;
3. once normalised (:func:`qsse.views.rows.normalise`), a substring of one normalised field;
4. split into normalised words, each word a substring of some normalised field; or
5. a fuzzy match of the normalised name, both (rapidfuzz):

   - *characters in order*: all but :func:`fuzzy_edits` characters of the text appear in the
     name in order (``LCSseq`` similarity), and
   - *small edit distance*: ``partial_ratio``, the best window of the name, scores at least
     what :func:`fuzzy_edits` substitutions leave (:func:`fuzzy_cutoff`). The first condition
     matters at the ends of the name, where ``partial_ratio`` also scores windows shorter than
     the text.

   Only for texts of :data:`FUZZY_MIN_LENGTH` characters or more (shorter ones match almost
   anything fuzzily).

The fields a search looks at are folded once per row into a :class:`SearchText` (the engine
caches it by row identity), so matching a row is a few C-level substring tests.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

from qsse.views.rows import fold, fold_chars, is_hex, normalise, parse_tags

Row = Mapping[str, Any]
FUZZY_MIN_LENGTH = 4
#: Joins the fields of a row into one string; it cannot occur in a search text (stripped).
_SEP = "\x00"


class SearchText(NamedTuple):
    """The searchable fields of one row, folded."""

    joined: str  # lower-cased name, category and each tag, joined by NUL
    normalised: str  # the same, normalised (NUL is not white space, so it survives)
    name: str  # the normalised name
    row: Row  # for the rare hex search, which also looks at the hashes


@lru_cache(maxsize=4096)
def _tags_joined(tags: str) -> str:
    return _SEP.join(parse_tags(tags))


def search_text(row: Row) -> SearchText:
    name, category, tags = row.get("name"), row.get("category"), row.get("tags")
    joined = _SEP.join(
        (
            name if isinstance(name, str) else "",
            category if isinstance(category, str) else "",
            _tags_joined(tags) if isinstance(tags, str) else "",
        )
    ).lower()
    # Folding the joined text at once equals folding each field: a search text is stripped and
    # holds no NUL, so the spaces folding may leave beside a NUL never matter.
    normalised = fold(joined)
    return SearchText(
        joined=joined,
        normalised=normalised,
        name=normalised.split(_SEP, 1)[0].rstrip(),
        row=row,
    )


#: Joins many rows' texts for one bulk fold; a row containing it takes the one-by-one path.
_ROW_SEP = "\x01"


def search_texts(rows: Sequence[Row]) -> list[SearchText]:
    """:func:`search_text` of many rows, folding all of them in one C call."""
    joined = [
        _SEP.join(
            (
                name if isinstance(name := row.get("name"), str) else "",
                category if isinstance(category := row.get("category"), str) else "",
                _tags_joined(tags) if isinstance(tags := row.get("tags"), str) else "",
            )
        ).lower()
        for row in rows
    ]
    parts = fold_chars(_ROW_SEP.join(joined)).split(_ROW_SEP)
    if len(parts) != len(rows):
        return [search_text(row) for row in rows]
    out = []
    for text, part, row in zip(joined, parts, rows, strict=True):
        normalised = " ".join(part.split())
        out.append(SearchText(text, normalised, normalised.split(_SEP, 1)[0].rstrip(), row))
    return out


def fuzzy_edits(length: int) -> int:
    """How many substitutions (two indel operations each) a fuzzy match tolerates."""
    return 1 if length < 8 else 2


def fuzzy_cutoff(length: int) -> float:
    # partial_ratio scores a window as 100 * (1 - indel / (2 * length)); one substitution costs
    # two indel operations. The epsilon keeps an exact bound from failing on rounding.
    return 100.0 * (1.0 - fuzzy_edits(length) / length) - 1e-9


def compile_search(text: str) -> Callable[[SearchText], bool] | None:
    """A predicate for ``text``, or None when the text is empty (everything matches)."""
    text = text.replace(_SEP, "").strip()
    if not text:
        return None
    if any(c in text for c in "*?["):
        return _glob(text)
    return _plain(text)


def _glob(pattern: str) -> Callable[[SearchText], bool]:
    match = re.compile(fnmatch.translate(pattern.lower()), re.DOTALL).match

    def matches(st: SearchText) -> bool:
        return any(match(field) for field in st.joined.split(_SEP))

    return matches


def _plain(raw: str) -> Callable[[SearchText], bool]:
    text = raw.lower()
    hex_only = is_hex(text)
    norm = normalise(raw)
    words = tuple(dict.fromkeys(norm.split()))
    several_words = len(words) > 1
    fuzzy = len(norm) >= FUZZY_MIN_LENGTH
    n = len(norm)
    cutoff = fuzzy_cutoff(n) if fuzzy else 0.0
    # The cheap LCS test runs first and rules most names out before partial_ratio.
    lcs_floor = n - fuzzy_edits(n) if fuzzy else 0
    ratio = fuzz.partial_ratio
    lcs = LCSseq.similarity

    def matches(st: SearchText) -> bool:
        if text in st.joined:
            return True
        if hex_only and text in _hashes(st.row):
            return True
        if not norm:
            return False
        normalised = st.normalised
        if norm in normalised:
            return True
        if several_words and all(word in normalised for word in words):
            return True
        if not fuzzy:
            return False
        name = st.name
        # A name shorter than the text would be scored the other way round by partial_ratio.
        return (
            len(name) >= n
            and lcs(norm, name, score_cutoff=lcs_floor) > 0
            and ratio(norm, name, score_cutoff=cutoff) > 0
        )

    return matches


def _hashes(row: Row) -> str:
    return _SEP.join(str(row.get(k) or "") for k in ("hash", "infohash_v1", "infohash_v2")).lower()
