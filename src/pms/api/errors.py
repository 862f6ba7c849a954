"""Every error leaves the API as an OperationOutcome with the right status; never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pms.api.caching import CACHE_CONTROL, NOT_STORED
from pms.core.errors import AppError, Issue
from pms.fhir import jsonio
from pms.fhir.outcome import operation_outcome

log = logging.getLogger("pms.api")

_HTTP_CODES = {
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-costly",
    415: "not-supported",
}


def outcome_response(status: int, issues: list[Issue], headers: dict[str, str] | None = None) -> Response:
    return Response(
        jsonio.dumps(operation_outcome(issues)),
        status_code=status,
        headers={CACHE_CONTROL: NOT_STORED, **(headers or {})},
        media_type="application/fhir+json",
    )


async def _app_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return outcome_response(exc.status, exc.issues, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue("invalid", f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}")
        for err in exc.errors()
    ]
    return outcome_response(400, issues)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "processing")
    detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
    if exc.status_code == 404:
        detail = "No such endpoint; the FHIR API lives under /fhir"
    return outcome_response(exc.status_code, [Issue(code, detail)], dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("Unhandled error on %s %s", request.method, request.url.path)
    return outcome_response(500, [Issue("exception", "An internal error occurred; it has been logged")])


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
