"""Routes of the FHIR RESTful API (http://hl7.org/fhir/R4/http.html), all at base /fhir."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response

from pms.api.fhir import docs, paths
from pms.api.fhir.context import bundle_processor, fast_reader, fhir_base, interactions
from pms.api.fhir.negotiation import check_accept, fhir_response, presentation, read_body
from pms.api.fhir.security import access_for
from pms.audit.events import Interaction as AuditInteraction
from pms.auth.context import AccessContext
from pms.config import Settings
from pms.core.db import Database
from pms.core.errors import AppError, Issue
from pms.fhir.capability import capability_statement
from pms.fhir.definitions import is_resource_type, is_valid_id
from pms.fhir.preconditions import http_date, search_criteria, version_from_etag
from pms.fhir.resource import check_id
from pms.fhir.search.parse import is_supported
from pms.fhir.searchparams import Registry
from pms.fhir.urls import Target, parse_version
from pms.storage.audit import AuditWriter, denial_event, interaction_event, interaction_name
from pms.storage.audit_backlog import AUDIT_EVENT, AuditBacklog
from pms.storage.guard import Guard
from pms.storage.interactions import InteractionRequest, Interactions, Outcome, conditional_read
from pms.storage.records import StoredVersion
from pms.storage.registry_provider import RegistryProvider

router = APIRouter(prefix="/fhir")
# Read and vread by well-formed ids, tried before every other route of the app (main.py): FastAPI tries
# routes in order at 1-5 µs each, which was 120 µs of a read. They hide nothing (api/fhir/paths.py), and
# the documented general routes below still answer everything else, malformed ids included.
hot_router = APIRouter(prefix="/fhir", include_in_schema=False)

ResourceType = Annotated[str, docs.ResourceTypePath]
ResourceId = Annotated[str, docs.IdPath]
VersionId = Annotated[str, docs.VersionPath]


def _header(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
        "example": example,
    }


def _query(name: str, description: str, example: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }
    if example is not None:
        param["example"] = example
    return param


IF_MATCH = _header("If-Match", "Only write if the resource is at this version (else 412)", 'W/"1"')
IF_NONE_EXIST = _header(
    "If-None-Exist",
    "Conditional create: search criteria (http.html#ccreate)",
    "identifier=http://acme.org/mrn|12345",
)
IF_NONE_MATCH = _header("If-None-Match", "Conditional read: 304 when the version matches", 'W/"1"')
IF_MODIFIED_SINCE = _header(
    "If-Modified-Since", "Conditional read: 304 when unchanged since", "Sat, 21 Nov 2026 10:00:00 GMT"
)
PREFER = _header(
    "Prefer",
    "return=minimal|representation|OperationOutcome; handling=strict|lenient",
    "return=representation",
)
FORMAT = _query("_format", "json (default) or application/fhir+json; XML gets 406", "json")
PRETTY = _query("_pretty", "true to indent the JSON", "true")
SUMMARY = _query("_summary", "true | text | data | count | false")
ELEMENTS = _query("_elements", "Comma-separated top-level elements to return", "name,birthDate")
READ_PARAMS = [FORMAT, PRETTY, SUMMARY, ELEMENTS]
SEARCH_PARAMS = [
    _query("_id", "Logical id(s), comma-separated", "example"),
    _query("_lastUpdated", "Date with prefix (eq, ne, gt, lt, ge, le, sa, eb)", "ge2026-01-01"),
    _query("_count", "Page size (default 20)", "20"),
    _query("_total", "none | estimate | accurate"),
    *READ_PARAMS,
]
HISTORY_PARAMS = [
    _query("_count", "Page size (default 20)", "20"),
    _query("_since", "Only versions at or after this instant", "2026-01-01T00:00:00Z"),
    _query("_at", "Only versions current at some point during this (date/time) period", "2026-11"),
    FORMAT,
    PRETTY,
]


def _check_type(resource_type: str) -> None:
    if not is_resource_type(resource_type):
        raise AppError(404, [Issue("not-supported", f"Unknown resource type '{resource_type[:80]}'")])


async def _run(request: Request, call: InteractionRequest, *, write: bool) -> Response:
    check_accept(request)
    view = presentation(request)
    call.strict = view.strict
    interaction = interaction_name(call.method, call.target)
    audited_query = interaction.startswith("search")

    async def execute(fhir: Interactions) -> Outcome:
        return await fhir.execute(call)

    outcome = await run_audited(request, interaction, execute, write=write, audit_query=audited_query)
    return fhir_response(
        outcome, view, write=write and call.method != "DELETE", head=request.method == "HEAD"
    )


async def run_audited(
    request: Request,
    interaction: AuditInteraction,
    action: Callable[[Interactions], Awaitable[Outcome]],
    *,
    write: bool,
    audit_query: bool = False,
    authenticate: Callable[[Request], Awaitable[AccessContext]] = access_for,
) -> Outcome:
    """Run `action` in one unit of work with the caller's access, and record its AuditEvent. A write's
    record is in the write's own transaction (written, or rolled back, with what it records); a read's
    (search, history, read-only operations) goes through the group-committing AuditWriter before the
    answer leaves, as reads by id do. Refusals are audited on their own."""
    access: AccessContext | None = None
    try:
        access = await authenticate(request)
        async with interactions(request, write=write, access=access) as fhir:
            outcome: Outcome = await action(fhir)
            touched = [outcome.stored, *outcome.touched] if outcome.stored else outcome.touched
            query = f"{request.url.path}?{request.url.query}" if audit_query else None
            event = interaction_event(
                interaction=interaction,
                access=access,
                address=_address(request),
                registry=fhir.registry,
                touched=touched,
                query=query,
                emergency=fhir.repo.guard.emergency,
            )
            if write:
                fhir.repo.record_audit_event(event)
        if not write:
            await _audit_writer(request).write(event)  # fail closed: no record, no answer
    except AppError as error:
        await _audit_refusal(request, interaction, access, error)
        raise
    return outcome


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _audit_refusal(
    request: Request, interaction: AuditInteraction, access: AccessContext | None, error: AppError
) -> None:
    """401 and 403 leave a record of their own: the refused unit of work rolled back."""
    if error.status not in (401, 403):
        return
    event = denial_event(
        interaction=interaction,
        access=access,
        address=_address(request),
        error=error,
        resource=_addressed_resource(request.url.path),
    )
    await _audit_writer(request).write(event)


async def _registry(request: Request) -> Registry:
    """The search-parameter registry in force (it also drives audit-event indexing)."""
    provider: RegistryProvider = request.app.state.registry_provider
    db: Database = request.app.state.db
    return await provider.current(db)


def _audit_writer(request: Request) -> AuditWriter:
    writer: AuditWriter = request.app.state.audit_writer
    return writer


def _addressed_resource(path: str) -> str | None:
    """`Type` or `Type/id` of the URL a refused request addressed, for the refusal's audit record."""
    segments = path.removeprefix("/fhir").strip("/").split("/")
    if not segments or not is_resource_type(segments[0]):
        return None
    if len(segments) >= 2 and is_valid_id(segments[1]):
        return f"{segments[0]}/{segments[1]}"
    return segments[0]


