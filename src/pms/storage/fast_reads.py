"""Primary-key reads on the raw asyncpg pool: the hot path of every FHIR client.

The SQL is fixed and prepared once per connection by asyncpg; the stored JSON comes back as text and is
served as is.
"""

from __future__ import annotations

import asyncpg

from pms.core.errors import gone, not_found
from pms.storage.records import StoredVersion

_READ = (
    "SELECT version_id, last_updated, deleted, content::text FROM resource "
    "WHERE resource_type = $1 AND id = $2"
)
_VREAD = (
    "SELECT v.last_updated, v.deleted, v.content::text, v.method FROM resource r "
    "JOIN resource_version v ON v.rid = r.rid WHERE r.resource_type = $1 AND r.id = $2 AND v.version_id = $3"
)


class FastReader:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def read(self, resource_type: str, id_: str) -> StoredVersion:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_READ, resource_type, id_)
        if row is None:
            raise not_found(f"{resource_type}/{id_} is not known")
        version_id, last_updated, deleted, content = row
        if deleted:
            raise gone(f"{resource_type}/{id_} was deleted (version {version_id})")
        return StoredVersion(resource_type, id_, version_id, last_updated, False, content)

    async def vread(self, resource_type: str, id_: str, version_id: int) -> StoredVersion:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_VREAD, resource_type, id_, version_id)
        if row is None:
            raise not_found(f"{resource_type}/{id_} has no version {version_id}")
        last_updated, deleted, content, method = row
        if deleted:
            raise gone(f"Version {version_id} of {resource_type}/{id_} is a deletion")
        return StoredVersion(resource_type, id_, version_id, last_updated, False, content, method)
