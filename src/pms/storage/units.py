"""Units of work for the server's own flows (jobs, CLI, link pages): a transaction and a repository in
the internal view, with the domains' write hooks, so background work obeys the same rules as requests.
Jobs those writes ask for (`repo.jobs`) are sent once the transaction commits (core/queue.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pms.core.db import Database
from pms.core.queue import JobQueue, after_commit
from pms.fhir.resource import Validator
from pms.storage.hooks import WriteHooks
from pms.storage.indexer import Indexer
from pms.storage.registry_provider import RegistryProvider
from pms.storage.repository import FhirRepository


class SystemUnits:
    """A lifespan object: `async with units.transaction() as repo: ...` commits when the block ends."""

    def __init__(
        self,
        db: Database,
        *,
        validator: Validator,
        registry_provider: RegistryProvider,
        hooks: WriteHooks,
        queue: JobQueue | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.validator = validator
        self.registry_provider = registry_provider
        self.hooks = hooks

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FhirRepository]:
        async with after_commit(self.queue) as jobs, self.db.transaction() as conn:
            registry = await self.registry_provider.get(conn)
            repo = FhirRepository(
                conn, validator=self.validator, indexer=Indexer(registry), hooks=self.hooks, jobs=jobs
            )
            yield repo
            await repo.flush()
