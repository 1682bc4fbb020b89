"""JSON parsing with a bounded nesting depth, for every document that comes from outside.

Python's json parser recurses once per nesting level, so `'[' * 1000 + ']' * 1000` raises
RecursionError (not ValueError): caught nowhere, it became a 500 with a traceback. Whether a
given depth overflows also depends on how deep the caller's stack already is, so catching
RecursionError is a backstop, not a bound. Here the depth is counted first, in linear time and
without recursion, and anything deeper than `MAX_DEPTH` is refused as `JSONTooDeep`, a
ValueError: every caller that already treats malformed JSON as a bad request (or as a bad
upstream answer) treats an absurdly nested document the same way.

It lives in the lowest package that reads JSON from outside (Apple's answers, identity tokens
and notifications), so that every layer above, and infra's JSON provider, can use it too.
"""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

# No document we accept or read nests anywhere near this deep (the deepest, a JWK Set or a
# token request's user_profile, nest three levels); the parser's stack allows about 900.
MAX_DEPTH = 32
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text` (brackets inside strings ignored).

    For malformed text the count may be off, but json.loads refuses such text anyway.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """json.loads, but JSONTooDeep (a ValueError) beyond `max_depth` levels of nesting.

    Bytes are decoded as json.loads decodes them (UTF-8, -16 or -32, detected).
    """
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
    if depth(data) > max_depth:
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data, **kwargs)
    except RecursionError as exc:  # unreachable within MAX_DEPTH; never let it become a 500
        raise JSONTooDeep("JSON nested too deeply to parse") from exc
