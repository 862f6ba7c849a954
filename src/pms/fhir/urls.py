"""Parsing of the relative URLs FHIR uses in Bundle entries and references (http.html, bundle.html)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from pms.core.errors import bad_request
from pms.fhir.definitions import is_resource_type, is_valid_id


@dataclass(frozen=True, slots=True)
class Target:
    """What a request URL addresses: `Type`, `Type/id`, `Type/id/_history[/vid]`, `Type?query`, ..."""

    resource_type: str | None = None
    id: str | None = None
    history: bool = False
    version_id: int | None = None
    operation: str | None = None  # `_search` or a `$name`
    compartment: tuple[str, str] | None = None  # `Patient/123/Observation` searches Patient/123's compartment
    query: list[tuple[str, str]] = field(default_factory=list)


def parse_version(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise bad_request(f"'{text[:40]}' is not a version id of this server", code="value")
    return int(text)


def parse_target(url: str, base: str | None = None) -> Target:
    """Parse a relative (or, when it starts with our base, absolute) request URL of a Bundle entry."""
    if base and url.startswith(base.rstrip("/") + "/"):
        url = url[len(base.rstrip("/")) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise bad_request(
            f"The request URL '{url[:200]}' is not relative to this server", code="not-supported"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    segments = [s for s in parts.path.strip("/").split("/") if s]
    if not segments:
        return Target(query=query)
    if segments[0] == "_history" and len(segments) == 1:
        return Target(history=True, query=query)
    resource_type = segments[0]
    if not is_resource_type(resource_type):
        raise bad_request(f"Unknown resource type '{resource_type[:80]}'", code="not-supported")
    rest = segments[1:]
    if not rest:
        return Target(resource_type, query=query)
    if rest[0] in ("_history", "_search") or rest[0].startswith("$"):
        if len(rest) > 1:
            raise bad_request(f"Unsupported request URL '{url[:200]}'", code="not-supported")
        if rest[0] == "_history":
            return Target(resource_type, history=True, query=query)
        return Target(resource_type, operation=rest[0], query=query)
    id_ = rest[0]
    if not is_valid_id(id_):
        raise bad_request(f"'{id_[:80]}' is not a valid FHIR id", code="value")
    if len(rest) == 1:
        return Target(resource_type, id_, query=query)
    if rest[1] == "_history":
        if len(rest) == 2:
            return Target(resource_type, id_, history=True, query=query)
        if len(rest) == 3:
            return Target(resource_type, id_, history=True, version_id=parse_version(rest[2]), query=query)
    if rest[1].startswith("$") and len(rest) == 2:
        return Target(resource_type, id_, operation=rest[1], query=query)
    if len(rest) == 2 and (rest[1] == "*" or is_resource_type(rest[1])):
        # search.html#compartment: [base]/Patient/123/Observation?...
        searched = None if rest[1] == "*" else rest[1]
        return Target(searched, query=query, compartment=(resource_type, id_))
    raise bad_request(f"Unsupported request URL '{url[:200]}'", code="not-supported")
