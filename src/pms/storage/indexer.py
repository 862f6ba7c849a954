"""Write-time search indexing: index values of written resources become rows of the typed tables.

Rows are buffered for the unit of work and written in one statement (data-modifying CTEs over unnest()
arrays), so a 300-resource transaction Bundle costs one round trip for its indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pms.fhir.extract import (
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    extractor_for,
)
from pms.fhir.searchparams import Registry
from pms.storage.index_tables import component_code, param_hash

# Parameters answered from the resource table's own columns, so not indexed again.
UNINDEXED = frozenset({"_id", "_lastUpdated"})

# table -> (columns after rid, param, grp; their PostgreSQL array types for unnest)
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "search_string": (("norm", "exact"), ("text[]", "text[]")),
    "search_token": (
        ("system", "code", "text_norm", "type_system", "type_code"),
        ("text[]",) * 5,
    ),
    "search_date": (("low", "high"), ("timestamptz[]", "timestamptz[]")),
    "search_number": (("value", "low", "high"), ("numeric[]",) * 3),
    "search_quantity": (
        ("value", "low", "high", "system", "code", "unit"),
        ("numeric[]",) * 3 + ("text[]",) * 3,
    ),
    "search_reference": (("target_type", "target_id", "version", "url"), ("text[]",) * 4),
    "search_uri": (("uri",), ("text[]",)),
}


def _row(value: IndexValue) -> tuple[str, tuple[Any, ...]] | None:
    """The table and column values for one (non-composite) index value."""
    match value:
        case StringValue():
            return "search_string", (value.normalized, value.exact)
        case TokenValue():
            return "search_token", (value.system, value.code, value.text, value.type_system, value.type_code)
        case DateValue():
            return "search_date", (value.low, value.high)
        case NumberValue():
            return "search_number", (value.value, value.low, value.high)
        case QuantityValue():
            return "search_quantity", (
                value.value,
                value.low,
                value.high,
                value.system,
                value.code,
                value.unit,
            )
        case ReferenceValue():
            if value.kind == "contained":
                return None  # `#id` points inside the resource itself: nothing to search across resources
            return "search_reference", (value.target_type, value.target_id, value.version, value.url)
        case UriValue():
            return "search_uri", (value.uri,)
    return None


@dataclass
class IndexBuffer:
    """Index rows waiting to be written, and resources whose old rows must go first."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    cleared: list[int] = field(default_factory=list)
    rids: set[int] = field(default_factory=set)  # resources with buffered rows

    def __bool__(self) -> bool:
        return bool(self.rows or self.cleared)

    def add(self, rid: int, resource_type: str, values: Iterable[IndexValue]) -> None:
        self.rids.add(rid)
        group = 0
        for value in values:
            if value.param in UNINDEXED:
                continue
            if isinstance(value, CompositeValue):
                group += 1
                for index, component in enumerate(value.components):
                    self._append(
                        rid, param_hash(resource_type, component_code(value.param, index)), group, component
                    )
            else:
                self._append(rid, param_hash(resource_type, value.param), None, value)

    def _append(self, rid: int, param: int, group: int | None, value: IndexValue) -> None:
        row = _row(value)
        if row is not None:
            table, columns = row
            self.rows.setdefault(table, []).append((rid, param, group, *columns))

    def statement(self) -> tuple[str, list[Any]] | None:
        """One SQL statement (and its arguments) that applies the whole buffer."""
        if not self:
            return None
        args: list[Any] = []
        parts = self.cte_parts(args)
        return "WITH " + ", ".join(parts) + " SELECT 1", args

    def cte_parts(
        self, args: list[Any], *, new_rows: list[tuple[str, str]] | None = None, label: str = ""
    ) -> list[str]:
        """Data-modifying CTEs for the buffer, appending their arguments to `args`.

        With `new_rows`, the rows' first element is an index into it, a (type, id) of a resource that the
        same statement inserts in a CTE named `new_res`, whose rid the rows take. `label` prefixes the
        CTEs' names, for two buffers in one statement.
        """
        parts: list[str] = []
        if self.cleared:
            args.append(self.cleared)
            slot = len(args)
            parts.extend(
                f"{label}d_{table} AS (DELETE FROM {table} WHERE rid = ANY(${slot}::bigint[]))"
                for table in COLUMNS
            )
        for table, rows in self.rows.items():
            names, types = COLUMNS[table]

            def column(index: int, pg_type: str) -> str:
                args.append([row[index] for row in rows])  # noqa: B023 - used immediately
                return f"${len(args)}::{pg_type}"

            values = [column(i + 1, t) for i, t in enumerate(("bigint[]", "smallint[]", *types))]
            columns = f"rid, param, grp, {', '.join(names)}"
            if new_rows is None:
                rid = column(0, "bigint[]")
                source = f"SELECT * FROM unnest({rid}, {', '.join(values)})"
            else:
                args.append([new_rows[row[0]][0] for row in rows])
                types_slot = len(args)
                args.append([new_rows[row[0]][1] for row in rows])
                aliases = ", ".join(f"c{i}" for i in range(len(values)))
                source = (
                    f"SELECT n.rid, {aliases} FROM unnest(${types_slot}::text[], ${types_slot + 1}::text[], "
                    f"{', '.join(values)}) AS u(t, i, {aliases}) "
                    "JOIN new_res n ON n.resource_type = u.t AND n.id = u.i"
                )
            parts.append(f"{label}i_{table} AS (INSERT INTO {table} ({columns}) {source})")
        return parts

    def clear(self) -> None:
        self.rows.clear()
        self.cleared.clear()
        self.rids.clear()


class Indexer:
    """Extracts index values with the registry's compiled extractors and buffers them."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.buffer = IndexBuffer()

    def index(self, rid: int, resource: dict[str, Any], *, replace: bool) -> None:
        if replace:
            self.unindex(rid)
        self.buffer.add(rid, resource["resourceType"], self.values(resource))

    def unindex(self, rid: int) -> None:
        """Drop the resource's rows: those stored, and any still buffered from an earlier write."""
        self.buffer.cleared.append(rid)
        if rid in self.buffer.rids:
            for rows in self.buffer.rows.values():
                rows[:] = [row for row in rows if row[0] != rid]

    def values(self, resource: dict[str, Any]) -> list[IndexValue]:
        return extractor_for(resource["resourceType"], self.registry).extract(resource)

    async def flush(self, conn: AsyncConnection) -> None:
        statement = self.buffer.statement()
        if statement is None:
            return
        sql, args = statement
        await conn.exec_driver_sql(sql, tuple(args))
        self.buffer.clear()
