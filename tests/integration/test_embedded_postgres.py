"""EmbeddedPostgres: a real private cluster in a temp dir (Debian's binaries, else the pgserver wheel's)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from pms.storage import embedded
from pms.storage.embedded import EmbeddedPostgres, Postmaster

pytestmark = pytest.mark.skipif(
    embedded.debian_bindir(Path("/nonexistent")) is None and embedded.pgserver_bindir() is None,
    reason="no PostgreSQL binaries (Debian postgresql package or pgserver wheel)",
)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir after a first start and stop: initdb runs once per module, not once per test."""
    path = tmp_path_factory.mktemp("template") / "var"
    db = EmbeddedPostgres(path)
    db.start()
    db.stop()
    return path


@pytest.fixture
def data_dir(tmp_path: Path, initialised: Path) -> Iterator[Path]:
    path = tmp_path / "var"
    subprocess.run(["cp", "-a", str(initialised), str(path)], check=True)  # -a: keep the postgres owner
    yield path
    EmbeddedPostgres(path).shutdown()  # whatever a failing test left running


@pytest.fixture
def empty_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fresh"
    yield path
    EmbeddedPostgres(path).shutdown()


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A live process that is not postgres, to stand in for a pid reused after a crash."""
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


def kill_postmaster(data_dir: Path) -> None:
    """Simulate a crash: SIGKILL the postmaster and wait until it is gone."""
    postmaster = Postmaster.read(data_dir / "pgdata")
    assert postmaster is not None
    os.kill(postmaster.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while embedded._alive(postmaster.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


async def fetchval(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class TestStartStop:
    async def test_first_start_initialises_and_serves_the_pms_database(self, empty_dir: Path) -> None:
        db = EmbeddedPostgres(empty_dir)
        url = db.start()
        try:
            assert (empty_dir / "pgdata" / "PG_VERSION").exists()
            assert await fetchval(url, "SELECT current_database()") == "pms"
        finally:
            db.stop()

    async def test_start_serves_the_pms_database_and_stop_shuts_it_down(self, data_dir: Path) -> None:
        db = EmbeddedPostgres(data_dir)
        url = db.start()
        try:
            assert url.startswith("postgresql://") and url.endswith("/pms")
            assert await fetchval(url, "SELECT current_database()") == "pms"
            assert db.running_url() == url
        finally:
            db.stop()
        assert db.running_url() is None
        with pytest.raises(OSError):
            await fetchval(url, "SELECT 1")


class TestRestart:
    async def test_restart_reuses_data_and_port(self, data_dir: Path) -> None:
        first = EmbeddedPostgres(data_dir)
        url = first.start()
        await execute(url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        first.stop()

        second = EmbeddedPostgres(data_dir)
        assert second.start() == url  # same port: clients configured with the URL keep working
        try:
            assert await fetchval(url, "SELECT n FROM kept") == 42
        finally:
            second.stop()


class TestCrashRecovery:
    async def test_killed_postmaster_does_not_block_the_next_start(self, data_dir: Path) -> None:
        url = EmbeddedPostgres(data_dir).start()
        await execute(url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        kill_postmaster(data_dir)
        assert (data_dir / "pgdata" / "postmaster.pid").exists()  # the stale lock file is left behind

        db = EmbeddedPostgres(data_dir)
        url = db.start()
        try:
            assert db.started
            assert await fetchval(url, "SELECT n FROM kept") == 7
        finally:
            db.stop()

    async def test_pid_file_naming_an_unrelated_live_process_is_cleaned(
        self, data_dir: Path, sleeper: int
    ) -> None:
        EmbeddedPostgres(data_dir).start()
        kill_postmaster(data_dir)
        # Containers restart with low pids reused by other programs: postgres alone would refuse to start.
        pid_file = data_dir / "pgdata" / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(sleeper), *lines[1:]]) + "\n")

        db = EmbeddedPostgres(data_dir)
        url = db.start()
        try:
            assert await fetchval(url, "SELECT 1") == 1
        finally:
            db.stop()
        assert embedded._alive(sleeper)


class TestOwnership:
    async def test_stop_leaves_a_reused_server_running(self, data_dir: Path) -> None:
        owner = EmbeddedPostgres(data_dir)
        url = owner.start()
        try:
            guest = EmbeddedPostgres(data_dir)
            assert guest.start() == url
            assert not guest.started
            guest.stop()
            assert await fetchval(url, "SELECT 1") == 1
        finally:
            owner.stop()
        assert owner.running_url() is None


class TestWheelFallback:
    @pytest.mark.skipif(embedded.pgserver_bindir() is None, reason="pgserver wheel not installed")
    async def test_pgserver_binaries_serve_without_debian_ones(
        self, empty_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(embedded, "debian_bindir", lambda pgdata: None)
        db = EmbeddedPostgres(empty_dir)
        url = db.start()
        try:
            assert "PostgreSQL 16" in str(await fetchval(url, "SELECT version()"))
        finally:
            db.stop()
