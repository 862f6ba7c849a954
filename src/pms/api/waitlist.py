"""Answering a waitlist offer from the link in the message: a page that asks, and a POST that answers.

A GET never changes anything (mail and chat apps open links to preview them); the buttons POST. The
signed link names the offer; whoever holds it answers for the patient it was sent to, and the answer is
audited as that patient's. The pages speak the message's language (the link's `lang`, kept in the form),
else the browser's (Accept-Language), else English: words from page_text.
"""

from __future__ import annotations

import html
import uuid
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse

from pms.api.oauth_pages import page
from pms.api.page_text import choose_language, text, when
from pms.audit import events
from pms.auth.tokens import InvalidToken
from pms.domains.scheduling import offers
from pms.domains.scheduling.codes import OFFER_PURPOSE
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.store import SchedulingStore
from pms.domains.scheduling.waitlist import Waitlist
from pms.storage.audit import interaction_event
from pms.storage.links import LinkSigner
from pms.storage.units import SystemUnits

router = APIRouter(prefix="/api", tags=["waitlist"])

ANSWERS = {  # an offer's state -> the page_text key that tells the patient
    "accepted": "offer_accepted",
    "declined": "offer_declined",
    "expired": "offer_expired",
    "withdrawn": "offer_withdrawn",
    "unknown": "offer_unknown",
}


def _language(request: Request, requested: str | None) -> str:
    return choose_language(requested, request.headers.get("accept-language"))


def _page(lang: str, title: str, message: str, status: int = 200) -> HTMLResponse:
    """The same page shell, style and security headers as the sign-in pages; one paragraph of text."""
    return page(text(lang, title), f"<p>{html.escape(text(lang, message))}</p>", status=status, lang=lang)


async def _verified_offer(request: Request, offer_id: uuid.UUID, token: str) -> bool:
    signer: LinkSigner = request.app.state.links
    try:
        claims = await signer.verify(token, purpose=OFFER_PURPOSE)
    except InvalidToken:
        return False
    return claims.get("sub") == str(offer_id)


@router.get(
    "/waitlist-offers/{offer_id}", response_class=HTMLResponse, summary="The page a waitlist offer link opens"
)
async def offer_page(
    request: Request,
    offer_id: uuid.UUID,
    token: str = Query(),
    answer: str = Query("accept"),
    lang: str = Query(""),
) -> HTMLResponse:
    lang = lang[:100]
    language = _language(request, lang)
    if not await _verified_offer(request, offer_id, token):
        return _page(language, "link_invalid_title", "link_invalid", 401)
    units: SystemUnits = request.app.state.units
    config: SchedulingConfig = request.app.state.scheduling
    async with units.db.reader() as conn:
        offer = await offers.peek(conn, offer_id)
    if offer is None or offer.state != "offered":
        return _page(language, "waitlist_title", ANSWERS[offer.state if offer else "unknown"])
    start = when(language, offer.interval.start.astimezone(config.zone))
    hidden = "".join(
        f"<input type='hidden' name='{name}' value='{html.escape(value, quote=True)}'>"
        for name, value in (("token", token), ("lang", lang))
        if value
    )
    buttons = "".join(
        f"<form method='post'>{hidden}"
        f"<input type='hidden' name='answer' value='{value}'><button type='submit'"
        f"{' autofocus' if value == answer else ''}>{html.escape(text(language, value))}</button></form>"
        for value in ("accept", "decline")
    )
    body = f"<p>{html.escape(start)}</p>{buttons}"
    return page(text(language, "offer_title"), body, lang=language)


@router.post(
    "/waitlist-offers/{offer_id}", response_class=HTMLResponse, summary="Accept or decline a waitlist offer"
)
async def answer_offer(request: Request, offer_id: uuid.UUID) -> HTMLResponse:
    form = dict(
        parse_qsl((await request.body())[:8192].decode(errors="replace"))
    )  # the page's own small form
    token, answer = form.get("token", ""), form.get("answer", "")
    language = _language(request, form.get("lang", "")[:100])
    if answer not in ("accept", "decline"):
        return _page(language, "waitlist_title", "choose_answer", 400)
    if not await _verified_offer(request, offer_id, token):
        return _page(language, "link_invalid_title", "link_invalid", 401)
    units: SystemUnits = request.app.state.units
    config: SchedulingConfig = request.app.state.scheduling
    settings = request.app.state.settings
    async with units.transaction() as repo:
        store = SchedulingStore(repo)
        state = await Waitlist(store, config, hold_minutes=settings.waitlist_hold_minutes).respond(
            offer_id, accept=answer == "accept"
        )
        offer = await offers.lock(repo.conn, offer_id)
        if offer is not None:
            hold = await repo.current_version("Appointment", offer.hold_id)
            actor = events.Actor(
                fhir_user=offer.patient, address=request.client.host if request.client else None
            )
            repo.record_audit_event(
                interaction_event(
                    interaction="update",
                    access=None,
                    address=None,
                    registry=store.registry,
                    touched=[hold] if hold else [],
                    actor=actor,
                )
            )
    return _page(language, "waitlist_title", ANSWERS[state])
