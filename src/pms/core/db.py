"""Database engine and per-unit-of-work connections.

Services never commit: the caller that opened the unit of work (a request, a CLI command, a job) commits
at the end or rolls back on error, so a failed request leaves no trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import TypeVar

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pms.config import Settings


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


# Searches are prepared statements whose best plan depends on the values (a rare code vs a common one):
# generic plans made one search 350x slower at 1M resources, so every connection plans per execution
# (write units switch to generic plans for their own fixed statements: Database.transaction).
SESSION_SETTINGS: Mapping[str, str] = MappingProxyType(
    {"application_name": "pms", "jit": "off", "plan_cache_mode": "force_custom_plan"}
)


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    return create_async_engine(
        url or settings.async_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={"server_settings": dict(SESSION_SETTINGS)},
    )


def driver_dsn(settings: Settings) -> str:
    """The database URL in the form asyncpg itself takes (no SQLAlchemy driver suffix)."""
    return (
        make_url(settings.async_database_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


T = TypeVar("T")
BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


async def custom_plans(conn: AsyncConnection, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` (a search whose criteria the client wrote) in a write unit, planned per execution as
    every search is. Back to generic plans only on success: a failed statement ends the unit anyway,
    and a failed search inside a batch only leaves the rest of the unit planning per execution."""
    await conn.exec_driver_sql(CUSTOM_PLANS)
    result = await work()
    await conn.exec_driver_sql(GENERIC_PLANS)
    return result


async def _no_reset(connection: asyncpg.Connection) -> None:
    return None


class TransactionAborted(SQLAlchemyError):
    """COMMIT found the transaction aborted (an error inside it was caught and not rolled back to a
    savepoint): nothing was written."""


async def _roll_back(conn: AsyncConnection, driver: asyncpg.Connection) -> None:
    """End a failed write unit. A connection whose ROLLBACK fails (it broke, or the task is cancelled
    again meanwhile) is thrown away rather than returned to the pool still inside a transaction; the
    caller then re-raises the error that failed the unit, which says more than the ROLLBACK's."""
    try:
        await driver.execute("ROLLBACK")
    except Exception:
        await conn.invalidate()
    except BaseException:
        await conn.invalidate()
        raise


class Database:
    """The app's database handle: one engine, a writer and an autocommit reader sharing its pool, plus a
    small asyncpg pool for the hot primary-key reads (read/vread), which skip SQLAlchemy's per-statement
    overhead: measured, it is most of the cost of a read."""

    def __init__(self, engine: AsyncEngine, fast_pool: asyncpg.Pool | None = None) -> None:
        self.engine = engine
        # Reads need no BEGIN/COMMIT round trips: a single statement is atomic on its own.
        self.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.fast_pool = fast_pool

    @classmethod
    async def open(cls, settings: Settings) -> Database:
        pool = await asyncpg.create_pool(
            driver_dsn(settings),
            min_size=1,
            max_size=settings.db_read_pool_size,
            # The fast path keeps no session state (no locks, LISTEN, SET), so the default reset query
            # on release is a wasted round trip per read (measured: ~19% of read throughput).
            reset=_no_reset,
            server_settings={"application_name": "pms-read", "jit": "off"},
        )
        return cls(create_engine(settings), pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in one transaction: committed if the block succeeds, rolled back otherwise.

        The transaction is begun and ended here, on the driver connection, rather than by SQLAlchemy
        (the connection is in its autocommit mode, so SQLAlchemy sends no BEGIN/COMMIT of its own):
        BEGIN and the unit's plan mode then cost one round trip, not two (creates +8%). Savepoints
        (`begin_nested`) work as before inside it.
        """
        async with self.read_engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            # A write unit runs the server's own few statements over and over (the buffered write, the
            # booking rules' searches), whose plans do not depend on the values: reuse generic plans
            # instead of planning each afresh. Searches the client wrote still plan per execution
            # (`custom_plans`; create_engine says why).
            await driver.execute(f"{BEGIN}; {GENERIC_PLANS}")
            try:
                yield conn
            except BaseException:
                await _roll_back(conn, driver)
                raise
            status = await driver.execute("COMMIT")
            if status != "COMMIT":
                # PostgreSQL answers COMMIT of a transaction that an error aborted with ROLLBACK: a
                # statement failed and someone swallowed the error. Nothing was written; say so.
                raise TransactionAborted("the transaction was aborted by an earlier error; nothing was saved")

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncConnection]:
        async with self.read_engine.connect() as conn:
            yield conn

    async def reachable(self) -> bool:
        """Whether the database answers a trivial query (health checks; never raises)."""
        try:
            async with self.reader() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError):
            return False
        return True

    async def dispose(self) -> None:
        if self.fast_pool is not None:
            await self.fast_pool.close()
        await self.engine.dispose()
