"""Searches plan per execution (their best plan depends on the values); write units reuse generic plans
for the server's own fixed statements, and plan a search the client wrote per execution (core/db.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.db import Database, custom_plans


async def _plan_mode(conn: AsyncConnection) -> str:
    mode: str = (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one()
    return mode


async def test_reads_plan_per_execution_and_write_units_may_reuse_plans(database: Database) -> None:
    async with database.reader() as conn:
        assert await _plan_mode(conn) == "force_custom_plan"
    async with database.transaction() as conn:
        assert await _plan_mode(conn) == "force_generic_plan"
        assert await custom_plans(conn, lambda: _plan_mode(conn)) == "force_custom_plan"
        assert await _plan_mode(conn) == "force_generic_plan"
    async with database.reader() as conn:  # SET LOCAL: gone with the transaction
        assert await _plan_mode(conn) == "force_custom_plan"
