"""The no-double-booking constraint in both of its forms (migration 0006): btree_gist's `actor =,
during &&`, and the built-in box form used where btree_gist is missing (the pgserver fallback)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pms.config import Settings

MIGRATION = Path(__file__).resolve().parents[3] / "migrations/versions/20261122_0006_appointment_occupancy.py"


def _box_function() -> str:
    spec = importlib.util.spec_from_file_location("occupancy_migration", MIGRATION)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.BOX_FUNCTION)


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    url = (settings.database_url or "").replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url)
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


class TestBoxFallback:
    async def test_overlaps_conflict_touching_visits_do_not(self, conn: asyncpg.Connection) -> None:
        await conn.execute("CREATE SCHEMA fallback_test")
        await conn.execute("SET LOCAL search_path = fallback_test")
        await conn.execute(_box_function())
        await conn.execute(
            "CREATE TABLE occupancy (actor text, during tstzrange, "
            "EXCLUDE USING gist (occupancy_box(actor, during) WITH &&))"
        )
        insert = (
            "INSERT INTO occupancy VALUES ($1, tstzrange($2::text::timestamptz, $3::text::timestamptz)) "
            "ON CONFLICT DO NOTHING"
        )
        assert (
            await conn.execute(insert, "Practitioner/1", "2026-12-01T09:00Z", "2026-12-01T09:20Z")
            == "INSERT 0 1"
        )
        assert (
            await conn.execute(insert, "Practitioner/1", "2026-12-01T09:10Z", "2026-12-01T09:30Z")
            == "INSERT 0 0"
        )
        assert (
            await conn.execute(insert, "Practitioner/1", "2026-12-01T09:20Z", "2026-12-01T09:40Z")
            == "INSERT 0 1"
        )
        assert (
            await conn.execute(insert, "Practitioner/2", "2026-12-01T09:10Z", "2026-12-01T09:30Z")
            == "INSERT 0 1"
        )


class TestInstalledConstraint:
    async def test_the_migrated_table_refuses_overlaps(self, conn: asyncpg.Connection) -> None:
        insert = (
            # ::text first: asyncpg binds a `$n::timestamptz` parameter as a datetime, not a string.
            "INSERT INTO appointment_occupancy "
            "VALUES ($1, $2, tstzrange($3::text::timestamptz, $4::text::timestamptz)) "
            "ON CONFLICT DO NOTHING"
        )
        assert (
            await conn.execute(insert, "a1", "Device/x", "2030-01-01T09:00Z", "2030-01-01T10:00Z")
            == "INSERT 0 1"
        )
        assert (
            await conn.execute(insert, "a2", "Device/x", "2030-01-01T09:59Z", "2030-01-01T11:00Z")
            == "INSERT 0 0"
        )
        assert (
            await conn.execute(insert, "a3", "Device/x", "2030-01-01T10:00Z", "2030-01-01T11:00Z")
            == "INSERT 0 1"
        )
