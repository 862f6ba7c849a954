"""Batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction).

A transaction runs in the caller's single database transaction: any failing entry fails the whole
Bundle, so nothing of it is written. A batch runs each entry in a savepoint of its own and reports each
entry's outcome.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pms.core.errors import AppError, Issue, bad_request, precondition_failed
from pms.fhir import bundle as bundles
from pms.fhir import jsonio
from pms.fhir.outcome import operation_outcome
from pms.fhir.preconditions import http_date, search_criteria, version_from_etag
from pms.fhir.urls import parse_target
from pms.storage.interactions import InteractionRequest, Interactions, Outcome, ReturnPreference

_LOCAL_REFERENCE_PREFIXES = ("urn:uuid:", "urn:oid:")


class BundleProcessor:
    def __init__(self, conn: AsyncConnection, interactions: Interactions) -> None:
        self.conn = conn
        self.interactions = interactions
        self.base = interactions.base

    async def process(self, body: Any, *, prefer: ReturnPreference) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("The body must be a Bundle", code="structure")
        kind, entries = bundles.check_bundle(body)
        if kind == "transaction":
            responses = await self._transaction(entries, prefer)
        else:
            responses = await self._batch(entries, prefer)
        return bundles.bundle(f"{kind}-response", responses)

    # -- transaction --------------------------------------------------------------------------------------

    async def _transaction(
        self, entries: list[dict[str, Any]], prefer: ReturnPreference
    ) -> list[dict[str, Any]]:
        requests = [self._entry_request(i, e) for i, e in enumerate(entries)]
        mapping, preassigned = await self._assign_identities(entries, requests)
        resolve = await self._reference_resolver(entries, mapping)
        for request in requests:
            if isinstance(request.body, dict) and request.method in ("POST", "PUT"):
                request.body = bundles.rewrite_references(request.body, resolve)
        results: dict[int, dict[str, Any]] = {}
        for index in bundles.transaction_order(entries):
            try:
                outcome = await self._run(requests[index], preassigned.get(index))
            except AppError as error:
                raise _in_entry(error, index) from error
            results[index] = self._response_entry(outcome, prefer, requests[index].method)
        return [results[i] for i in range(len(entries))]

    async def _assign_identities(
        self, entries: list[dict[str, Any]], requests: list[InteractionRequest]
    ) -> tuple[dict[str, str], dict[int, str]]:
        """Map each entry's fullUrl to the reference it will have, choosing ids for new resources now.

        A created resource whose fullUrl is `urn:uuid:X` gets X as its id when X is free: the uuid is as
        good an id as any we would mint, and it lets later Bundles that still say `urn:uuid:X` (Synthea's
        patient bundles do, for the organisations and practitioners loaded before them) resolve to it.
        """
        mapping: dict[str, str] = {}
        preassigned: dict[int, str] = {}
        taken = await self.interactions.repo.types_by_id(
            [u for u in (_uuid_of(e.get("fullUrl")) for e in entries) if u is not None]
        )
        for index, (entry, request) in enumerate(zip(entries, requests, strict=True)):
            target = request.target
            full_url = entry.get("fullUrl")
            if target.resource_type is None:
                continue
            reference: str | None = None
            if request.method == "POST" and target.id is None and target.operation is None:
                existing = None
                if request.if_none_exist is not None:
                    matches = await self.interactions.match_ids(target.resource_type, request.if_none_exist)
                    if len(matches) > 1:
                        raise _in_entry(
                            precondition_failed("ifNoneExist matches more than one resource"), index
                        )
                    existing = matches[0] if matches else None
                if existing is None:
                    candidate = _uuid_of(full_url)
                    free = candidate is not None and target.resource_type not in taken.get(candidate, [])
                    preassigned[index] = candidate if free and candidate else str(uuid.uuid4())
                reference = f"{target.resource_type}/{existing or preassigned[index]}"
            elif request.method == "PUT" and target.id is not None:
                reference = f"{target.resource_type}/{target.id}"
            elif request.method == "PUT" and target.query:
                matches = await self.interactions.match_ids(target.resource_type, target.query)
                if len(matches) == 1:
                    reference = f"{target.resource_type}/{matches[0]}"
                elif not matches:
                    body_id = request.body.get("id") if isinstance(request.body, dict) else None
                    new_id = body_id or str(uuid.uuid4())
                    if isinstance(request.body, dict):
                        request.body = {**request.body, "id": new_id}
                    reference = f"{target.resource_type}/{new_id}"
            if reference is not None and isinstance(full_url, str) and full_url:
                if full_url in mapping:
                    raise _in_entry(
                        bad_request(f"Duplicate fullUrl '{full_url[:120]}'", code="invalid"), index
                    )
                mapping[full_url] = reference
        return mapping, preassigned

    async def _reference_resolver(self, entries: list[dict[str, Any]], mapping: dict[str, str]) -> Any:
        """A function mapping a reference to its rewritten form: fullUrls, conditional references, and
        `urn:uuid:X` placeholders naming a resource already stored with id X."""
        conditional: dict[str, str] = {}
        references = _references(entries)
        for reference in (r for r in references if _is_conditional(r)):
            type_name, _, query = reference.partition("?")
            target = parse_target(f"{type_name}?{query}")
            assert target.resource_type is not None
            matches = await self.interactions.match_ids(target.resource_type, target.query)
            if len(matches) != 1:
                raise precondition_failed(
                    f"The conditional reference '{reference[:120]}' matches {len(matches)} resources; "
                    "it must match exactly one"
                )
            conditional[reference] = f"{target.resource_type}/{matches[0]}"
        dangling = {r: _uuid_of(r) for r in references if r.startswith("urn:uuid:") and r not in mapping}
        stored = await self.interactions.repo.types_by_id([u for u in dangling.values() if u is not None])
        for reference, id_ in dangling.items():
            types = stored.get(id_ or "", [])
            if len(types) != 1:
                raise bad_request(
                    f"The reference '{reference}' is neither the fullUrl of an entry in this Bundle nor "
                    "the id "
                    "of exactly one stored resource",
                    code="not-found",
                )
            conditional[reference] = f"{types[0]}/{id_}"

        def resolve(reference: str) -> str | None:
            return mapping.get(reference) or conditional.get(reference)

        return resolve

    # -- batch --------------------------------------------------------------------------------------------

    async def _batch(self, entries: list[dict[str, Any]], prefer: ReturnPreference) -> list[dict[str, Any]]:
        responses = []
        for index, entry in enumerate(entries):
            try:
                request = self._entry_request(index, entry)
                async with self.conn.begin_nested():
                    outcome = await self._run(request, None)
                responses.append(self._response_entry(outcome, prefer, request.method))
            except AppError as error:
                responses.append(
                    {
                        "response": {
                            "status": bundles.status_line(error.status),
                            "outcome": operation_outcome(error.issues),
                        }
                    }
                )
        return responses

    # -- shared -------------------------------------------------------------------------------------------

    def _entry_request(self, index: int, entry: dict[str, Any]) -> InteractionRequest:
        try:
            request = entry["request"]
            target = parse_target(request["url"], self.base)
            method = request["method"]
            body = entry.get("resource")
            if method == "PATCH":
                body = _patch_document(body)
            return InteractionRequest(
                method=method,
                target=target,
                body=body,
                if_match=version_from_etag(request.get("ifMatch")),
                if_none_match=request.get("ifNoneMatch"),
                if_modified_since=http_date(request.get("ifModifiedSince")),
                if_none_exist=search_criteria(request.get("ifNoneExist")),
            )
        except AppError as error:
            raise _in_entry(error, index) from error

    async def _run(self, request: InteractionRequest, preassigned_id: str | None) -> Outcome:
        target = request.target
        if preassigned_id is not None and target.resource_type is not None:
            return await self.interactions.create(
                target.resource_type, request.body, None, id_=preassigned_id
            )
        return await self.interactions.execute(request)

    def _response_entry(self, outcome: Outcome, prefer: ReturnPreference, method: str) -> dict[str, Any]:
        response: dict[str, Any] = {"status": bundles.status_line(outcome.status)}
        entry: dict[str, Any] = {}
        stored = outcome.stored
        if stored is not None:
            entry["fullUrl"] = f"{self.base}/{stored.reference}"
            if outcome.location:
                response["location"] = outcome.location
            response["etag"] = stored.etag
            response["lastModified"] = stored.last_updated.isoformat()
            # Reads always answer with the resource; writes only when the client prefers it.
            if stored.content is not None and (prefer == "representation" or method in ("GET", "HEAD")):
                entry["resource"] = bundles.raw(stored.content)
        elif outcome.body is not None and outcome.body.get("resourceType") == "Bundle":
            entry["resource"] = outcome.body
        if isinstance(outcome.body, dict) and outcome.body.get("resourceType") == "OperationOutcome":
            response["outcome"] = outcome.body
        entry["response"] = response
        return entry


def _in_entry(error: AppError, index: int) -> AppError:
    """The same error, saying which entry caused it."""
    issues = [
        Issue(
            issue.code,
            f"Bundle.entry[{index}]: {issue.diagnostics}",
            issue.severity,
            tuple(
                f"Bundle.entry[{index}].resource.{e}" if not e.startswith("Bundle") else e
                for e in issue.expression
            ),
        )
        for issue in error.issues
    ]
    return AppError(error.status, issues, error.headers)


def _is_conditional(reference: str) -> bool:
    return "?" in reference and not reference.startswith(
        (*_LOCAL_REFERENCE_PREFIXES, "http://", "https://", "#")
    )


def _uuid_of(full_url: Any) -> str | None:
    """X from `urn:uuid:X`, when X is a well-formed UUID."""
    if not isinstance(full_url, str) or not full_url.startswith("urn:uuid:"):
        return None
    try:
        return str(uuid.UUID(full_url[9:]))
    except ValueError:
        return None


def _references(entries: list[dict[str, Any]]) -> set[str]:
    """Every Reference.reference value in the entries' resources."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            reference = value.get("reference")
            if isinstance(reference, str):
                found.add(reference)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for entry in entries:
        walk(entry.get("resource"))
    return found


def _patch_document(resource: Any) -> Any:
    """A PATCH entry carries its JSON Patch as a Binary resource (http.html#transaction)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise bad_request("A PATCH entry must carry a Binary resource holding a JSON Patch", code="invalid")
    if resource.get("contentType") not in ("application/json-patch+json", "application/json"):
        raise bad_request(
            "Only JSON Patch (application/json-patch+json) is supported in PATCH entries",
            code="not-supported",
        )
    try:
        return jsonio.loads(base64.b64decode(resource.get("data", ""), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise bad_request(
            f"The PATCH entry's Binary.data is not a JSON Patch: {exc}", code="invalid"
        ) from exc
