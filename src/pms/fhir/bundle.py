"""Bundle building and transaction planning, as pure functions.

See http://hl7.org/fhir/R4/bundle.html and http.html#transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from pms.core.errors import bad_request
from pms.fhir.resource import format_instant

# http.html#trules: a transaction is processed DELETE, then POST, then PUT/PATCH, then GET/HEAD.
TRANSACTION_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    304: "304 Not Modified",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    410: "410 Gone",
    412: "412 Precondition Failed",
    413: "413 Payload Too Large",
    415: "415 Unsupported Media Type",
    422: "422 Unprocessable Entity",
    500: "500 Internal Server Error",
}


def status_line(status: int) -> str:
    return STATUS_TEXT.get(status, str(status))


def raw(content: str | bytes) -> orjson.Fragment:
    """Embed stored JSON text in a bundle without parsing it."""
    return orjson.Fragment(content)


def page_url(base: str, path: str, query: Iterable[tuple[str, str]], **extra: str) -> str:
    params = [(k, v) for k, v in query if k not in extra and k != "_page"]
    params.extend(extra.items())
    encoded = urlencode(params)
    return (f"{base}/{path}" if path else base) + (f"?{encoded}" if encoded else "")


def bundle(
    kind: str,
    entries: list[dict[str, Any]],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if timestamp is not None:
        out["timestamp"] = format_instant(timestamp)
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if entries:
        out["entry"] = entries
    return out


def check_bundle(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The type (batch|transaction) and entries of a Bundle POSTed to the base URL."""
    if body.get("resourceType") != "Bundle":
        raise bad_request("Only a Bundle may be POSTed to the base URL", code="invalid")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise bad_request(
            f"A Bundle POSTed to the base URL must be a batch or transaction, not '{kind}'",
            code="invalid",
            expression=("Bundle.type",),
        )
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise bad_request("Bundle.entry must be an array", code="structure", expression=("Bundle.entry",))
    for index, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("method"), str)
            or not isinstance(request.get("url"), str)
        ):
            raise bad_request(
                f"Entry {index} has no request with a method and url",
                code="required",
                expression=(f"Bundle.entry[{index}].request",),
            )
        if request["method"] not in TRANSACTION_ORDER:
            raise bad_request(
                f"Entry {index} has an unknown request method '{request['method'][:20]}'",
                code="value",
                expression=(f"Bundle.entry[{index}].request.method",),
            )
    return kind, entries


def transaction_order(entries: list[dict[str, Any]]) -> list[int]:
    """Entry indexes in the order a transaction processes them (stable within a method)."""
    return sorted(range(len(entries)), key=lambda i: TRANSACTION_ORDER[entries[i]["request"]["method"]])


_PLACEHOLDERS = ("urn:uuid:", "urn:oid:")


def rewrite_references(value: Any, resolve: Callable[[str], str | None]) -> Any:
    """Replace, in place, every `reference` (and urn:uuid/urn:oid string) that `resolve` maps; returns
    `value`.

    Walks the whole resource, so references inside extensions and contained resources are rewritten
    too (bundle.html#references). In place and iterative: it runs over every resource of an ingested
    Bundle, where copying each object was a seventh of the CPU time.
    """
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(item, str):
                    if key == "reference" or item.startswith(_PLACEHOLDERS):
                        replacement = resolve(item)
                        if replacement is not None:
                            node[key] = replacement
                elif isinstance(item, dict | list):
                    stack.append(item)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, dict | list):
                    stack.append(item)
                elif isinstance(item, str) and item.startswith(_PLACEHOLDERS):
                    replacement = resolve(item)
                    if replacement is not None:
                        node[index] = replacement
    return value
