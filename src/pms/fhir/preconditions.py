"""Parsing of the precondition headers FHIR uses (ETag versions, If-Modified-Since, If-None-Exist)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

from pms.core.errors import bad_request

_ETAG = re.compile(r'^\s*(?:W/)?"(\d{1,9})"\s*$')


def version_from_etag(value: str | None) -> int | None:
    """The version id in an If-Match value such as W/"3" (http.html#concurrency)."""
    if value is None or value.strip() == "":
        return None
    match = _ETAG.match(value)
    if match is None:
        raise bad_request(f"If-Match must look like W/\"<versionId>\", not '{value[:40]}'", code="value")
    return int(match.group(1))


def http_date(value: str | None) -> datetime | None:
    """An If-Modified-Since value: an HTTP date (RFC 9110), or an ISO instant as a courtesy."""
    if value is None or value.strip() == "":
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise bad_request(
                f"If-Modified-Since is not a valid HTTP date: '{value[:60]}'", code="value"
            ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def search_criteria(value: str | None) -> list[tuple[str, str]] | None:
    """If-None-Exist holds a query string without the '?' (http.html#ccreate)."""
    if value is None:
        return None
    return parse_qsl(value.lstrip("?"), keep_blank_values=True)
