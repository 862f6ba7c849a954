"""The outbox: Communications other flows queue with `status: in-progress` (a waitlist offer, an
emergency-access alert) are delivered here by email and SMS, through the reminders' channels.

Each run (a worker cron, every minute) searches `Communication?status=in-progress&_include=
Communication:recipient`. For every recipient (a Patient or Practitioner with an email address or mobile
number) and channel it claims a row in `message_delivery` and commits before sending, so concurrent runs
never send twice. Then the Communication becomes `completed` (with `sent` and the media used) when a
message went out, `not-done` with the reason when none could; after a transient failure it stays
`in-progress` (the claim is released) and the next run tries again, for up to `GIVE_UP_AFTER`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from pms.core.errors import AppError
from pms.domains.reminders import patients
from pms.domains.reminders.channels import ChannelName, DeliveryError
from pms.domains.reminders.messages import Message, template_language
from pms.domains.reminders.records import PARTICIPATION_MODE
from pms.domains.reminders.sweep import Reminders
from pms.fhir import jsonio
from pms.fhir.search import parse_search
from pms.storage.indexer import Indexer
from pms.storage.repository import FhirRepository
from pms.storage.search.engine import SearchEngine

PAGE_SIZE = 200
GIVE_UP_AFTER = timedelta(hours=24)
_MEDIUM = {"email": ("EMAILWRIT", "email"), "sms": ("SMSWRIT", "SMS message")}
_SUBJECTS = {
    "waitlist-offer": {"en": "An appointment time is free for you", "zh-CN": "有空出的预约时间"},
    "security-alert": {"en": "Security alert: emergency access", "zh-CN": "安全警报：紧急访问"},
}


@dataclass
class OutboxReport:
    communications: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Send:
    communication_id: str
    recipient: str
    channel: ChannelName
    address: str
    message: Message


def _message(communication: dict[str, Any], clinic: str) -> Message | None:
    body = "\n\n".join(
        str(p["contentString"]) for p in communication.get("payload", []) if p.get("contentString")
    )
    if not body:
        return None
    language = template_language(str(communication.get("language", "")))
    kind = next(
        (c.get("code") for cat in communication.get("category", []) for c in cat.get("coding", [])), None
    )
    default = {"en": f"A message from {clinic}", "zh-CN": f"来自{clinic}的消息"}
    subject = _SUBJECTS.get(str(kind), default)[language]
    return Message(language=language, subject=subject, text=body, sms=body)


async def deliver_outbox(
    reminders: Reminders, *, now: datetime | None = None, updated_since: datetime | None = None
) -> OutboxReport:
    """One pass over the queued Communications (`updated_since` narrows it: tests share a database)."""
    now = now or datetime.now(UTC)
    report = OutboxReport()
    query = [("status", "in-progress"), ("_include", "Communication:recipient"), ("_count", str(PAGE_SIZE))]
    if updated_since is not None:
        query.append(("_lastUpdated", f"ge{updated_since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"))
    async with reminders.db.reader() as conn:
        registry = await reminders.registry_provider.get(conn)
        request = parse_search("Communication", query, registry, handling="strict", max_count=PAGE_SIZE)
        result = await SearchEngine(conn, registry, base="", default_count=PAGE_SIZE).search(request)
    found = {f"{r.resource_type}/{r.id}": jsonio.loads(r.content or "{}") for r in result.included}
    for stored in result.matches:
        report.communications += 1
        communication = jsonio.loads(stored.content or "{}")
        await _deliver_one(
            reminders, stored.id, stored.version_id, communication, found, now=now, report=report
        )
    return report


async def _deliver_one(
    reminders: Reminders,
    id_: str,
    version: int,
    communication: dict[str, Any],
    found: dict[str, dict[str, Any]],
    *,
    now: datetime,
    report: OutboxReport,
) -> None:
    message = _message(communication, reminders.config.clinic_name)
    sends: list[_Send] = []
    for recipient in (r.get("reference", "") for r in communication.get("recipient", [])):
        resource = found.get(recipient)
        if message is None or resource is None:
            continue
        if recipient.startswith("Patient/") and not patients.reachable(resource):
            continue  # inactive or deceased (a reminder opt-out does not stop an answer they asked for)
        contact = patients.contact(resource)
        addresses: list[tuple[ChannelName, str | None]] = [("email", contact.email), ("sms", contact.phone)]
        for channel, address in addresses:
            if address and channel in reminders.senders:
                sends.append(_Send(id_, recipient, channel, address, message))
    if not sends:
        reason = "no recipient with an email address or mobile number (or no channel configured)"
        await _finish(reminders, id_, version, communication, [], reason, now=now, report=report)
        return
    async with reminders.db.transaction() as conn:  # the claims commit before anything is sent
        rows = await conn.execute(
            text(
                "INSERT INTO message_delivery (communication_id, recipient, channel, status, claimed_at) "
                "SELECT :id, r, c, 'sending', :now "
                "FROM unnest(CAST(:r AS text[]), CAST(:c AS text[])) AS k(r, c) "
                "ON CONFLICT DO NOTHING RETURNING recipient, channel"
            ),
            {"id": id_, "now": now, "r": [s.recipient for s in sends], "c": [s.channel for s in sends]},
        )
        won = {(row.recipient, row.channel) for row in rows}
    mine = [s for s in sends if (s.recipient, s.channel) in won]
    if not mine:
        return  # another run has them

    async def attempt(send: _Send) -> tuple[_Send, str | None, DeliveryError | None]:
        try:
            return send, await reminders.senders[send.channel].send(send.address, send.message), None
        except DeliveryError as exc:
            return send, None, exc

    outcomes = await asyncio.gather(*(attempt(s) for s in mine))
    async with reminders.db.transaction() as conn:
        for send, provider_id, error in outcomes:
            if error is not None and error.transient:  # released: the next run tries again
                await conn.execute(
                    text(
                        "DELETE FROM message_delivery WHERE communication_id = :id AND recipient = :r "
                        "AND channel = :c"
                    ),
                    {"id": id_, "r": send.recipient, "c": send.channel},
                )
                continue
            await conn.execute(
                text(
                    "UPDATE message_delivery SET status = :s, finished_at = :now, provider_id = :p, "
                    "last_error = :e WHERE communication_id = :id AND recipient = :r AND channel = :c"
                ),
                {
                    "s": "sent" if error is None else "failed",
                    "now": now,
                    "p": provider_id,
                    "e": None if error is None else str(error)[:500],
                    "id": id_,
                    "r": send.recipient,
                    "c": send.channel,
                },
            )
    delivered = sorted({s.channel for s, _, error in outcomes if error is None})
    transient = [e for _, _, e in outcomes if e is not None and e.transient]
    if delivered:
        report.sent += 1
        await _finish(reminders, id_, version, communication, delivered, None, now=now, report=report)
    elif transient and _age(communication, now) < GIVE_UP_AFTER:
        report.retrying += 1
    else:
        reason = "; ".join(str(e) for _, _, e in outcomes if e is not None)[:500]
        await _finish(reminders, id_, version, communication, [], reason, now=now, report=report)


def _age(communication: dict[str, Any], now: datetime) -> timedelta:
    updated = communication.get("meta", {}).get("lastUpdated")
    if not updated:
        return timedelta(0)
    return now - datetime.fromisoformat(str(updated).replace("Z", "+00:00"))


async def _finish(
    reminders: Reminders,
    id_: str,
    version: int,
    communication: dict[str, Any],
    channels: list[ChannelName],
    failure: str | None,
    *,
    now: datetime,
    report: OutboxReport,
) -> None:
    """completed (with `sent` and the media) or not-done (with the reason), if nobody changed it since."""
    if failure is not None:
        communication["status"] = "not-done"
        communication["statusReason"] = {"text": failure}
        report.failed += 1
    else:
        communication["status"] = "completed"
        sent = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        communication.setdefault("sent", sent)
        communication["medium"] = [
            {"coding": [{"system": PARTICIPATION_MODE, "code": _MEDIUM[c][0], "display": _MEDIUM[c][1]}]}
            for c in channels
        ]
    async with reminders.db.transaction() as conn:
        registry = await reminders.registry_provider.get(conn)
        repo = FhirRepository(conn, validator=reminders.validator, indexer=Indexer(registry))
        try:
            await repo.update(communication, id_=id_, if_match=version)
        except AppError as error:
            if error.status != 412:
                raise  # 412: changed meanwhile (staff edited it); the delivery rows stand
        await repo.flush()
