"""`Appointment/$book`: book one appointment, or a recurring series from an RFC 5545 RRULE.

A single booking is a create like any other (the write hook enforces every rule). A series is checked
occurrence by occurrence first: all-or-nothing by default (one conflict books nothing, and the 409 names
every conflicting date), or only the free occurrences with `book-available-only`. Occurrences keep the
first one's wall-clock time across DST changes and share a series identifier.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dateutil.rrule import rrulestr

from pms.core.errors import AppError, Issue, bad_request
from pms.domains.scheduling import occupancy
from pms.domains.scheduling.appointments import appointment_interval, exclusive_actors
from pms.domains.scheduling.codes import SERIES_SYSTEM
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.conflicts import conflict_issue
from pms.domains.scheduling.periods import Interval, fhir_instant, local_moment, rule_broken
from pms.domains.scheduling.store import SchedulingStore
from pms.fhir import jsonio
from pms.fhir.outcome import operation_outcome
from pms.fhir.parameters import OperationInput
from pms.storage.interactions import Interactions, Outcome

MAX_OCCURRENCES = 104


@dataclass
class BookRequest:
    appointment: dict[str, Any]
    recurrence: str | None = None
    available_only: bool = False


@dataclass
class SeriesResult:
    entries: list[dict[str, Any]] = field(default_factory=list)
    booked: list[Outcome] = field(default_factory=list)


def parse_book(body: Any) -> BookRequest:
    if isinstance(body, dict) and body.get("resourceType") == "Appointment":
        return BookRequest(dict(body))
    params = OperationInput(body, operation="$book")
    appointment = params.one("appointment")
    if not isinstance(appointment, dict) or appointment.get("resourceType") != "Appointment":
        raise bad_request("$book needs an Appointment (the body, or the 'appointment' parameter)")
    return BookRequest(dict(appointment), params.text("recurrence"), params.boolean("book-available-only"))


def _as_booking(appointment: dict[str, Any]) -> dict[str, Any]:
    """What `$find` proposed, as a booking: status booked, participants accepted, no id."""
    booking = {k: v for k, v in appointment.items() if k not in ("id", "meta")}
    if booking.get("status") in (None, "proposed"):
        booking["status"] = "booked"
    booking["participant"] = [
        {**p, "status": "accepted"} if p.get("status") in (None, "needs-action") else p
        for p in booking.get("participant") or ()
    ]
    return booking


def occurrences(rule: str, first: Interval, config: SchedulingConfig) -> list[Interval]:
    """The series' intervals: the RRULE applied to the first start's local wall-clock time."""
    local_start = first.start.astimezone(config.zone).replace(tzinfo=None)
    duration = first.end - first.start
    try:
        recurrence = rrulestr(rule.removeprefix("RRULE:"), dtstart=local_start, forceset=False)
    except (ValueError, TypeError) as exc:
        raise bad_request(f"$book: 'recurrence' is not a valid RRULE: {exc}") from exc
    found: list[Interval] = []
    for moment in recurrence:
        if len(found) == MAX_OCCURRENCES:
            raise rule_broken(f"A series may have at most {MAX_OCCURRENCES} occurrences (use COUNT or UNTIL)")
        assert isinstance(moment, datetime)
        start = local_moment(moment.date(), moment.time(), config.zone)
        found.append(Interval(start, start + duration))
    if not found:
        raise rule_broken("The recurrence rule gives no occurrence")
    return found


class Booker:
    def __init__(self, fhir: Interactions, config: SchedulingConfig) -> None:
        self.fhir = fhir
        self.config = config
        self.store = SchedulingStore(fhir.repo)

    async def _issue(self, interval: Interval, taken: list[tuple[str, str]]) -> Issue:
        return await conflict_issue(self.store, self.config, interval, taken)

    async def book(self, request: BookRequest) -> Outcome:
        booking = _as_booking(request.appointment)
        if request.recurrence is None:
            return await self.fhir.create("Appointment", booking, None)
        return await self._book_series(booking, request)

    async def _book_series(self, booking: dict[str, Any], request: BookRequest) -> Outcome:
        first = appointment_interval(booking, self.config)
        if first is None:
            raise rule_broken("A recurring booking needs a start and an end", expression="Appointment.start")
        series = occurrences(request.recurrence or "", first, self.config)
        actors = await exclusive_actors(self.store, booking)
        series_id = str(uuid.uuid4())
        result = SeriesResult()
        conflicts: list[tuple[Interval, list[tuple[str, str]]]] = []
        for interval in series:
            taken = await occupancy.holders(self.store.conn, actors, interval)
            if taken:
                conflicts.append((interval, taken))
        if conflicts and not request.available_only:
            raise AppError(409, [await self._issue(interval, taken) for interval, taken in conflicts])
        busy = dict(conflicts)
        for number, interval in enumerate(series, start=1):
            if interval in busy:
                taken = busy[interval]
                result.entries.append(
                    {
                        "response": {
                            "status": "409 Conflict",
                            "outcome": operation_outcome([await self._issue(interval, taken)]),
                        }
                    }
                )
                continue
            occurrence = {
                **booking,
                "start": fhir_instant(interval.start),
                "end": fhir_instant(interval.end),
                "identifier": [
                    *(booking.get("identifier") or ()),
                    {"system": SERIES_SYSTEM, "value": series_id},
                ],
                "comment": _numbered(booking.get("comment"), number, len(series)),
            }
            outcome = await self.fhir.create("Appointment", occurrence, None)
            result.booked.append(outcome)
            stored = outcome.stored
            assert stored is not None
            result.entries.append(
                {
                    "fullUrl": f"{self.fhir.base}/Appointment/{stored.id}",
                    "resource": _parsed(stored.content),
                    "response": {
                        "status": "201 Created",
                        "location": f"Appointment/{stored.id}/_history/{stored.version_id}",
                        "etag": stored.etag,
                    },
                }
            )
        bundle = {"resourceType": "Bundle", "type": "batch-response", "entry": result.entries}
        touched = [o.stored for o in result.booked if o.stored is not None]
        return Outcome(200, body=bundle, touched=touched)


def _parsed(content: str | bytes | None) -> Any:
    return jsonio.loads(content or b"{}")


def _numbered(comment: Any, number: int, total: int) -> str:
    prefix = f"{comment} " if isinstance(comment, str) and comment else ""
    return f"{prefix}({number} of {total})"
