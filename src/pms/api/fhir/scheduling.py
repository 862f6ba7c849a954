"""Scheduling operations on /fhir (docs/scheduling.md): `$find`, `$book`, `$generate-slots`.

Thin adapters: parse, run the domain flow in one audited unit of work, render. The rules themselves
live in domains/scheduling and also apply to plain creates and updates of Appointments.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from pms.api.fhir import docs
from pms.api.fhir.negotiation import check_accept, fhir_response, presentation, read_body
from pms.api.fhir.routes import ResourceId, run_audited
from pms.config import Settings
from pms.core.errors import not_found
from pms.domains.scheduling.appointments import is_patient_caller
from pms.domains.scheduling.booking import Booker, parse_book
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.find import SlotFinder, find_bundle, parse_find
from pms.domains.scheduling.slots import SlotPlanner, parse_window
from pms.domains.scheduling.store import SchedulingStore
from pms.fhir.outcome import information
from pms.storage.interactions import Interactions, Outcome

router = APIRouter(prefix="/fhir", tags=["scheduling"])

FIND_EXAMPLE: dict[str, Any] = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "visit-type", "valueString": "follow-up"},
        {"name": "start", "valueDateTime": "2026-12-01"},
        {"name": "end", "valueDateTime": "2026-12-05"},
        {"name": "time-of-day", "valueCode": "morning"},
        {"name": "patient", "valueReference": {"reference": "Patient/example"}},
    ],
}
BOOK_EXAMPLE: dict[str, Any] = {
    "resourceType": "Parameters",
    "parameter": [
        {
            "name": "appointment",
            "resource": {
                "resourceType": "Appointment",
                "status": "booked",
                "serviceType": [
                    {
                        "coding": [
                            {
                                "system": "https://pms.example.org/fhir/CodeSystem/visit-type",
                                "code": "follow-up",
                            }
                        ]
                    }
                ],
                "start": "2026-12-01T09:00:00Z",
                "end": "2026-12-01T09:20:00Z",
                "participant": [
                    {"actor": {"reference": "Practitioner/example"}, "status": "accepted"},
                    {"actor": {"reference": "Patient/example"}, "status": "accepted"},
                ],
            },
        },
        {"name": "recurrence", "valueString": "FREQ=WEEKLY;COUNT=10"},
        {"name": "book-available-only", "valueBoolean": False},
    ],
}


def _config(request: Request) -> SchedulingConfig:
    config: SchedulingConfig = request.app.state.scheduling
    return config


async def _body(request: Request) -> Any:
    settings: Settings = request.app.state.settings
    return await read_body(request, max_bytes=settings.max_body_bytes)


@router.post(
    "/Appointment/$find",
    summary="Find bookable times for a visit type (modelled on R5 Appointment $find)",
    openapi_extra=docs.resource_body(FIND_EXAMPLE, description="Parameters: visit-type, start, end, ..."),
    responses=docs.responses(
        description="A Bundle of proposed Appointments, earliest first", errors=(400, 401, 422)
    ),
)
async def find(request: Request) -> Response:
    check_accept(request)
    view = presentation(request)
    config = _config(request)
    body = await _body(request)

    async def action(fhir: Interactions) -> Outcome:
        # Staff need to read Slots; a patient, who books for themselves, needs to be able to book
        # (patient/ scopes reach only their own compartment, which Slots are not in).
        if is_patient_caller(fhir.repo):
            fhir.repo.guard.require_type("create", "Appointment")
        else:
            fhir.repo.guard.require_type("search", "Slot")
        finder = SlotFinder(SchedulingStore(fhir.repo), config)
        search = finder.for_caller(parse_find(body, config))
        visit, options = await finder.find(search)
        return Outcome(200, body=find_bundle(options, visit, search.patient))

    return fhir_response(await run_audited(request, "operation", action, write=False), view)


@router.post(
    "/Appointment/$book",
    summary="Book an appointment, or a recurring series (RRULE)",
    openapi_extra=docs.resource_body(BOOK_EXAMPLE, description="An Appointment, or Parameters with one"),
    responses=docs.responses(
        201, description="The booked Appointment (a Bundle for a series)", errors=(400, 401, 403, 409, 422)
    ),
)
async def book(request: Request) -> Response:
    check_accept(request)
    view = presentation(request)
    config = _config(request)
    body = await _body(request)

    async def action(fhir: Interactions) -> Outcome:
        return await Booker(fhir, config).book(parse_book(body))

    outcome = await run_audited(request, "operation", action, write=True)
    return fhir_response(outcome, view, write=outcome.status == 201)


@router.post(
    "/Schedule/{id}/$generate-slots",
    summary="Regenerate a Schedule's Slots from its actors' availability now",
    description="Optional Parameters body: `start`, `end` (dates) to cover another window than the horizon.",
    responses=docs.responses(description="OperationOutcome saying what changed", errors=(401, 403, 404)),
)
async def generate_slots(request: Request, id: ResourceId) -> Response:
    check_accept(request)
    view = presentation(request)
    config = _config(request)

    body = await _body(request) if int(request.headers.get("content-length") or 0) else None

    async def action(fhir: Interactions) -> Outcome:
        stored = await fhir.repo.read("Schedule", id)
        fhir.repo.guard.require_stored("update", stored)
        store = SchedulingStore(fhir.repo)
        schedule = await store.read("Schedule", id)
        if schedule is None:
            raise not_found(f"Schedule/{id} is not known")
        planner = SlotPlanner(store, config)
        window = parse_window(body, config, default=planner.horizon())
        changes = await planner.regenerate(id, schedule, window=window)
        message = (
            f"Schedule/{id}: {changes.created} Slots created, {changes.removed} removed, {changes.kept} kept"
        )
        return Outcome(200, stored, body=information(message))

    return fhir_response(await run_audited(request, "operation", action, write=True), view)
