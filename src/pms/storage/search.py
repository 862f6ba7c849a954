"""Search over stored resources.

The core issue needs `_id`, `_lastUpdated`, `_count` and `_total`; the definition-driven search engine
(fhir/search + the index tables) replaces the criteria handling here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.errors import Issue, bad_request
from pms.fhir.history import date_period
from pms.storage.records import StoredVersion
from pms.storage.tables import resource

RESULT_PARAMETERS = {"_count", "_total", "_format", "_pretty", "_summary", "_elements", "_page"}


@dataclass
class SearchResult:
    matches: list[StoredVersion]
    total: int | None
    next_page: str | None
    warnings: list[Issue] = field(default_factory=list)


def _last_updated_condition(value: str) -> ColumnElement[bool]:
    prefix = value[:2] if value[:2] in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb") else "eq"
    text = value[2:] if value[:2] == prefix else value
    low, high = date_period(text, "_lastUpdated")
    column = resource.c.last_updated
    conditions: dict[str, ColumnElement[bool]] = {
        "eq": and_(column >= low, column < high),
        "ne": or_(column < low, column >= high),
        "gt": column >= high,
        "sa": column >= high,
        "ge": column >= low,
        "lt": column < low,
        "eb": column < low,
        "le": column < high,
    }
    return conditions[prefix]


class ResourceSearch:
    def __init__(self, conn: AsyncConnection, *, default_count: int, max_count: int) -> None:
        self.conn = conn
        self.default_count = default_count
        self.max_count = max_count

    def _criteria(
        self, resource_type: str, query: list[tuple[str, str]], *, strict: bool
    ) -> tuple[list[ColumnElement[bool]], list[Issue]]:
        conditions: list[ColumnElement[bool]] = [resource.c.resource_type == resource_type, ~resource.c.deleted]
        warnings: list[Issue] = []
        for name, value in query:
            if name == "_id":
                conditions.append(resource.c.id.in_(value.split(",")))
            elif name == "_lastUpdated":
                conditions.append(or_(*(_last_updated_condition(v) for v in value.split(","))))
            elif name in RESULT_PARAMETERS:
                continue
            elif strict:
                raise bad_request(f"Unknown or unsupported search parameter '{name[:80]}'", code="not-supported")
            else:
                warnings.append(
                    Issue("not-supported", f"Search parameter '{name[:80]}' is not supported and was ignored",
                          "warning")
                )
        return conditions, warnings

    async def match_ids(self, resource_type: str, query: list[tuple[str, str]], *, limit: int = 2) -> list[str]:
        """Ids matching conditional criteria (always strict: ignoring a criterion would change the match)."""
        if not [name for name, _ in query if name not in RESULT_PARAMETERS]:
            raise bad_request("A conditional request needs search criteria", code="invalid")
        conditions, _ = self._criteria(resource_type, query, strict=True)
        rows = await self.conn.execute(select(resource.c.id).where(and_(*conditions)).limit(limit))
        return [row.id for row in rows]

    async def search(
        self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = False
    ) -> SearchResult:
        conditions, warnings = self._criteria(resource_type, query, strict=strict)
        params = dict(query)
        count = self._count(params.get("_count"))
        after = _page_token(params.get("_page"))
        total: int | None = None
        if params.get("_total") == "accurate" or count == 0 or params.get("_summary") == "count":
            total = (
                await self.conn.execute(select(func.count()).select_from(resource).where(and_(*conditions)))
            ).scalar_one()
        if count == 0 or params.get("_summary") == "count":
            return SearchResult([], total, None, warnings)
        page_conditions = [*conditions, resource.c.rid > after] if after else conditions
        rows = (
            await self.conn.execute(
                select(resource.c.rid, resource.c.id, resource.c.version_id, resource.c.last_updated,
                       resource.c.content)
                .where(and_(*page_conditions))
                .order_by(resource.c.rid)
                .limit(count + 1)
            )
        ).all()
        next_page = str(rows[count - 1].rid) if len(rows) > count else None
        matches = [
            StoredVersion(resource_type, r.id, r.version_id, r.last_updated, False, r.content)
            for r in rows[:count]
        ]
        return SearchResult(matches, total, next_page, warnings)

    def _count(self, text: str | None) -> int:
        if text is None:
            return self.default_count
        if not text.isdigit():
            raise bad_request(f"_count must be a non-negative integer, not '{text[:40]}'", code="value")
        return min(int(text), self.max_count)


def _page_token(text: str | None) -> int:
    if text is None:
        return 0
    if not text.isdigit():
        raise bad_request("Invalid paging token", code="value")
    return int(text)