async def _fast_read(
    request: Request, interaction: AuditInteraction, resource_type: str, read: Any
) -> StoredVersion:
    """Read by id on the fast path, with the same access check and audit as every other interaction."""
    access: AccessContext | None = None
    try:
        access = await access_for(request)
        guard = Guard(access)
        guard.require_type("read" if interaction == "read" else "vread", resource_type)
        if resource_type == AUDIT_EVENT:  # it may still be in the audit backlog
            backlog: AuditBacklog = request.app.state.audit_backlog
            await backlog.catch_up(await _registry(request))
        stored: StoredVersion = await read()
        guard.require_stored("read" if interaction == "read" else "vread", stored)
    except AppError as error:
        await _audit_refusal(request, interaction, access, error)
        raise
    registry = await _registry(request)
    event = interaction_event(
        interaction=interaction,
        access=access,
        address=_address(request),
        registry=registry,
        touched=[stored],
        emergency=guard.emergency,
    )
    await _audit_writer(request).write(event)  # fail closed: no record, no answer
    return stored


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _query_pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


# -- whole system --------------------------------------------------------------------------------------------


@router.get(
    "/metadata",
    summary="CapabilityStatement",
    tags=["system"],
    responses={200: {"description": "What this server supports", "content": {docs.FHIR_JSON: {}}}},
    openapi_extra={"parameters": [FORMAT, PRETTY]},
)
async def metadata(request: Request) -> Response:
    check_accept(request)
    view = presentation(request)
    provider: RegistryProvider = request.app.state.registry_provider
    async with request.app.state.db.reader() as conn:
        registry = await provider.get(conn)
    statement = capability_statement(
        base=fhir_base(request),
        software_version=request.app.version,
        search_parameters=lambda type_name: [
            (p.code, p.type, p.description or p.code, p.url)
            for p in registry.params_for(type_name).values()
            if p.code not in ("_id", "_lastUpdated") and is_supported(type_name, p.code)
        ],
    )
    return fhir_response(Outcome(200, body=statement), view)


