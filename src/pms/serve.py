"""What `pms serve`, `pms worker` and `pms migrate` do: embedded database and Redis when needed,
migrations, uvicorn, the worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Protocol

from pms.config import Settings
from pms.core.embedded_redis import EmbeddedRedis, die_with_parent
from pms.storage.embedded import EmbeddedPostgres

APP_FACTORY = "pms.main:create_app"
# Serialises `pms migrate` across replicas that start together (any constant shared by all of them).
MIGRATION_LOCK_KEY = 0x706D735F6D6967  # "pms_mig"


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that cleanup (stopping the embedded database) runs."""


def default_workers() -> int:
    """$WEB_CONCURRENCY (uvicorn's convention) if set, else one worker per CPU we may run on."""
    if env := os.environ.get("WEB_CONCURRENCY"):
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def find_alembic_ini() -> Path:
    """alembic.ini next to a migrations/ dir, walking up from the package (a checkout) then the CWD
    (an installed package, e.g. the Docker image's workdir)."""
    for start in (Path(__file__).resolve().parent, Path.cwd()):
        for directory in (start, *start.parents):
            if (directory / "alembic.ini").is_file() and (directory / "migrations").is_dir():
                return directory / "alembic.ini"
    raise FileNotFoundError("alembic.ini with a migrations/ directory not found (run from the project dir)")


def run_migrations(database_url: str) -> None:
    """`alembic upgrade head`, holding an advisory lock so that concurrent runs take turns."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(find_alembic_ini()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))  # configparser interpolation

    async def upgrade() -> None:
        import asyncpg

        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            # migrations/env.py runs its own event loop: give it a thread without one.
            await asyncio.to_thread(command.upgrade, config, "head")
        finally:
            await conn.close()  # ends the session, which releases the lock

    asyncio.run(upgrade())


class _EmbeddedServer(Protocol):
    def start(self) -> str: ...
    def stop(self) -> None: ...


@contextlib.contextmanager
def _configured_or_embedded(
    configured: str | None, name: str, data: Path, server: Callable[[], _EmbeddedServer]
) -> Iterator[str]:
    """The configured URL, else that of an embedded server (data under `data`), stopped on exit if we
    started it."""
    if configured:
        yield configured
        return
    embedded = server()
    url = embedded.start()
    print(f"Embedded {name} at {url} (data in {data})", flush=True)
    try:
        yield url
    finally:
        embedded.stop()


def resolved_database_url(settings: Settings) -> contextlib.AbstractContextManager[str]:
    """DATABASE_URL, else an embedded PostgreSQL's."""
    data = Path(settings.data_dir)
    return _configured_or_embedded(
        settings.database_url, "PostgreSQL", data / "pgdata", lambda: EmbeddedPostgres(data)
    )


def resolved_redis_url(settings: Settings) -> contextlib.AbstractContextManager[str]:
    """REDIS_URL, else an embedded Redis's (shared by the API and the worker)."""
    data = Path(settings.data_dir)
    return _configured_or_embedded(settings.redis_url, "Redis", data / "redis", lambda: EmbeddedRedis(data))


@contextlib.contextmanager
def _worker_process(enabled: bool) -> Iterator[None]:
    """`pms worker` as a child (`make run`), with this process's DATABASE_URL and REDIS_URL; it dies with
    us even when we are killed (parent-death signal), and is stopped and waited for on a normal exit."""
    if not enabled:
        yield
        return
    child = subprocess.Popen(
        [sys.executable, "-m", "pms.cli", "worker", "--no-migrate"], preexec_fn=die_with_parent
    )
    try:
        yield
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    reload: bool,
    migrate: bool,
    with_worker: bool = False,
) -> int:
    """Run the API (and with `with_worker` a `pms worker` beside it) until SIGINT/SIGTERM; the embedded
    database and Redis (if any) are stopped on every way out."""
    import uvicorn

    try:
        with (
            _sigterm_raises(),
            resolved_database_url(settings) as url,
            resolved_redis_url(settings) as redis_url,
        ):
            # Uvicorn workers (and the job worker) are separate processes that build their own Settings
            # from the environment.
            os.environ["DATABASE_URL"] = url
            os.environ["REDIS_URL"] = redis_url
            # ...and the bound address, from which the web app's redirect URIs are derived (api/spa.py).
            os.environ["HOST"], os.environ["PORT"] = host, str(port)
            if migrate:
                run_migrations(url)
            base = f"http://{host}:{port}"
            print(f"PMS FHIR API on {base}/fhir (docs: {base}/docs; staff web app: {base}/)", flush=True)
            with _worker_process(with_worker):
                uvicorn.run(
                    APP_FACTORY,
                    factory=True,
                    host=host,
                    port=port,
                    workers=None if reload else workers,
                    reload=reload,
                    reload_dirs=[str(Path(__file__).resolve().parent)] if reload else None,
                    loop="uvloop",
                    http="httptools",
                    access_log=False,
                    log_level=settings.log_level,
                )
    except (KeyboardInterrupt, _Terminated):
        # Uvicorn re-raises the signal it shut down on once it is done; a requested stop is a clean exit.
        pass
    return 0
