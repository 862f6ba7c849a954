"""Parse a FHIR R4 search query into a `SearchRequest` (http://hl7.org/fhir/R4/search.html).

Pure: no I/O. The caller passes the query as ordered, already URL-decoded (name, value) pairs and a
`ParamLookup` telling the type and targets of each search parameter.

Errors (always a 400 `AppError`): invalid values, modifiers not defined for the parameter's type
(search.html#modifiers: servers SHALL reject them), ambiguous chains, and the hostile-input limits
below. Unknown or unsupported parameters follow `Prefer: handling` (search.html#errors): dropped with a
warning issue when lenient (the default), an error when strict.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import cast

from pms.core.errors import Issue, bad_request
from pms.fhir.search.model import (
    ComponentInfo,
    Contained,
    ContainedType,
    Criterion,
    Handling,
    Include,
    Modifier,
    ParamInfo,
    ParamLookup,
    ParamType,
    ReverseChain,
    SearchRequest,
    SearchValue,
    SortKey,
    Summary,
    Total,
)
from pms.fhir.search.values import (
    ReferenceContext,
    parse_composite,
    parse_value,
    show,
    split_unescaped,
    unescape,
)

# Hostile-input limits.
MAX_PARAMS = 100
MAX_NAME_LENGTH = 256
MAX_VALUE_LENGTH = 2000
MAX_CHAIN_LINKS = 4  # references traversed by one parameter (`.` chains and `_has` together)
DEFAULT_MAX_COUNT = 1000

_PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
_COMPONENT_TYPES = frozenset({"number", "date", "string", "token", "reference", "quantity", "uri"})
# search.html#modifiers (composite and special take none; a reference also takes `:[type]`).
_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"missing", "exact", "contains", "text"}),
    "token": frozenset({"missing", "text", "not", "above", "below", "in", "not-in", "of-type"}),
    "reference": frozenset({"missing", "identifier", "above", "below"}),
    "uri": frozenset({"missing", "above", "below"}),
    "number": frozenset({"missing"}),
    "date": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "composite": frozenset(),
    "special": frozenset(),
}
_IGNORED = frozenset({"_format", "_pretty"})  # http.html#parameters: not search criteria
_TOTALS = frozenset({"none", "estimate", "accurate"})
_SUMMARIES = frozenset({"true", "text", "data", "count", "false"})
_CONTAINED = frozenset({"true", "false", "both"})
_CONTAINED_TYPES = frozenset({"container", "contained"})
_COUNT_RE = re.compile(r"[0-9]+")
_ELEMENT_RE = re.compile(r"(?:[A-Z][A-Za-z]*\.)?[a-z][A-Za-z0-9]*")
_LIST_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}|\$[A-Za-z0-9\-]{1,64}")


@dataclass(frozen=True, slots=True)
class _Param:
    """A `ParamInfo` built here: the all-resource parameters, or one merged across `_type` types."""

    code: str
    type: str
    targets: tuple[str, ...] = ()
    components: tuple[ComponentInfo, ...] = ()


# Parameters common to all resource types (search.html#all), for a whole-system search without _type.
_COMMON: dict[str, ParamInfo] = {
    p.code: p
    for p in (
        _Param("_id", "token"),
        _Param("_lastUpdated", "date"),
        _Param("_tag", "token"),
        _Param("_profile", "uri"),
        _Param("_security", "token"),
        _Param("_source", "uri"),
    )
}


# Types without `_content`/`_text`: the audit trail (one record per read) is searched by entity, agent and
# date, and its full-text vectors were half of the database's work per record (migration 0010).
FULL_TEXT_EXCLUDED = frozenset({"AuditEvent"})
FULL_TEXT_PARAMETERS = frozenset({"_content", "_text"})


def is_supported(resource_type: str, code: str) -> bool:
    """Whether searches of this type take this registry parameter (all but the full-text exclusions)."""
    return resource_type not in FULL_TEXT_EXCLUDED or code not in FULL_TEXT_PARAMETERS


class _Unknown(Exception):
    """An unknown or unsupported parameter: dropped or an error, per the requested handling."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_search(
    resource_type: str | None,
    params: Iterable[tuple[str, str]],
    lookup: ParamLookup,
    *,
    handling: Handling = "lenient",
    max_count: int = DEFAULT_MAX_COUNT,
) -> SearchRequest:
    """Parse the (name, value) pairs of a search on `resource_type` (None: whole-system search).

    `_count` is capped at `max_count`. Raises `AppError` (400) as described in the module docstring.
    """
    if resource_type is not None and not lookup.is_resource_type(resource_type):
        raise bad_request(f"Unknown resource type '{resource_type}'", code="not-supported")
    return _Parser(resource_type, lookup, handling, max_count).run(_read_pairs(params))


