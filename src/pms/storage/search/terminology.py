"""Code sets for the terminology-aware token modifiers (http://hl7.org/fhir/R4/search.html#token):
`:in` / `:not-in` (a value set) and `:below` / `:above` (subsumption in a code system).

They are answered from the ValueSet and CodeSystem resources stored on this server, before the search is
compiled: a value set's stored `expansion`, else its `compose` (enumerated concepts, whole code systems,
imported value sets, exclusions); a code system's concept hierarchy (nested concepts and the `parent`
property). What cannot be evaluated exactly (filters, unknown value sets or code systems, codes the code
system does not define) is a 400, never a silently wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.errors import bad_request
from pms.fhir import jsonio
from pms.fhir.search.model import Criterion, ReverseChain, SearchRequest, TokenValue, UriValue
from pms.storage.index_tables import INDEX_TABLES, param_hash
from pms.storage.tables import resource

MAX_CODES = 10_000
MAX_IMPORT_DEPTH = 5
TERMINOLOGY_MODIFIERS = frozenset({"in", "not-in", "above", "below"})

# ("in", value set url or ValueSet/id, version) or ("below" | "above", system, code)
TerminologyKey = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class CodeSet:
    """Codings as (system, code) pairs, plus code systems included whole."""

    codes: frozenset[tuple[str | None, str]] = frozenset()
    systems: frozenset[str] = frozenset()


def terminology_key(modifier: str, value: Any) -> TerminologyKey:
    """The key under which a `:in`/`:not-in`/`:above`/`:below` value's code set is resolved."""
    if modifier in ("in", "not-in"):
        assert isinstance(value, UriValue)
        return ("in", value.value, value.version)
    assert isinstance(value, TokenValue)
    return (modifier, value.system or "", value.code)


def _criteria(node: Criterion | ReverseChain) -> Iterator[Criterion]:
    while isinstance(node, ReverseChain):
        node = node.criterion
    yield node
    if node.chain is not None:
        yield from _criteria(node.chain)


def terminology_keys(request: SearchRequest) -> set[TerminologyKey]:
    """Every code set the request's criteria (chained and reverse-chained ones included) refer to."""
    keys: set[TerminologyKey] = set()
    tops: list[Criterion | ReverseChain] = [*request.criteria, *request.has]
    for top in tops:
        for criterion in _criteria(top):
            if criterion.type == "token" and criterion.modifier in TERMINOLOGY_MODIFIERS:
                keys.update(terminology_key(criterion.modifier, v) for v in criterion.values)
    return keys


@dataclass
class _Builder:
    codes: set[tuple[str | None, str]] = field(default_factory=set)
    systems: set[str] = field(default_factory=set)

    def add(self, other: CodeSet) -> None:
        self.codes |= other.codes
        self.systems |= other.systems

    def freeze(self, what: str) -> CodeSet:
        if len(self.codes) > MAX_CODES:
            raise bad_request(f"{what} has more than {MAX_CODES} codes", code="too-costly")
        return CodeSet(frozenset(self.codes), frozenset(self.systems))


