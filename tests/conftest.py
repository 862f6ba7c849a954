"""Test fixtures: a fresh PostgreSQL database per run, migrated with alembic, and the API served over real
HTTP by uvicorn on a free local port.

The database server is the one at PMS_TEST_ADMIN_URL (default 127.0.0.1:5432, as in CI); when none answers
there, an embedded PostgreSQL is started under .pytest-pg/.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from tests.support import SYSTEM_TOKENS, fhir_client, served, system_token

from pms.config import Settings
from pms.core.db import Database
from pms.main import create_app

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    url = os.environ.get("PMS_TEST_ADMIN_URL", DEFAULT_ADMIN_URL)
    if _reachable(url):
        yield url
        return
    from pms.storage.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(ROOT / ".pytest-pg")
    base = embedded.start()
    try:
        yield base.rsplit("/", 1)[0] + "/postgres"
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def database_url(admin_url: str) -> Iterator[str]:
    """A fresh database for this test run, migrated to head, dropped afterwards."""
    name = f"pms_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "alembic",
                "-c",
                str(ROOT / "alembic.ini"),
                "-x",
                f"url={url}",
                "upgrade",
                "head",
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        max_body_bytes=2 * 1024 * 1024,
        search_registry_ttl=0,
        backend_token_lifetime=3600,  # the suite's system token outlives the run
        clinic_timezone="America/New_York",  # a zone with DST, for the scheduling tests
    )


@pytest.fixture(scope="session")
async def server_url(settings: Settings) -> AsyncIterator[str]:
    """The API served by a real uvicorn on a free port, for the whole session."""
    async with served(create_app(settings)) as url:
        SYSTEM_TOKENS[url] = await system_token(url, settings)
        yield url


@pytest.fixture
async def client(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with fhir_client(server_url) as http:
        yield http


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """Direct access to the test database, for work the API does not expose (e.g. reindexing)."""
    db = await Database.open(settings)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} (the shared FHIR test data) is not present")
    return SHARED
