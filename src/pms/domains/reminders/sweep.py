"""The reminder sweep: find booked appointments inside a reminder offset, claim, send, record.

Each run (a cron job, every minute) pages through `Appointment?status=booked&date=ge<now>&date=lt<now +
largest offset>&_include=Appointment:patient` with the repository's search (internal view). For each
appointment the smallest offset already reached is the one due (booked 30 h ahead: the 48 h reminder goes
at once; at 2 h: the 2 h one; a missed 48 h reminder is not sent after the 2 h one). Per page: claim in
the ledger and commit (the claim is what other sweeps see), send concurrently, then record each final
outcome as a FHIR Communication and the ledger state in one transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pms.config import Settings
from pms.core.db import Database
from pms.domains.reminders import ledger, patients
from pms.domains.reminders.channels import ChannelName, DeliveryError, Sender
from pms.domains.reminders.links import ACTIONS, LinkSigner
from pms.domains.reminders.messages import Message, render, template_language
from pms.domains.reminders.records import communication
from pms.fhir import jsonio
from pms.fhir.resource import Validator
from pms.fhir.search import parse_search
from pms.storage.indexer import Indexer
from pms.storage.registry_provider import RegistryProvider
from pms.storage.repository import FhirRepository
from pms.storage.search.engine import SearchEngine, SearchResult

log = logging.getLogger(__name__)

PAGE_SIZE = 500
LEASE = timedelta(minutes=10)  # a `sending` claim older than this belonged to a worker that died


def parse_offsets(spec: str) -> tuple[timedelta, ...]:
    """ "48h,2h" -> (48 h, 2 h), largest first; units m, h, d."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    offsets = []
    for part in (p.strip().lower() for p in spec.split(",")):
        if not part:
            continue
        if part[-1] not in units or not part[:-1].isdigit() or int(part[:-1]) <= 0:
            raise ValueError(f"bad reminder offset {part!r}: use e.g. 48h, 90m, 2d")
        offsets.append(timedelta(**{units[part[-1]]: int(part[:-1])}))
    if not offsets:
        raise ValueError("no reminder offsets configured")
    return tuple(sorted(set(offsets), reverse=True))


@dataclass(frozen=True)
class ReminderConfig:
    offsets: tuple[timedelta, ...]
    clinic_name: str
    timezone: ZoneInfo
    app_base_url: str
    max_attempts: int
    retry_base: timedelta
    concurrency: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ReminderConfig:
        return cls(
            offsets=parse_offsets(settings.reminder_offsets),
            clinic_name=settings.clinic_name,
            timezone=ZoneInfo(settings.clinic_timezone),
            app_base_url=settings.app_base_url,
            max_attempts=settings.reminder_max_attempts,
            retry_base=timedelta(seconds=settings.reminder_retry_base),
            concurrency=settings.reminder_concurrency,
        )

    def backoff(self, attempt: int) -> timedelta:
        """Before retry number `attempt` (1-based): base, 4x base, 16x base, ... capped at 6 h."""
        delay: timedelta = self.retry_base * 4 ** (attempt - 1)
        return min(delay, timedelta(hours=6))


@dataclass
class Reminders:
    """What the sweep works with; built once per worker process (worker startup)."""

    db: Database
    registry_provider: RegistryProvider
    validator: Validator
    config: ReminderConfig
    signer: LinkSigner
    senders: dict[ChannelName, Sender]


@dataclass
class SweepReport:
    appointments: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    opted_out: int = 0
    unreachable: int = 0  # no usable email or mobile number

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Delivery:
    key: ledger.Key
    channel: ChannelName
    patient_id: str
    address: str
    message: Message
    attempt: int = 1


