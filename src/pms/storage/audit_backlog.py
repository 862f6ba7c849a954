"""The audit backlog (migration 0011): reads' and refusals' AuditEvents, committed as they happen and
moved into the store, as ordinary searchable resources, in batches.

A read is answered only once its AuditEvent is committed (fail closed), so the record's cost is paid on
every read. Committing the complete AuditEvent as one narrow row costs a fraction of storing and indexing
it as a resource; the indexing is done here, a batch at a time, before anything may read AuditEvents
(`reaches_audit_trail`) and by the worker every half minute. Every record keeps the id and `recorded` /
`lastUpdated` time it was given when it was made, so moving it later changes nothing a reader sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from pms.core.db import Database
from pms.fhir import jsonio
from pms.fhir.resource import stamp
from pms.fhir.search.model import Criterion, ReverseChain, SearchRequest
from pms.fhir.searchparams import Registry
from pms.storage.indexer import Indexer
from pms.storage.pending import PendingCreates, audit_backlog_insert
from pms.storage.records import new_id
from pms.storage.registry_provider import RegistryProvider
from pms.storage.search.engine import include_targets

AUDIT_EVENT = "AuditEvent"
# Records per transaction: big enough to amortise the statement, small enough to hold locks briefly.
BATCH = 1000

_RECORD = audit_backlog_insert(1)
_LAST = "SELECT max(seq) FROM audit_backlog"
# FOR UPDATE without SKIP LOCKED: a second mover waits for the first, then finds its rows gone (PostgreSQL
# skips rows deleted under a lock), so no record is moved twice and none is skipped.
_TAKE = (
    "DELETE FROM audit_backlog WHERE seq IN ("
    "SELECT seq FROM audit_backlog WHERE seq <= $1 ORDER BY seq LIMIT $2 FOR UPDATE"
    ") RETURNING id, recorded, content"
)
_ANY_LEFT = "SELECT EXISTS (SELECT 1 FROM audit_backlog WHERE seq <= $1)"


Record = tuple[str, datetime, str]  # an AuditEvent's id, time and JSON (carrying that id and time)


def new_record(event: dict[str, Any], recorded: datetime) -> Record:
    """A new AuditEvent's backlog row: stamped with a fresh id and `recorded` as its version 1, as a
    create stamps any resource (pms.fhir.resource.stamp)."""
    id_ = new_id()
    return id_, recorded, jsonio.dumps(stamp(event, id_=id_, version_id=1, last_updated=recorded)).decode()


async def record(conn: asyncpg.Connection, events: Sequence[Record]) -> None:
    """Commit AuditEvents (id, recorded time, JSON with that id and meta) to the backlog."""
    ids, times, contents = (list(column) for column in zip(*events, strict=True))
    await conn.execute(_RECORD, ids, times, contents)


class AuditBacklog:
    """Moves the backlog into the store (one per process: app lifespan, worker)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def catch_up(self, registry: Registry, *, batch: int = BATCH) -> int:
        """Move every record committed before this call into the store; the number moved.

        Records made while it runs are left for the next call: under a steady stream of reads, it ends."""
        async with self.pool.acquire() as conn:
            last = await conn.fetchval(_LAST)
            if last is None:
                return 0
            moved = 0
            while True:
                async with conn.transaction():
                    rows = await conn.fetch(_TAKE, last, batch)
                    if rows:
                        await _store(conn, registry, rows)
                moved += len(rows)
                if not rows and not await conn.fetchval(_ANY_LEFT, last):
                    return moved

    @classmethod
    async def catch_up_store(cls, db: Database, registry_provider: RegistryProvider) -> int:
        """One catch-up outside a request (the worker's job, `pms audit catch-up`)."""
        assert db.fast_pool is not None, "Database.open opens the pool"
        return await cls(db.fast_pool).catch_up(await registry_provider.current(db))

    async def before_search(self, request: SearchRequest, registry: Registry) -> None:
        """Catch up when the search can see AuditEvents (it must see every record made before it)."""
        if reaches_audit_trail(request, registry):
            await self.catch_up(registry)


async def _store(conn: asyncpg.Connection, registry: Registry, rows: Sequence[asyncpg.Record]) -> None:
    indexer = Indexer(registry)
    pending = PendingCreates()
    for row in rows:
        content: str = row["content"]
        pending.add(
            AUDIT_EVENT, row["id"], row["recorded"], content, "POST", indexer.values(jsonio.loads(content))
        )
    sql, args = pending.statement()
    await conn.execute(sql, *args)


def reaches_audit_trail(request: SearchRequest, registry: Registry) -> bool:
    """Whether a search can return or test AuditEvents: as its type (or every type), through `_has`, a
    chain, `_include` or `_revinclude`."""
    types = (request.resource_type,) if request.resource_type else request.types
    if not types or AUDIT_EVENT in types:
        return True
    if any(map(_chain_reaches, request.criteria)) or any(map(_chain_reaches, request.has)):
        return True
    if any(i.source_type in (AUDIT_EVENT, "*") for i in request.revinclude):
        return True
    return any(
        # a wildcard without a target may reach anything: no need to list every type's parameters
        (include.target_type is None and "*" in (include.source_type, include.param))
        or AUDIT_EVENT in include_targets(registry, include, {include.source_type})
        for include in request.include
    )


def _chain_reaches(criterion: Criterion | ReverseChain | None) -> bool:
    if criterion is None:
        return False
    if isinstance(criterion, ReverseChain):
        return criterion.source_type == AUDIT_EVENT or _chain_reaches(criterion.criterion)
    return criterion.target_type == AUDIT_EVENT or _chain_reaches(criterion.chain)
