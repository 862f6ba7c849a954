"""Creates buffered for the unit of work and written in one statement.

A transaction Bundle of 300 new resources becomes one INSERT … RETURNING into `resource`, one into
`resource_version` and one per index table, all data-modifying CTEs of a single statement, instead of
~600 round trips. Anything that reads the store flushes the buffer first, so the unit of work always
sees its own writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pms.fhir.extract import IndexValue
from pms.storage.indexer import IndexBuffer


@dataclass
class PendingCreates:
    types: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    index: IndexBuffer = field(default_factory=IndexBuffer)
    # AuditEvents of this unit's writes (id, time, JSON), for the audit backlog (storage/audit_backlog.py)
    audits: list[tuple[str, datetime, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ids or self.audits)

    def add(
        self,
        resource_type: str,
        id_: str,
        last_updated: datetime,
        content: str,
        method: str,
        values: list[IndexValue],
    ) -> None:
        slot = len(self.ids)
        self.types.append(resource_type)
        self.ids.append(id_)
        self.times.append(last_updated)
        self.contents.append(content)
        self.methods.append(method)
        self.index.add(slot, resource_type, values)

    def add_audit(self, id_: str, recorded: datetime, content: str) -> None:
        self.audits.append((id_, recorded, content))

    def statement(self, *, also: IndexBuffer | None = None) -> tuple[str, list[Any]]:
        """The statement writing the buffered creates; with `also`, the index rows of other writes (updates,
        deletes) in the same statement: one round trip for the unit of work's buffered writes."""
        args: list[Any] = [self.types, self.ids, self.times, self.contents, self.methods]
        parts = [
            "new_res AS (INSERT INTO resource "
            "(resource_type, id, version_id, last_updated, deleted, content) "
            "SELECT t, i, 1, ts, false, c::jsonb "
            "FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS u(t, i, ts, c) "
            "RETURNING rid, resource_type, id, version_id, last_updated, content)",
            "new_ver AS (INSERT INTO resource_version "
            "(rid, version_id, resource_type, id, last_updated, method, deleted, content) "
            "SELECT n.rid, n.version_id, n.resource_type, n.id, n.last_updated, u.m, false, n.content "
            "FROM new_res n JOIN unnest($1::text[], $2::text[], $5::text[]) AS u(t, i, m) "
            "ON u.t = n.resource_type AND u.i = n.id)",
        ]
        parts += self.index.cte_parts(args, new_rows=list(zip(self.types, self.ids, strict=True)))
        if also:
            parts += also.cte_parts(args, label="o")
        if self.audits:
            first = len(args) + 1
            args += [list(column) for column in zip(*self.audits, strict=True)]
            parts.append(f"audit AS ({audit_backlog_insert(first)})")
        return "WITH " + ", ".join(parts) + " SELECT count(*) FROM new_res", args

    def clear(self) -> None:
        for column in (self.types, self.ids, self.times, self.contents, self.methods):
            column.clear()
        self.audits.clear()
        self.index.clear()


def audit_backlog_insert(first: int) -> str:
    """INSERT of audit records into the backlog from three arrays (ids, times, JSON) bound at $first..."""
    return (
        "INSERT INTO audit_backlog (id, recorded, content) "
        f"SELECT * FROM unnest(${first}::text[], ${first + 1}::timestamptz[], ${first + 2}::text[])"
    )
