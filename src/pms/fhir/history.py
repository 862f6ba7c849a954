"""Parameters of the history interaction (http://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pms.core.errors import bad_request

DEFAULT_COUNT = 20
MAX_COUNT = 1000


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    count: int = DEFAULT_COUNT
    since: datetime | None = None
    at: tuple[datetime, datetime] | None = None
    before: tuple[datetime, int, int] | None = None  # keyset cursor: (last_updated, rid, version_id)


def parse_instant(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"Invalid instant '{text[:60]}' in parameter '{name}'", code="value") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def date_period(text: str, name: str) -> tuple[datetime, datetime]:
    """The implicit period of a date/dateTime of any precision (search.html#date)."""
    for fmt, precision in (("%Y", "year"), ("%Y-%m", "month"), ("%Y-%m-%d", "day")):
        try:
            start = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if precision == "year":
            return start, start.replace(year=start.year + 1)
        if precision == "month":
            return start, (start + timedelta(days=32)).replace(day=1)
        return start, start + timedelta(days=1)
    moment = parse_instant(text, name)
    return moment, moment + (timedelta(milliseconds=1) if "." in text else timedelta(seconds=1))


def history_page_token(last_updated: datetime, rid: int, version_id: int) -> str:
    return f"{last_updated.isoformat()}~{rid}~{version_id}"


def _parse_page_token(text: str) -> tuple[datetime, int, int]:
    try:
        moment, rid, version = text.split("~")
        return parse_instant(moment, "_page"), int(rid), int(version)
    except ValueError as exc:
        raise bad_request("Invalid history paging token", code="value") from exc


def parse_history_query(query: list[tuple[str, str]]) -> HistoryQuery:
    count, since, at, before = DEFAULT_COUNT, None, None, None
    for name, value in query:
        if name == "_count":
            if not value.isdigit():
                raise bad_request(f"_count must be a non-negative integer, not '{value[:40]}'", code="value")
            count = min(int(value), MAX_COUNT)
        elif name == "_since":
            since = parse_instant(value, "_since")
        elif name == "_at":
            at = date_period(value, "_at")
        elif name == "_page":
            before = _parse_page_token(value)
    return HistoryQuery(count=count, since=since, at=at, before=before)
