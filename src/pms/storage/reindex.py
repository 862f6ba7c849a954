"""Rebuild search indexes for stored resources (`pms reindex [--type T]`).

Needed when a SearchParameter is added or changed: the registry in force (official + active custom
definitions) re-extracts every current resource in batches, each batch in its own transaction, so a
long reindex neither holds locks for long nor loses work already done. Bumping the registry version
makes every server process load the new parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import select

from pms.core.db import Database
from pms.storage.indexer import Indexer
from pms.storage.registry_provider import bump_registry_version, load_registry
from pms.storage.tables import resource


@dataclass
class ReindexReport:
    resources: int = 0
    batches: int = 0


async def reindex(
    db: Database,
    *,
    resource_type: str | None = None,
    batch_size: int = 500,
    progress: Callable[[ReindexReport], None] | None = None,
) -> ReindexReport:
    report = ReindexReport()
    async with db.transaction() as conn:
        registry = await load_registry(conn)
    after = 0
    while True:
        async with db.transaction() as conn:
            query = (
                select(resource.c.rid, resource.c.content)
                .where(resource.c.rid > after, ~resource.c.deleted)
                .order_by(resource.c.rid)
                .limit(batch_size)
            )
            if resource_type is not None:
                query = query.where(resource.c.resource_type == resource_type)
            rows = (await conn.execute(query)).all()
            if not rows:
                break
            indexer = Indexer(registry)
            for row in rows:
                indexer.index(row.rid, orjson.loads(row.content), replace=True)
            await indexer.flush(conn)
        after = rows[-1].rid
        report.resources += len(rows)
        report.batches += 1
        if progress is not None:
            progress(report)
    async with db.transaction() as conn:
        await bump_registry_version(conn)
    return report