def handling_from_prefer(prefer: str | None) -> Handling:
    """The `handling` preference of a `Prefer` header (RFC 7240; search.html#errors), lenient by default."""
    for preference in (prefer or "").split(","):
        token, _, value = preference.split(";", 1)[0].partition("=")
        if token.strip().lower() == "handling" and value.strip().strip('"').lower() == "strict":
            return "strict"
    return "lenient"


def _read_pairs(params: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in params:
        if len(pairs) == MAX_PARAMS:
            raise bad_request(f"Too many search parameters (at most {MAX_PARAMS})", code="too-costly")
        if len(name) > MAX_NAME_LENGTH:
            raise bad_request(f"Parameter name {show(name)} is too long", code="too-long")
        if len(value) > MAX_VALUE_LENGTH:
            raise bad_request(
                f"Value of parameter {show(name)} is too long (at most {MAX_VALUE_LENGTH} characters)",
                code="too-long",
            )
        if "\x00" in name or "\x00" in value:
            raise bad_request(f"Parameter {show(name)} contains a NUL character", code="value")
        pairs.append((name, value))
    return pairs


def _is_empty(value: str) -> bool:
    """search.html#errors: empty parameters are not an error, they are ignored."""
    return all(not part for part in split_unescaped(value, ","))


def _first_code(name: str) -> str:
    return name.partition(".")[0].partition(":")[0]


class _Parser:
    """One parse: walks the pairs once (after `_type`, which scopes the others) and accumulates."""

    def __init__(
        self, resource_type: str | None, lookup: ParamLookup, handling: Handling, max_count: int
    ) -> None:
        self.resource_type = resource_type
        self.lookup = lookup
        self.handling = handling
        self.max_count = max_count
        self.criteria: list[Criterion] = []
        self.has: list[ReverseChain] = []
        self.sort: list[SortKey] = []
        self.elements: list[str] = []
        self.include: list[Include] = []
        self.revinclude: list[Include] = []
        self.types: tuple[str, ...] = ()
        self.lists: list[str] = []
        self.text: list[tuple[str, ...]] = []
        self.content: list[tuple[str, ...]] = []
        self.single: dict[str, str] = {}  # the parameters that may appear once: name -> value
        self.issues: list[Issue] = []
        self.used: list[tuple[int, str, str]] = []  # (position in the query, name, value)
        self.position = 0

    # --- driver -----------------------------------------------------------------------------------------

    def run(self, pairs: list[tuple[str, str]]) -> SearchRequest:
        # `_type` first: it decides which parameters the others may use (search.html#_type).
        for first_pass in (True, False):
            for self.position, (name, value) in enumerate(pairs):
                if (name.partition(":")[0] == "_type") == first_pass:
                    self._guarded(name, value)
        return self._request()

    def _use(self, name: str, value: str) -> None:
        self.used.append((self.position, name, value))

    def _guarded(self, name: str, value: str) -> None:
        if _is_empty(value) or name.partition(":")[0] in _IGNORED:
            return
        try:
            self._one(name, value)
        except _Unknown as unknown:
            self._drop(name, unknown.reason)

    def _one(self, name: str, value: str) -> None:
        base, colon, modifier = name.partition(":")
        handler = _CONTROL.get(base)
        if handler is None:
            self._filter(name, value)
            return
        handler(self, name, modifier if colon else None, value)

    def _drop(self, name: str, reason: str) -> None:
        message = f"Unknown or unsupported search parameter '{name}': {reason}"
        if self.handling == "strict":
            raise bad_request(message, code="not-supported")
        self.issues.append(Issue("not-supported", f"{message}; it was ignored", "warning"))

    def _request(self) -> SearchRequest:
        summary = cast(Summary | None, self.single.get("_summary"))
        if summary == "text" and (self.include or self.revinclude):
            raise bad_request("_summary=text cannot be combined with _include or _revinclude", code="invalid")
        count = self.single.get("_count")
        return SearchRequest(
            resource_type=self.resource_type,
            criteria=tuple(self.criteria),
            has=tuple(self.has),
            sort=tuple(self.sort),
            count=None if count is None else int(count),
            total=cast(Total | None, self.single.get("_total")),
            summary=summary,
            elements=tuple(self.elements),
            include=tuple(self.include),
            revinclude=tuple(self.revinclude),
            contained=cast(Contained | None, self.single.get("_contained")),
            contained_type=cast(ContainedType | None, self.single.get("_containedType")),
            types=self.types,
            lists=tuple(self.lists),
            text=tuple(self.text),
            content=tuple(self.content),
            page_token=self.single.get("_page"),
            issues=tuple(self.issues),
            used=tuple((name, value) for _, name, value in sorted(self.used)),
        )

    # --- parameter lookup -------------------------------------------------------------------------------

    def _scope(self) -> tuple[str, ...] | None:
        """The resource types the top-level parameters apply to (None: all types)."""
        if self.resource_type is not None:
            return (self.resource_type,)
        return self.types or None

    def _find(self, scope: tuple[str, ...] | None, code: str) -> ParamInfo | None:
        """The parameter `code` common to all types in scope (search.html#searchcontexts)."""
        if scope is None:
            return _COMMON.get(code)
        infos = [self.lookup.param(t, code) for t in scope]
        found = [i for i in infos if i is not None]
        if len(found) < len(infos):
            return None
        if len(found) == 1:
            return found[0]
        if len({i.type for i in found}) > 1:
            return None
        targets = tuple(dict.fromkeys(t for i in found for t in i.targets))
        return _Param(found[0].code, found[0].type, targets, tuple(found[0].components))

    def _require(self, scope: tuple[str, ...] | None, code: str) -> ParamInfo:
        info = self._find(scope, code)
        if info is None:
            where = " or ".join(scope) if scope else "all resource types"
            raise _Unknown(f"'{code}' is not a search parameter of {where}")
        if info.type not in _PARAM_TYPES:
            raise _Unknown(f"'{code}' has the unsupported type '{info.type}'")
        return info

    # --- criteria: plain, chained (search.html#chaining) and reverse-chained (search.html#has) ----------

    def _filter(self, name: str, value: str) -> None:
        node = self._resolve(self._scope(), name, name, value, 0)
        if isinstance(node, ReverseChain):
            self.has.append(node)
        else:
            self.criteria.append(node)
        self._use(name, value)

    def _resolve(
        self, scope: tuple[str, ...] | None, name: str, full: str, value: str, links: int
    ) -> Criterion | ReverseChain:
        """`name` is what is left of the parameter name `full` after `links` references."""
        if name == "_has" or name.startswith("_has:"):
            return self._reverse(scope, name, full, value, links)
        head, dot, tail = name.partition(".")
        code, colon, modifier = head.partition(":")
        if colon and not modifier:
            raise bad_request(f"Empty modifier in parameter '{full}'", code="invalid")
        info = self._require(scope, code)
        if dot:
            return self._chain(info, modifier if colon else None, tail, full, value, links)
        return self._leaf(info, modifier if colon else None, full, value)

    def _leaf(self, info: ParamInfo, modifier_text: str | None, full: str, value: str) -> Criterion:
        type_ = cast(ParamType, info.type)
        modifier, target = self._modifier(info, modifier_text, full)
        parts = [p for p in split_unescaped(value, ",") if p]
        values: tuple[SearchValue, ...]
        if type_ == "composite":
            components = self._component_types(info)
            plain = ReferenceContext(self.lookup.is_resource_type)
            values = tuple(parse_composite(components, p, full, plain) for p in parts)
        else:
            ctx = ReferenceContext(self.lookup.is_resource_type, info.targets, target)
            values = tuple(parse_value(type_, modifier, p, full, ctx) for p in parts)
        return Criterion(info.code, type_, modifier, values, target)

    def _modifier(self, info: ParamInfo, text: str | None, full: str) -> tuple[Modifier | None, str | None]:
        """(modifier, target type): a reference's `:[type]` is a target type (search.html#reference)."""
        if text is None:
            return None, None
        if text in _MODIFIERS[info.type]:
            return cast(Modifier, text), None
        if info.type == "reference" and self.lookup.is_resource_type(text):
            if info.targets and text not in info.targets:
                raise bad_request(
                    f"Invalid parameter '{full}': '{info.code}' cannot refer to a {text}", code="invalid"
                )
            return None, text
        raise bad_request(
            f"Modifier ':{text}' is not supported on parameter '{full}' (type {info.type})",
            code="not-supported",
        )

    def _component_types(self, info: ParamInfo) -> tuple[str, ...]:
        types = tuple(c.type for c in info.components)
        if not types or any(t not in _COMPONENT_TYPES for t in types):
            raise _Unknown(f"composite '{info.code}' has no supported component definition")
        return types

    def _chain(
        self, info: ParamInfo, modifier: str | None, tail: str, full: str, value: str, links: int
    ) -> Criterion:
        if info.type != "reference":
            raise bad_request(
                f"Invalid parameter '{full}': '{info.code}' is not a reference and cannot be chained",
                code="invalid",
            )
        self._check_depth(full, links)
        if not tail:
            raise bad_request(f"Invalid parameter '{full}': nothing after '.'", code="invalid")
        target = self._chain_target(info, modifier, tail, full)
        inner = self._resolve((target,), tail, full, value, links + 1)
        return Criterion(info.code, "reference", None, (), target, inner)

    def _chain_target(self, info: ParamInfo, modifier: str | None, tail: str, full: str) -> str:
        """The type a chain follows: the `:[type]` modifier, else the only target defining the next
        parameter; several candidates are rejected (search.html#chaining: "specify the type")."""
        if modifier is not None:
            kind, target = self._modifier(info, modifier, full)
            if target is None:
                raise bad_request(f"Modifier ':{kind}' cannot be used in a chain ('{full}')", code="invalid")
            return target
        code = _first_code(tail)
        candidates = [t for t in info.targets if code == "_has" or self._find((t,), code) is not None]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates and info.targets:
            raise _Unknown(f"no target type of '{info.code}' has a search parameter '{code}'")
        example = f"{info.code}:{candidates[0]}.{tail}" if candidates else f"{info.code}:[type].{tail}"
        raise bad_request(
            f"Chained parameter '{full}' is ambiguous: '{info.code}' may refer to "
            f"{', '.join(candidates) or 'several types'}; name the type, e.g. '{example}'",
            code="invalid",
        )

    def _reverse(
        self, scope: tuple[str, ...] | None, name: str, full: str, value: str, links: int
    ) -> ReverseChain:
        """`_has:[type]:[reference]:[parameter]` (search.html#has), nestable."""
        self._check_depth(full, links)
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise bad_request(
                f"Invalid parameter '{full}': expected _has:[type]:[reference parameter]:[parameter]",
                code="invalid",
            )
        _, source, ref_code, rest = parts
        if not self.lookup.is_resource_type(source):
            raise bad_request(f"Invalid parameter '{full}': unknown resource type '{source}'", code="invalid")
        ref = self._require((source,), ref_code)
        if ref.type != "reference":
            raise bad_request(
                f"Invalid parameter '{full}': '{ref_code}' is not a reference parameter", code="invalid"
            )
        self._check_refers_to(scope, source, ref, full)
        inner = self._resolve((source,), rest, full, value, links + 1)
        return ReverseChain(source, ref.code, inner)

    def _check_refers_to(self, scope: tuple[str, ...] | None, source: str, ref: ParamInfo, full: str) -> None:
        if scope is not None and len(scope) == 1 and ref.targets and scope[0] not in ref.targets:
            raise bad_request(
                f"Invalid parameter '{full}': {source}.{ref.code} does not refer to {scope[0]}",
                code="invalid",
            )

    @staticmethod
    def _check_depth(full: str, links: int) -> None:
        if links >= MAX_CHAIN_LINKS:
            raise bad_request(
                f"Parameter '{full}' chains more than {MAX_CHAIN_LINKS} references", code="too-costly"
            )

    # --- result parameters (search.html#return) ---------------------------------------------------------

    def _no_modifier(self, name: str, modifier: str | None) -> None:
        if modifier is not None:
            raise bad_request(
                f"Modifier ':{modifier}' is not supported on '{name.partition(':')[0]}'", code="invalid"
            )

    def _once(
        self, name: str, modifier: str | None, value: str, allowed: Collection[str] | None = None
    ) -> None:
        """A parameter that may appear once, with a value from `allowed` (if given)."""
        self._no_modifier(name, modifier)
        if name in self.single:
            raise bad_request(f"Parameter '{name}' may only appear once", code="invalid")
        if allowed is not None and value not in allowed:
            expected = " | ".join(sorted(allowed))
            raise bad_request(
                f"Invalid value {show(value)} in parameter '{name}': expected {expected}", code="value"
            )
        self.single[name] = value
        self._use(name, value)

    def _p_enum(self, name: str, modifier: str | None, value: str) -> None:
        self._once(name, modifier, value, _ENUMS[name.partition(":")[0]])

    def _p_count(self, name: str, modifier: str | None, value: str) -> None:
        """search.html#count: a whole number, 0 allowed (like _summary=count); capped at max_count."""
        if not _COUNT_RE.fullmatch(value):
            raise bad_request(
                f"Invalid value {show(value)} in parameter '_count': expected a whole number", code="value"
            )
        digits = value.lstrip("0") or "0"
        count = self.max_count if len(digits) > 9 else min(int(digits), self.max_count)
        self._once(name, modifier, str(count))

    def _p_page(self, name: str, modifier: str | None, value: str) -> None:
        self._once(name, modifier, value)

    def _p_sort(self, name: str, modifier: str | None, value: str) -> None:
        """search.html#sort: `a,-b`; may repeat for inner sort orders."""
        self._no_modifier(name, modifier)
        for item in filter(None, value.split(",")):
            descending = item.startswith("-")
            code = item[1:] if descending else item
            if code != "_score" and self._find(self._scope(), code) is None:
                raise bad_request(f"Unknown search parameter {show(code)} in _sort", code="not-supported")
            self.sort.append(SortKey(code, descending))
        self._use(name, value)

    def _p_elements(self, name: str, modifier: str | None, value: str) -> None:
        """search.html#elements: a comma-separated list of (top-level) element names."""
        self._no_modifier(name, modifier)
        for element in filter(None, value.split(",")):
            if not _ELEMENT_RE.fullmatch(element):
                raise bad_request(
                    f"Invalid element name {show(element)} in parameter '_elements'", code="value"
                )
            self.elements.append(element)
        self._use(name, value)

    def _p_include(self, name: str, modifier: str | None, value: str) -> None:
        """search.html#include: `Source:param{:Target}`, `*`; `:iterate` (`:recurse`, its STU3 name)."""
        base = name.partition(":")[0]
        if modifier not in (None, "iterate", "recurse"):
            raise bad_request(f"Modifier ':{modifier}' is not supported on '{base}'", code="invalid")
        include = self._include_value(name, value, modifier is not None)
        (self.include if base == "_include" else self.revinclude).append(include)
        self._use(name, value)

    def _include_value(self, name: str, value: str, iterate: bool) -> Include:
        if value == "*":
            return Include("*", "*", None, iterate)
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise bad_request(
                f"Invalid value {show(value)} in parameter '{name}': expected Type:searchParam[:targetType]",
                code="value",
            )
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not self.lookup.is_resource_type(source):
            raise bad_request(
                f"Invalid value {show(value)} in parameter '{name}': unknown type '{source}'", code="value"
            )
        targets: Collection[str] = ()
        if code != "*":
            info = self.lookup.param(source, code)
            if info is None:
                raise _Unknown(f"'{code}' is not a search parameter of {source}")
            if info.type != "reference":
                raise bad_request(
                    f"Invalid value {show(value)} in parameter '{name}': '{code}' is not a reference",
                    code="value",
                )
            targets = info.targets
        if target is not None and (
            not self.lookup.is_resource_type(target) or (targets and target not in targets)
        ):
            raise bad_request(
                f"Invalid value {show(value)} in parameter '{name}': bad target type '{target}'", code="value"
            )
        return Include(source, code, target, iterate)

    def _p_type(self, name: str, modifier: str | None, value: str) -> None:
        """search.html#_type: the types of a whole-system search."""
        if self.resource_type is not None:
            raise _Unknown("_type applies to whole-system search only")
        self._no_modifier(name, modifier)
        if self.types:
            raise bad_request("Parameter '_type' may only appear once", code="invalid")
        types = tuple(dict.fromkeys(t for t in value.split(",") if t))
        unknown = [t for t in types if not self.lookup.is_resource_type(t)]
        if unknown:
            raise bad_request(
                f"Invalid value {show(unknown[0])} in parameter '_type': not a resource type", code="value"
            )
        self.types = types
        self._use(name, value)

    def _p_list(self, name: str, modifier: str | None, value: str) -> None:
        """search.html#list: a List id or a functional list name such as `$current-allergies`."""
        self._no_modifier(name, modifier)
        list_id = unescape(value, name)
        if not _LIST_RE.fullmatch(list_id):
            raise bad_request(f"Invalid value {show(value)} in parameter '_list'", code="value")
        self.lists.append(list_id)
        self._use(name, value)

    def _p_text(self, name: str, modifier: str | None, value: str) -> None:
        """search.html#text: `_text` (narrative) and `_content` (whole resource) full-text searches."""
        if self.resource_type is not None and not is_supported(self.resource_type, name):
            raise _Unknown(f"{self.resource_type} is not full-text indexed; search it by its parameters")
        self._no_modifier(name, modifier)
        alternatives = tuple(unescape(p, name) for p in split_unescaped(value, ",") if p)
        (self.text if name == "_text" else self.content).append(alternatives)
        self._use(name, value)

    def _p_query(self, name: str, modifier: str | None, value: str) -> None:
        # search.html#query: servers SHALL refuse a _query they do not recognise; none is defined here.
        raise bad_request(f"Named query {show(value)} (_query) is not supported", code="not-supported")

    def _p_filter(self, name: str, modifier: str | None, value: str) -> None:
        raise _Unknown("_filter is not supported")


_ENUMS: dict[str, frozenset[str]] = {
    "_total": _TOTALS,
    "_summary": _SUMMARIES,
    "_contained": _CONTAINED,
    "_containedType": _CONTAINED_TYPES,
}

_CONTROL = {
    "_sort": _Parser._p_sort,
    "_count": _Parser._p_count,
    "_total": _Parser._p_enum,
    "_summary": _Parser._p_enum,
    "_contained": _Parser._p_enum,
    "_containedType": _Parser._p_enum,
    "_elements": _Parser._p_elements,
    "_include": _Parser._p_include,
    "_revinclude": _Parser._p_include,
    "_type": _Parser._p_type,
    "_list": _Parser._p_list,
    "_text": _Parser._p_text,
    "_content": _Parser._p_text,
    "_page": _Parser._p_page,
    "_query": _Parser._p_query,
    "_filter": _Parser._p_filter,
}
