"""Emergency access ("break the glass"): `POST /fhir/Patient/{id}/$break-glass`.

A staff user whose role does not reach this patient's record states a reason and gets time-limited
access to it (auth/policy.py grants it, flagged). In the same transaction: the grant, a Security Alert
AuditEvent (DICOM 110113 / Emergency Override Started) with the reason, and an alert to the admins - a
`Communication` (category `security-alert`) to every admin user's linked Practitioner, which the worker's
outbox sends to their email address or mobile number (domains/reminders/outbox.py). Everything done
under the override is marked BTG in its own AuditEvent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from pms.api.fhir import docs
from pms.api.fhir.context import interactions
from pms.api.fhir.negotiation import check_accept, fhir_response, presentation, read_body
from pms.api.fhir.routes import ResourceId
from pms.api.fhir.security import access_for, token_id_of
from pms.audit import events
from pms.core.errors import AppError, Issue, bad_request
from pms.fhir.parameters import OperationInput
from pms.storage import accounts
from pms.storage.audit import actor_of
from pms.storage.interactions import Outcome
from pms.storage.principals import PrincipalDirectory

router = APIRouter(prefix="/fhir", tags=["operations"])

ALERT_SYSTEM = "https://pms.example.org/fhir/CodeSystem/message-kind"

EXAMPLE: dict[str, Any] = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "reason", "valueString": "Patient unconscious in the waiting room; need allergies now"},
        {"name": "minutes", "valueInteger": 60},
    ],
}


@router.post(
    "/Patient/{id}/$break-glass",
    summary="Emergency access to one patient's record (stated reason, time-limited, flagged, alerts admins)",
    openapi_extra=docs.resource_body(
        EXAMPLE, description="Parameters: reason (required), minutes (default 60)"
    ),
    responses=docs.responses(description="Parameters with `expires`", errors=(400, 401, 403, 404)),
)
async def break_glass(request: Request, id: ResourceId) -> Response:
    check_accept(request)
    view = presentation(request)
    access = await access_for(request)
    principal = access.principal
    if principal.kind != "user" or not principal.username:
        raise AppError(403, [Issue("forbidden", "Emergency access is for signed-in staff users")])
    settings = request.app.state.settings
    params = OperationInput(
        await read_body(request, max_bytes=settings.max_body_bytes), operation="$break-glass"
    )
    reason = params.text("reason")
    if not reason:
        raise bad_request("$break-glass needs a 'reason'", expression=("reason",))
    minutes = params.integer("minutes", default=60, low=1, high=accounts.MAX_EMERGENCY_MINUTES)
    now = datetime.now(UTC)
    address = request.client.host if request.client else None
    async with interactions(request, write=True, access=None) as fhir:
        patient = await fhir.repo.read("Patient", id)  # 404/410 for no such patient
        grant = await accounts.grant_emergency_access(
            fhir.repo.conn,
            user_id=uuid.UUID(principal.subject),
            patient=f"Patient/{id}",
            reason=reason,
            minutes=minutes,
            now=now,
        )
        fhir.repo.record_audit_event(
            events.break_glass_event(
                actor=actor_of(access, address),
                recorded=now,
                patient=f"Patient/{id}",
                reason=grant.reason,
                expires=grant.expires_at,
            )
        )
        admins = [
            u.fhir_user
            for u in await accounts.list_users(fhir.repo.conn)
            if "admin" in u.roles and u.fhir_user
        ]
        alert: dict[str, Any] = {
            "resourceType": "Communication",
            "status": "in-progress",
            "category": [{"coding": [{"system": ALERT_SYSTEM, "code": "security-alert"}]}],
            "priority": "urgent",
            "subject": {"reference": f"Patient/{id}"},
            "sent": now.isoformat(),
            "payload": [
                {
                    "contentString": f"Emergency access: {principal.username} opened Patient/{id} until "
                    f"{grant.expires_at.isoformat(timespec='minutes')}. Reason: {grant.reason}"
                }
            ],
        }
        if admins:  # admins linked to a Practitioner; the others see it by searching security alerts
            alert["recipient"] = [{"reference": ref} for ref in admins]
        await fhir.repo.create(alert)
    token_id = token_id_of(request)
    if token_id:
        directory: PrincipalDirectory = request.app.state.principals
        directory.forget(token_id)  # the next request already carries the override
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": patient.reference}},
            {"name": "expires", "valueInstant": grant.expires_at.isoformat().replace("+00:00", "Z")},
        ],
    }
    return fhir_response(Outcome(200, body=body), view)
