"""Content negotiation for the FHIR API (http://hl7.org/fhir/R4/http.html#mime-type)."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pms.api.caching import CACHE_CONTROL, NOT_STORED
from pms.core.errors import AppError, Issue, bad_request
from pms.fhir import jsonio
from pms.fhir.outcome import information
from pms.fhir.summary import check_summary, select_elements, summarize
from pms.storage.interactions import Outcome, ReturnPreference

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir", "xml")
JSON_FORMATS = ("json", *JSON_TYPES)
PATCH_TYPES = ("application/json-patch+json",)


@dataclass(frozen=True, slots=True)
class Presentation:
    """How the client wants the answer: pretty-printed, summarised, subsetted, minimal."""

    pretty: bool = False
    summary: str | None = None
    elements: tuple[str, ...] = ()
    prefer_return: ReturnPreference = "representation"
    strict: bool = False


def _media_types(header: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def check_accept(request: Request) -> None:
    """406 when the client only accepts XML (or another format we do not produce)."""
    requested = request.query_params.get("_format")
    if requested is not None:
        value = requested.strip().lower()
        if value in JSON_FORMATS:
            return
        if value in XML_TYPES:
            raise _not_acceptable("XML is not supported by this server; ask for _format=json")
        raise _not_acceptable(f"Unsupported _format '{requested[:40]}'; use json")
    accept = request.headers.get("accept")
    if not accept:
        return
    types = _media_types(accept)
    if any(t in JSON_TYPES or t in ("*/*", "application/*") for t in types):
        return
    if any(t in XML_TYPES for t in types):
        raise _not_acceptable("XML is not supported by this server; accept application/fhir+json")
    raise _not_acceptable(f"Cannot produce any of: {accept[:120]}; this server speaks application/fhir+json")


def _not_acceptable(message: str) -> AppError:
    return AppError(406, [Issue("not-supported", message)])


def presentation(request: Request) -> Presentation:
    params = request.query_params
    prefer = _prefer(request.headers.get("prefer", ""))
    elements = params.get("_elements")
    return Presentation(
        pretty=params.get("_pretty") == "true",
        summary=check_summary(params.get("_summary")),
        elements=tuple(e.strip() for e in elements.split(",") if e.strip()) if elements else (),
        prefer_return=prefer.get("return", "representation"),  # type: ignore[arg-type]
        strict=prefer.get("handling") == "strict",
    )


def _prefer(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";") + header.split(","):
        key, _, value = part.strip().partition("=")
        if key in ("return", "handling") and value.strip('"') in (
            "minimal",
            "representation",
            "OperationOutcome",
            "strict",
            "lenient",
        ):
            out[key] = value.strip('"')
    return out


async def read_body(request: Request, *, max_bytes: int, patch: bool = False) -> Any:
    """The parsed JSON body, after checking its media type (415) and size (413)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = PATCH_TYPES if patch else JSON_TYPES
    if content_type not in allowed:
        if content_type in XML_TYPES:
            message = "XML bodies are not supported by this server; send application/fhir+json"
        elif patch:
            message = "PATCH needs a JSON Patch body (Content-Type: application/json-patch+json)"
        else:
            message = (
                f"Unsupported Content-Type '{content_type[:60] or '(none)'}'; send application/fhir+json"
            )
        raise AppError(415, [Issue("not-supported", message)])
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise bad_request("The request has no body", code="required")
    try:
        return jsonio.loads(body)
    except jsonio.JsonSyntaxError as exc:
        raise bad_request(str(exc), code="structure") from exc
    except UnicodeDecodeError as exc:
        raise bad_request("The body is not valid UTF-8", code="structure") from exc


def _too_large(max_bytes: int) -> AppError:
    return AppError(
        413, [Issue("too-costly", f"The body is larger than the {max_bytes} bytes this server accepts")]
    )


def fhir_response(
    outcome: Outcome, view: Presentation, *, write: bool = False, head: bool = False
) -> Response:
    headers = {CACHE_CONTROL: NOT_STORED}
    stored = outcome.stored
    if stored is not None:
        headers["ETag"] = stored.etag
        headers["Last-Modified"] = format_datetime(stored.last_updated, usegmt=True)
    if outcome.location:
        headers["Location"] = outcome.location
    if outcome.status == 304:
        return Response(status_code=304, headers=headers)
    content: bytes | None
    if stored is not None and stored.content is not None:
        content = _resource_body(stored.content, view, write=write)
    elif outcome.body is not None:
        content = jsonio.dumps(outcome.body, pretty=view.pretty)
    else:
        content = None
    if content is None:
        return Response(status_code=outcome.status, headers=headers)
    return Response(
        content=b"" if head else content, status_code=outcome.status, headers=headers, media_type=FHIR_JSON
    )


def _resource_body(content: str | bytes, view: Presentation, *, write: bool) -> bytes | None:
    # http.html#ops: Prefer: return=minimal | representation | OperationOutcome applies to writes.
    if write and view.prefer_return == "minimal":
        return None
    if write and view.prefer_return == "OperationOutcome":
        return jsonio.dumps(information("The interaction succeeded"), pretty=view.pretty)
    if view.summary in (None, "false") and not view.elements and not view.pretty:
        return content.encode() if isinstance(content, str) else content
    resource = jsonio.loads(content)
    if view.summary not in (None, "false"):
        resource = summarize(resource, view.summary)
    elif view.elements:
        resource = select_elements(resource, list(view.elements))
    return jsonio.dumps(resource, pretty=view.pretty)