@router.post(
    "",
    summary="Process a batch or transaction Bundle",
    tags=["system"],
    openapi_extra={
        **docs.resource_body(docs.TRANSACTION_EXAMPLE, description="A batch or transaction Bundle"),
        "parameters": [PREFER, FORMAT, PRETTY],
    },
    responses=docs.responses(
        description="A batch-response or transaction-response Bundle",
        example={"resourceType": "Bundle", "type": "transaction-response"},
        errors=(400, 404, 409, 412, 413, 415, 422),
    ),
)
@router.post("/", include_in_schema=False)
async def batch_or_transaction(request: Request) -> Response:
    check_accept(request)
    view = presentation(request)
    access: AccessContext | None = None
    interaction: AuditInteraction = "transaction"
    try:
        access = await access_for(request)
        body = await read_body(request, max_bytes=_settings(request).max_body_bytes)
        if isinstance(body, dict) and body.get("type") == "batch":
            interaction = "batch"
        async with interactions(request, write=True, access=access) as fhir:
            result = await bundle_processor(fhir).process(body, prefer=view.prefer_return)
            fhir.repo.record_audit_event(
                interaction_event(
                    interaction=interaction,
                    access=access,
                    address=_address(request),
                    registry=fhir.registry,
                    touched=[],
                    emergency=fhir.repo.guard.emergency,
                )
            )
    except AppError as error:
        await _audit_refusal(request, interaction, access, error)
        raise
    return fhir_response(Outcome(200, body=result), view)


@router.get(
    "",
    summary="Whole-system search (_type=...)",
    tags=["system"],
    openapi_extra={
        "parameters": [
            _query("_type", "Resource types to search, comma-separated", "Patient,Practitioner"),
            *SEARCH_PARAMS,
        ]
    },
    responses=docs.responses(description="A searchset Bundle"),
)
@router.get("/", include_in_schema=False)
async def system_search(request: Request) -> Response:
    return await _run(request, InteractionRequest("GET", Target(query=_query_pairs(request))), write=False)


@router.get(
    "/_history",
    summary="History of all resources",
    tags=["system"],
    openapi_extra={"parameters": HISTORY_PARAMS},
    responses=docs.responses(description="A history Bundle"),
)
async def system_history(request: Request) -> Response:
    return await _run(
        request, InteractionRequest("GET", Target(history=True, query=_query_pairs(request))), write=False
    )


# -- type level ----------------------------------------------------------------------------------------------


@router.head("/{resource_type}", include_in_schema=False)
@router.get(
    "/{resource_type}",
    summary="Search",
    tags=["type"],
    openapi_extra={"parameters": SEARCH_PARAMS},
    responses=docs.responses(
        description="A searchset Bundle", example={"resourceType": "Bundle", "type": "searchset"}
    ),
)
async def search(request: Request, resource_type: ResourceType) -> Response:
    _check_type(resource_type)
    return await _run(
        request, InteractionRequest("GET", Target(resource_type, query=_query_pairs(request))), write=False
    )


@router.post(
    "/{resource_type}/_search",
    summary="Search (form body)",
    tags=["type"],
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }
        }
    },
    responses=docs.responses(description="A searchset Bundle"),
)
async def search_post(request: Request, resource_type: ResourceType) -> Response:
    _check_type(resource_type)
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise AppError(415, [Issue("not-supported", "POST _search takes application/x-www-form-urlencoded")])
    form = (await request.body()).decode("utf-8", errors="replace")
    pairs = _query_pairs(request) + parse_qsl(form, keep_blank_values=True)
    return await _run(
        request,
        InteractionRequest("POST", Target(resource_type, operation="_search", query=pairs)),
        write=False,
    )


@router.post(
    "/{resource_type}",
    summary="Create (or conditional create with If-None-Exist)",
    tags=["type"],
    status_code=201,
    openapi_extra={**docs.resource_body(), "parameters": [IF_NONE_EXIST, PREFER, FORMAT, PRETTY]},
    responses=docs.responses(201, description="Created", errors=(400, 404, 412, 413, 415)),
)
async def create(request: Request, resource_type: ResourceType) -> Response:
    _check_type(resource_type)
    body = await read_body(request, max_bytes=_settings(request).max_body_bytes)
    call = InteractionRequest(
        "POST",
        Target(resource_type),
        body,
        if_none_exist=search_criteria(request.headers.get("if-none-exist")),
    )
    return await _run(request, call, write=True)


