"""Answering a waitlist offer from the link in the message: a page that asks, and a POST that answers.

A GET never changes anything (mail and chat apps open links to preview them); the buttons POST. The
signed link names the offer; whoever holds it answers for the patient it was sent to, and the answer is
audited as that patient's.
"""

from __future__ import annotations

import html
import uuid
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse

from pms.api.oauth_pages import page
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

ANSWERS = {
    "accepted": ("Booked - see you then.", "已预约成功，届时见。"),
    "declined": ("Thank you - we offered the time to someone else.", "谢谢，我们已将该时间提供给其他人。"),
    "expired": ("Sorry, this offer has expired.", "抱歉，此预约邀请已过期。"),
    "withdrawn": ("Sorry, this time is no longer available.", "抱歉，该时间已不可用。"),
    "unknown": ("This offer is not known.", "找不到此预约邀请。"),
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """The same page shell, style and security headers as the sign-in pages."""
    return page(title, body, status=status)


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
    request: Request, offer_id: uuid.UUID, token: str = Query(), answer: str = Query("accept")
) -> HTMLResponse:
    if not await _verified_offer(request, offer_id, token):
        return _page("Link not valid / 链接无效", "<p>This link is not valid or has expired.</p>", 401)
    units: SystemUnits = request.app.state.units
    config: SchedulingConfig = request.app.state.scheduling
    async with units.db.reader() as conn:
        offer = await offers.peek(conn, offer_id)
    if offer is None or offer.state != "offered":
        english, chinese = ANSWERS[offer.state if offer else "unknown"]
        return _page("Waitlist / 候补", f"<p>{html.escape(english)}</p><p>{html.escape(chinese)}</p>")
    when = offer.interval.start.astimezone(config.zone).strftime("%A %d %B %Y, %H:%M")
    safe_token = html.escape(token, quote=True)
    buttons = "".join(
        f"<form method='post'><input type='hidden' name='token' value='{safe_token}'>"
        f"<input type='hidden' name='answer' value='{value}'><button type='submit'"
        f"{' autofocus' if value == answer else ''}>{label}</button></form>"
        for value, label in (("accept", "Accept / 接受"), ("decline", "Decline / 放弃"))
    )
    return _page("An earlier appointment / 更早的预约", f"<p>{html.escape(when)}</p>{buttons}")


@router.post(
    "/waitlist-offers/{offer_id}", response_class=HTMLResponse, summary="Accept or decline a waitlist offer"
)
async def answer_offer(request: Request, offer_id: uuid.UUID) -> HTMLResponse:
    form = dict(
        parse_qsl((await request.body())[:8192].decode(errors="replace"))
    )  # the page's own small form
    token, answer = form.get("token", ""), form.get("answer", "")
    if answer not in ("accept", "decline"):
        return _page("Waitlist / 候补", "<p>Choose accept or decline.</p>", 400)
    if not await _verified_offer(request, offer_id, token):
        return _page("Link not valid / 链接无效", "<p>This link is not valid or has expired.</p>", 401)
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
            repo.append_internal(
                interaction_event(
                    interaction="update",
                    access=None,
                    address=None,
                    registry=store.registry,
                    touched=[hold] if hold else [],
                    actor=actor,
                )
            )
    english, chinese = ANSWERS[state]
    return _page("Waitlist / 候补", f"<p>{html.escape(english)}</p><p>{html.escape(chinese)}</p>")
