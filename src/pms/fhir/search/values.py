"""Typed parsing of single search values (one OR-ed alternative), per http://hl7.org/fhir/R4/search.html.

Every function takes the value still carrying its `\\` escapes and the parameter name as written
(for error messages); invalid values always raise a 400 `AppError` (search.html#errors: syntax errors
are errors whatever the `Prefer: handling`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import cast

from pms.core.errors import AppError, bad_request
from pms.fhir.search.model import (
    CompositeValue,
    DatePrecision,
    DateValue,
    MissingValue,
    Modifier,
    NumberValue,
    OfTypeValue,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchValue,
    SpecialValue,
    StringValue,
    TokenValue,
    UriValue,
)

PREFIXES: frozenset[str] = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
ESCAPABLE = frozenset("\\,$|")  # search.html#escaping
MAX_NUMBER_LENGTH = 100
MAX_EXPONENT = 1000  # |adjusted exponent| of a number: far beyond any clinical value

_NUMBER_RE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DATE_RE = re.compile(
    r"(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<tz>Z|[+\- ][0-9]{2}:[0-9]{2})?)?)?)?"
)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE_REF_RE = re.compile(rf"(?:(?P<type>[A-Za-z]+)/)?(?P<id>{_ID})(?:/_history/(?P<version>{_ID}))?")
_URL_TAIL_RE = re.compile(rf"/(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<version>{_ID}))?\Z")
_MAX_UTC = datetime.max.replace(tzinfo=UTC)
_MIN_UTC = datetime.min.replace(tzinfo=UTC)


def show(value: str, limit: int = 80) -> str:
    """A value quoted for a diagnostic message, shortened if long."""
    return f"'{value}'" if len(value) <= limit else f"'{value[:limit]}…'"


def _invalid(what: str, value: str, name: str) -> AppError:
    return bad_request(f"Invalid {what} {show(value)} in parameter '{name}'", code="value")


# --- escaping (search.html#escaping) --------------------------------------------------------------------


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not escaped by `\\`; the parts keep their escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(char)
            current.append(next(chars, ""))
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(text: str, name: str) -> str:
    """Remove the `\\` escapes; a `\\` before anything but `\\ , $ |` is illegal (search.html#escaping)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in ESCAPABLE or not escaped:
                raise bad_request(
                    f"Invalid escape in parameter '{name}': '\\' must precede one of \\ , $ |", code="value"
                )
            char = escaped
        out.append(char)
    return "".join(out)


# --- ordered types: prefixes, numbers, dates, quantities (search.html#prefix) ----------------------------


def split_prefix(text: str, name: str) -> tuple[Prefix, str]:
    """`ge2013-01-14` -> ("ge", "2013-01-14"). Two letters count as a prefix only when followed by a
    digit or sign, so other text is reported as an invalid value rather than a bad prefix."""
    head = text[:2]
    if len(text) > 2 and head.isascii() and head.isalpha() and text[2] in "0123456789+-":
        if head not in PREFIXES:
            raise bad_request(f"Unknown prefix '{head}' in parameter '{name}'", code="value")
        return cast(Prefix, head), text[2:]
    return "eq", text


def _decimal_from(coefficient: int, exponent: int) -> Decimal:
    digits = tuple(int(d) for d in str(abs(coefficient)))
    return Decimal((1 if coefficient < 0 else 0, digits, exponent))


def parse_decimal(text: str, name: str) -> tuple[Decimal, Decimal, Decimal]:
    """A number and its implicit range: half a unit of the last significant digit either side
    (search.html#number: "100" -> [99.5, 100.5), "100.00" -> [99.995, 100.005), "1.00e2" as "100").
    Note: the spec's example "1e2 -> [95, 105)" contradicts its own 1-significant-figure rule; this
    follows the rule ([50, 150))."""
    if len(text) > MAX_NUMBER_LENGTH or not _NUMBER_RE.fullmatch(text):
        raise _invalid("number", text, name)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _invalid("number", text, name) from None
    if abs(value.adjusted()) > MAX_EXPONENT:
        raise bad_request(f"Number {show(text)} in parameter '{name}' is out of range", code="value")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite by the regex
    coefficient = int("".join(map(str, digits))) * (-1 if sign else 1)
    low = _decimal_from(coefficient * 10 - 5, exponent - 1)
    high = _decimal_from(coefficient * 10 + 5, exponent - 1)
    return value, low, high


def parse_number(text: str, name: str) -> NumberValue:
    prefix, rest = split_prefix(unescape(text, name), name)
    value, low, high = parse_decimal(rest, name)
    return NumberValue(prefix, value, low, high)


def _offset(tz: str | None) -> timezone | None:
    if tz is None:
        return None
    if tz == "Z":
        return UTC
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if hours > 14 or minutes > 59 or (hours == 14 and minutes):
        raise ValueError("offset out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if tz[0] == "-" else delta)


def _date_bounds(match: re.Match[str]) -> tuple[datetime, datetime | None, DatePrecision]:
    """The naive [low, high) of a date/dateTime in its own time zone; high None past year 9999."""
    g = match.groupdict()
    year, month, day = int(g["year"]), int(g["month"] or 1), int(g["day"] or 1)
    if g["month"] is None:
        return datetime(year, 1, 1), _next_month(year, 12), "year"
    if g["day"] is None:
        return datetime(year, month, 1), _next_month(year, month), "month"
    if g["hour"] is None:
        low = datetime(year, month, day)
        return low, _plus(low, timedelta(days=1)), "day"
    low = datetime(year, month, day, int(g["hour"]), int(g["minute"]), int(g["second"] or 0))
    if g["second"] is None:
        return low, _plus(low, timedelta(minutes=1)), "minute"
    fraction = g["fraction"]
    if fraction is None:
        return low, _plus(low, timedelta(seconds=1)), "second"
    # Sub-microsecond digits are truncated: the range is then 1 µs wide.
    low = low.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    return low, _plus(low, timedelta(microseconds=10 ** max(0, 6 - len(fraction)))), "fraction"


def _plus(moment: datetime, delta: timedelta) -> datetime | None:
    try:
        return moment + delta
    except OverflowError:
        return None


def _next_month(year: int, month: int) -> datetime | None:
    """The first instant of the month after `month` (1-12)."""
    if month < 12:
        return datetime(year, month + 1, 1)
    return datetime(year + 1, 1, 1) if year < datetime.max.year else None


def _to_utc(moment: datetime | None, tz: timezone | None) -> datetime:
    if moment is None:
        return _MAX_UTC
    try:
        return moment.replace(tzinfo=tz or UTC).astimezone(UTC)
    except OverflowError:  # an offset pushing the instant past year 1 or 9999
        return _MAX_UTC if moment.year > 1 else _MIN_UTC


def parse_date(text: str, name: str) -> DateValue:
    """search.html#date: `[prefix]yyyy{-mm{-dd{Thh:mm{:ss{.fff}}{Z|(+|-)hh:mm}}}}` and its implicit
    range. Without a time zone the value is read as UTC (the spec suggests the server's local zone;
    this server's zone is UTC). A space in place of the `+` of an offset (a form-decoded `+`) is
    accepted."""
    prefix, rest = split_prefix(unescape(text, name), name)
    match = _DATE_RE.fullmatch(rest)
    if match is None:
        raise bad_request(f"Invalid date {show(rest)} in parameter '{name}'", code="value")
    try:
        tz = _offset(match["tz"])
        low, high, precision = _date_bounds(match)
    except ValueError:
        raise bad_request(f"Invalid date {show(rest)} in parameter '{name}'", code="value") from None
    value = rest if match["tz"] is None else rest.replace(" ", "+")
    return DateValue(prefix, value, _to_utc(low, tz), _to_utc(high, tz), precision, tz is not None)


def parse_quantity(text: str, name: str) -> QuantityValue:
    """search.html#quantity: `[prefix][number]`, or `[prefix][number]|[system]|[code]` (either
    system or code may be empty)."""
    parts = split_unescaped(text, "|")
    if len(parts) not in (1, 3):
        raise _invalid("quantity", text, name)
    prefix, number = split_prefix(unescape(parts[0], name), name)
    value, low, high = parse_decimal(number, name)
    if len(parts) == 1:
        return QuantityValue(prefix, value, low, high, None, None)
    system, code = unescape(parts[1], name), unescape(parts[2], name)
    return QuantityValue(prefix, value, low, high, system or None, code or None)


# --- token, string, uri, missing ------------------------------------------------------------------------


def parse_token(text: str, name: str) -> TokenValue:
    """search.html#token: `[code]`, `[system]|[code]`, `|[code]`, `[system]|`."""
    parts = split_unescaped(text, "|")
    if len(parts) == 1:
        return TokenValue(None, unescape(text, name))
    system, code = (unescape(p, name) for p in parts) if len(parts) == 2 else ("", "")
    if not system and not code:
        raise _invalid("token", text, name)
    return TokenValue(system, code or None)


def parse_of_type(text: str, name: str) -> OfTypeValue:
    """Token `:of-type`: `system|code|value`, all three present (search.html#token)."""
    parts = [unescape(p, name) for p in split_unescaped(text, "|")]
    if len(parts) != 3 or not all(parts):
        raise bad_request(
            f"Invalid value {show(text)} in parameter '{name}': :of-type needs system|code|value",
            code="value",
        )
    return OfTypeValue(parts[0], parts[1], parts[2])


def parse_string(text: str, name: str) -> StringValue:
    return StringValue(unescape(text, name))


def parse_uri(text: str, name: str) -> UriValue:
    """search.html#uri; a `|version` suffix is read as a canonical version (search.html#versions)."""
    parts = split_unescaped(text, "|")
    if len(parts) > 2 or not parts[0] or (len(parts) == 2 and not parts[1]):
        raise _invalid("uri", text, name)
    uri = unescape(parts[0], name)
    return UriValue(uri, unescape(parts[1], name) if len(parts) == 2 else None)


def parse_missing(text: str, name: str) -> MissingValue:
    if text not in ("true", "false"):
        raise bad_request(
            f"Invalid value {show(text)} in parameter '{name}': expected true or false", code="value"
        )
    return MissingValue(text == "true")


# --- reference (search.html#reference) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferenceContext:
    """What reference parsing needs beyond the text: the parameter's targets and `:[type]` modifier."""

    is_resource_type: Callable[[str], bool]
    targets: Collection[str] = ()
    type_modifier: str | None = None


def parse_reference(text: str, name: str, ctx: ReferenceContext) -> ReferenceValue:
    """`[id]`, `[type]/[id]{/_history/[version]}`, an absolute `[url]` (split into type/id when it ends
    in `[type]/[id]`), or a canonical `[url]|[version]`. With `:[type]` the value is an id."""
    parts = split_unescaped(text, "|")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        raise _invalid("reference", text, name)
    ref = unescape(parts[0], name)
    if _SCHEME_RE.match(ref):
        return _absolute_reference(ref, unescape(parts[1], name) if len(parts) == 2 else None, name, ctx)
    if len(parts) == 2:
        raise _invalid("reference", text, name)  # a canonical version needs an absolute URL
    return _relative_reference(ref, name, ctx)


def _absolute_reference(url: str, version: str | None, name: str, ctx: ReferenceContext) -> ReferenceValue:
    if ctx.type_modifier is not None:
        raise bad_request(
            f"Invalid reference {show(url)} in parameter '{name}': "
            f"a :{ctx.type_modifier} modifier needs a plain id, not an absolute URL",
            code="value",
        )
    tail = _URL_TAIL_RE.search(url) if version is None else None
    if tail is None or not ctx.is_resource_type(tail["type"]):
        return ReferenceValue(url, url=url, canonical_version=version)
    return ReferenceValue(url, tail["type"], tail["id"], tail["version"], url=url)


def _relative_reference(ref: str, name: str, ctx: ReferenceContext) -> ReferenceValue:
    match = _RELATIVE_REF_RE.fullmatch(ref)
    if match is None or (match["version"] and not match["type"]):
        raise _invalid("reference", ref, name)
    type_ = match["type"]
    if type_ is not None and not ctx.is_resource_type(type_):
        raise bad_request(
            f"Invalid reference {show(ref)} in parameter '{name}': unknown type '{type_}'", code="value"
        )
    if ctx.type_modifier is not None and type_ not in (None, ctx.type_modifier):
        raise bad_request(
            f"Invalid reference {show(ref)} in parameter '{name}': not a {ctx.type_modifier}", code="value"
        )
    if type_ is None:
        type_ = ctx.type_modifier or (next(iter(ctx.targets)) if len(ctx.targets) == 1 else None)
    return ReferenceValue(ref, type_, match["id"], match["version"])


# --- dispatch by parameter type and modifier ------------------------------------------------------------


def parse_value(
    type_: str, modifier: Modifier | None, text: str, name: str, ctx: ReferenceContext
) -> SearchValue:
    """One value of a non-composite parameter, read according to its type and modifier."""
    if modifier == "missing":
        return parse_missing(text, name)
    if type_ == "token":
        return _parse_token_modified(modifier, text, name)
    if type_ == "reference":
        return parse_token(text, name) if modifier == "identifier" else parse_reference(text, name, ctx)
    parser = _SIMPLE_PARSERS.get(type_)
    if parser is None:  # "special": logic is per parameter (search.html#special)
        return SpecialValue(text)
    return parser(text, name)


def _parse_token_modified(modifier: Modifier | None, text: str, name: str) -> SearchValue:
    if modifier == "text":
        return parse_string(text, name)
    if modifier in ("in", "not-in"):
        return parse_uri(text, name)
    if modifier == "of-type":
        return parse_of_type(text, name)
    return parse_token(text, name)


_SIMPLE_PARSERS: dict[str, Callable[[str, str], SearchValue]] = {
    "number": parse_number,
    "date": parse_date,
    "quantity": parse_quantity,
    "string": parse_string,
    "uri": parse_uri,
}


def parse_composite(
    component_types: Sequence[str], text: str, name: str, ctx: ReferenceContext
) -> CompositeValue:
    """search.html#composite: `a$b`, each part read by its component's type."""
    parts = split_unescaped(text, "$")
    if len(parts) != len(component_types) or not all(parts):
        raise bad_request(
            f"Invalid value {show(text)} in parameter '{name}': "
            f"expected {len(component_types)} components separated by '$'",
            code="value",
        )
    return CompositeValue(
        tuple(parse_value(t, None, p, name, ctx) for t, p in zip(component_types, parts, strict=True))
    )
