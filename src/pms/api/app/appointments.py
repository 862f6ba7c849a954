"""`/api/appointments/{id}/respond`: the confirm / cancel links in appointment reminders.

The link's signed token is the authorisation (docs/reminders.md). GET only shows what will happen,
because mail scanners and link previews fetch URLs on their own; the POST from that page acts. Each
step leaves an AuditEvent naming the patient as the actor: the page's read, the update, or the refusal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from pms.api.oauth_pages import page
from pms.api.page_text import choose_language, html, text, when
from pms.audit import events
from pms.config import Settings
from pms.core.db import Database
from pms.core.errors import AppError
from pms.core.queue import after_commit
from pms.domains.reminders.links import ACTIONS, Action, LinkSigner
from pms.domains.reminders.respond import patient_of, respond
from pms.fhir import jsonio
from pms.storage.audit import AuditWriter, patients_in
from pms.storage.indexer import Indexer
from pms.storage.records import StoredVersion
from pms.storage.registry_provider import RegistryProvider
from pms.storage.repository import FhirRepository

router = APIRouter(prefix="/api/appointments", tags=["reminders"])

CLIENT = "reminder-link"
_TITLES = {"confirm": "confirm_title", "cancel": "cancel_title"}  # page_text keys
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A page saying what the link does (GET) or what was done (POST)"},
    403: {"description": "The link is invalid or has expired"},
    404: {"description": "No such appointment"},
}


def _now() -> datetime:
    return datetime.now(UTC)


def _language(request: Request, requested: str) -> str:
    """The reminder's language (the link's `lang`), else the browser's, else English."""
    return choose_language(requested[:100], request.headers.get("accept-language"))


def _page(lang: str, title: str, message: str, status: int = 200) -> HTMLResponse:
    return page(text(lang, title), f"<p>{escape(text(lang, message))}</p>", status=status, lang=lang)


def _actor(request: Request, patient_id: str | None) -> events.Actor:
    return events.Actor(
        fhir_user=f"Patient/{patient_id}" if patient_id else None,
        client_id=CLIENT,
        address=request.client.host if request.client else None,
    )


async def _refuse(request: Request, appointment_id: str, action: str, method: str, lang: str) -> HTMLResponse:
    """A bad or expired token: recorded like any refused access, answered without detail."""
    writer: AuditWriter = request.app.state.audit_writer
    event = events.access_denied_event(
        interaction="read" if method == "GET" else "update",
        actor=_actor(request, None),
        recorded=_now(),
        reason=f"invalid or expired reminder link ({action[:20]})",
        resources=[f"Appointment/{appointment_id}"] if _plain_id(appointment_id) else [],
    )
    await writer.write(event)
    return _page(lang, "link_refused_title", "link_refused", 403)


def _plain_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "-." for c in value)


def _checked(request: Request, appointment_id: str, action: str, token: str) -> Action | None:
    signer: LinkSigner = request.app.state.link_signer
    if not _plain_id(appointment_id) or not signer.verify(token, appointment_id, action, now=_now()):
        return None
    return next(a for a in ACTIONS if a == action)


def _when(request: Request, appointment: dict[str, Any], lang: str) -> str:
    """The start in the clinic's time zone, written as in the reminder's language."""
    settings: Settings = request.app.state.settings
    try:
        start = datetime.fromisoformat(str(appointment.get("start", "")).replace("Z", "+00:00"))
    except ValueError:
        return ""
    local = start.astimezone(ZoneInfo(settings.clinic_timezone)) if start.tzinfo else start
    return when(lang, local)


@router.get(
    "/{appointment_id}/respond",
    response_class=HTMLResponse,
    summary="Page behind a reminder's confirm/cancel link (changes nothing)",
    responses=_RESPONSES,
)
async def respond_page(
    request: Request, appointment_id: str, action: str = "", token: str = "", lang: str = ""
) -> HTMLResponse:
    language = _language(request, lang)
    checked = _checked(request, appointment_id, action, token)
    if checked is None:
        return await _refuse(request, appointment_id, action, "GET", language)
    db: Database = request.app.state.db
    provider: RegistryProvider = request.app.state.registry_provider
    async with db.transaction() as conn:
        registry = await provider.get(conn)
        repo = FhirRepository(conn, validator=request.app.state.validator, indexer=Indexer(registry))
        try:
            stored = await repo.read("Appointment", appointment_id)
        except AppError:
            return _page(language, "appointment_gone_title", "appointment_gone", 404)
        appointment = jsonio.loads(stored.content or "{}")
        repo.record_audit_event(_event(request, registry, "read", stored, patient_of(appointment)))
        await repo.flush()
    label = text(language, "confirm" if checked == "confirm" else "cancel_appointment")
    start = f"<strong>{escape(_when(request, appointment, language))}</strong>"
    body = (
        f"<p>{html(language, 'appointment_on', when=start)}</p>"
        f'<form method="post"><input type="hidden" name="action" value="{escape(checked)}">'
        f'<input type="hidden" name="token" value="{escape(token)}">'
        f'<input type="hidden" name="lang" value="{escape(lang[:100])}">'
        f'<button type="submit">{escape(label)}</button></form>'
    )
    return page(text(language, _TITLES[checked]), body, lang=language)


@router.post(
    "/{appointment_id}/respond",
    response_class=HTMLResponse,
    summary="Confirm or cancel an appointment with a reminder link's signed token",
    responses=_RESPONSES,
)
async def respond_submit(request: Request, appointment_id: str) -> HTMLResponse:
    form = dict(parse_qsl((await request.body()).decode(errors="replace"), max_num_fields=10))
    action, token = form.get("action", ""), form.get("token", "")
    language = _language(request, form.get("lang", ""))
    checked = _checked(request, appointment_id, action, token)
    if checked is None:
        return await _refuse(request, appointment_id, action, "POST", language)
    db: Database = request.app.state.db
    provider: RegistryProvider = request.app.state.registry_provider
    async with after_commit(request.app.state.queue) as jobs, db.transaction() as conn:
        registry = await provider.get(conn)
        # The domains' write hooks: the scheduling rules check the change and free the time.
        repo = FhirRepository(
            conn,
            validator=request.app.state.validator,
            indexer=Indexer(registry),
            hooks=request.app.state.write_hooks,
            jobs=jobs,
        )
        try:
            answer = await respond(repo, appointment_id=appointment_id, action=checked)
        except AppError as error:
            if error.status in (404, 410):
                return _page(language, "appointment_gone_title", "appointment_gone", 404)
            # e.g. a scheduling rule refused the change, or it changed meanwhile: nothing was written.
            return _page(language, _TITLES[checked], "reply_closed", 409)
        if answer.stored is not None:
            repo.record_audit_event(_event(request, registry, "update", answer.stored, answer.patient_id))
        await repo.flush()
    return _page(language, _TITLES[checked], f"reply_{answer.result}")


def _event(
    request: Request,
    registry: Any,
    interaction: events.Interaction,
    stored: StoredVersion,
    patient: str | None,
) -> dict[str, Any]:
    return events.rest_event(
        interaction=interaction,
        actor=_actor(request, patient),
        recorded=_now(),
        resources=[events.Touched(stored.resource_type, stored.id, str(stored.version_id))],
        patients=patients_in(registry, [stored]),
    )
