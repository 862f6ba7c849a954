"""Typed search index values extracted from a resource, one kind per search type.

Each search parameter's FHIRPath expression is compiled once per resource type (`fhirpath_compile`; outside
its subset, fhirpathpy compiled once), and its results are converted according to the parameter's type and
each value's FHIR type (http://hl7.org/fhir/R4/search.html#ptypes). The values are plain immutable tuples,
ready for typed index tables:

- string: `StringValue(normalized, exact)`; normalized = NFKD, combining marks dropped, casefolded, so the
  default (starts-with) and `:contains` matches are case- and accent-insensitive (`normalize_string` is the
  same function for the query side); `exact` is the original text for `:exact`.
- token: `TokenValue(system, code, text, type_system, type_code)`; `text` is normalized display / text for
  `:text`; `type_*` is the Identifier.type coding for `:of-type` (one row per type coding).
- date: `DateValue(low, high)`: timezone-aware UTC datetimes, both inclusive, microsecond resolution, covering
  the value's precision ("2020" -> 2020-01-01T00:00:00 .. 2020-12-31T23:59:59.999999). A value without a
  timezone is read as UTC. Open Period ends are MIN_INSTANT / MAX_INSTANT.
- number: `NumberValue(value, low, high)`: the implicit precision range [low, high) (1.5 -> [1.45, 1.55)).
- quantity: `QuantityValue(value, low, high, system, code, unit)`: likewise; a Range gives value None and its
  low/high (an open side is -Infinity/Infinity); Money gives code = currency.
- reference: `ReferenceValue(kind, target_type, target_id, version, url)`; a `Reference.identifier` also
  gives a `TokenValue` under the pseudo-code `identifier_code(code)` ("subject:identifier") for `:identifier`.
- uri: `UriValue(uri)`.
- composite: `CompositeValue(components)`: one per combination of component values found on the same item.
- special (`near`, `_text`, `_content`, `_query`): not extracted.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import product
from typing import Any, Literal, NamedTuple

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as _fhirpathpy_models

from pms.fhir.fhirpath_compile import (
    Branch,
    Unsupported,
    compile_expression,
    model_path2type,
    parse_reference_path,
    reference_type,
    type_ancestry,
)
from pms.fhir.searchparams import Registry, SearchParam, SearchType, default_registry, split_union

# --- index values ---


class StringValue(NamedTuple):
    param: str
    normalized: str
    exact: str


class TokenValue(NamedTuple):
    param: str
    system: str | None
    code: str | None
    text: str | None = None  # normalized Coding.display / CodeableConcept.text / Identifier.type.text
    type_system: str | None = None  # Identifier.type coding, for :of-type
    type_code: str | None = None


class DateValue(NamedTuple):
    param: str
    low: datetime  # UTC, inclusive
    high: datetime  # UTC, inclusive


class NumberValue(NamedTuple):
    param: str
    value: Decimal
    low: Decimal  # inclusive
    high: Decimal  # exclusive


class QuantityValue(NamedTuple):
    param: str
    value: Decimal | None  # None for a Range
    low: Decimal
    high: Decimal
    system: str | None
    code: str | None
    unit: str | None


ReferenceKind = Literal["relative", "absolute", "contained", "canonical"]


class ReferenceValue(NamedTuple):
    """relative: `Patient/1[/_history/2]`; absolute: a URL or URN, type/id parsed when RESTful;
    contained: `#id` (target_type from the contained resource); canonical: url + version (`url|version`)."""

    param: str
    kind: ReferenceKind
    target_type: str | None
    target_id: str | None
    version: str | None
    url: str | None


class UriValue(NamedTuple):
    param: str
    uri: str


class CompositeValue(NamedTuple):
    param: str
    components: tuple[IndexValue, ...]  # in the order of SearchParameter.component


IndexValue = (
    StringValue
    | TokenValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | CompositeValue
)

MIN_INSTANT = datetime(1, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_NEG_INF = Decimal("-Infinity")
_POS_INF = Decimal("Infinity")

# --- conversions ---


@lru_cache(maxsize=65536)
def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form for string search (search.html#string): NFKD, marks dropped."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@lru_cache(maxsize=65536)
def date_range(text: str) -> tuple[datetime, datetime] | None:
    """The inclusive UTC range a FHIR date/dateTime/instant covers at its precision (search.html#date).

    No timezone: read as UTC (the server's choice; the spec leaves it to the server). None when unparsable.
    """
    m = _DATE.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        y = int(year)
        if month is None:
            return datetime(y, 1, 1, tzinfo=UTC), datetime(y, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        mo = int(month)
        if day is None:
            last = calendar.monthrange(y, mo)[1]
            return datetime(y, mo, 1, tzinfo=UTC), datetime(y, mo, last, 23, 59, 59, 999999, tzinfo=UTC)
        d = int(day)
        if hour is None:
            return datetime(y, mo, d, tzinfo=UTC), datetime(y, mo, d, 23, 59, 59, 999999, tzinfo=UTC)
        tz = UTC
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        if second is None:
            low = datetime(y, mo, d, int(hour), int(minute), tzinfo=tz)
            span = timedelta(minutes=1)
        elif fraction is None:
            low = datetime(y, mo, d, int(hour), int(minute), int(second), tzinfo=tz)
            span = timedelta(seconds=1)
        else:
            digits = fraction[:6]
            micro = int(digits.ljust(6, "0"))
            low = datetime(y, mo, d, int(hour), int(minute), int(second), micro, tzinfo=tz)
            span = timedelta(microseconds=10 ** (6 - len(digits)))
        low = low.astimezone(UTC)
        return low, low + span - timedelta(microseconds=1)
    except (ValueError, OverflowError):
        return None


def number_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """[low, high) from the value's implicit precision (search.html#number): 100 -> [99.5, 100.5)."""
    # Keyed by the text, not the Decimal: Decimal("1.5") == Decimal("1.50") but their ranges differ.
    return _number_range(str(value))


@lru_cache(maxsize=65536)
def _number_range(text: str) -> tuple[Decimal, Decimal]:
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN / Infinity
        return value, value
    half = Decimal(5).scaleb(exponent - 1)
    return value - half, value + half


def _decimal(value: Any) -> Decimal | None:
    if type(value) is Decimal:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int):
        return Decimal(value)
    if isinstance(value, float | str):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    return None


# A converter turns one value of a known FHIR type into index values for one parameter code.
Converter = Callable[[str, Any, Mapping[str, Any]], list[IndexValue]]

_CODE_LIKE = frozenset(
    ("code", "string", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "System.String", "xhtml")
)
_NUMBER_TYPES = frozenset(
    ("integer", "decimal", "positiveInt", "unsignedInt", "System.Integer", "System.Decimal")
)
_DATE_TYPES = frozenset(("date", "dateTime", "instant", "System.Date", "System.DateTime"))


def _string(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    if isinstance(value, str) and value:
        return [StringValue(code, normalize_string(value), value)]
    return []


def _strings(code: str, parts: Iterable[Any]) -> list[IndexValue]:
    return [StringValue(code, normalize_string(p), p) for p in parts if isinstance(p, str) and p]


def _string_human_name(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    # search.html#string: HumanName matches family, given, prefix, suffix and/or text.
    parts = [value.get("family"), value.get("text")]
    for key in ("given", "prefix", "suffix"):
        parts.extend(value.get(key) or ())
    return _strings(code, parts)


def _string_address(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    # search.html#string: Address matches line, city, district, state, country, postalCode and/or text.
    parts = list(value.get("line") or ())
    parts.extend(value.get(k) for k in ("city", "district", "state", "postalCode", "country", "text"))
    return _strings(code, parts)


def _string_codeable(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    return _strings(code, [value.get("text"), *(c.get("display") for c in value.get("coding") or ())])


def _string_keys(*keys: str) -> Converter:
    def convert(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
        return _strings(code, [value.get(k) for k in keys])

    return convert


def _text(value: Any) -> str | None:
    return normalize_string(value) if isinstance(value, str) and value else None


def _token_code(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    if isinstance(value, bool):
        return [TokenValue(code, None, "true" if value else "false")]
    if isinstance(value, str) and value:
        return [TokenValue(code, None, value)]
    if isinstance(value, int | Decimal):
        return [TokenValue(code, None, str(value))]
    return []


def _token_coding(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    system, c, display = value.get("system"), value.get("code"), value.get("display")
    if system is None and c is None and display is None:
        return []
    return [TokenValue(code, system, c, _text(display))]


def _token_codeable(code: str, value: Any, root: Mapping[str, Any]) -> list[IndexValue]:
    out: list[IndexValue] = []
    for coding in value.get("coding") or ():
        out.extend(_token_coding(code, coding, root))
    text = value.get("text")
    if isinstance(text, str) and text:
        out.append(TokenValue(code, None, None, normalize_string(text)))
    return out


def _token_identifier(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    system, v = value.get("system"), value.get("value")
    if system is None and v is None:
        return []
    id_type = value.get("type") or {}
    text = _text(id_type.get("text"))
    codings = id_type.get("coding") or ()
    if not codings:
        return [TokenValue(code, system, v, text)]
    return [TokenValue(code, system, v, text, c.get("system"), c.get("code")) for c in codings]


def _token_contact_point(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    # search.html#token: a ContactPoint token matches its value; ContactPoint.system is not the token system.
    v = value.get("value")
    return [TokenValue(code, None, v)] if isinstance(v, str) and v else []


def _date(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    found = date_range(value) if isinstance(value, str) else None
    return [DateValue(code, *found)] if found else []


def _date_period(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    start, end = value.get("start"), value.get("end")
    low = date_range(start) if isinstance(start, str) else None
    high = date_range(end) if isinstance(end, str) else None
    if low is None and high is None:
        return []
    return [DateValue(code, low[0] if low else MIN_INSTANT, high[1] if high else MAX_INSTANT)]


def _date_timing(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    # search.html#date: for a Timing only the outer limits matter: its events and repeat.boundsPeriod.
    lows: list[datetime] = []
    highs: list[datetime] = []
    for event in value.get("event") or ():
        found = date_range(event) if isinstance(event, str) else None
        if found:
            lows.append(found[0])
            highs.append(found[1])
    bounds = (value.get("repeat") or {}).get("boundsPeriod")
    if bounds:
        for item in _date_period(code, bounds, _root):
            assert isinstance(item, DateValue)
            lows.append(item.low)
            highs.append(item.high)
    if not lows:
        return []
    return [DateValue(code, min(lows), max(highs))]


def _number(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    d = _decimal(value)
    if d is None:
        return []
    low, high = number_range(d)
    return [NumberValue(code, d, low, high)]


def _quantity(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    d = _decimal(value.get("value"))
    if d is None:
        return []
    low, high = number_range(d)
    return [QuantityValue(code, d, low, high, value.get("system"), value.get("code"), value.get("unit"))]


def _quantity_money(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    d = _decimal(value.get("value"))
    if d is None:
        return []
    low, high = number_range(d)
    currency = value.get("currency")
    return [QuantityValue(code, d, low, high, "urn:iso:std:iso:4217" if currency else None, currency, None)]


def _quantity_range(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    lo, hi = value.get("low") or {}, value.get("high") or {}
    low, high = _decimal(lo.get("value")), _decimal(hi.get("value"))
    if low is None and high is None:
        return []
    unit_of = lo if low is not None else hi
    return [
        QuantityValue(
            code,
            None,
            low if low is not None else _NEG_INF,
            high if high is not None else _POS_INF,
            unit_of.get("system"),
            unit_of.get("code"),
            unit_of.get("unit"),
        )
    ]


def reference_value(code: str, ref: str, root: Mapping[str, Any]) -> ReferenceValue | None:
    """Classify a literal reference (http://hl7.org/fhir/R4/references.html#literal)."""
    if ref.startswith("#"):
        return ReferenceValue(code, "contained", reference_type(ref, root), ref[1:] or None, None, None)
    parsed = parse_reference_path(ref)
    if "://" in ref or ref.startswith(("urn:", "/")):
        if parsed is None:
            return ReferenceValue(code, "absolute", None, None, None, ref)
        return ReferenceValue(code, "absolute", parsed[0], parsed[1], parsed[2], ref)
    if parsed is None or ref.count("/") not in (1, 3):
        return None
    return ReferenceValue(code, "relative", parsed[0], parsed[1], parsed[2], None)


def identifier_code(code: str) -> str:
    """The pseudo-parameter under which a reference parameter's `Reference.identifier` values are indexed
    as tokens, for the `:identifier` modifier (search.html#reference). `:` cannot occur in a real code."""
    return f"{code}:identifier"


def _reference(code: str, value: Any, root: Mapping[str, Any]) -> list[IndexValue]:
    out: list[IndexValue] = []
    ref = value.get("reference")
    if isinstance(ref, str) and ref:
        found = reference_value(code, ref, root)
        if found:
            out.append(found)
    identifier = value.get("identifier")
    if isinstance(identifier, dict):  # a logical reference: searchable with `:identifier` only
        out.extend(_token_identifier(identifier_code(code), identifier, root))
    return out


def _reference_canonical(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    if not isinstance(value, str) or not value:
        return []
    url, _, version = value.partition("|")
    return [ReferenceValue(code, "canonical", None, None, version or None, url)]


def _uri(code: str, value: Any, _root: Mapping[str, Any]) -> list[IndexValue]:
    return [UriValue(code, value)] if isinstance(value, str) and value else []


_CONVERTERS: dict[str, dict[str, Converter]] = {
    "string": {
        **dict.fromkeys(_CODE_LIKE, _string),
        "HumanName": _string_human_name,
        "Address": _string_address,
        "CodeableConcept": _string_codeable,
        "ContactPoint": _string_keys("value"),
        "Annotation": _string_keys("text"),
        "Coding": _string_keys("display"),
    },
    "token": {
        **dict.fromkeys(_CODE_LIKE, _token_code),
        "boolean": _token_code,
        "System.Boolean": _token_code,
        "Coding": _token_coding,
        "CodeableConcept": _token_codeable,
        "Identifier": _token_identifier,
        "ContactPoint": _token_contact_point,
    },
    "date": {
        **dict.fromkeys(_DATE_TYPES, _date),
        "Period": _date_period,
        "Timing": _date_timing,
    },
    "number": dict.fromkeys(_NUMBER_TYPES, _number),
    "quantity": {"Quantity": _quantity, "Money": _quantity_money, "Range": _quantity_range},
    "reference": {
        "Reference": _reference,
        "canonical": _reference_canonical,
        "uri": _reference_canonical,
        "url": _reference_canonical,
    },
    "uri": dict.fromkeys(("uri", "url", "canonical", "oid", "uuid", "string", "code", "System.String"), _uri),
}


@lru_cache(maxsize=4096)
def converter(search_type: str, fhir_type: str) -> Converter | None:
    """How a value of `fhir_type` becomes index values of `search_type` (None: it yields none)."""
    table = _CONVERTERS.get(search_type)
    if table is None:
        return None
    if "." in fhir_type and not fhir_type.startswith("System."):  # a backbone element: nothing to index
        return None
    for t in type_ancestry(fhir_type):  # Age, Duration, ... convert as Quantity
        found = table.get(t)
        if found is not None:
            return found
    return None


# --- compiled parameters ---

# (focus items, root resource) -> index values
ParamFn = Callable[[list[Any], Mapping[str, Any]], list[IndexValue]]
Engine = Literal["fast", "fhirpathpy"]


@dataclass(frozen=True, slots=True)
class CompiledParam:
    code: str
    type: SearchType
    engine: Engine  # which evaluator the parameter's own expression uses
    run: ParamFn


def _fast_values(code: str, search_type: str, branches: Sequence[Branch]) -> ParamFn:
    pairs = [(b.fn, conv) for b in branches if (conv := converter(search_type, b.type)) is not None]

    if len(pairs) == 1:
        fn, conv = pairs[0]

        def run_one(focus: list[Any], root: Mapping[str, Any]) -> list[IndexValue]:
            out: list[IndexValue] = []
            for value in fn(focus, root):
                out.extend(conv(code, value, root))
            return out

        return run_one

    def run(focus: list[Any], root: Mapping[str, Any]) -> list[IndexValue]:
        out: list[IndexValue] = []
        for fn, conv in pairs:
            for value in fn(focus, root):
                out.extend(conv(code, value, root))
        return out

    return run


# --- fhirpathpy fallback ---

_AS_FUNCTION = re.compile(r"\.as\(\s*([A-Za-z.]+)\s*\)")
_AS_OPERATOR = re.compile(r"\s+as\s+([A-Za-z.]+)")
_SYSTEM_NAMES = {
    "String": "string",
    "DateTime": "dateTime",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "Time": "time",
}


def fhirpathpy_expressions(expression: str, resource_type: str) -> list[str]:
    """The union members as fhirpathpy is given them: R4 `as` read as `ofType` (see fhirpath_compile), the
    `Resource.`/`DomainResource.` root bound to the concrete type (fhirpathpy does not match it by ancestry).
    Members are evaluated one by one because fhirpathpy's `|` drops the type of the items it returns."""
    parts = []
    for part in split_union(expression):
        part = re.sub(r"^(\(*)\s*(?:Resource|DomainResource)\.", rf"\1{resource_type}.", part)
        part = _AS_FUNCTION.sub(lambda m: f".ofType({_SYSTEM_NAMES.get(m.group(1), m.group(1))})", part)
        part = _AS_OPERATOR.sub(lambda m: f".ofType({_SYSTEM_NAMES.get(m.group(1), m.group(1))})", part)
        parts.append(part)
    return parts


def _fhirpathpy_compile(expression: str, resource_type: str) -> Callable[[Any, Mapping[str, Any]], list[Any]]:
    """fhirpathpy, compiled once per union member: (item, root resource) -> result nodes."""
    compiled = [
        fhirpathpy.compile(part, model=_fhirpathpy_models["r4"], options=_FHIRPATHPY_OPTIONS)
        for part in fhirpathpy_expressions(expression, resource_type)
    ]

    def run(item: Any, root: Mapping[str, Any]) -> list[Any]:
        context = {"resource": root, "rootResource": root}
        token = _ROOT.set(root)
        try:
            return [node for fn in compiled for node in fn(item, context)]
        finally:
            _ROOT.reset(token)

    return run


# The resource being evaluated, for resolve() of `#id` references: fhirpathpy does not pass its context to
# user functions. A ContextVar keeps this correct across threads and tasks.
_ROOT: ContextVar[Mapping[str, Any] | None] = ContextVar("fhirpath_root", default=None)


def _fhirpathpy_resolve(inputs: list[Any]) -> list[Any]:
    # resolve() without fetching: a stub of the referenced type, enough for `resolve() is T`.
    out = []
    root = _ROOT.get() or {}
    for item in inputs:
        found = reference_type(item, root)
        if found is not None:
            out.append(ResourceNode({"resourceType": found}, found))  # type: ignore[no-untyped-call]
    return out


_FHIRPATHPY_OPTIONS: dict[str, Any] = {
    "returnRawData": True,
    "userInvocationTable": {"resolve": {"fn": _fhirpathpy_resolve}},
}


def _node_type(node: Any) -> tuple[str, Any]:
    if isinstance(node, ResourceNode):
        path, data = node.path, node.data
        if isinstance(path, str):
            if "." not in path or path.startswith("System."):
                return path, data
            return model_path2type().get(path, path), data
        node = data
    if isinstance(node, bool):
        return "boolean", node
    if isinstance(node, int | Decimal | float):
        return "decimal", node
    if isinstance(node, str):
        return "string", node
    if isinstance(node, dict) and isinstance(node.get("resourceType"), str):
        return str(node["resourceType"]), node
    return "Element", node


def _fhirpathpy_values(code: str, search_type: str, expression: str, resource_type: str) -> ParamFn:
    compiled = _fhirpathpy_compile(expression, resource_type)

    def run(focus: list[Any], root: Mapping[str, Any]) -> list[IndexValue]:
        out: list[IndexValue] = []
        for item in focus:
            for node in compiled(item, root):
                fhir_type, data = _node_type(node)
                conv = converter(search_type, fhir_type)
                if conv is not None and data is not None:
                    out.extend(conv(code, data, root))
        return out

    return run


# --- composites ---


def _composite(param: SearchParam, resource_type: str, engine: Engine) -> tuple[ParamFn, Engine]:
    """search.html#composite: components are evaluated on each item the composite's expression selects, and
    the values of one item are combined (never values of different items)."""
    assert param.expression is not None
    code = param.code
    if any(c.type in ("composite", "special") for c in param.components) or not param.components:
        return (lambda _f, _r: []), "fast"
    if engine == "fast":
        try:
            branches = compile_expression(param.expression, resource_type)
            per_branch = [
                (
                    b.fn,
                    [
                        _fast_values(c.code, c.type, compile_expression(c.expression, resource_type, b.type))
                        for c in param.components
                    ],
                )
                for b in branches
            ]
        except Unsupported:
            engine = "fhirpathpy"
        else:

            def run(focus: list[Any], root: Mapping[str, Any]) -> list[IndexValue]:
                out: list[IndexValue] = []
                for items_fn, component_fns in per_branch:
                    for item in items_fn(focus, root):
                        columns = _columns(component_fns, [item], root)
                        if columns:
                            out.extend(CompositeValue(code, combo) for combo in product(*columns))
                return out

            return run, "fast"

    items = _fhirpathpy_compile(param.expression, resource_type)
    components = [
        _fhirpathpy_component(c.code, c.type, c.expression, resource_type) for c in param.components
    ]

    def run_fallback(_focus: list[Any], root: Mapping[str, Any]) -> list[IndexValue]:
        out: list[IndexValue] = []
        for item in items(root, root):
            columns = [_component_values(fn(item, root)) for fn in components]
            out.extend(CompositeValue(code, combo) for combo in product(*columns))
        return out

    return run_fallback, "fhirpathpy"


def _columns(
    fns: Sequence[ParamFn], focus: list[Any], root: Mapping[str, Any]
) -> list[list[IndexValue]] | None:
    """Each component's values on one item, or None as soon as one has none (the value component, usually
    last and often absent, is evaluated first)."""
    columns: list[list[IndexValue]] = []
    for fn in reversed(fns):
        column = _component_values(fn(focus, root))
        if not column:
            return None
        columns.append(column)
    columns.reverse()
    return columns


def _component_values(values: list[IndexValue]) -> list[IndexValue]:
    # A text-only token row (CodeableConcept.text) serves :text, which composites do not support; nor do
    # they support :identifier (a reference's identifier tokens).
    return [v for v in values if not (isinstance(v, TokenValue) and (v.code is None or ":" in v.param))]


def _fhirpathpy_component(
    code: str, search_type: str, expression: str, resource_type: str
) -> Callable[[Any, Mapping[str, Any]], list[IndexValue]]:
    compiled = _fhirpathpy_compile(expression, resource_type)

    def run(item: Any, root: Mapping[str, Any]) -> list[IndexValue]:
        out: list[IndexValue] = []
        for node in compiled(item, root):
            fhir_type, data = _node_type(node)
            conv = converter(search_type, fhir_type)
            if conv is not None and data is not None:
                out.extend(conv(code, data, root))
        return out

    return run


# --- extractors ---


def compile_param(param: SearchParam, resource_type: str, engine: Engine = "fast") -> CompiledParam | None:
    """Compile one parameter for one resource type (None: nothing to extract, e.g. special parameters)."""
    if param.expression is None or param.type == "special":
        return None
    if param.type == "composite":
        run, used = _composite(param, resource_type, engine)
        return CompiledParam(param.code, param.type, used, run)
    if engine == "fast":
        try:
            branches = compile_expression(param.expression, resource_type)
        except Unsupported:
            pass
        else:
            return CompiledParam(
                param.code, param.type, "fast", _fast_values(param.code, param.type, branches)
            )
    return CompiledParam(
        param.code,
        param.type,
        "fhirpathpy",
        _fhirpathpy_values(param.code, param.type, param.expression, resource_type),
    )


class Extractor:
    """Every parameter of one resource type, compiled once. `extract` is safe to call concurrently."""

    def __init__(self, resource_type: str, registry: Registry, engine: Engine = "fast") -> None:
        self.resource_type = resource_type
        compiled = (
            compile_param(p, resource_type, engine) for p in registry.params_for(resource_type).values()
        )
        self.params: tuple[CompiledParam, ...] = tuple(c for c in compiled if c is not None)

    @property
    def fallback_codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.params if p.engine == "fhirpathpy")

    def extract(self, resource: Mapping[str, Any]) -> list[IndexValue]:
        """Index values of all parameters, without duplicates (per parameter)."""
        return _values_of(self.params, resource)

    def extract_by_param(
        self, resource: Mapping[str, Any], codes: Collection[str] | None = None
    ) -> dict[str, list[IndexValue]]:
        """Index values per parameter: of every parameter, or only of those in `codes` (e.g. the links
        of a compartment: two of Observation's 38 parameters, at a fraction of the cost)."""
        params = self.params if codes is None else tuple(p for p in self.params if p.code in codes)
        grouped: dict[str, list[IndexValue]] = {}
        for value in _values_of(params, resource):
            grouped.setdefault(value.param, []).append(value)
        return grouped


def _values_of(params: Iterable[CompiledParam], resource: Mapping[str, Any]) -> list[IndexValue]:
    focus = [resource]
    out: list[IndexValue] = []
    for param in params:
        try:
            values = param.run(focus, resource)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError):
            # Malformed data (e.g. a string where an object belongs) leaves this parameter unindexed
            # rather than failing the write; validation is the place that rejects such resources.
            continue
        if len(values) > 1:
            values = list(dict.fromkeys(values))
        out.extend(values)
    return out


@lru_cache(maxsize=1024)
def extractor_for(resource_type: str, registry: Registry | None = None, engine: Engine = "fast") -> Extractor:
    """The compiled extractor of a type for a registry (default: the official R4 one), cached."""
    return Extractor(resource_type, registry or default_registry(), engine)


def extract(resource: Mapping[str, Any], registry: Registry | None = None) -> list[IndexValue]:
    """Index values of every search parameter of the resource's type (see the module docstring)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise ValueError("the resource has no resourceType")
    return extractor_for(resource_type, registry).extract(resource)
