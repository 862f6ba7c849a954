"""The FHIR RESTful interactions (http://hl7.org/fhir/R4/http.html) over the repository.

Both the HTTP routes and Bundle entries go through `Interactions.execute`, so a transaction entry
behaves exactly like the same request sent on its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import jsonpatch

from pms.auth import policy
from pms.auth.context import AccessContext
from pms.core.db import custom_plans
from pms.core.errors import AppError, Issue, bad_request, not_found, not_supported, precondition_failed
from pms.fhir import bundle as bundles
from pms.fhir import jsonio
from pms.fhir.history import HistoryQuery, history_page_token, parse_history_query
from pms.fhir.outcome import information, operation_outcome
from pms.fhir.resource import check_body, check_id
from pms.fhir.search import parse_search
from pms.fhir.search.model import SearchRequest
from pms.fhir.searchparams import Registry
from pms.fhir.summary import select_elements, summarize
from pms.fhir.urls import Target
from pms.storage.audit_backlog import AUDIT_EVENT, AuditBacklog
from pms.storage.records import StoredVersion
from pms.storage.repository import FhirRepository
from pms.storage.search.engine import SearchEngine, SearchResult

T = TypeVar("T")
ReturnPreference = Literal["minimal", "representation", "OperationOutcome"]


@dataclass
class InteractionRequest:
    method: str
    target: Target
    body: Any = None
    if_match: int | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    if_none_exist: list[tuple[str, str]] | None = None
    strict: bool = False


@dataclass
class Outcome:
    """What an interaction produced: a status, maybe a stored version, maybe a body (OO, Bundle)."""

    status: int
    stored: StoredVersion | None = None
    body: Any = None
    location: str | None = None
    issues: list[Issue] = field(default_factory=list)
    # What the interaction showed or changed beyond `stored` (search matches and includes), for the audit.
    touched: list[StoredVersion] = field(default_factory=list)


class Interactions:
    def __init__(
        self,
        repo: FhirRepository,
        registry: Registry,
        *,
        base: str,
        default_count: int,
        max_count: int,
        access: AccessContext | None = None,
        audit_backlog: AuditBacklog | None = None,
        write_unit: bool = False,
    ) -> None:
        """`audit_backlog`: caught up before anything that can read AuditEvents; None where the
        caller has no audit backlog to wait for (tools working on the store itself). `write_unit`: the
        connection is a write transaction, which plans with generic plans (core/db.py)."""
        self.repo = repo
        self.audit_backlog = audit_backlog
        self.write_unit = write_unit
        self.registry = registry
        self.base = base.rstrip("/")
        self.max_count = max_count
        self.access = access
        self.engine = SearchEngine(
            repo.conn, registry, base=self.base, default_count=default_count, access=access
        )

    def parse(
        self, resource_type: str | None, query: list[tuple[str, str]], *, strict: bool
    ) -> SearchRequest:
        return parse_search(
            resource_type,
            query,
            self.registry,
            handling="strict" if strict else "lenient",
            max_count=self.max_count,
        )

    async def match_ids(
        self, resource_type: str, query: list[tuple[str, str]], *, limit: int = 2
    ) -> list[str]:
        """Ids matching the criteria of a conditional interaction. Always strict: silently ignoring a
        criterion would change what matches (http.html#ccreate)."""
        request = self.parse(resource_type, query, strict=True)
        if not (request.criteria or request.has or request.lists or request.text or request.content):
            raise bad_request("A conditional request needs search criteria", code="invalid")
        await self.repo.flush()
        return await self._planned_per_execution(lambda: self.engine.match_ids(request, limit=limit))

    async def execute(self, request: InteractionRequest) -> Outcome:
        target, method = request.target, request.method
        if target.compartment is not None and method in ("GET", "HEAD"):
            return await self.search_type(
                target.resource_type, target.query, strict=request.strict, compartment=target.compartment
            )
        if target.resource_type is None:
            if method in ("GET", "HEAD") and target.history:
                return await self.history(target)
            if method in ("GET", "HEAD"):
                return await self.search_type(None, target.query, strict=request.strict)  # search.html#all
            raise not_supported(f"{method} is not supported on the base URL here", status=405)
        if target.operation == "_search" and method == "POST":
            return await self.search_type(target.resource_type, target.query, strict=request.strict)
        if target.operation == "$access-log" and target.resource_type == "Patient" and target.id is not None:
            return await self.access_log(target.id, target.query)
        if target.operation is not None:
            raise not_supported(f"Operation '{target.operation}' is not supported", status=404)
        if target.id is None:
            return await self._type_level(request, target.resource_type)
        return await self._instance_level(request, target.resource_type, target.id)

    async def _type_level(self, request: InteractionRequest, resource_type: str) -> Outcome:
        target = request.target
        match request.method:
            case "GET" | "HEAD" if target.history:
                return await self.history(target)
            case "GET" | "HEAD":
                return await self.search_type(resource_type, target.query, strict=request.strict)
            case "POST":
                return await self.create(resource_type, request.body, request.if_none_exist)
            case "PUT":
                return await self.conditional_update(resource_type, target.query, request)
            case "PATCH":
                return await self.conditional_patch(resource_type, target.query, request)
            case "DELETE":
                return await self.conditional_delete(resource_type, target.query)
        raise not_supported(f"{request.method} is not allowed on /{resource_type}", status=405)

    async def _instance_level(self, request: InteractionRequest, resource_type: str, id_: str) -> Outcome:
        target = request.target
        check_id(id_)
        if resource_type == AUDIT_EVENT and request.method in ("GET", "HEAD") and not target.history:
            await self._see_audit_trail()
        match request.method:
            case "GET" | "HEAD" if target.version_id is not None:
                return Outcome(200, await self.repo.vread(resource_type, id_, target.version_id))
            case "GET" | "HEAD" if target.history:
                return await self.history(target)
            case "GET" | "HEAD":
                return await self.read(resource_type, id_, request)
            case "PUT" if not target.history:
                return await self.update(resource_type, id_, request.body, request.if_match)
            case "PATCH" if not target.history:
                return await self.patch(resource_type, id_, request.body, request.if_match)
            case "DELETE" if not target.history:
                return await self.delete(resource_type, id_, request.if_match)
        raise not_supported(f"{request.method} is not allowed on this URL", status=405)

    # -- instance interactions ----------------------------------------------------------------------------

    async def read(self, resource_type: str, id_: str, request: InteractionRequest) -> Outcome:
        stored = await self.repo.read(resource_type, id_)
        return conditional_read(stored, request.if_none_match, request.if_modified_since)

    async def create(
        self,
        resource_type: str,
        body: Any,
        if_none_exist: list[tuple[str, str]] | None,
        *,
        id_: str | None = None,
    ) -> Outcome:
        resource = check_body(body, resource_type=resource_type, id_=None, require_id=False)
        if if_none_exist is not None:
            # http.html#ccreate: 0 matches -> create, 1 -> return it (200), more -> 412.
            matches = await self.match_ids(resource_type, if_none_exist)
            if len(matches) > 1:
                raise precondition_failed(
                    f"If-None-Exist criteria match {len(matches)} {resource_type} resources; "
                    "they must be more selective"
                )
            if matches:
                return Outcome(200, await self.repo.read(resource_type, matches[0]))
        stored = await self.repo.create(resource, id_=id_)
        return Outcome(201, stored, location=self._location(stored))

    async def update(self, resource_type: str, id_: str, body: Any, if_match: int | None) -> Outcome:
        resource = check_body(body, resource_type=resource_type, id_=id_, require_id=True)
        stored, created = await self.repo.update(resource, id_=id_, if_match=if_match)
        return Outcome(201 if created else 200, stored, location=self._location(stored))

    async def patch(self, resource_type: str, id_: str, body: Any, if_match: int | None) -> Outcome:
        current = await self.repo.read(resource_type, id_)
        if if_match is not None and if_match != current.version_id:
            raise precondition_failed(
                f"{resource_type}/{id_} is at version {current.version_id}, not {if_match} (If-Match)"
            )
        patched = apply_json_patch(current, body)
        check_body(patched, resource_type=resource_type, id_=id_, require_id=True)
        stored = await self.repo.write_new_version(
            patched, id_=id_, expected_version=current.version_id, method="PATCH"
        )
        return Outcome(200, stored, location=self._location(stored))

    async def delete(self, resource_type: str, id_: str, if_match: int | None) -> Outcome:
        stored = await self.repo.delete(resource_type, id_, if_match=if_match)
        if stored is None:
            return Outcome(
                200, body=information(f"{resource_type}/{id_} did not exist or was already deleted")
            )
        return Outcome(
            200,
            stored,
            body=information(
                f"Deleted {resource_type}/{id_}; version {stored.version_id} records the deletion"
            ),
        )

    # -- conditional interactions -------------------------------------------------------------------------

    async def conditional_update(
        self, resource_type: str, query: list[tuple[str, str]], request: InteractionRequest
    ) -> Outcome:
        matches = await self.match_ids(resource_type, query)
        body_id = request.body.get("id") if isinstance(request.body, dict) else None
        if len(matches) > 1:
            raise precondition_failed(
                f"The criteria match {len(matches)} {resource_type} resources (http.html#cond-update)"
            )
        if not matches:
            if body_id is not None:
                return await self.update(resource_type, body_id, request.body, request.if_match)
            return await self.create(resource_type, request.body, None)
        if body_id is not None and body_id != matches[0]:
            raise bad_request(
                f"The body's id '{body_id}' differs from the matching resource {resource_type}/{matches[0]}",
                code="invalid",
                expression=(f"{resource_type}.id",),
            )
        body = dict(request.body) if isinstance(request.body, dict) else request.body
        if isinstance(body, dict):
            body["id"] = matches[0]
        return await self.update(resource_type, matches[0], body, request.if_match)

    async def conditional_patch(
        self, resource_type: str, query: list[tuple[str, str]], request: InteractionRequest
    ) -> Outcome:
        matches = await self.match_ids(resource_type, query)
        if not matches:
            raise not_found(f"No {resource_type} matches the conditional patch criteria")
        if len(matches) > 1:
            raise precondition_failed(f"The criteria match {len(matches)} {resource_type} resources")
        return await self.patch(resource_type, matches[0], request.body, request.if_match)

    async def conditional_delete(self, resource_type: str, query: list[tuple[str, str]]) -> Outcome:
        """Delete every match (http.html#3.1.0.7.1: multiple matches may all be deleted)."""
        matches = await self.match_ids(resource_type, query, limit=1001)
        if len(matches) > 1000:
            raise precondition_failed("The criteria match more than 1000 resources; narrow them down")
        for id_ in matches:
            await self.repo.delete(resource_type, id_)
        return Outcome(200, body=information(f"Deleted {len(matches)} {resource_type} resource(s)"))

    # -- search and history -------------------------------------------------------------------------------

    async def search_type(
        self,
        resource_type: str | None,
        query: list[tuple[str, str]],
        *,
        strict: bool,
        compartment: tuple[str, str] | None = None,
    ) -> Outcome:
        request = self.parse(resource_type, query, strict=strict)
        if self.access is not None:
            policy.require(policy.check_search(self.access, request))
        if self.audit_backlog is not None:
            await self.audit_backlog.before_search(request, self.registry)
        await self.repo.flush()
        result = await self._planned_per_execution(
            lambda: self.engine.search(request, compartment=compartment)
        )
        path = _search_path(resource_type, compartment)
        body = self._searchset(request, result, path)
        return Outcome(200, body=body, touched=[*result.matches, *result.included])

    def _searchset(self, request: SearchRequest, result: SearchResult, path: str) -> dict[str, Any]:
        used = list(request.used)
        links = [("self", bundles.page_url(self.base, path, used))]
        if result.next_token or result.previous_token:
            links.append(("first", bundles.page_url(self.base, path, used)))
        if result.previous_token:
            links.append(("previous", bundles.page_url(self.base, path, used, _page=result.previous_token)))
        if result.next_token:
            links.append(("next", bundles.page_url(self.base, path, used, _page=result.next_token)))
        entries = [self._search_entry(m, "match", request) for m in result.matches]
        entries += [self._search_entry(m, "include", request) for m in result.included]
        if result.warnings:
            entries.append({"resource": operation_outcome(result.warnings), "search": {"mode": "outcome"}})
        return bundles.bundle("searchset", entries, total=result.total, links=links)

    def _search_entry(self, stored: StoredVersion, mode: str, request: SearchRequest) -> dict[str, Any]:
        content: Any = bundles.raw(stored.content or b"{}")
        if request.summary in ("true", "text", "data") or request.elements:
            resource = jsonio.loads(stored.content or "{}")
            if request.summary in ("true", "text", "data"):
                resource = summarize(resource, request.summary)
            else:
                resource = select_elements(resource, list(request.elements))
            content = resource
        return {"fullUrl": f"{self.base}/{stored.reference}", "resource": content, "search": {"mode": mode}}

    async def access_log(self, patient_id: str, query: list[tuple[str, str]]) -> Outcome:
        """`Patient/123/$access-log`: who saw or changed this patient's record, and when, newest first.

        The AuditEvents that name the patient, through the caller's own access (only roles that may
        search AuditEvent get an answer); `_count`, `_page` and `date` narrow it like a search.
        """
        check_id(patient_id)
        allowed = [(name, value) for name, value in query if name in ("_count", "_page", "date")]
        criteria = [("entity", f"Patient/{patient_id}"), ("_sort", "-date"), *allowed]
        return await self.search_type("AuditEvent", criteria, strict=True)

    async def history(self, target: Target) -> Outcome:
        params: HistoryQuery = parse_history_query(target.query)
        if target.resource_type in (None, AUDIT_EVENT):
            await self._see_audit_trail()
        versions = await self.repo.history(
            resource_type=target.resource_type,
            id_=target.id,
            since=params.since,
            at=params.at,
            before=params.before,
            limit=params.count + 1,
        )
        path = "/".join(p for p in (target.resource_type, target.id, "_history") if p)
        links = [("self", bundles.page_url(self.base, path, target.query))]
        if len(versions) > params.count:
            versions = versions[: params.count]
            last = versions[-1]
            token = history_page_token(last.last_updated, last.rid, last.version_id)
            links.append(("next", bundles.page_url(self.base, path, target.query, _page=token)))
        entries = [self._history_entry(v) for v in versions]
        return Outcome(200, body=bundles.bundle("history", entries, links=links))

    async def _planned_per_execution(self, search: Callable[[], Awaitable[T]]) -> T:
        """A search whose criteria the client wrote: planned per execution, even in a write unit."""
        if not self.write_unit:
            return await search()
        return await custom_plans(self.repo.conn, search)

    async def _see_audit_trail(self) -> None:
        """Every AuditEvent recorded so far in the store, for what reads AuditEvents next."""
        if self.audit_backlog is not None:
            await self.audit_backlog.catch_up(self.registry)

    def _history_entry(self, version: StoredVersion) -> dict[str, Any]:
        url = f"{self.base}/{version.reference}"
        entry: dict[str, Any] = {"fullUrl": url}
        if version.content is not None:
            entry["resource"] = bundles.raw(version.content)
        entry["request"] = {
            "method": version.method,
            "url": version.resource_type if version.method == "POST" else version.reference,
        }
        entry["response"] = {
            "status": "410 Gone"
            if version.deleted
            else ("201 Created" if version.version_id == 1 else "200 OK"),
            "etag": version.etag,
            "lastModified": version.last_updated.isoformat(),
        }
        return entry

    def _location(self, stored: StoredVersion) -> str:
        return f"{self.base}/{stored.versioned_reference}"


def _search_path(resource_type: str | None, compartment: tuple[str, str] | None) -> str:
    if compartment is not None:
        return f"{compartment[0]}/{compartment[1]}/{resource_type or '*'}"
    return resource_type or ""


def conditional_read(
    stored: StoredVersion, if_none_match: str | None, if_modified_since: datetime | None
) -> Outcome:
    """http.html#cread: 304 when the client's copy is current, else the resource."""
    if if_none_match is not None and if_none_match in (stored.etag, f'"{stored.version_id}"'):
        return Outcome(304, stored)
    if if_modified_since is not None and stored.last_updated.replace(microsecond=0) <= if_modified_since:
        return Outcome(304, stored)
    return Outcome(200, stored)


def apply_json_patch(current: StoredVersion, operations: Any) -> dict[str, Any]:
    """Apply a JSON Patch (RFC 6902; http.html#patch) to the current version's JSON."""
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch body must be an array of operations", code="structure")
    document = jsonio.loads(current.content or "{}")
    try:
        patched = jsonpatch.JsonPatch(operations).apply(document)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise AppError(422, [Issue("processing", f"JSON Patch test failed: {exc}")]) from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise AppError(422, [Issue("processing", f"The JSON Patch cannot be applied: {exc}")]) from exc
    if not isinstance(patched, dict):
        raise AppError(422, [Issue("processing", "The JSON Patch did not produce a resource")])
    return patched