@router.put(
    "/{resource_type}",
    summary="Conditional update (criteria in the query)",
    tags=["type"],
    openapi_extra={**docs.resource_body(), "parameters": [IF_MATCH, PREFER, FORMAT]},
    responses=docs.responses(errors=(400, 404, 412, 413, 415)),
)
async def conditional_update(request: Request, resource_type: ResourceType) -> Response:
    _check_type(resource_type)
    body = await read_body(request, max_bytes=_settings(request).max_body_bytes)
    call = InteractionRequest(
        "PUT",
        Target(resource_type, query=_query_pairs(request)),
        body,
        if_match=version_from_etag(request.headers.get("if-match")),
    )
    return await _run(request, call, write=True)


@router.patch(
    "/{resource_type}",
    summary="Conditional patch (criteria in the query)",
    tags=["type"],
    openapi_extra={**docs.PATCH_BODY, "parameters": [IF_MATCH, PREFER]},
    responses=docs.responses(errors=(400, 404, 412, 415, 422)),
)
async def conditional_patch(request: Request, resource_type: ResourceType) -> Response:
    _check_type(resource_type)
    body = await read_body(request, max_bytes=_settings(request).max_body_bytes, patch=True)
    call = InteractionRequest(
        "PATCH",
        Target(resource_type, query=_query_pairs(request)),
        body,
        if_match=version_from_etag(request.headers.get("if-match")),
    )
    return await _run(request, call, write=True)


@router.delete(
    "/{resource_type}",
    summary="Conditional delete (every match)",
    tags=["type"],
    responses=docs.responses(description="OperationOutcome", example=docs.OUTCOME_EXAMPLE, errors=(400, 412)),
)
async def conditional_delete(request: Request, resource_type: ResourceType) -> Response:
    _check_type(resource_type)
    return await _run(
        request, InteractionRequest("DELETE", Target(resource_type, query=_query_pairs(request))), write=True
    )


@router.get(
    "/{resource_type}/_history",
    summary="History of a resource type",
    tags=["type"],
    openapi_extra={"parameters": HISTORY_PARAMS},
    responses=docs.responses(description="A history Bundle"),
)
async def type_history(request: Request, resource_type: ResourceType) -> Response:
    _check_type(resource_type)
    target = Target(resource_type, history=True, query=_query_pairs(request))
    return await _run(request, InteractionRequest("GET", target), write=False)


# -- instance level ------------------------------------------------------------------------------------------


@router.head("/{resource_type}/{id}", include_in_schema=False)
@router.get(
    "/{resource_type}/{id}",
    summary="Read",
    tags=["instance"],
    openapi_extra={"parameters": [IF_NONE_MATCH, IF_MODIFIED_SINCE, *READ_PARAMS]},
    responses=docs.responses(errors=(404, 410)),
)
async def read(request: Request, resource_type: ResourceType, id: ResourceId) -> Response:
    # The hot path: straight to the primary-key reader, no SQLAlchemy connection.
    _check_type(resource_type)
    check_id(id)
    check_accept(request)
    view = presentation(request)
    headers = request.headers
    stored = await _fast_read(
        request, "read", resource_type, lambda: fast_reader(request).read(resource_type, id)
    )
    outcome = conditional_read(
        stored, headers.get("if-none-match"), http_date(headers.get("if-modified-since"))
    )
    return fhir_response(outcome, view, head=request.method == "HEAD")


@hot_router.head(paths.INSTANCE)
@hot_router.get(paths.INSTANCE)
async def read_well_formed(request: Request) -> Response:
    params = request.path_params  # taken as they are: read() checks them, without FastAPI's parsing
    return await read(request, params["resource_type"], params["id"])


@router.put(
    "/{resource_type}/{id}",
    summary="Update (or create with this id)",
    tags=["instance"],
    openapi_extra={**docs.resource_body(), "parameters": [IF_MATCH, PREFER, FORMAT, PRETTY]},
    responses=docs.responses(errors=(400, 404, 412, 413, 415)),
)
async def update(request: Request, resource_type: ResourceType, id: ResourceId) -> Response:
    _check_type(resource_type)
    body = await read_body(request, max_bytes=_settings(request).max_body_bytes)
    call = InteractionRequest(
        "PUT", Target(resource_type, id), body, if_match=version_from_etag(request.headers.get("if-match"))
    )
    return await _run(request, call, write=True)


