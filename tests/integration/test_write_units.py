"""Write units (core/db.py `Database.transaction`): one transaction, begun and ended on the driver
connection, committed when the block succeeds and rolled back otherwise; never a connection back in the
pool still inside a transaction."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.db import Database, TransactionAborted

TABLE = "write_unit_probe"


@pytest.fixture
async def probe(database: Database) -> str:
    """A scratch table with a unique column, for one test."""
    name = f"{TABLE}_{uuid.uuid4().hex[:8]}"
    async with database.transaction() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (value text PRIMARY KEY)"))
    return name


async def _values(database: Database, table: str) -> list[str]:
    async with database.reader() as conn:
        return list((await conn.execute(text(f"SELECT value FROM {table} ORDER BY value"))).scalars())


async def _insert(conn: AsyncConnection, table: str, value: str) -> None:
    await conn.execute(text(f"INSERT INTO {table} VALUES (:v)"), {"v": value})


async def _pooled_connections_idle(database: Database) -> None:
    """Every connection the pool holds is outside any transaction."""
    async with database.reader() as first, database.reader() as second:
        for conn in (first, second):
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            assert not driver.is_in_transaction()


async def test_a_unit_that_succeeds_is_committed(database: Database, probe: str) -> None:
    async with database.transaction() as conn:
        await _insert(conn, probe, "a")
        await _insert(conn, probe, "b")
    assert await _values(database, probe) == ["a", "b"]
    await _pooled_connections_idle(database)


async def test_a_unit_that_fails_leaves_no_trace(database: Database, probe: str) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            await _insert(conn, probe, "a")
            raise RuntimeError("the request failed after its first write")
    assert await _values(database, probe) == []
    await _pooled_connections_idle(database)


async def test_a_failed_statement_fails_the_unit_with_the_database_error(
    database: Database, probe: str
) -> None:
    with pytest.raises(DBAPIError):
        async with database.transaction() as conn:
            await _insert(conn, probe, "a")
            await _insert(conn, probe, "a")
    assert await _values(database, probe) == []


async def test_a_swallowed_database_error_does_not_pass_for_a_commit(database: Database, probe: str) -> None:
    """PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK, silently: the unit says so."""
    with pytest.raises(TransactionAborted):
        async with database.transaction() as conn:
            await _insert(conn, probe, "a")
            with contextlib.suppress(DBAPIError):  # a bug in the caller: no savepoint, yet it goes on
                await _insert(conn, probe, "a")
    assert await _values(database, probe) == []


async def test_savepoints_inside_a_unit(database: Database, probe: str) -> None:
    async with database.transaction() as conn:
        await _insert(conn, probe, "a")
        with pytest.raises(DBAPIError):
            async with conn.begin_nested():
                await _insert(conn, probe, "a")
        async with conn.begin_nested():
            await _insert(conn, probe, "b")
    assert await _values(database, probe) == ["a", "b"]


async def test_a_cancelled_unit_is_rolled_back(database: Database, probe: str) -> None:
    """A request whose client went away is cancelled mid-unit: nothing it wrote stays, and its
    connection goes back to the pool outside any transaction."""
    started = asyncio.Event()

    async def unit() -> None:
        async with database.transaction() as conn:
            await _insert(conn, probe, "a")
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(unit())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _values(database, probe) == []
    await _pooled_connections_idle(database)