@dataclass
class _Candidate:
    key: ledger.Key
    channel: ChannelName
    patient_id: str
    address: str
    render: Callable[[], Message]  # rendered only for deliveries this sweep wins


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _fhir_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def due_offset(start: datetime, now: datetime, offsets: tuple[timedelta, ...]) -> timedelta | None:
    """The smallest offset whose moment has come, for an appointment that has not started."""
    if start <= now:
        return None
    due = [o for o in offsets if start - o <= now]
    return min(due) if due else None


def _patient_of(appointment: dict[str, Any]) -> str | None:
    for participant in appointment.get("participant", []):
        reference = participant.get("actor", {}).get("reference", "")
        if reference.startswith("Patient/") and participant.get("status") != "declined":
            return str(reference.removeprefix("Patient/"))
    return None


def _practitioner_of(appointment: dict[str, Any]) -> str | None:
    for participant in appointment.get("participant", []):
        actor = participant.get("actor", {})
        if actor.get("reference", "").startswith(("Practitioner/", "PractitionerRole/")) and actor.get(
            "display"
        ):
            return str(actor["display"])
    return None


def plan(
    appointments: list[dict[str, Any]],
    patients_by_id: dict[str, dict[str, Any]],
    *,
    now: datetime,
    reminders: Reminders,
    report: SweepReport,
) -> list[_Candidate]:
    """The deliveries due now for these appointments (before any ledger check)."""
    config = reminders.config
    candidates = []
    for appointment in appointments:
        if "start" not in appointment:
            continue
        start = _instant(appointment["start"])
        offset = due_offset(start, now, config.offsets)
        patient_id = _patient_of(appointment)
        if offset is None or patient_id is None or patient_id not in patients_by_id:
            continue
        patient = patients_by_id[patient_id]
        if not patients.reachable(patient):
            report.opted_out += 1
            continue
        contact = patients.contact(patient)
        addresses: list[tuple[ChannelName, str | None]] = [("email", contact.email), ("sms", contact.phone)]
        usable = [(ch, addr) for ch, addr in addresses if addr and ch in reminders.senders]
        if not usable:
            report.unreachable += 1
            continue
        id_ = appointment["id"]
        # The links open pages in the message's own language.
        links = {
            action: reminders.signer.url(
                config.app_base_url, id_, action, expires=start, lang=template_language(contact.language)
            )
            for action in ACTIONS
        }
        message = functools.cache(
            functools.partial(
                render,
                language=contact.language,
                name=contact.name,
                clinic=config.clinic_name,
                start=start.astimezone(config.timezone),
                practitioner=_practitioner_of(appointment),
                confirm_url=links["confirm"],
                cancel_url=links["cancel"],
            )
        )
        minutes = int(offset.total_seconds() // 60)
        for channel, address in usable:
            assert address is not None
            candidates.append(_Candidate((id_, minutes, channel), channel, patient_id, address, message))
    return candidates


async def sweep(reminders: Reminders, *, now: datetime | None = None) -> SweepReport:
    now = now or datetime.now(UTC)
    report = SweepReport()
    horizon = now + max(reminders.config.offsets)
    query = [
        ("status", "booked"),
        ("date", f"ge{_fhir_instant(now)}"),
        ("date", f"lt{_fhir_instant(horizon)}"),
        ("_include", "Appointment:patient"),
        ("_sort", "date"),
        ("_count", str(PAGE_SIZE)),
    ]

    async def search(page: str | None) -> SearchResult:
        async with reminders.db.reader() as conn:
            registry = await reminders.registry_provider.get(conn)
            request = parse_search(
                "Appointment",
                [*query, ("_page", page)] if page else query,
                registry,
                handling="strict",
                max_count=PAGE_SIZE,
            )
            return await SearchEngine(conn, registry, base="", default_count=PAGE_SIZE).search(request)

    # Pipelined: the next page is fetched and the previous page recorded while this page is sent.
    recording: list[asyncio.Task[None]] = []
    next_page: asyncio.Task[SearchResult] | None = asyncio.create_task(search(None))
    try:
        while next_page is not None:
            result = await next_page
            next_page = asyncio.create_task(search(result.next_token)) if result.next_token else None
            appointments = [jsonio.loads(m.content or "{}") for m in result.matches]
            found = {
                p.id: jsonio.loads(p.content or "{}") for p in result.included if p.resource_type == "Patient"
            }
            report.appointments += len(appointments)
            candidates = plan(appointments, found, now=now, reminders=reminders, report=report)
            outcomes = await _deliver(reminders, candidates, now=now)
            if outcomes:
                recording.append(asyncio.create_task(_record(reminders, *outcomes, report=report)))
    finally:
        if next_page is not None:
            next_page.cancel()
        await asyncio.gather(*recording)
    return report


Outcome = tuple[Delivery, str | None, DeliveryError | None]


async def _deliver(
    reminders: Reminders, candidates: list[_Candidate], *, now: datetime
) -> tuple[list[Outcome], datetime] | None:
    """Claim and send; the outcomes and the moment sending ended, or None when nothing was won."""
    if not candidates:
        return None
    lease_expired_before = now - LEASE
    # Committed before anything is sent: the claim is what keeps other sweeps off these deliveries.
    async with reminders.db.transaction() as conn:
        settled = await ledger.settled(
            conn, [c.key for c in candidates], now=now, lease_expired_before=lease_expired_before
        )
        keys = [c.key for c in candidates if c.key not in settled]
        won = await ledger.claim_new(conn, keys, now=now)
        rest = [k for k in keys if k not in won]
        won |= await ledger.reclaim(conn, rest, now=now, lease_expired_before=lease_expired_before)
    deliveries = [
        Delivery(c.key, c.channel, c.patient_id, c.address, c.render(), won[c.key])
        for c in candidates
        if c.key in won
    ]
    if not deliveries:
        return None
    limit = asyncio.Semaphore(reminders.config.concurrency)

    async def attempt(delivery: Delivery) -> tuple[Delivery, str | None, DeliveryError | None]:
        sender = reminders.senders[delivery.channel]
        async with limit:
            try:
                return delivery, await sender.send(delivery.address, delivery.message), None
            except DeliveryError as exc:
                return delivery, None, exc

    started = time.monotonic()
    outcomes = await asyncio.gather(*(attempt(d) for d in deliveries))
    # The sweep's clock moved on by the time spent sending (`now` may be a test's chosen moment).
    return outcomes, now + timedelta(seconds=time.monotonic() - started)


async def _record(
    reminders: Reminders, outcomes: list[Outcome], now: datetime, *, report: SweepReport
) -> None:
    finished: list[ledger.Finished] = []
    async with reminders.db.transaction() as conn:
        registry = await reminders.registry_provider.get(conn)
        repo = FhirRepository(conn, validator=reminders.validator, indexer=Indexer(registry))
        for delivery, provider_id, error in outcomes:
            if error is not None and error.transient and delivery.attempt < reminders.config.max_attempts:
                retry_at = now + reminders.config.backoff(delivery.attempt)
                finished.append(ledger.Finished(delivery.key, "retry", retry_at, error=str(error)[:500]))
                report.retrying += 1
                log.info("reminder %s failed (%s); retry at %s", delivery.key, error, retry_at)
                continue
            body = communication(
                appointment_id=delivery.key[0],
                patient_id=delivery.patient_id,
                offset_minutes=delivery.key[1],
                channel=delivery.channel,
                message=delivery.message,
                sent=now if error is None else None,
                provider_id=provider_id,
                failure=None if error is None else str(error),
            )
            stored = await repo.create(body)
            status: ledger.Status = "sent" if error is None else "failed"
            reason = None if error is None else str(error)[:500]
            finished.append(ledger.Finished(delivery.key, status, communication_id=stored.id, error=reason))
            if error is None:
                report.sent += 1
            else:
                report.failed += 1
                log.warning("reminder %s failed for good: %s", delivery.key, error)
        await repo.flush()
        await ledger.finish(conn, finished, now=now)
