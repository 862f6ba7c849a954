"""The audit trail: one FHIR AuditEvent per interaction, stored like any resource (searchable with
`AuditEvent?entity=Patient/123`, `?agent=`, `?date=`), append-only for every role.

Writes are audited in the unit of work's own transaction (both land or neither does). Reads are audited
before their answer leaves (fail closed: no record, no data), through the audit backlog
(storage/audit_backlog.py). Refusals are audited on their own, since the refused unit of work rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from pms.audit import events
from pms.auth.context import AccessContext
from pms.core.errors import AppError, Issue
from pms.fhir import jsonio
from pms.fhir.extract import ReferenceValue, extractor_for
from pms.fhir.searchparams import Registry
from pms.fhir.urls import Target
from pms.storage import audit_backlog
from pms.storage.records import StoredVersion


def actor_of(access: AccessContext | None, address: str | None) -> events.Actor:
    if access is None:
        return events.Actor(address=address)
    principal = access.principal
    return events.Actor(
        username=principal.username,
        fhir_user=principal.fhir_user,
        client_id=principal.client_id,
        address=address,
        roles=tuple(sorted(principal.roles)),
    )


def patients_in(registry: Registry, found: Iterable[StoredVersion]) -> list[str]:
    """The patients whose data these resources are (R4 Patient compartment membership)."""
    patients: dict[str, None] = {}
    for stored in found:
        if stored.resource_type == "Patient":
            patients[stored.id] = None
            continue
        if stored.patients is not None:
            patients.update(dict.fromkeys(stored.patients))
            continue
        codes = registry.compartment_params("Patient", stored.resource_type)
        if not codes or stored.content is None:
            continue
        extractor = extractor_for(stored.resource_type, registry)
        values = extractor.extract_by_param(jsonio.peek(stored.content), codes)
        for code in codes:
            for value in values.get(code, ()):
                if isinstance(value, ReferenceValue) and value.target_type == "Patient" and value.target_id:
                    patients[value.target_id] = None
    return list(patients)


def now() -> datetime:
    return datetime.now(UTC)


# A commit costs PostgreSQL ~110 us of CPU (most of it the WAL flush), a record in it ~7 us. Under load,
# records arriving within half a millisecond share one commit; an idle server writes at once.
LINGER = 0.0005  # seconds
BUSY_WITHIN = 0.005  # seconds since the last commit that count as "under load"


class AuditWriter:
    """Commits the AuditEvents of reads and refusals to the audit backlog, group-committed.

    Each caller waits until its own record is committed (fail closed), but callers arriving while a
    write is under way share the next statement and its single WAL flush, instead of paying one commit
    each: a read's audit costs a fraction of a commit under load. The records become searchable
    AuditEvents through pms.storage.audit_backlog. One per process (app lifespan).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_commit = float("-inf")  # event-loop time

    async def write(self, event: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            if loop.time() - self._last_commit < BUSY_WITHIN:
                await asyncio.sleep(LINGER)  # under load: let concurrent reads join this commit
            batch, self._waiting = self._waiting, []
            records = [audit_backlog.new_record(event, now()) for event, _ in batch]
            failure: AppError | None = None
            try:
                async with self.pool.acquire() as conn:
                    await audit_backlog.record(conn, records)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                # Fail closed: without its audit record, the interaction's answer is not given.
                failure = AppError(503, [Issue("transient", "The audit trail is unavailable; try again")])
            self._last_commit = loop.time()
            for _, done in batch:
                if done.done():
                    continue
                if failure is None:
                    done.set_result(None)
                else:
                    done.set_exception(failure)


def interaction_name(method: str, target: Target) -> events.Interaction:
    """The R4 restful-interaction code of a request (valueset-type-restful-interaction.html)."""
    if target.operation is not None and target.operation.startswith("$"):
        return "operation"
    if method in ("GET", "HEAD") or target.operation == "_search" or target.compartment is not None:
        if target.compartment is not None or target.operation == "_search":
            return "search-type"
        if target.version_id is not None:
            return "vread"
        if target.history:
            if target.id is not None:
                return "history-instance"
            return "history-type" if target.resource_type else "history-system"
        if target.id is not None:
            return "read"
        return "search-type" if target.resource_type else "search-system"
    writes: dict[str, events.Interaction] = {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }
    return writes.get(method, "operation")


def interaction_event(
    *,
    interaction: events.Interaction,
    access: AccessContext | None,
    address: str | None,
    registry: Registry,
    touched: list[StoredVersion],
    query: str | None = None,
    emergency: bool = False,
    actor: events.Actor | None = None,
) -> dict[str, Any]:
    """`actor` overrides the one derived from `access` (a person acting through a signed link)."""
    resources = [events.Touched(t.resource_type, t.id, str(t.version_id)) for t in touched[:50]]
    return events.rest_event(
        interaction=interaction,
        actor=actor or actor_of(access, address),
        recorded=now(),
        resources=resources,
        patients=patients_in(registry, touched),
        query=query,
        emergency=emergency,
    )


def denial_event(
    *,
    interaction: events.Interaction,
    access: AccessContext | None,
    address: str | None,
    error: AppError,
    resource: str | None = None,
) -> dict[str, Any]:
    return events.access_denied_event(
        interaction=interaction,
        actor=actor_of(access, address),
        recorded=now(),
        reason="; ".join(issue.diagnostics for issue in error.issues)[:500],
        resources=[resource] if resource else [],
    )