@router.patch(
    "/{resource_type}/{id}",
    summary="Patch (JSON Patch)",
    tags=["instance"],
    openapi_extra={**docs.PATCH_BODY, "parameters": [IF_MATCH, PREFER, FORMAT, PRETTY]},
    responses=docs.responses(errors=(400, 404, 410, 412, 415, 422)),
)
async def patch(request: Request, resource_type: ResourceType, id: ResourceId) -> Response:
    _check_type(resource_type)
    body = await read_body(request, max_bytes=_settings(request).max_body_bytes, patch=True)
    call = InteractionRequest(
        "PATCH", Target(resource_type, id), body, if_match=version_from_etag(request.headers.get("if-match"))
    )
    return await _run(request, call, write=True)


@router.delete(
    "/{resource_type}/{id}",
    summary="Delete",
    tags=["instance"],
    openapi_extra={"parameters": [IF_MATCH]},
    responses=docs.responses(description="OperationOutcome", example=docs.OUTCOME_EXAMPLE, errors=(400, 412)),
)
async def delete(request: Request, resource_type: ResourceType, id: ResourceId) -> Response:
    _check_type(resource_type)
    call = InteractionRequest(
        "DELETE", Target(resource_type, id), if_match=version_from_etag(request.headers.get("if-match"))
    )
    return await _run(request, call, write=True)


@router.get(
    "/Patient/{id}/$access-log",
    summary="Who accessed this patient's record (AuditEvents naming the patient, newest first)",
    tags=["operations"],
    openapi_extra={
        "parameters": [
            _query("date", "Narrow by date, e.g. ge2026-11-01"),
            _query("_count", "Page size", "50"),
        ]
    },
    responses=docs.responses(description="A searchset Bundle of AuditEvents", errors=(401, 403)),
)
async def access_log(request: Request, id: ResourceId) -> Response:
    target = Target("Patient", id, operation="$access-log", query=_query_pairs(request))
    return await _run(request, InteractionRequest("GET", target), write=False)


@router.get(
    "/{resource_type}/{id}/_history",
    summary="History of a resource",
    tags=["instance"],
    openapi_extra={"parameters": HISTORY_PARAMS},
    responses=docs.responses(description="A history Bundle"),
)
async def instance_history(request: Request, resource_type: ResourceType, id: ResourceId) -> Response:
    _check_type(resource_type)
    target = Target(resource_type, id, history=True, query=_query_pairs(request))
    return await _run(request, InteractionRequest("GET", target), write=False)


@router.get(
    "/{compartment}/{id}/{resource_type}",
    summary="Search in a compartment (e.g. Patient/123/Observation)",
    tags=["instance"],
    openapi_extra={"parameters": SEARCH_PARAMS},
    responses=docs.responses(description="A searchset Bundle"),
)
async def compartment_search(
    request: Request, compartment: ResourceType, id: ResourceId, resource_type: str
) -> Response:
    _check_type(compartment)
    if resource_type != "*":
        _check_type(resource_type)
    target = Target(
        None if resource_type == "*" else resource_type,
        query=_query_pairs(request),
        compartment=(compartment, id),
    )
    return await _run(request, InteractionRequest("GET", target), write=False)


@router.head("/{resource_type}/{id}/_history/{version_id}", include_in_schema=False)
@router.get(
    "/{resource_type}/{id}/_history/{version_id}",
    summary="Version read (vread)",
    tags=["instance"],
    openapi_extra={"parameters": READ_PARAMS},
    responses=docs.responses(errors=(404, 410)),
)
async def vread(
    request: Request, resource_type: ResourceType, id: ResourceId, version_id: VersionId
) -> Response:
    _check_type(resource_type)
    check_id(id)
    check_accept(request)
    version = parse_version(version_id)
    stored = await _fast_read(
        request, "vread", resource_type, lambda: fast_reader(request).vread(resource_type, id, version)
    )
    return fhir_response(Outcome(200, stored), presentation(request), head=request.method == "HEAD")


@hot_router.head(paths.VERSION)
@hot_router.get(paths.VERSION)
async def vread_well_formed(request: Request) -> Response:
    params = request.path_params
    return await vread(request, params["resource_type"], params["id"], params["version_id"])
