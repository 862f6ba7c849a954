"""The typed form of a FHIR R4 search request (http://hl7.org/fhir/R4/search.html), storage-independent.

`parse.parse_search` builds a `SearchRequest` from the query pairs; the storage layer only ever sees
these immutable values, never the raw query text.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol, TypeAlias

from pms.core.errors import Issue

# search.html#ptypes
ParamType = Literal[
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
]
# search.html#prefix ("eq" when absent)
Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
# search.html#modifiers; a reference's `:[type]` modifier is carried as `Criterion.target_type` instead.
Modifier = Literal[
    "missing", "exact", "contains", "text", "not", "above", "below", "in", "not-in", "of-type", "identifier"
]
# The precision a date search value was given with (search.html#date): it fixes the implicit range.
DatePrecision = Literal["year", "month", "day", "minute", "second", "fraction"]
Handling = Literal["lenient", "strict"]  # Prefer: handling=... (search.html#errors)
Total = Literal["none", "estimate", "accurate"]  # search.html#total
Summary = Literal["true", "text", "data", "count", "false"]  # search.html#summary
Contained = Literal["true", "false", "both"]  # search.html#contained
ContainedType = Literal["container", "contained"]


# --- what the parser needs to know about search parameters -------------------------------------------


class ComponentInfo(Protocol):
    """One component of a composite parameter (SearchParameter.component -> its definition)."""

    @property
    def code(self) -> str: ...

    @property
    def type(self) -> str: ...


class ParamInfo(Protocol):
    """One search parameter as defined for a resource type (a SearchParameter resource, reduced).

    `type` is one of the `ParamType` codes; anything else makes the parameter unsupported.
    `targets` are a reference parameter's target resource types (empty for other types).
    `components` are a composite parameter's components, in order (empty for other types).
    """

    @property
    def code(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def targets(self) -> Collection[str]: ...

    @property
    def components(self) -> Sequence[ComponentInfo]: ...


class ParamLookup(Protocol):
    """The search parameter registry, as seen by the parser."""

    def param(self, resource_type: str, code: str) -> ParamInfo | None:
        """The parameter `code` on `resource_type` (including the all-resource ones such as `_id`)."""
        ...

    def is_resource_type(self, name: str) -> bool: ...


# --- typed search values (one per OR-ed alternative) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberValue:
    """search.html#number. [low, high) is the implicit range of the value's precision ("100" ->
    [99.5, 100.5)); it applies to eq/ne/ap, the other prefixes compare against the exact `value`."""

    prefix: Prefix
    value: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class DateValue:
    """search.html#date. [low, high) is the implicit range of the given precision, as aware UTC
    datetimes; a value without a time zone was read as UTC (`has_timezone` is False then)."""

    prefix: Prefix
    value: str
    low: datetime
    high: datetime
    precision: DatePrecision
    has_timezone: bool


@dataclass(frozen=True, slots=True)
class StringValue:
    """search.html#string (also token `:text`, and the `_text`/`_content` parameters). Literal text:
    SQL wildcards such as `%` and `_` carry no meaning here."""

    value: str


@dataclass(frozen=True, slots=True)
class TokenValue:
    """search.html#token: `code` (system None: any system), `system|code`, `|code` (system "": no
    system), `system|` (code None: any code in the system)."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class OfTypeValue:
    """Token `:of-type` (search.html#token): `[type system]|[type code]|[identifier value]`."""

    system: str
    code: str
    value: str


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """search.html#quantity: `[prefix][number]|[system]|[code]`; number semantics as `NumberValue`.
    system/code None when not given (`5.4||mg` has no system: match the code or the unit text)."""

    prefix: Prefix
    value: Decimal
    low: Decimal
    high: Decimal
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """search.html#reference. `value` is the text as given (unescaped). `type`/`id`/`version` are the
    parts of `[type]/[id]{/_history/[version]}` (also when found at the end of an absolute `url`);
    `type` is filled from a `:[type]` modifier or a parameter with a single target. For canonical
    references, `url|canonical_version` (search.html#versions)."""

    value: str
    type: str | None = None
    id: str | None = None
    version: str | None = None
    url: str | None = None
    canonical_version: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    """search.html#uri (also token `:in`/`:not-in` value sets); `uri|version` for canonical URLs."""

    value: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class MissingValue:
    """The `:missing` modifier (search.html#missing): True selects resources without a value."""

    missing: bool


@dataclass(frozen=True, slots=True)
class SpecialValue:
    """A `special` parameter's value (search.html#special), kept as given (escapes not applied)."""

    value: str


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """search.html#composite: one value per component, in the definition's order (`a$b`)."""

    components: tuple[SearchValue, ...]


SearchValue: TypeAlias = (
    NumberValue
    | DateValue
    | StringValue
    | TokenValue
    | OfTypeValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | MissingValue
    | SpecialValue
    | CompositeValue
)


# --- criteria ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Criterion:
    """One parameter occurrence: its values are OR-ed; criteria are AND-ed (search.html#combining).

    A chained parameter (search.html#chaining) has no values: `chain` applies to the resources the
    reference points to, and `target_type` is the type followed (from `subject:Patient.name` or
    inferred). With a `:[type]` modifier and no chain, `target_type` is that type.
    """

    code: str
    type: ParamType
    modifier: Modifier | None = None
    values: tuple[SearchValue, ...] = ()
    target_type: str | None = None
    chain: Criterion | ReverseChain | None = None


@dataclass(frozen=True, slots=True)
class ReverseChain:
    """`_has:[source_type]:[reference]:[criterion]` (search.html#has): some `source_type` resource
    refers to the candidate through its `reference` parameter and matches `criterion`."""

    source_type: str
    reference: str
    criterion: Criterion | ReverseChain


# --- result parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortKey:
    """One `_sort` rule (search.html#sort); `-code` is descending."""

    code: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """One `_include`/`_revinclude` (search.html#include): `source_type:param{:target_type}`.
    The wildcard `*` appears as source_type and param `"*"` (`_include=*`), or as param only."""

    source_type: str
    param: str
    target_type: str | None = None
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A parsed search. Fields are None/empty when the parameter was absent (spec defaults apply:
    `_contained=false`, `_containedType=container`, `_summary=false`)."""

    resource_type: str | None
    criteria: tuple[Criterion, ...] = ()
    has: tuple[ReverseChain, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    total: Total | None = None
    summary: Summary | None = None
    elements: tuple[str, ...] = ()
    include: tuple[Include, ...] = ()
    revinclude: tuple[Include, ...] = ()
    contained: Contained | None = None
    contained_type: ContainedType | None = None
    types: tuple[str, ...] = ()  # `_type` (whole-system search)
    lists: tuple[str, ...] = ()  # `_list` ids or `$name`s, AND-ed
    text: tuple[tuple[str, ...], ...] = ()  # `_text`: AND of OR-lists
    content: tuple[tuple[str, ...], ...] = ()  # `_content`: AND of OR-lists
    page_token: str | None = None  # `_page`, opaque
    issues: tuple[Issue, ...] = ()  # warnings for ignored parameters
    used: tuple[tuple[str, str], ...] = ()  # the pairs applied, in order (for the self link)
