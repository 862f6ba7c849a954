"""The ceiling for a FHIR read: FastAPI + asyncpg, one primary-key select, the stored JSON returned as is.

No validation, no FHIR headers, no error mapping: what is left is the framework, the driver and the
database. One statement per request: the pool skips asyncpg's default reset query on release (`SELECT
pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`, a second round trip), which a read-only
autocommit select has nothing for (BARE_POOL_RESET=1 restores it, to measure what it costs).

bench/fhir_core_bench.py serves it exactly like the real server (uvicorn, 2 workers, uvloop, httptools,
no access log) and measures it with the same wrk read script.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/DB .venv/bin/uvicorn bare_endpoint:create_app \
        --factory --app-dir bench --workers 2 --loop uvloop --http httptools --no-access-log --port 8001
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from starlette.responses import Response

READ = "SELECT content::text FROM resource WHERE resource_type=$1 AND id=$2"
POOL_SIZE = 10  # the server's default db_read_pool_size (its pool for reads by id)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release without a reset query (asyncpg still rolls back an open transaction itself)."""


def _dsn() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(
            _dsn(),
            min_size=1,
            max_size=POOL_SIZE,
            reset=None if os.environ.get("BARE_POOL_RESET") == "1" else _no_reset,
            server_settings={"application_name": "pms-bare", "jit": "off"},
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/fhir/{resource_type}/{id_}")
    async def read(request: Request, resource_type: str, id_: str) -> Response:
        pool: asyncpg.Pool = request.app.state.pool
        async with pool.acquire() as conn:
            content = await conn.fetchval(READ, resource_type, id_)
        if content is None:
            return Response(status_code=404)
        return Response(content, media_type="application/fhir+json")

    return app
