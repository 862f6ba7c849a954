"""The waitlist: freed time goes to the best-matching waitlisted patient, held while they decide.

A waitlist entry is an Appointment with status `waitlist`, `requestedPeriod`, the patient, optionally a
practitioner, `serviceType` and `priority` (R4: 1 is highest, 0 or none is lowest). When booked time is
freed, `offer` picks the best entry (priority, then the oldest request) whose wishes fit, and holds the
time for it with a `pending` Appointment - pending holds time, so the database's exclusion constraint
guarantees that two workers never hold (offer) the same time twice. The patient gets a message with
accept/decline links; accepting books the hold, declining or letting it expire cancels it, which frees
the time again and so offers it to the next candidate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pms.core.errors import AppError
from pms.domains.scheduling import occupancy, offers
from pms.domains.scheduling.appointments import participant_refs
from pms.domains.scheduling.codes import BASE
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.offers import Offer
from pms.domains.scheduling.periods import Interval, fhir_instant, parse_moment
from pms.domains.scheduling.store import SchedulingStore
from pms.domains.scheduling.visit_types import appointment_visit_type

WAITLIST_ENTRY_URL = f"{BASE}/StructureDefinition/waitlist-entry"  # on a hold: the entry it serves
MESSAGE_KIND_SYSTEM = f"{BASE}/CodeSystem/message-kind"

# an offer and the patient's language -> its accept and decline URLs (signed links; api/waitlist.py answers
# them, in that language)
LinkMaker = Callable[[Offer, str], Awaitable[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class Candidate:
    entry: dict[str, Any]
    patient: str
    minutes: int


def _priority(entry: Mapping[str, Any]) -> tuple[int, str]:
    priority = entry.get("priority")
    rank = priority if isinstance(priority, int) and priority > 0 else 10  # 0 / none: after 9 (lowest)
    requested = entry.get("created") or (entry.get("meta") or {}).get("lastUpdated") or ""
    return rank, str(requested)


def _fits(entry: Mapping[str, Any], hold: Interval, config: SchedulingConfig) -> bool:
    periods = entry.get("requestedPeriod") or []
    if not periods:
        return True
    for period in periods:
        start = parse_moment(period["start"], config.zone) if period.get("start") else hold.start
        end = parse_moment(period["end"], config.zone, end=True) if period.get("end") else hold.end
        if start <= hold.start and hold.end <= end:
            return True
    return False


def offer_text(language: str, *, when: str, accept: str, decline: str, hours: float) -> str:
    if language.startswith("zh"):
        return (
            f"有一个更早的预约时间可供您选择：{when}。我们为您保留 {hours:g} 小时。"
            f"\n接受：{accept}\n放弃：{decline}"
        )
    return (
        f"An earlier appointment is available: {when}. We are holding it for you for {hours:g} hours."
        f"\nAccept: {accept}\nDecline: {decline}"
    )


def preferred_language(patient: Mapping[str, Any] | None) -> str:
    communications = (patient or {}).get("communication") or []
    chosen = next(
        (c for c in communications if c.get("preferred")), communications[0] if communications else None
    )
    for coding in ((chosen or {}).get("language") or {}).get("coding") or ():
        if coding.get("code"):
            return str(coding["code"])
    return "en"


class Waitlist:
    def __init__(self, store: SchedulingStore, config: SchedulingConfig, *, hold_minutes: int) -> None:
        self.store = store
        self.config = config
        self.hold = timedelta(minutes=hold_minutes)

    async def candidates(self, freed: Interval, actors: list[str]) -> list[Candidate]:
        """Waitlist entries the freed time suits, best first."""
        people = [a for a in actors if a.split("/")[0] in ("Practitioner", "PractitionerRole")]
        if not people:
            return []
        found = []
        for entry in await self.store.search("Appointment", [("status", "waitlist")], limit=2000):
            refs = participant_refs(entry)
            patient = next((r for r in refs if r.startswith("Patient/")), None)
            wanted = [r for r in refs if r.split("/")[0] in ("Practitioner", "PractitionerRole")]
            if patient is None or (wanted and not set(wanted) & set(people)):
                continue
            visit = await appointment_visit_type(self.store, entry)
            minutes = (visit.minutes if visit else None) or entry.get("minutesDuration") or freed.minutes
            hold = Interval(freed.start, freed.start + timedelta(minutes=int(minutes)))
            if hold.end > freed.end or not _fits(entry, hold, self.config):
                continue
            found.append(Candidate(entry, patient, int(minutes)))
        found.sort(key=lambda c: _priority(c.entry))
        return found

    async def offer(
        self, freed: Interval, actors: list[str], *, links: LinkMaker, now: datetime | None = None
    ) -> Offer | None:
        """Hold the freed time for the best candidate and message them. None: nobody fits, or the time
        is taken (booked again, or held by another worker's offer)."""
        now = now or datetime.now(UTC)
        if freed.start <= now:
            return None
        practitioner = next((a for a in actors if a.startswith("Practitioner/")), None)
        if practitioner is None:
            return None
        for candidate in await self.candidates(freed, actors):
            hold_interval = Interval(freed.start, freed.start + timedelta(minutes=candidate.minutes))
            waitlist_id = candidate.entry["id"]
            if await offers.offered_before(self.store.conn, waitlist_id, hold_interval.start):
                continue
            if await occupancy.holders(self.store.conn, [candidate.patient], hold_interval):
                continue  # the patient is busy then
            hold = self._hold(candidate, practitioner, hold_interval)
            try:
                stored = await self.store.repo.create(hold)
            except AppError as error:
                if error.status == 409:
                    return None  # the time is taken: nothing to offer
                raise
            offer = await offers.record(
                self.store.conn,
                waitlist_id=waitlist_id,
                hold_id=stored.id,
                patient=candidate.patient,
                interval=hold_interval,
                expires_at=now + self.hold,
            )
            if offer is None:
                raise AppError(409, [])  # unreachable in practice: the hold's exclusion wins first
            await self._message(offer, links)
            return offer
        return None

    def _hold(self, candidate: Candidate, practitioner: str, interval: Interval) -> dict[str, Any]:
        entry = candidate.entry
        hold: dict[str, Any] = {
            "resourceType": "Appointment",
            "status": "pending",
            "start": fhir_instant(interval.start),
            "end": fhir_instant(interval.end),
            "participant": [
                {"actor": {"reference": practitioner}, "status": "accepted"},
                {"actor": {"reference": candidate.patient}, "status": "needs-action"},
            ],
            "comment": "Offered from the waitlist",
            "extension": [
                {"url": WAITLIST_ENTRY_URL, "valueReference": {"reference": f"Appointment/{entry['id']}"}}
            ],
        }
        for key in ("serviceType", "appointmentType", "reasonCode", "priority"):
            if key in entry:
                hold[key] = entry[key]
        return hold

    async def _message(self, offer: Offer, links: LinkMaker) -> None:
        """The offer as a Communication (status in-progress until the worker delivers it)."""
        patient = await self.store.read("Patient", offer.patient.split("/", 1)[1])
        language = preferred_language(patient)
        accept, decline = await links(offer, language)
        when = offer.interval.start.astimezone(self.config.zone).strftime("%Y-%m-%d %H:%M")
        text = offer_text(
            language, when=when, accept=accept, decline=decline, hours=self.hold.total_seconds() / 3600
        )
        await self.store.repo.create(
            {
                "resourceType": "Communication",
                "status": "in-progress",
                "category": [{"coding": [{"system": MESSAGE_KIND_SYSTEM, "code": "waitlist-offer"}]}],
                "subject": {"reference": offer.patient},
                "recipient": [{"reference": offer.patient}],
                "about": [
                    {"reference": f"Appointment/{offer.hold_id}"},
                    {"reference": f"Appointment/{offer.waitlist_id}"},
                ],
                "language": language,
                "payload": [{"contentString": text}],
            }
        )

    async def respond(self, offer_id: Any, *, accept: bool, now: datetime | None = None) -> str:
        """Accept or decline; the offer's state afterwards. Answering twice changes nothing."""
        now = now or datetime.now(UTC)
        offer = await offers.lock(self.store.conn, offer_id)
        if offer is None:
            return "unknown"
        if offer.state != "offered":
            return offer.state
        if offer.expires_at <= now:
            await self._withdraw(offer, "expired", "The waitlist offer expired")
            return "expired"
        if not accept:
            await self._withdraw(offer, "declined", "The patient declined the waitlist offer")
            return "declined"
        hold = await self.store.read("Appointment", offer.hold_id)
        if hold is None or hold.get("status") != "pending":
            await offers.set_state(self.store.conn, offer.offer_id, "withdrawn")
            return "withdrawn"
        hold["status"] = "booked"
        hold["participant"] = [{**p, "status": "accepted"} for p in hold.get("participant") or ()]
        await self.store.repo.update(hold, id_=offer.hold_id)
        entry = await self.store.read("Appointment", offer.waitlist_id)
        if entry is not None and entry.get("status") == "waitlist":
            entry["status"] = "cancelled"
            entry["cancelationReason"] = {"text": f"Booked from the waitlist as Appointment/{offer.hold_id}"}
            await self.store.repo.update(entry, id_=offer.waitlist_id)
        await offers.set_state(self.store.conn, offer.offer_id, "accepted")
        return "accepted"

    async def expire_due(self, now: datetime | None = None) -> int:
        """Cancel the holds of offers nobody answered in time (each frees its time for the next one)."""
        now = now or datetime.now(UTC)
        due = await offers.due(self.store.conn, now)
        for offer in due:
            await self._withdraw(offer, "expired", "The waitlist offer expired")
        return len(due)

    async def _withdraw(self, offer: Offer, state: str, reason: str) -> None:
        hold = await self.store.read("Appointment", offer.hold_id)
        if hold is not None and hold.get("status") == "pending":
            hold["status"] = "cancelled"
            hold["cancelationReason"] = {"text": reason}
            await self.store.repo.update(hold, id_=offer.hold_id)
        await offers.set_state(self.store.conn, offer.offer_id, state)
