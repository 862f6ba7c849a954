"""Run a parsed search: matches (sorted, keyset-paged), totals, and _include/_revinclude."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, func, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import FromClause

from pms.core.errors import Issue, bad_request
from pms.fhir.search.model import Include, SearchRequest
from pms.fhir.searchparams import Registry
from pms.storage.index_tables import INDEX_TABLES, param_hash
from pms.storage.records import StoredVersion
from pms.storage.search.compile import Compiler, SearchContext
from pms.storage.search.paging import PageToken, beyond, decode_token, encode_token
from pms.storage.tables import resource

MAX_INCLUDE_ROUNDS = 3
MAX_INCLUDED = 1000
# Sort on the minimum value for ascending and the maximum for descending (search.html#sort).
_SORT_COLUMNS = {
    "string": ("norm", "norm"), "token": ("code", "code"), "date": ("low", "high"), "number": ("value", "value"),
    "quantity": ("value", "value"), "reference": ("target_id", "target_id"), "uri": ("uri", "uri"),
}


@dataclass
class SearchResult:
    matches: list[StoredVersion]
    included: list[StoredVersion] = field(default_factory=list)
    total: int | None = None
    next_token: str | None = None
    previous_token: str | None = None
    warnings: list[Issue] = field(default_factory=list)


def _stored(row: Any) -> StoredVersion:
    return StoredVersion(row.resource_type, row.id, row.version_id, row.last_updated, False, row.content, "GET",
                         row.rid)


class SearchEngine:
    def __init__(self, conn: AsyncConnection, registry: Registry, *, base: str, default_count: int) -> None:
        self.conn = conn
        self.registry = registry
        self.compiler = Compiler(SearchContext(registry, base))
        self.default_count = default_count

    # -- criteria ---------------------------------------------------------------------------------------

    def where(
        self, request: SearchRequest, res: FromClause, *, compartment: tuple[str, str] | None = None
    ) -> list[ColumnElement[bool]]:
        types = [request.resource_type] if request.resource_type else list(request.types)
        conditions: list[ColumnElement[bool]] = [~res.c.deleted]
        if types:
            conditions.append(res.c.resource_type.in_(types) if len(types) > 1 else res.c.resource_type == types[0])
        for criterion in request.criteria:
            per_type = [self.compiler.condition(t, criterion, res) for t in types] if types else [
                self.compiler.condition("Resource", criterion, res)
            ]
            conditions.append(or_(*per_type) if len(per_type) > 1 else per_type[0])
        for chain in request.has:
            conditions.extend(self.compiler.reverse_chain(t, chain, res) for t in types)
        for list_id in request.lists:
            conditions.append(self._in_list(list_id, res))
        for alternatives in request.text:
            conditions.append(or_(*(res.c.fts_text.op("@@")(func.plainto_tsquery("simple", v)) for v in alternatives)))
        for alternatives in request.content:
            conditions.append(
                or_(*(res.c.fts_content.op("@@")(func.plainto_tsquery("simple", v)) for v in alternatives))
            )
        if compartment is not None:
            conditions.append(self._in_compartment(compartment, types, res))
        return conditions

    def _in_list(self, list_id: str, res: FromClause) -> ColumnElement[bool]:
        """`_list=42`: resources that List/42 has as entry items (search.html#list)."""
        if list_id.startswith("$"):
            raise bad_request(f"Functional list '{list_id[:40]}' is not supported", code="not-supported")
        lists = resource.alias()
        refs = INDEX_TABLES["reference"].alias()
        items = (
            select(refs.c.target_id)
            .join(lists, lists.c.rid == refs.c.rid)
            .where(lists.c.resource_type == "List", lists.c.id == list_id, refs.c.param == param_hash("List", "item"),
                   refs.c.target_type == res.c.resource_type)
        )
        return res.c.id.in_(items)

    def _in_compartment(self, compartment: tuple[str, str], types: list[str], res: FromClause) -> ColumnElement[bool]:
        """`Patient/123/Observation`: linked to the compartment's focus by one of the compartment's params."""
        compartment_type, compartment_id = compartment
        refs = INDEX_TABLES["reference"].alias()
        hashes = [
            param_hash(t, code) for t in types for code in self.registry.compartment_params(compartment_type, t)
        ]
        linked = res.c.rid.in_(
            select(refs.c.rid).where(refs.c.param.in_(hashes), refs.c.target_type == compartment_type,
                                     refs.c.target_id == compartment_id)
        )
        focus = and_(res.c.resource_type == compartment_type, res.c.id == compartment_id)
        return or_(linked, focus) if compartment_type in types else linked

    # -- running ----------------------------------------------------------------------------------------

    async def search(
        self, request: SearchRequest, *, compartment: tuple[str, str] | None = None
    ) -> SearchResult:
        res = resource
        conditions = self.where(request, res, compartment=compartment)
        warnings = list(request.issues)
        count = self.default_count if request.count is None else request.count
        result = SearchResult([], warnings=warnings)
        if request.summary == "count" or count == 0 or request.total in ("accurate", "estimate"):
            result.total = await self._total(conditions, estimate=request.total == "estimate")
        if request.summary == "count" or count == 0:
            return result
        keys = self._sort_keys(request, res)
        token = decode_token(request.page_token, len(keys) - 1) if request.page_token else None
        forward = token is None or token.forward
        labelled = [expression.label(f"k{i}") for i, (expression, _) in enumerate(keys)]
        inner = select(
            res.c.rid, res.c.resource_type, res.c.id, res.c.version_id, res.c.last_updated, res.c.content, *labelled
        ).where(*conditions).subquery()
        outer_keys = [(inner.c[f"k{i}"], descending) for i, (_, descending) in enumerate(keys)]
        query = select(inner)
        if token is not None:
            query = query.where(beyond(outer_keys, token.values, forward=token.forward))
        query = query.order_by(*(_order(expression, descending, forward) for expression, descending in outer_keys))
        rows = list((await self.conn.execute(query.limit(count + 1))).all())
        more = len(rows) > count
        rows = rows[:count]
        if not forward:
            rows.reverse()
        result.matches = [_stored(row) for row in rows]
        if rows:
            first, last = rows[0], rows[-1]
            anchor_of = lambda row: tuple(row._mapping[f"k{i}"] for i in range(len(keys)))  # noqa: E731
            if (forward and more) or (not forward):
                result.next_token = encode_token(PageToken(True, anchor_of(last)))
            if (not forward and more) or (forward and token is not None):
                result.previous_token = encode_token(PageToken(False, anchor_of(first)))
        if result.total is None and token is None and not more:
            result.total = len(rows)  # every match is on this first page: the total is free
        if request.include or request.revinclude:
            result.included = await self._includes(request, result.matches)
        return result

    async def match_ids(self, request: SearchRequest, *, limit: int) -> list[str]:
        conditions = self.where(request, resource)
        rows = await self.conn.execute(select(resource.c.id).where(*conditions).limit(limit))
        return [row.id for row in rows]

    async def _total(self, conditions: list[ColumnElement[bool]], *, estimate: bool) -> int:
        query = select(func.count()).select_from(resource).where(*conditions)
        if not estimate:
            return int((await self.conn.execute(query)).scalar_one())
        compiled = query.compile(self.conn.sync_engine, compile_kwargs={"literal_binds": True})
        plan = (await self.conn.execute(text(f"EXPLAIN (FORMAT JSON) {compiled}"))).scalar_one()
        plan = orjson.loads(plan) if isinstance(plan, str | bytes) else plan
        return int(plan[0]["Plan"].get("Plans", [plan[0]["Plan"]])[0]["Plan Rows"])

    def _sort_keys(self, request: SearchRequest, res: FromClause) -> list[tuple[Any, bool]]:
        keys: list[tuple[Any, bool]] = []
        for key in request.sort:
            keys.append((self._sort_expression(request, key.code, key.descending, res), key.descending))
        keys.append((res.c.rid, False))
        return keys

    def _sort_expression(self, request: SearchRequest, code: str, descending: bool, res: FromClause) -> Any:
        if code == "_id":
            return res.c.id
        if code == "_lastUpdated":
            return res.c.last_updated
        types = [request.resource_type] if request.resource_type else list(request.types)
        params = [p for t in types if (p := self.registry.param(t, code)) is not None]
        if not params or params[0].type not in _SORT_COLUMNS:
            raise bad_request(f"Cannot sort by '{code}'", code="not-supported")
        table = INDEX_TABLES[params[0].type].alias()
        column = table.c[_SORT_COLUMNS[params[0].type][1 if descending else 0]]
        aggregate = func.max(column) if descending else func.min(column)
        return (
            select(aggregate)
            .where(table.c.rid == res.c.rid, table.c.param.in_([param_hash(t, code) for t in types]))
            .scalar_subquery()
        )

    # -- _include / _revinclude ---------------------------------------------------------------------------

    async def _includes(self, request: SearchRequest, matches: list[StoredVersion]) -> list[StoredVersion]:
        seen = {(m.resource_type, m.id) for m in matches}
        included: list[StoredVersion] = []
        frontier = matches
        for round_ in range(MAX_INCLUDE_ROUNDS):
            found: list[StoredVersion] = []
            for include in request.include:
                if round_ == 0 or include.iterate:
                    found += await self._include(include, frontier)
            for include in request.revinclude:
                if round_ == 0 or include.iterate:
                    found += await self._revinclude(include, frontier)
            fresh = []
            for item in found:
                if (item.resource_type, item.id) not in seen:
                    seen.add((item.resource_type, item.id))
                    fresh.append(item)
            included += fresh
            if not fresh or len(included) >= MAX_INCLUDED:
                break
            frontier = fresh
        return included[:MAX_INCLUDED]

    def _reference_hashes(self, include: Include, source_types: set[str]) -> list[int]:
        hashes = []
        for source_type in source_types:
            if include.source_type not in ("*", source_type):
                continue
            if include.param == "*":
                hashes += [param_hash(source_type, p.code) for p in self.registry.params_for(source_type).values()
                           if p.type == "reference"]
            else:
                hashes.append(param_hash(source_type, include.param))
        return hashes

    async def _include(self, include: Include, sources: list[StoredVersion]) -> list[StoredVersion]:
        hashes = self._reference_hashes(include, {s.resource_type for s in sources})
        if not hashes:
            return []
        refs = INDEX_TABLES["reference"].alias()
        targets = select(refs.c.target_type, refs.c.target_id).where(
            refs.c.rid.in_([s.rid for s in sources]), refs.c.param.in_(hashes), refs.c.target_id.is_not(None)
        )
        if include.target_type:
            targets = targets.where(refs.c.target_type == include.target_type)
        query = _resource_columns().where(
            tuple_(resource.c.resource_type, resource.c.id).in_(targets.subquery().select()), ~resource.c.deleted
        ).limit(MAX_INCLUDED)
        return [_stored(row) for row in await self.conn.execute(query)]

    async def _revinclude(self, include: Include, targets: list[StoredVersion]) -> list[StoredVersion]:
        source_types = (
            {include.source_type} if include.source_type != "*" else set(self.registry.resource_types)
        )
        hashes = self._reference_hashes(include, source_types)
        if not hashes or not targets:
            return []
        refs = INDEX_TABLES["reference"].alias()
        pairs = [(t.resource_type, t.id) for t in targets]
        sources = select(refs.c.rid).where(
            refs.c.param.in_(hashes), tuple_(refs.c.target_type, refs.c.target_id).in_(pairs)
        )
        query = _resource_columns().where(resource.c.rid.in_(sources), ~resource.c.deleted).limit(MAX_INCLUDED)
        return [_stored(row) for row in await self.conn.execute(query)]


def _resource_columns() -> Any:
    return select(
        resource.c.rid, resource.c.resource_type, resource.c.id, resource.c.version_id, resource.c.last_updated,
        resource.c.content,
    )


def _order(expression: Any, descending: bool, forward: bool) -> Any:
    """ORDER BY term: NULLS LAST in the search's order, reversed when paging backwards."""
    ascending = descending != forward
    ordered = expression.asc() if ascending else expression.desc()
    return ordered.nulls_last() if forward else ordered.nulls_first()


