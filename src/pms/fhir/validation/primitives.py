"""Lexical rules of the R4 primitive types (http://hl7.org/fhir/R4/datatypes.html#primitive).

Each type has a fast `valid(value) -> bool` for the hot path and a slower `explain` that builds the issue
only once something is wrong. Regexes follow the R4 definitions with `re.ASCII` so `\\s`/`\\S` mean what
they mean in the Java reference validator; base64Binary is checked properly (R4's regex forgets `/`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from pms.core.errors import Issue

INT32_MIN: Final = -2_147_483_648
INT32_MAX: Final = 2_147_483_647

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"

_fullmatch = Callable[[str], "re.Match[str] | None"]


def _regex(pattern: str) -> _fullmatch:
    return re.compile(pattern, re.ASCII).fullmatch


_DATE = _regex(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?")
_DATETIME = _regex(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?")
_INSTANT = _regex(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}")
_TIME_RE = _regex(_TIME)
_CODE = _regex(r"[^\s]+(\s[^\s]+)*")
_ID = _regex(r"[A-Za-z0-9\-.]{1,64}")
_OID = _regex(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
_UUID = _regex(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_URI = _regex(r"\S+")
_BASE64 = _regex(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_WHITESPACE = re.compile(r"\s+", re.ASCII)
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _real_day(text: str) -> bool:
    """The regexes allow 31 days in every month; reject 2021-02-30 and 2023-02-29."""
    if len(text) < 10:
        return True
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if day <= 28:
        return True
    if month == 2 and day == 29:
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS[month]


def _string(v: Any) -> bool:
    return type(v) is str and v != ""


def _boolean(v: Any) -> bool:
    return type(v) is bool


def _integer(v: Any) -> bool:
    return type(v) is int and INT32_MIN <= v <= INT32_MAX


def _unsigned_int(v: Any) -> bool:
    return type(v) is int and 0 <= v <= INT32_MAX


def _positive_int(v: Any) -> bool:
    return type(v) is int and 1 <= v <= INT32_MAX


def _decimal(v: Any) -> bool:
    t = type(v)
    if t is int:
        return True
    if t is float:
        return math.isfinite(v)
    return t is Decimal and v.is_finite()  # servers may parse JSON with parse_float=Decimal


def _matcher(fullmatch: _fullmatch) -> Callable[[Any], bool]:
    def valid(v: Any) -> bool:
        return type(v) is str and fullmatch(v) is not None

    return valid


def _date_matcher(fullmatch: _fullmatch) -> Callable[[Any], bool]:
    def valid(v: Any) -> bool:
        return type(v) is str and fullmatch(v) is not None and _real_day(v)

    return valid


def _base64(v: Any) -> bool:
    if type(v) is not str or not v:
        return False
    if _BASE64(v) is not None:
        return True
    return _BASE64(_WHITESPACE.sub("", v)) is not None  # R4 allows whitespace between quads


def _xhtml(v: Any) -> bool:
    # Narrative.div: the XHTML itself is not parsed (that is an invariant-level check), but it must be a div.
    return type(v) is str and v.lstrip().startswith("<div")


class PrimitiveType:
    """One R4 primitive: its JSON kind, its fast check and the wording of its error."""

    __slots__ = ("expected", "json_kind", "name", "valid")

    def __init__(self, name: str, json_kind: str, valid: Callable[[Any], bool], expected: str) -> None:
        self.name = name
        self.json_kind = json_kind  # "string" | "number" | "boolean" as written in JSON
        self.valid = valid
        self.expected = expected  # human hint appended to value errors

    def explain(self, value: Any, path: str) -> Issue:
        """The issue for a value that failed `valid` (called on the error path only)."""
        got = json_kind(value)
        if got != self.json_kind:
            return Issue(
                "structure",
                f"Invalid {self.name} at {path}: expected a JSON {self.json_kind}, got {got} {show(value)}",
                expression=(path,),
            )
        if value == "":
            return Issue(
                "value",
                f"Empty string at {path}: FHIR JSON does not allow empty values (omit the element instead)",
                expression=(path,),
            )
        return Issue(
            "value", f"Invalid {self.name} {show(value)} at {path} ({self.expected})", expression=(path,)
        )


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value, as a word for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def show(value: Any, limit: int = 60) -> str:
    """A value quoted for a message, cut short so a 1 MB attachment doesn't end up in a log."""
    text = f"'{value}'" if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


_INT_RANGE = f"a whole number from {INT32_MIN} to {INT32_MAX}"
_URI_HINT = "a non-empty URI without whitespace"
PRIMITIVES: Final[dict[str, PrimitiveType]] = {
    p.name: p
    for p in (
        PrimitiveType("boolean", "boolean", _boolean, "true or false"),
        PrimitiveType("integer", "number", _integer, _INT_RANGE),
        PrimitiveType("unsignedInt", "number", _unsigned_int, f"a whole number from 0 to {INT32_MAX}"),
        PrimitiveType("positiveInt", "number", _positive_int, f"a whole number from 1 to {INT32_MAX}"),
        PrimitiveType("decimal", "number", _decimal, "a finite decimal number"),
        PrimitiveType("string", "string", _string, "a non-empty string"),
        PrimitiveType("markdown", "string", _string, "a non-empty string"),
        PrimitiveType("uri", "string", _matcher(_URI), _URI_HINT),
        PrimitiveType("url", "string", _matcher(_URI), _URI_HINT),
        PrimitiveType("canonical", "string", _matcher(_URI), _URI_HINT),
        PrimitiveType("code", "string", _matcher(_CODE), "no leading, trailing or repeated whitespace"),
        PrimitiveType("id", "string", _matcher(_ID), "1-64 characters from A-Z a-z 0-9 - ."),
        PrimitiveType("oid", "string", _matcher(_OID), "urn:oid: followed by a dotted OID"),
        PrimitiveType("uuid", "string", _matcher(_UUID), "urn:uuid: followed by a lower-case UUID"),
        PrimitiveType(
            "date",
            "string",
            _date_matcher(_DATE),
            "expected YYYY, YYYY-MM or YYYY-MM-DD, a real calendar date",
        ),
        PrimitiveType(
            "dateTime",
            "string",
            _date_matcher(_DATETIME),
            "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss) with a time zone (Z or +hh:mm)",
        ),
        PrimitiveType(
            "instant",
            "string",
            _date_matcher(_INSTANT),
            "expected YYYY-MM-DDThh:mm:ss(.sss) with a time zone (Z or +hh:mm)",
        ),
        PrimitiveType("time", "string", _matcher(_TIME_RE), "expected hh:mm:ss(.sss)"),
        PrimitiveType("base64Binary", "string", _base64, "expected base64 data"),
        PrimitiveType("xhtml", "string", _xhtml, "expected an XHTML <div> element"),
    )
}
