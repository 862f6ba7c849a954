"""create_app(): the ASGI application with its lifespan objects (database pool, validator, job queue)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from pms import __version__
from pms.api import spa
from pms.api.admin import router as admin_router
from pms.api.app.appointments import router as appointments_router
from pms.api.calendar import router as calendar_router
from pms.api.errors import install_error_handlers
from pms.api.fhir import docs
from pms.api.fhir.emergency import router as emergency_router
from pms.api.fhir.routes import hot_router as fhir_hot_router
from pms.api.fhir.routes import router as fhir_router
from pms.api.fhir.scheduling import router as scheduling_router
from pms.api.fhir.security import VerifiedTokens
from pms.api.oauth import router as oauth_router
from pms.api.waitlist import router as waitlist_router
from pms.auth.assertions import JwksFetcher
from pms.auth.rbac import role_rows
from pms.config import Settings, get_settings
from pms.core import heap
from pms.core.db import Database
from pms.core.queue import JobQueue, WorkerHealth
from pms.domains.hooks import write_hooks
from pms.domains.reminders.links import load_signer
from pms.domains.scheduling.wiring import scheduling_config
from pms.fhir.validation import validate_resource
from pms.storage import accounts
from pms.storage.audit import AuditWriter
from pms.storage.audit_backlog import AuditBacklog
from pms.storage.identity import KeyCache
from pms.storage.links import LinkSigner
from pms.storage.principals import PrincipalDirectory
from pms.storage.registry_provider import RegistryProvider
from pms.storage.units import SystemUnits

DESCRIPTION = """\
A FHIR R4 server for clinics. Every entity is a FHIR resource at `/fhir/{type}`; reads, writes,
history, conditional interactions and batch/transaction Bundles follow http://hl7.org/fhir/R4/http.html.
Bodies are `application/fhir+json`; errors are `OperationOutcome`s.
"""


class Health(BaseModel):
    status: str  # the API's own state (the database); a stopped worker does not make the API unhealthy
    database: str
    worker: WorkerHealth


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put the routers' routes on the app itself, in this order.

    `include_router` would wrap each router, and FastAPI resolves a wrapped router's routes on every request,
    twice, at 3-5 µs a route (half of that directly on the app). Our routers have no router-level
    dependencies, and their routes already carry the prefix, tags and schema flag, so nothing is lost.
    """
    for router in routers:
        app.router.routes.extend(router.routes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.database_url:
        raise RuntimeError(
            "DATABASE_URL is not set (`pms serve` starts an embedded PostgreSQL when it is unset)"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = await Database.open(settings)
        async with app.state.db.transaction() as conn:
            # The shipped roles exist from the first start on; roles admins edited are left alone.
            await accounts.seed_roles(conn, roles=role_rows())
            # The staff web app is a public client of our own authorization server (api/spa.py).
            await spa.register_client(conn, settings)
            app.state.link_signer = await load_signer(conn, settings.link_secret)  # reminder links
        app.state.keys = KeyCache(app.state.db)  # token signing/verification keys (storage/identity.py)
        app.state.links = LinkSigner(app.state.keys, settings)  # signed links in messages (waitlist, feeds)
        app.state.units = SystemUnits(
            app.state.db,
            validator=app.state.validator,
            registry_provider=app.state.registry_provider,
            hooks=app.state.write_hooks,
            queue=queue,  # jobs from these units' writes (a declined offer frees time) go after commit
        )
        app.state.principals = PrincipalDirectory(app.state.db)  # token -> AccessContext, cached briefly
        app.state.verified_tokens = VerifiedTokens()
        assert app.state.db.fast_pool is not None
        app.state.audit_writer = AuditWriter(app.state.db.fast_pool)  # reads' and refusals' audit, batched
        app.state.audit_backlog = AuditBacklog(app.state.db.fast_pool)  # ... made searchable AuditEvents
        heap.settle()  # last: what start-up built lives as long as the process (core/heap.py)
        try:
            yield
        finally:
            heap.restore()
            if queue is not None:
                await queue.close()
            await app.state.db.dispose()

    app = FastAPI(title="PMS FHIR API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.validator = validate_resource
    app.state.scheduling = scheduling_config(settings)
    app.state.write_hooks = write_hooks(app.state.scheduling)  # domain rules on writes (storage/hooks.py)
    app.state.registry_provider = RegistryProvider(ttl=settings.search_registry_ttl)
    app.state.jwks_fetcher = JwksFetcher()  # backend clients' registered JWKS URLs, cached
    # Connects lazily, so the API starts and serves while Redis is down (core/queue.py).
    queue = JobQueue(settings.redis_url, queue_name=settings.queue_name) if settings.redis_url else None
    app.state.queue = queue
    install_error_handlers(app)
    add_routes(
        app,
        fhir_hot_router,  # first: it matches only well-formed reads, which no other route wants
        oauth_router,  # before the FHIR router: /fhir/.well-known/... is not /fhir/{type}/{id}
        scheduling_router,
        emergency_router,  # before /fhir/{type}/{id}: its $operations are literal paths
        fhir_router,
        calendar_router,
        waitlist_router,
        admin_router,
        appointments_router,
    )

    @app.get("/health", response_model=Health, tags=["system"], summary="Liveness, database and worker state")
    async def health() -> Health:
        database = "ok" if await app.state.db.reachable() else "unreachable"
        worker = await queue.worker_health() if queue is not None else WorkerHealth(state="unknown")
        return Health(status="ok" if database == "ok" else "degraded", database=database, worker=worker)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = docs.add_fhir_schemas(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # Last: the web app answers only what no API route does (api/spa.py).
    add_routes(app, spa.router)
    return app
