"""The search parameter registry: which parameters each resource type has, and how they are defined.

Built once from the official R4 SearchParameter Bundle and CompartmentDefinitions packaged in
src/pms/fhir/data/ (http://hl7.org/fhir/R4/searchparameter.html, http://hl7.org/fhir/R4/compartmentdefinition.html).
A `Registry` is immutable: custom SearchParameter resources are added with `with_custom`, which returns a new
registry, so there is no global mutable state.

Expressions: a SearchParameter with several bases carries one FHIRPath union such as
`Patient.name | Practitioner.name`; each `SearchParam` holds only the union members that apply to its own base
(members that start with another type's name are dropped, members without a type prefix apply to every base).
Parameters defined on `Resource` / `DomainResource` (`_id`, `_lastUpdated`, `_tag`, ...) are listed for every
concrete type (their expressions keep the `Resource.` root; the extractor binds it to the concrete type).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal, cast

from pms.fhir.definitions import resource_types

SearchType = Literal[
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
]
SEARCH_TYPES: frozenset[str] = frozenset(
    ("number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special")
)
# Abstract bases whose parameters apply to every concrete type (DomainResource: all but Bundle, Binary,
# Parameters: http://hl7.org/fhir/R4/domainresource.html).
ABSTRACT_BASES = ("Resource", "DomainResource")
_NOT_DOMAIN_RESOURCES = frozenset(("Bundle", "Binary", "Parameters"))


class SearchParamError(ValueError):
    """A custom SearchParameter resource cannot be registered."""


@dataclass(frozen=True, slots=True)
class Component:
    """One component of a composite parameter (http://hl7.org/fhir/R4/search.html#composite).

    `expression` is relative to each item the composite's own expression selects.
    """

    definition: str  # canonical URL of the component's SearchParameter
    code: str  # that parameter's code ("" when the definition is unknown)
    type: SearchType  # that parameter's type ("special" when unknown: the component then yields nothing)
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParam:
    """A search parameter as it applies to one resource type."""

    code: str
    type: SearchType
    base: str  # the base the expression part belongs to: a resource type, "Resource" or "DomainResource"
    expression: str | None  # FHIRPath for this base only; None for `_text`, `_content`, `_query`
    url: str
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    multiple_or: bool = True
    multiple_and: bool = True
    custom: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class _Definition:
    """A SearchParameter resource, reduced to what the registry needs."""

    url: str
    code: str
    type: SearchType
    bases: tuple[str, ...]
    expression: str | None
    targets: tuple[str, ...]
    components: tuple[tuple[str, str], ...]  # (definition canonical, expression)
    modifiers: tuple[str, ...]
    comparators: tuple[str, ...]
    multiple_or: bool
    multiple_and: bool
    custom: bool
    description: str


_EMPTY: Mapping[str, SearchParam] = MappingProxyType({})


@dataclass(frozen=True, eq=False)  # identity hash: compiled extractors are cached per registry
class Registry:
    """Search parameters by resource type and code, plus compartment membership. Immutable."""

    _definitions: tuple[_Definition, ...] = field(repr=False)
    _compartments: Mapping[str, Mapping[str, tuple[str, ...]]] = field(repr=False)
    _by_type: Mapping[str, Mapping[str, SearchParam]] = field(init=False, repr=False)
    _by_url: Mapping[str, _Definition] = field(init=False, repr=False)

    def __repr__(self) -> str:
        custom = sum(d.custom for d in self._definitions)
        return f"Registry({len(self._definitions)} definitions, {custom} custom)"

    def __post_init__(self) -> None:
        by_url = {d.url: d for d in self._definitions}
        object.__setattr__(self, "_by_url", MappingProxyType(by_url))
        object.__setattr__(self, "_by_type", _index_by_type(self._definitions, by_url))

    # --- lookups -------------------------------------------------------------------------------------------

    @property
    def resource_types(self) -> tuple[str, ...]:
        return tuple(self._by_type)

    def params_for(self, resource_type: str) -> Mapping[str, SearchParam]:
        """All parameters of a type by code, those of Resource/DomainResource included."""
        return self._by_type.get(resource_type, _EMPTY)

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.params_for(resource_type).get(code)

    def param(self, resource_type: str, code: str) -> SearchParam | None:
        """Same as `get`: the name `fhir.search.model.ParamLookup` expects."""
        return self.get(resource_type, code)

    def is_resource_type(self, name: str) -> bool:
        return name in self._by_type

    def by_url(self, url: str) -> SearchParam | None:
        """The parameter a canonical URL names (bound to its first base), e.g. for composite components."""
        d = self._by_url.get(url.split("|", 1)[0])
        if d is None:
            return None
        return _bind(d, d.bases[0], self._by_url) if d.bases else None

    # --- compartments (http://hl7.org/fhir/R4/compartmentdefinition.html) ---------------------------------

    @property
    def compartment_types(self) -> tuple[str, ...]:
        return tuple(self._compartments)

    def compartment_params(self, compartment: str, resource_type: str) -> tuple[str, ...]:
        """Parameter codes that link a resource of `resource_type` into a `compartment` instance.

        Empty when the type is not in the compartment. `{def}` (kept verbatim) means the compartment's own
        resource: e.g. an Encounter is in its own Encounter compartment.
        """
        return self._compartments.get(compartment, MappingProxyType({})).get(resource_type, ())

    def compartment_members(self, compartment: str) -> Mapping[str, tuple[str, ...]]:
        """Every resource type that can be in the compartment, with its linking parameter codes."""
        return self._compartments.get(compartment, MappingProxyType({}))

    # --- custom parameters --------------------------------------------------------------------------------

    def with_custom(self, params: Sequence[Mapping[str, Any]]) -> Registry:
        """A new registry that also has these SearchParameter resources (same url or base+code replaces)."""
        custom = [_definition(p, custom=True) for p in params]
        keys = {(b, d.code) for d in custom for b in d.bases}
        urls = {d.url for d in custom}
        kept: list[_Definition] = []
        for d in self._definitions:
            if d.url in urls:
                continue
            bases = tuple(b for b in d.bases if (b, d.code) not in keys)
            if bases:
                kept.append(d if bases == d.bases else _replace_bases(d, bases))
        return Registry(tuple(kept + custom), self._compartments)


# --- building ---


def _data(name: str) -> Any:
    raw = resources.files("pms.fhir").joinpath("data", name).read_bytes()
    return json.loads(gzip.decompress(raw))


@cache
def default_registry() -> Registry:
    """The registry of the official R4 parameters and compartments, built once per process."""
    bundle = _data("search-parameters.json.gz")
    definitions = tuple(_definition(e["resource"], custom=False) for e in bundle.get("entry", ()))
    compartments: dict[str, Mapping[str, tuple[str, ...]]] = {}
    for cd in _data("compartments.json.gz"):
        members = {r["code"]: tuple(r.get("param") or ()) for r in cd.get("resource", ()) if r.get("param")}
        compartments[cd["code"]] = MappingProxyType(members)
    return Registry(definitions, MappingProxyType(compartments))


def _definition(resource: Mapping[str, Any], *, custom: bool) -> _Definition:
    if resource.get("resourceType", "SearchParameter") != "SearchParameter":
        raise SearchParamError("A custom search parameter must be a SearchParameter resource")
    code, type_, url = resource.get("code"), resource.get("type"), resource.get("url")
    bases = tuple(resource.get("base") or ())
    if not isinstance(code, str) or not code:
        raise SearchParamError("SearchParameter.code is required")
    if type_ not in SEARCH_TYPES:
        raise SearchParamError(f"SearchParameter '{code}' has an unknown type {type_!r}")
    if not bases or not all(isinstance(b, str) for b in bases):
        raise SearchParamError(f"SearchParameter '{code}' has no base")
    expression = resource.get("expression")
    if custom and type_ not in ("special", "composite") and not expression:
        raise SearchParamError(f"SearchParameter '{code}' has no expression")
    if not isinstance(url, str) or not url:
        url = f"urn:pms:searchparameter:{'-'.join(bases)}-{code}"
    return _Definition(
        url=url,
        code=code,
        type=cast(SearchType, type_),
        bases=bases,
        expression=expression if isinstance(expression, str) and expression.strip() else None,
        targets=tuple(resource.get("target") or ()),
        components=tuple(
            (c.get("definition", ""), c.get("expression", "")) for c in resource.get("component", ())
        ),
        modifiers=tuple(resource.get("modifier") or ()),
        comparators=tuple(resource.get("comparator") or ()),
        multiple_or=resource.get("multipleOr", True) is not False,
        multiple_and=resource.get("multipleAnd", True) is not False,
        custom=custom,
        description=str(resource.get("description") or ""),
    )


def _replace_bases(d: _Definition, bases: tuple[str, ...]) -> _Definition:
    return _Definition(
        d.url,
        d.code,
        d.type,
        bases,
        d.expression,
        d.targets,
        d.components,
        d.modifiers,
        d.comparators,
        d.multiple_or,
        d.multiple_and,
        d.custom,
        d.description,
    )


def _index_by_type(
    definitions: Iterable[_Definition], by_url: Mapping[str, _Definition]
) -> Mapping[str, Mapping[str, SearchParam]]:
    types = resource_types()
    specific: dict[str, dict[str, SearchParam]] = {t: {} for t in types}
    common: dict[str, list[SearchParam]] = {b: [] for b in ABSTRACT_BASES}
    for d in definitions:
        for base in d.bases:
            param = _bind(d, base, by_url)
            if base in common:
                common[base].append(param)
            elif base in specific:
                specific[base][d.code] = param
    out: dict[str, Mapping[str, SearchParam]] = {}
    for t in types:
        merged: dict[str, SearchParam] = {}
        for base in ABSTRACT_BASES:
            if base == "DomainResource" and t in _NOT_DOMAIN_RESOURCES:
                continue
            merged.update((p.code, p) for p in common[base])
        merged.update(specific[t])  # a type's own definition wins over an inherited one
        out[t] = MappingProxyType(dict(sorted(merged.items())))
    return MappingProxyType(out)


def _bind(d: _Definition, base: str, by_url: Mapping[str, _Definition]) -> SearchParam:
    components = tuple(_component(url, expr, by_url) for url, expr in d.components)
    return SearchParam(
        code=d.code,
        type=d.type,
        base=base,
        expression=expression_for_base(d.expression, base, d.bases) if d.expression else None,
        url=d.url,
        targets=d.targets,
        components=components,
        modifiers=d.modifiers,
        comparators=d.comparators,
        multiple_or=d.multiple_or,
        multiple_and=d.multiple_and,
        custom=d.custom,
        description=d.description,
    )


def _component(url: str, expression: str, by_url: Mapping[str, _Definition]) -> Component:
    target = by_url.get(url.split("|", 1)[0])
    if target is None:
        return Component(definition=url, code="", type="special", expression=expression)
    return Component(definition=url, code=target.code, type=target.type, expression=expression)


# --- expression splitting ---

_ROOT = re.compile(r"^\(*\s*([A-Za-z][A-Za-z0-9]*)")


def split_union(expression: str) -> list[str]:
    """Top-level `|` members of a FHIRPath expression (not inside parentheses, brackets or strings)."""
    parts: list[str] = []
    depth, start, quote = 0, 0, False
    for i, ch in enumerate(expression):
        if quote:
            quote = ch != "'" or expression[i - 1] == "\\"
        elif ch == "'":
            quote = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def expression_root(part: str) -> str | None:
    """The type name a union member starts with (`Patient` in `(Patient.deceased as dateTime)`), or None."""
    m = _ROOT.match(part.strip())
    if m is None:
        return None
    name = m.group(1)
    return name if name[0].isupper() else None


def expression_for_base(expression: str, base: str, bases: Sequence[str]) -> str | None:
    """The union members of a multi-base expression that apply to `base` (None when none do)."""
    if len(bases) <= 1:
        return expression
    keep = [p for p in split_union(expression) if expression_root(p) in (base, None, *ABSTRACT_BASES)]
    return " | ".join(keep) if keep else None
