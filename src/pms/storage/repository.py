"""FhirRepository: every read and write of resources goes through here, inside the caller's transaction."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.auth.context import AccessContext
from pms.auth.scopes import Interaction
from pms.core.errors import conflict, gone, not_found, precondition_failed
from pms.core.queue import PendingJobs
from pms.fhir import jsonio
from pms.fhir.definitions import resource_types
from pms.fhir.resource import Validator, check_id, stamp, validate
from pms.storage import versions
from pms.storage.audit_backlog import new_record
from pms.storage.guard import Guard
from pms.storage.hooks import ResourceChange, WriteHooks
from pms.storage.indexer import Indexer
from pms.storage.pending import PendingCreates
from pms.storage.records import StoredVersion, new_id
from pms.storage.tables import resource, resource_version


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class FhirRepository:
    """Create, read, update, patch, delete and history of any R4 resource.

    The repository never commits: the unit of work that owns the connection does.
    """

    def __init__(
        self,
        conn: AsyncConnection,
        *,
        validator: Validator,
        indexer: Indexer,
        access: AccessContext | None = None,
        hooks: WriteHooks | None = None,
        clock: Callable[[], datetime] = utc_now,
        jobs: PendingJobs | None = None,
    ) -> None:
        self.conn = conn
        # Jobs for the worker, sent only if this unit of work commits (core/queue.py `after_commit`). A
        # unit opened without one (CLI tools, tests) gets a list nobody sends: do not enqueue there.
        self.jobs = jobs if jobs is not None else PendingJobs()
        self.validator = validator
        self.indexer = indexer
        self.clock = clock
        self.hooks = hooks or WriteHooks()
        self.pending = PendingCreates()
        # Every resource touched is checked against the caller's access (None: internal view).
        self.guard = Guard(access)

    @property
    def access(self) -> AccessContext | None:
        return self.guard.access

    def as_system(self) -> FhirRepository:
        """The same unit of work (connection, buffered writes, hooks) seen by the server itself: what a
        domain rule does as a consequence of an allowed write (marking a Slot busy) is not limited by
        the caller's own access."""
        system = copy.copy(self)
        system.guard = Guard(None)
        return system

    async def flush(self) -> None:
        """Write buffered creates and index rows: before any read of the store, and before the unit of
        work commits."""
        if self.pending:
            # The index rows of other buffered writes go in the same statement.
            sql, args = self.pending.statement(also=self.indexer.buffer)
            try:
                await self.conn.exec_driver_sql(sql, tuple(args))
            except IntegrityError as exc:
                raise conflict("A resource with one of these ids was created concurrently; retry") from exc
            self.pending.clear()
            self.indexer.buffer.clear()
            return
        await self.indexer.flush(self.conn)

    # -- reads -------------------------------------------------------------------------------------------

    async def read(self, resource_type: str, id_: str) -> StoredVersion:
        self.guard.require_type("read", resource_type)
        stored = await self.current_version(resource_type, id_)
        if stored is None:
            raise not_found(f"{resource_type}/{id_} is not known")
        if stored.deleted:
            raise gone(f"{resource_type}/{id_} was deleted (version {stored.version_id})")
        self.guard.require_stored("read", stored)
        return stored

    async def vread(self, resource_type: str, id_: str, version_id: int) -> StoredVersion:
        self.guard.require_type("vread", resource_type)
        await self.flush()
        row = (
            await self.conn.execute(
                select(
                    resource_version.c.last_updated,
                    resource_version.c.deleted,
                    resource_version.c.content,
                    resource_version.c.method,
                )
                .join(resource, resource.c.rid == resource_version.c.rid)
                .where(
                    resource.c.resource_type == resource_type,
                    resource.c.id == id_,
                    resource_version.c.version_id == version_id,
                )
            )
        ).first()
        if row is None:
            raise not_found(f"{resource_type}/{id_} has no version {version_id}")
        if row.deleted:
            raise gone(f"Version {version_id} of {resource_type}/{id_} is a deletion")
        stored = StoredVersion(
            resource_type, id_, version_id, row.last_updated, False, row.content, row.method
        )
        self.guard.require_stored("vread", stored)
        return stored

    async def current_version(self, resource_type: str, id_: str) -> StoredVersion | None:
        """The current version (deleted or not) without raising and without access checks: for the
        server's own conditional logic, never returned to a caller as is."""
        await self.flush()
        row = await versions.current(self.conn, resource_type, id_)
        if row is None:
            return None
        return StoredVersion(
            resource_type, id_, row.version_id, row.last_updated, row.deleted, row.content, rid=row.rid
        )

    # -- writes ------------------------------------------------------------------------------------------

    async def create(self, body: dict[str, Any], *, id_: str | None = None) -> StoredVersion:
        """Store a new resource with a server-assigned id (http.html#create: a body id is ignored)."""
        validate(body, self.validator)
        resource_type = body["resourceType"]
        self.guard.require_resource("create", body)
        id_ = id_ or new_id()
        await self._run_hooks(resource_type, id_, None, body)
        now = self.clock()
        stamped = stamp(body, id_=id_, version_id=1, last_updated=now)
        content = jsonio.dumps(stamped)
        # Written with the unit of work's other creates in one statement (see pending.py).
        self.pending.add(resource_type, id_, now, content.decode(), "POST", self.indexer.values(stamped))
        return StoredVersion(resource_type, id_, 1, now, False, content, "POST")

    def record_audit_event(self, event: dict[str, Any]) -> str:
        """Record an AuditEvent in this unit of work: committed with it, through the audit backlog
        (storage/audit_backlog.py). The caller's access does not apply: nobody may write AuditEvents,
        yet every interaction must leave one."""
        record = new_record(event, self.clock())
        self.pending.add_audit(*record)
        return record[0]

    async def update(
        self, body: dict[str, Any], *, id_: str, if_match: int | None = None
    ) -> tuple[StoredVersion, bool]:
        """Update, or create with the client's id when none exists (update-as-create).

        Returns the new version and whether it was created. The row lock makes concurrent updates
        serialise, and If-Match is compared against the locked version, so of two writers holding the
        same version exactly one wins.
        """
        await self.flush()
        check_id(id_)
        validate(body, self.validator)
        resource_type = body["resourceType"]
        self.guard.require_resource("update", body)
        while True:
            locked = await versions.current(self.conn, resource_type, id_, lock=True)
            if locked is None:
                if if_match is not None:
                    raise precondition_failed(
                        f"{resource_type}/{id_} does not exist, so it cannot be at version {if_match}"
                    )
                await self._run_hooks(resource_type, id_, None, body)
                created = await self._insert_if_absent(body, resource_type, id_)
                if created is not None:
                    return created, True
                continue  # another transaction created it first: update that one
            if if_match is not None and if_match != locked.version_id:
                raise precondition_failed(
                    f"{resource_type}/{id_} is at version {locked.version_id}, not {if_match} (If-Match)"
                )
            self._require_locked("update", resource_type, id_, locked)
            await self._run_hooks(resource_type, id_, locked, body)
            stored = await self._write_version(
                locked.rid, body, resource_type, id_, locked.version_id + 1, "PUT"
            )
            return stored, bool(locked.deleted)

    async def write_new_version(
        self, body: dict[str, Any], *, id_: str, expected_version: int, method: str
    ) -> StoredVersion:
        """Write the next version of an existing resource if it is still at `expected_version` (patch)."""
        await self.flush()
        validate(body, self.validator)
        resource_type = body["resourceType"]
        self.guard.require_resource("patch", body)
        locked = await versions.current(self.conn, resource_type, id_, lock=True)
        if locked is None or locked.deleted:
            raise not_found(f"{resource_type}/{id_} is not known")
        if locked.version_id != expected_version:
            raise precondition_failed(
                f"{resource_type}/{id_} changed while it was being patched "
                f"(now at version {locked.version_id})"
            )
        self._require_locked("patch", resource_type, id_, locked)
        await self._run_hooks(resource_type, id_, locked, body)
        return await self._write_version(locked.rid, body, resource_type, id_, expected_version + 1, method)

    async def update_unchanged(
        self, changes: Sequence[tuple[StoredVersion, dict[str, Any]]], *, method: str = "PUT"
    ) -> list[StoredVersion]:
        """The next version of each resource that is still at the version read (a `StoredVersion` from a
        search or read, with its rid), in one statement for all of them.

        A resource changed or deleted since it was read is left as it is and missing from the result: the
        caller reads it again or gives up. Validation, access checks, write hooks, history and index rows
        are those of `update`; for types with write hooks the rows are locked first, so that a hook only
        runs for a write that then happens.
        """
        if not changes:
            return []
        if len({current.rid for current, _ in changes}) != len(changes) or not all(c.rid for c, _ in changes):
            raise ValueError("update_unchanged needs distinct stored versions that carry their rid")
        await self.flush()
        for current, body in changes:
            if body.get("resourceType") != current.resource_type:
                raise ValueError(f"{current.reference} cannot be updated to a {body.get('resourceType')}")
            validate(body, self.validator)
            self.guard.require_resource("update", body)
            self._require_locked("update", current.resource_type, current.id, current)
        hooked = [(current, body) for current, body in changes if self.hooks.watches(current.resource_type)]
        if hooked:
            locked = await versions.lock_unchanged(
                self.conn, [c.rid for c, _ in hooked], [c.version_id for c, _ in hooked]
            )
            for current, body in hooked:
                if current.rid in locked:
                    await self._run_hooks(current.resource_type, current.id, current, body)
            changes = [
                (c, b) for c, b in changes if c.rid in locked or not self.hooks.watches(c.resource_type)
            ]
        now = self.clock()
        stamped = {
            current.rid: stamp(body, id_=current.id, version_id=current.version_id + 1, last_updated=now)
            for current, body in changes
        }
        contents = {rid: jsonio.dumps(resource) for rid, resource in stamped.items()}
        written = await versions.update_unchanged(
            self.conn,
            [(c.rid, c.version_id, contents[c.rid].decode()) for c, _ in changes],
            last_updated=now,
            method=method,
        )
        stored = []
        for current, _ in changes:
            if current.rid in written:
                self.indexer.index(current.rid, stamped[current.rid], replace=True)
                stored.append(
                    StoredVersion(
                        current.resource_type,
                        current.id,
                        current.version_id + 1,
                        now,
                        False,
                        contents[current.rid],
                        method,
                        current.rid,
                    )
                )
        return stored

    async def delete(
        self, resource_type: str, id_: str, *, if_match: int | None = None
    ) -> StoredVersion | None:
        """Record a deletion as a new version. Returns None when there was nothing to delete."""
        self.guard.require_type("delete", resource_type)
        await self.flush()
        locked = await versions.current(self.conn, resource_type, id_, lock=True)
        if locked is None:
            if if_match is not None:
                raise precondition_failed(f"{resource_type}/{id_} does not exist")
            return None
        if if_match is not None and if_match != locked.version_id:
            raise precondition_failed(
                f"{resource_type}/{id_} is at version {locked.version_id}, not {if_match} (If-Match)"
            )
        if locked.deleted:
            return None
        self._require_locked("delete", resource_type, id_, locked)
        await self._run_hooks(resource_type, id_, locked, None)
        now = self.clock()
        version_id = locked.version_id + 1
        await self.conn.execute(
            update(resource)
            .where(resource.c.rid == locked.rid)
            .values(version_id=version_id, last_updated=now, deleted=True, content=None)
        )
        await self._record_version(locked.rid, resource_type, id_, version_id, now, "DELETE", None)
        self.indexer.unindex(locked.rid)
        return StoredVersion(resource_type, id_, version_id, now, True, None, "DELETE")

    # -- history -----------------------------------------------------------------------------------------

    async def history(
        self,
        *,
        resource_type: str | None = None,
        id_: str | None = None,
        since: datetime | None = None,
        at: tuple[datetime, datetime] | None = None,
        before: tuple[datetime, int, int] | None = None,
        limit: int = 20,
    ) -> list[StoredVersion]:
        """Versions newest first, paged by keyset (`before` = the last (time, rid, version) seen).

        `at` is the period of the `_at` parameter: versions that were current at some point in it.
        """
        await self.flush()
        rv = resource_version
        query = select(
            rv.c.rid,
            rv.c.version_id,
            rv.c.resource_type,
            rv.c.id,
            rv.c.last_updated,
            rv.c.deleted,
            rv.c.content,
            rv.c.method,
        )
        conditions: list[Any] = []
        if id_ is None:
            types = (resource_type,) if resource_type is not None else resource_types()
            self.guard.require_unrestricted("history", types)
        else:
            self.guard.require_type("history", resource_type or "")
        if id_ is not None and resource_type is not None:
            rid = (
                await self.conn.execute(
                    select(resource.c.rid).where(
                        resource.c.resource_type == resource_type, resource.c.id == id_
                    )
                )
            ).scalar_one_or_none()
            if rid is None:
                raise not_found(f"{resource_type}/{id_} is not known")
            conditions.append(rv.c.rid == rid)
        elif resource_type is not None:
            conditions.append(rv.c.resource_type == resource_type)
        if since is not None:
            conditions.append(rv.c.last_updated >= since)
        if at is not None:
            start, end = at
            successor = resource_version.alias("successor")
            next_change = (
                select(func.min(successor.c.last_updated))
                .where(successor.c.rid == rv.c.rid, successor.c.version_id > rv.c.version_id)
                .scalar_subquery()
            )
            conditions.append(rv.c.last_updated < end)
            conditions.append(func.coalesce(next_change, func.now() + func.make_interval(0, 0, 0, 1)) > start)
        if before is not None:
            conditions.append(func.row(rv.c.last_updated, rv.c.rid, rv.c.version_id) < func.row(*before))
        if conditions:
            query = query.where(and_(*conditions))
        query = query.order_by(rv.c.last_updated.desc(), rv.c.rid.desc(), rv.c.version_id.desc()).limit(limit)
        rows = (await self.conn.execute(query)).all()
        versions = [
            StoredVersion(
                r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.content, r.method, r.rid
            )
            for r in rows
        ]
        if id_ is not None:
            for version in versions:
                self.guard.require_stored("history", version)
        return versions

    async def types_by_id(self, ids: list[str]) -> dict[str, list[str]]:
        """The resource types that currently hold each of these ids (one query, for bundle placeholders)."""
        await self.flush()
        if not ids:
            return {}
        rows = await self.conn.execute(
            select(resource.c.id, resource.c.resource_type).where(resource.c.id.in_(ids), ~resource.c.deleted)
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row.id, []).append(row.resource_type)
        return found

    async def rid_of(self, resource_type: str, id_: str) -> int | None:
        await self.flush()
        return (
            await self.conn.execute(
                select(resource.c.rid).where(resource.c.resource_type == resource_type, resource.c.id == id_)
            )
        ).scalar_one_or_none()

    # -- internals ---------------------------------------------------------------------------------------

    async def _run_hooks(
        self, resource_type: str, id_: str, locked: Any, after: dict[str, Any] | None
    ) -> None:
        """Let the domain rules attached to this type check and complete the write (hooks.py)."""
        if not self.hooks.watches(resource_type):
            return
        before: Mapping[str, Any] | None = None
        if locked is not None and not locked.deleted and locked.content is not None:
            before = jsonio.loads(locked.content)
        await self.hooks.run(self, ResourceChange(resource_type, id_, before, after))

    def _require_locked(self, interaction: Interaction, resource_type: str, id_: str, locked: Any) -> None:
        """The stored version being replaced must be within the caller's access too (no moving a
        resource out of, or overwriting one outside, the caller's compartment)."""
        if not locked.deleted:
            current = StoredVersion(
                resource_type, id_, locked.version_id, self.clock(), False, locked.content
            )
            self.guard.require_stored(interaction, current)

    async def _insert_if_absent(
        self, body: dict[str, Any], resource_type: str, id_: str
    ) -> StoredVersion | None:
        now = self.clock()
        stamped = stamp(body, id_=id_, version_id=1, last_updated=now)
        content = jsonio.dumps(stamped)
        statement = (
            pg_insert(resource)
            .values(
                resource_type=resource_type,
                id=id_,
                version_id=1,
                last_updated=now,
                deleted=False,
                content=content.decode(),
            )
            .on_conflict_do_nothing(constraint="resource_identity")
            .returning(resource.c.rid)
        )
        rid = (await self.conn.execute(statement)).scalar_one_or_none()
        if rid is None:
            return None
        await self._record_version(rid, resource_type, id_, 1, now, "PUT", content)
        self.indexer.index(rid, stamped, replace=False)
        return StoredVersion(resource_type, id_, 1, now, False, content, "PUT", rid)

    async def _write_version(
        self, rid: int, body: dict[str, Any], resource_type: str, id_: str, version_id: int, method: str
    ) -> StoredVersion:
        now = self.clock()
        stamped = stamp(body, id_=id_, version_id=version_id, last_updated=now)
        content = jsonio.dumps(stamped)
        # The row is locked at version_id - 1: the versioned write (and its history row) cannot miss.
        written = await versions.update_unchanged(
            self.conn, [(rid, version_id - 1, content.decode())], last_updated=now, method=method
        )
        if written != {rid}:
            raise RuntimeError(f"{resource_type}/{id_} changed under its row lock")
        self.indexer.index(rid, stamped, replace=True)
        return StoredVersion(resource_type, id_, version_id, now, False, content, method, rid)

    async def _record_version(
        self,
        rid: int,
        resource_type: str,
        id_: str,
        version_id: int,
        now: datetime,
        method: str,
        content: bytes | None,
    ) -> None:
        await self.conn.execute(
            insert(resource_version).values(
                rid=rid,
                version_id=version_id,
                resource_type=resource_type,
                id=id_,
                last_updated=now,
                method=method,
                deleted=content is None,
                content=None if content is None else content.decode(),
            )
        )
