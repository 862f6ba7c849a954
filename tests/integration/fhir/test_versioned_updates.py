"""FhirRepository.update_unchanged: the next version of several resources in one statement, each only if
it is still at the version read (what a booking does to the Slots it covers)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.db import Database
from pms.core.errors import AppError
from pms.fhir import jsonio
from pms.fhir.validation import validate_resource
from pms.storage.hooks import ResourceChange, WriteHooks
from pms.storage.index_tables import param_hash
from pms.storage.indexer import Indexer
from pms.storage.records import StoredVersion
from pms.storage.registry_provider import load_registry
from pms.storage.repository import FhirRepository


def slot(start_hour: int, status: str = "free") -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "schedule": {"reference": f"Schedule/{uuid.uuid4()}"},
        "status": status,
        "start": f"2031-03-04T{start_hour:02d}:00:00Z",
        "end": f"2031-03-04T{start_hour:02d}:20:00Z",
    }


async def repository(conn: AsyncConnection, hooks: WriteHooks | None = None) -> FhirRepository:
    return FhirRepository(
        conn, validator=validate_resource, indexer=Indexer(await load_registry(conn)), hooks=hooks
    )


async def stored_slots(repo: FhirRepository, count: int) -> list[StoredVersion]:
    created = [await repo.create(slot(9 + n)) for n in range(count)]
    await repo.flush()
    found = [await repo.current_version("Slot", c.id) for c in created]
    assert all(f is not None for f in found)
    return [f for f in found if f is not None]


def busy(current: StoredVersion) -> tuple[StoredVersion, dict[str, Any]]:
    return current, {**jsonio.loads(current.content or "{}"), "status": "busy"}


async def indexed_status(conn: AsyncConnection, rid: int) -> list[str]:
    rows = await conn.execute(
        text("SELECT code FROM search_token WHERE rid = :rid AND param = :param"),
        {"rid": rid, "param": param_hash("Slot", "status")},
    )
    return [row.code for row in rows]


@pytest.fixture
async def conn(database: Database) -> AsyncIterator[AsyncConnection]:
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()


class RecordingHook:
    resource_types = frozenset({"Slot"})

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    async def on_write(self, repo: FhirRepository, change: ResourceChange) -> None:
        self.seen.append(((change.before or {}).get("status"), (change.after or {}).get("status")))


class TestUpdateUnchanged:
    async def test_writes_every_next_version_with_history_and_index(self, conn: AsyncConnection) -> None:
        repo = await repository(conn)
        slots = await stored_slots(repo, 3)
        written = await repo.update_unchanged([busy(s) for s in slots])
        await repo.flush()
        assert [(w.id, w.version_id) for w in written] == [(s.id, 2) for s in slots]
        for before in slots:
            now = await repo.read("Slot", before.id)
            assert now.version_id == 2
            assert jsonio.loads(now.content or "{}")["status"] == "busy"
            assert jsonio.loads(now.content or "{}")["meta"]["versionId"] == "2"
            first = await repo.vread("Slot", before.id, 1)
            assert jsonio.loads(first.content or "{}")["status"] == "free"
            assert await indexed_status(conn, before.rid) == ["busy"]

    async def test_changed_or_deleted_since_read_are_left_alone(self, conn: AsyncConnection) -> None:
        repo = await repository(conn)
        changed, deleted, unchanged = await stored_slots(repo, 3)
        await repo.update(
            {**jsonio.loads(changed.content or "{}"), "status": "busy-tentative"}, id_=changed.id
        )
        await repo.delete("Slot", deleted.id)
        written = await repo.update_unchanged([busy(changed), busy(deleted), busy(unchanged)])
        assert [w.id for w in written] == [unchanged.id]
        still = await repo.read("Slot", changed.id)
        assert (still.version_id, jsonio.loads(still.content or "{}")["status"]) == (2, "busy-tentative")
        gone = await repo.current_version("Slot", deleted.id)
        assert gone is not None and gone.deleted

    async def test_hooks_run_only_for_the_writes_that_happen(self, conn: AsyncConnection) -> None:
        hook = RecordingHook()
        repo = await repository(conn, WriteHooks([hook]))
        stale, current = await stored_slots(repo, 2)
        hook.seen.clear()
        await repo.update({**jsonio.loads(stale.content or "{}"), "status": "busy-unavailable"}, id_=stale.id)
        hook.seen.clear()
        written = await repo.update_unchanged([busy(stale), busy(current)])
        assert [w.id for w in written] == [current.id]
        assert hook.seen == [("free", "busy")]

    async def test_invalid_content_is_refused_before_anything_is_written(self, conn: AsyncConnection) -> None:
        repo = await repository(conn)
        (only,) = await stored_slots(repo, 1)
        with pytest.raises(AppError) as refused:
            await repo.update_unchanged([(only, {**jsonio.loads(only.content or "{}"), "status": 7})])
        assert refused.value.status == 400
        assert (await repo.read("Slot", only.id)).version_id == 1


class TestConcurrentWriter:
    async def test_a_version_committed_meanwhile_is_not_overwritten(self, database: Database) -> None:
        async with database.transaction() as setup:
            (target,) = await stored_slots(await repository(setup), 1)
        async with database.engine.connect() as first, database.engine.connect() as second:
            await first.begin()
            await second.begin()
            other = await repository(first)
            await other.update(
                {**jsonio.loads(target.content or "{}"), "status": "busy-unavailable"}, id_=target.id
            )
            # The second writer read version 1 too: its update waits for the first one's row lock...
            mine = asyncio.create_task((await repository(second)).update_unchanged([busy(target)]))
            await asyncio.sleep(0.3)
            assert not mine.done()
            await first.commit()
            # ...then finds version 2, not the one it read, and leaves it.
            assert await mine == []
            await second.commit()
        async with database.transaction() as check:
            now = await (await repository(check)).read("Slot", target.id)
        assert (now.version_id, jsonio.loads(now.content or "{}")["status"]) == (2, "busy-unavailable")
