"""Searches plan per execution (their best plan depends on the values); write units may reuse generic
plans for their fixed statements (core/db.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.db import Database


async def _plan_mode(conn: AsyncConnection) -> str:
    mode: str = (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one()
    return mode


async def test_reads_plan_per_execution_and_write_units_may_reuse_plans(database: Database) -> None:
    async with database.reader() as conn:
        assert await _plan_mode(conn) == "force_custom_plan"
    async with database.transaction() as conn:
        assert await _plan_mode(conn) == "auto"
    async with database.reader() as conn:  # SET LOCAL: gone with the transaction
        assert await _plan_mode(conn) == "force_custom_plan"
