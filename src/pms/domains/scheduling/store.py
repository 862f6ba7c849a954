"""What scheduling needs from the FHIR repository, in the server's own (system) view.

Rules run as a consequence of a write the caller was allowed to make, so their reads and the writes they
cause (Slots turning busy) are not limited by the caller's access; the caller's own write was checked by
the repository already. Searches are the definition-driven ones every client has.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pms.fhir import jsonio
from pms.fhir.search import parse_search
from pms.fhir.search.parse import MAX_VALUE_LENGTH
from pms.storage.records import StoredVersion
from pms.storage.repository import FhirRepository
from pms.storage.search.engine import SearchEngine

PAGE = 1000
MAX_OR_TEXT = MAX_VALUE_LENGTH - 100  # one search parameter's value has a length limit


def _chunks(values: list[str], max_text: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    size = 0
    for value in values:
        if not chunks or size + len(value) + 1 > max_text:
            chunks.append([])
            size = 0
        chunks[-1].append(value)
        size += len(value) + 1
    return chunks


class SchedulingStore:
    def __init__(self, repo: FhirRepository) -> None:
        self.caller = repo
        self.repo = repo.as_system()
        self.conn = repo.conn
        self.registry = repo.indexer.registry
        self._engine = SearchEngine(repo.conn, self.registry, base="", default_count=PAGE)

    async def search(
        self, resource_type: str, query: list[tuple[str, str]], *, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Every match (up to `limit`), as parsed resources, in the order `_sort` asks for."""
        return [resource for _, resource in await self.search_stored(resource_type, query, limit=limit)]

    async def search_stored(
        self, resource_type: str, query: list[tuple[str, str]], *, limit: int = 10_000
    ) -> list[tuple[StoredVersion, dict[str, Any]]]:
        await self.repo.flush()
        request = parse_search(
            resource_type,
            [*query, ("_count", str(min(PAGE, limit)))],
            self.registry,
            handling="strict",
            max_count=PAGE,
        )
        found: list[tuple[StoredVersion, dict[str, Any]]] = []
        while True:
            result = await self._engine.search(request)
            found.extend((stored, jsonio.loads(stored.content or b"{}")) for stored in result.matches)
            if result.next_token is None or len(found) >= limit:
                return found[:limit]
            request = dataclasses.replace(request, page_token=result.next_token)

    async def search_any(
        self,
        resource_type: str,
        param: str,
        values: list[str],
        query: list[tuple[str, str]],
        *,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Matches of `param` = any of `values` (and `query`): long OR lists go in several searches, as a
        search parameter's value has a length limit (fhir/search/parse.py). Order is per chunk."""
        found: list[dict[str, Any]] = []
        for chunk in _chunks(values, MAX_OR_TEXT):
            found += await self.search(resource_type, [(param, ",".join(chunk)), *query], limit=limit)
        return found

    async def read(self, resource_type: str, id_: str) -> dict[str, Any] | None:
        found = await self.read_stored(resource_type, id_)
        return None if found is None else found[1]

    async def read_stored(self, resource_type: str, id_: str) -> tuple[StoredVersion, dict[str, Any]] | None:
        """The current version and its content, unless there is none or it is deleted."""
        stored = await self.repo.current_version(resource_type, id_)
        if stored is None or stored.deleted or stored.content is None:
            return None
        return stored, jsonio.loads(stored.content)
