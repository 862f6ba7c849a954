"""The `pms` command, run as a subprocess against a fresh database on the test PostgreSQL server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("PMS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A new empty database on the admin server, dropped afterwards."""
    try:
        admin = await asyncpg.connect(ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}: {exc}")
    name = f"pms_test_cli_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def pms(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pms.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestMigrate:
    async def test_migrate_creates_the_schema_on_a_fresh_database(self, fresh_database: str) -> None:
        process = await pms("migrate", "--database-url", fresh_database)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output.decode()

        conn = await asyncpg.connect(fresh_database)
        try:
            assert await conn.fetchval("SELECT to_regclass('resource')::text") == "resource"
            assert await conn.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()

    async def test_every_migration_downgrades_and_upgrades_again(self, fresh_database: str) -> None:
        alembic = str(Path(sys.executable).parent / "alembic")
        for step in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
            process = await asyncio.create_subprocess_exec(
                alembic,
                "-x",
                f"url={fresh_database}",
                *step,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), 120)
            assert process.returncode == 0, f"{step}: {output.decode()[-2000:]}"
        conn = await asyncpg.connect(fresh_database)
        try:
            names = {row[0] for row in await conn.fetch("SELECT stxname FROM pg_statistic_ext")}
            assert {"search_token_param_code", "search_token_param_system"} <= names
        finally:
            await conn.close()


class TestServe:
    async def test_serve_answers_health_and_stops_cleanly_on_sigterm(
        self, fresh_database: str, tmp_path: Path
    ) -> None:
        port = free_port()
        process = await pms(
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            env={"DATABASE_URL": fresh_database, "PMS_DATA_DIR": str(tmp_path)},
        )
        try:
            health = await wait_for_health(f"http://127.0.0.1:{port}/health", process)
            # No REDIS_URL: an embedded Redis, and no worker was started beside the API.
            worker_down = {"state": "down", "last_heartbeat": None}
            assert health == {"status": "ok", "database": "ok", "worker": worker_down}
            redis_pid = int((tmp_path / "redis" / "redis.pid").read_text())
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 10)
            assert process.returncode == 0, output.decode()
            assert f"http://127.0.0.1:{port}/fhir" in output.decode()
            assert not (tmp_path / "pgdata").exists()  # DATABASE_URL given: no embedded database
            with pytest.raises(ProcessLookupError):  # the embedded Redis stopped with it
                os.kill(redis_pid, 0)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


class TestDb:
    async def test_db_start_url_stop(self, tmp_path: Path) -> None:
        async def run(action: str) -> tuple[int | None, str]:
            process = await pms("db", action, "--data-dir", str(tmp_path))
            output, _ = await asyncio.wait_for(process.communicate(), 30)
            return process.returncode, output.decode().strip()

        try:
            status, url = await run("start")
            assert status == 0 and url.endswith("/pms"), url
            assert await run("url") == (0, url)
        finally:
            assert (await run("stop"))[0] == 0
        status, message = await run("url")
        assert status == 1 and "no embedded database" in message


async def wait_for_health(url: str, process: asyncio.subprocess.Process) -> object:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(200):
            if process.returncode is not None:
                output = await process.stdout.read() if process.stdout else b""
                pytest.fail(f"pms serve exited with {process.returncode}:\n{output.decode()}")
            try:
                response = await client.get(url)
            except httpx.TransportError:
                await asyncio.sleep(0.05)
                continue
            return response.json()
    pytest.fail("pms serve did not answer /health in time")
