"""The search parameter registry in force: the official R4 one plus active custom SearchParameters.

Custom parameters take effect after `pms reindex`, which bumps `search_registry_state.version`; each
process notices within `ttl` seconds and reloads, so every API and worker process agrees.
"""

from __future__ import annotations

import time

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.db import Database
from pms.fhir.searchparams import Registry, SearchParamError, default_registry
from pms.storage.tables import resource


async def load_registry(conn: AsyncConnection) -> Registry:
    rows = await conn.execute(
        select(resource.c.content).where(resource.c.resource_type == "SearchParameter", ~resource.c.deleted)
    )
    custom = [orjson.loads(row.content) for row in rows]
    custom = [c for c in custom if c.get("status") in ("active", "draft") and c.get("expression")]
    registry = default_registry()
    try:
        return registry.with_custom(custom) if custom else registry
    except SearchParamError:
        # One bad definition must not take search down: fall back to registering them one by one.
        for definition in custom:
            try:
                registry = registry.with_custom([definition])
            except SearchParamError:
                continue
        return registry


async def registry_version(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT version FROM search_registry_state"))).scalar_one())


async def bump_registry_version(conn: AsyncConnection) -> int:
    return int(
        (
            await conn.execute(
                text("UPDATE search_registry_state SET version = version + 1 RETURNING version")
            )
        ).scalar_one()
    )


class RegistryProvider:
    def __init__(self, *, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._registry = default_registry()
        self._version = 0
        self._checked_at = float("-inf")

    async def current(self, db: Database) -> Registry:
        """The registry, opening a connection only when it is time to check for a newer one."""
        if time.monotonic() - self._checked_at < self.ttl:
            return self._registry
        async with db.reader() as conn:
            return await self.get(conn)

    async def get(self, conn: AsyncConnection) -> Registry:
        now = time.monotonic()
        if now - self._checked_at >= self.ttl:
            self._checked_at = now
            version = await registry_version(conn)
            if version != self._version:
                self._registry = await load_registry(conn)
                self._version = version
        return self._registry
