"""Per-request wiring of the FHIR layers: a connection, a repository, search and interactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import Request

from pms.auth.context import AccessContext
from pms.config import Settings
from pms.core.db import Database
from pms.core.queue import JobQueue, after_commit
from pms.fhir.resource import Validator
from pms.storage.bundles import BundleProcessor
from pms.storage.fast_reads import FastReader
from pms.storage.indexer import Indexer
from pms.storage.interactions import Interactions
from pms.storage.registry_provider import RegistryProvider
from pms.storage.repository import FhirRepository


def fhir_base(request: Request) -> str:
    settings: Settings = request.app.state.settings
    if settings.base_url:
        return settings.base_url.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


@asynccontextmanager
async def interactions(
    request: Request, *, write: bool, access: AccessContext | None
) -> AsyncIterator[Interactions]:
    """Interactions over one unit of work: a transaction for writes, an autocommit reader otherwise."""
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    validator: Validator = request.app.state.validator
    provider: RegistryProvider = request.app.state.registry_provider
    queue: JobQueue | None = request.app.state.queue
    unit = db.transaction() if write else db.reader()
    # Jobs enqueued by this unit's writes reach the queue after the transaction (inner block) commits.
    async with after_commit(queue) as jobs, unit as conn:
        registry = await provider.get(conn)
        repo = FhirRepository(
            conn,
            validator=validator,
            indexer=Indexer(registry),
            access=access,
            hooks=request.app.state.write_hooks,
            jobs=jobs,
        )
        yield Interactions(
            repo,
            registry,
            base=fhir_base(request),
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
            access=access,
            audit_backlog=request.app.state.audit_backlog,
            write_unit=write,
        )
        # Index rows of this unit's writes go in before it commits.
        await repo.flush()


def fast_reader(request: Request) -> FastReader:
    db: Database = request.app.state.db
    assert db.fast_pool is not None, "the app's lifespan opens the read pool"
    return FastReader(db.fast_pool)


def bundle_processor(interactions_: Interactions) -> BundleProcessor:
    return BundleProcessor(interactions_.repo.conn, interactions_)