class Terminology:
    """Resolves code sets from stored ValueSets and CodeSystems, over one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def resolve(self, keys: set[TerminologyKey]) -> dict[TerminologyKey, CodeSet]:
        out: dict[TerminologyKey, CodeSet] = {}
        for key in sorted(keys, key=lambda k: (k[0], k[1], k[2] or "")):
            kind, first, second = key
            if kind == "in":
                out[key] = await self.value_set(first, second, depth=0)
            else:
                out[key] = await self.subsumption(kind, first, second)
        return out

    # -- value sets ---------------------------------------------------------------------------------------

    async def _stored(self, resource_type: str, url: str, version: str | None) -> dict[str, Any] | None:
        """The newest stored canonical resource with this url (and version), or `ValueSet/[id]`."""
        query = select(resource.c.content).where(
            resource.c.resource_type == resource_type, ~resource.c.deleted
        )
        if url.startswith(f"{resource_type}/"):
            query = query.where(resource.c.id == url.split("/", 1)[1])
        else:
            uris = INDEX_TABLES["uri"].alias()
            query = query.where(
                resource.c.rid.in_(
                    select(uris.c.rid).where(
                        uris.c.param == param_hash(resource_type, "url"), uris.c.uri == url
                    )
                )
            )
        rows = (await self.conn.execute(query.order_by(resource.c.last_updated.desc()))).all()
        for row in rows:
            content: dict[str, Any] = jsonio.loads(row.content)
            if version is None or content.get("version") == version:
                return content
        return None

    async def value_set(self, url: str, version: str | None, *, depth: int) -> CodeSet:
        shown = url if version is None else f"{url}|{version}"
        if depth > MAX_IMPORT_DEPTH:
            raise bad_request(f"Value set {shown[:200]} imports value sets too deeply", code="too-costly")
        value_set = await self._stored("ValueSet", url, version)
        if value_set is None:
            raise bad_request(f"Value set {shown[:200]} is not known to this server", code="not-found")
        builder = _Builder()
        expansion = value_set.get("expansion")
        if isinstance(expansion, dict) and expansion.get("contains"):
            _walk_contains(expansion["contains"], builder)
            return builder.freeze(f"Value set {shown[:200]}")
        compose = value_set.get("compose")
        if not isinstance(compose, dict):
            raise bad_request(
                f"Value set {shown[:200]} has neither an expansion nor a compose", code="not-supported"
            )
        for include in compose.get("include") or ():
            builder.add(await self._component(include, shown, depth))
        excluded = _Builder()
        for exclude in compose.get("exclude") or ():
            excluded.add(await self._component(exclude, shown, depth))
        builder.codes -= excluded.codes
        builder.codes = {(s, c) for s, c in builder.codes if s not in excluded.systems}
        builder.systems -= excluded.systems
        if builder.systems & {s for s, _ in excluded.codes if s is not None}:
            raise bad_request(
                f"Value set {shown[:200]} excludes single codes from a whole code system, which this server "
                "cannot expand",
                code="not-supported",
            )
        return builder.freeze(f"Value set {shown[:200]}")

    async def _component(self, part: Any, shown: str, depth: int) -> CodeSet:
        """One `compose.include` / `compose.exclude` (valueset.html#compose)."""
        if not isinstance(part, dict):
            raise bad_request(f"Value set {shown[:200]} has an invalid compose", code="invalid")
        if part.get("filter"):
            raise bad_request(
                f"Value set {shown[:200]} uses compose filters, which this server cannot evaluate",
                code="not-supported",
            )
        system = part.get("system")
        imported = [v for v in part.get("valueSet") or () if isinstance(v, str)]
        builder = _Builder()
        if system is not None:
            concepts = part.get("concept") or ()
            if concepts:
                builder.codes |= {
                    (system, c["code"]) for c in concepts if isinstance(c, dict) and "code" in c
                }
            else:
                builder.systems.add(system)
        sets = []
        for canonical in imported:
            url, _, version = canonical.partition("|")
            sets.append(await self.value_set(url, version or None, depth=depth + 1))
        if not sets:
            return builder.freeze(f"Value set {shown[:200]}")
        # Several value sets (and a system) in one include are intersected (valueset.html#compose).
        result = builder.freeze(f"Value set {shown[:200]}") if system is not None else sets.pop(0)
        for other in sets:
            result = _intersect(result, other)
        return result

    # -- subsumption --------------------------------------------------------------------------------------

    async def subsumption(self, kind: str, system: str, code: str | None) -> CodeSet:
        """`:below` (the code and its descendants) or `:above` (the code and its ancestors)."""
        if not system or code is None:
            raise bad_request(
                f"The :{kind} modifier needs a value of the form system|code (search.html#token)",
                code="value",
            )
        code_system = await self._stored("CodeSystem", system, None)
        if code_system is None:
            raise bad_request(
                f"Code system {system[:200]} is not known to this server: :{kind} cannot be evaluated",
                code="not-supported",
            )
        parents = _parents(code_system.get("concept") or (), None, {})
        if code not in parents:
            raise bad_request(f"Code {code[:100]} is not defined by code system {system[:200]}", code="value")
        found = {code}
        if kind == "above":
            frontier = {code}
            while frontier:
                frontier = {p for c in frontier for p in parents.get(c, ())} - found
                found |= frontier
        else:
            children: dict[str, set[str]] = {}
            for child, its_parents in parents.items():
                for parent in its_parents:
                    children.setdefault(parent, set()).add(child)
            frontier = {code}
            while frontier:
                frontier = {c for p in frontier for c in children.get(p, ())} - found
                found |= frontier
        return _Builder({(system, c) for c in found}).freeze(f"Code system {system[:200]}")


def _walk_contains(contains: Any, builder: _Builder) -> None:
    for item in contains if isinstance(contains, list) else ():
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("code"), str):
            builder.codes.add((item.get("system"), item["code"]))
        _walk_contains(item.get("contains"), builder)


def _parents(concepts: Any, parent: str | None, out: dict[str, set[str]]) -> dict[str, set[str]]:
    """code -> parent codes, from nested concepts and `parent` / `subsumedBy` properties."""
    for concept in concepts if isinstance(concepts, list) else ():
        if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
            continue
        code = concept["code"]
        parents = out.setdefault(code, set())
        if parent is not None:
            parents.add(parent)
        for prop in concept.get("property") or ():
            if isinstance(prop, dict) and prop.get("code") in ("parent", "subsumedBy"):
                value = prop.get("valueCode")
                if isinstance(value, str):
                    parents.add(value)
        _parents(concept.get("concept"), code, out)
    return out


def _intersect(a: CodeSet, b: CodeSet) -> CodeSet:
    codes = (a.codes & b.codes) | {(s, c) for s, c in a.codes if s in b.systems}
    codes |= {(s, c) for s, c in b.codes if s in a.systems}
    return CodeSet(frozenset(codes), a.systems & b.systems)
