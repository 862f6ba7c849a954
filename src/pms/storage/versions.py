"""Fixed SQL for the repository's hot statements: the current version of a resource (locked or not), and
the next version of one or many resources.

One statement writes the next version of many resources (the `resource` row and its `resource_version`
row) if each is still at the version the caller read; a resource changed or deleted since is left alone.
The texts never change, so the driver prepares them once per connection and nothing is built per call
(statement construction was most of the cost of marking a booking's Slots busy one by one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

_CURRENT = (
    "SELECT rid, version_id, last_updated, deleted, content::text AS content FROM resource "
    "WHERE resource_type = $1 AND id = $2"
)
_LOCK = _CURRENT + " FOR UPDATE"

# $1 rids, $2 the versions read, $3 the new contents (already stamped with version + 1), $4 lastUpdated,
# $5 the history method. In READ COMMITTED, a row another transaction updates meanwhile is re-checked
# against `version_id` once that transaction ends, so a lost update is not possible (a deletion is a
# version too).
_UPDATE_UNCHANGED = (
    "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::integer[], $3::text[]) "
    "AS u(rid, version_id, content)), "
    "upd AS (UPDATE resource r "
    "SET version_id = u.version_id + 1, last_updated = $4, deleted = false, content = u.content::jsonb "
    "FROM u WHERE r.rid = u.rid AND r.version_id = u.version_id "
    "RETURNING r.rid, r.version_id, r.resource_type, r.id, r.last_updated, r.content), "
    "ver AS (INSERT INTO resource_version "
    "(rid, version_id, resource_type, id, last_updated, method, deleted, content) "
    "SELECT rid, version_id, resource_type, id, last_updated, $5, false, content FROM upd) "
    "SELECT rid FROM upd"
)

# The rows of these rids that are (still) at the given versions, locked until the transaction ends.
_LOCK_UNCHANGED = (
    "SELECT r.rid FROM resource r "
    "JOIN unnest($1::bigint[], $2::integer[]) AS u(rid, version_id) ON r.rid = u.rid "
    "WHERE r.version_id = u.version_id ORDER BY r.rid FOR UPDATE OF r"
)


async def current(
    conn: AsyncConnection, resource_type: str, id_: str, *, lock: bool = False
) -> Row[Any] | None:
    """The current row (rid, version_id, last_updated, deleted, content as text), if any; with `lock`,
    locked until the transaction ends."""
    return (await conn.exec_driver_sql(_LOCK if lock else _CURRENT, (resource_type, id_))).first()


async def lock_unchanged(conn: AsyncConnection, rids: Sequence[int], versions: Sequence[int]) -> set[int]:
    """Lock the rows still at `versions`; their rids."""
    rows = await conn.exec_driver_sql(_LOCK_UNCHANGED, (list(rids), list(versions)))
    return {row.rid for row in rows}


async def update_unchanged(
    conn: AsyncConnection,
    rows: Sequence[tuple[int, int, str]],
    *,
    last_updated: datetime,
    method: str,
) -> set[int]:
    """Write (rid, version read, new content) rows whose resource is still at the version read; their rids."""
    if not rows:
        return set()
    ordered = sorted(rows)  # in rid order: two writers of overlapping sets lock them in the same order
    result = await conn.exec_driver_sql(
        _UPDATE_UNCHANGED,
        (
            [rid for rid, _, _ in ordered],
            [version for _, version, _ in ordered],
            [content for _, _, content in ordered],
            last_updated,
            method,
        ),
    )
    return {row.rid for row in result}
