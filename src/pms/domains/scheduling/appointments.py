"""The rules every write of an Appointment obeys, whichever way it arrives (REST, Bundle, $book, jobs).

- only valid status transitions (codes.TRANSITIONS), a reason to cancel, start/end where time is held;
- no participant double-booked: the occupancy table's exclusion constraint decides (409);
- the Slots the appointment covers turn busy, those it leaves turn free again;
- patients booking for themselves (a `patient` principal) only take free Slots of online-bookable visit
  types, within limits;
- video visits get their link.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pms.core.errors import AppError, Issue, conflict
from pms.domains.scheduling import occupancy
from pms.domains.scheduling.codes import (
    EXCLUSIVE_ACTOR_TYPES,
    HOLDING_STATUSES,
    TELEHEALTH_LINK_URL,
    TRANSITIONS,
    extension_value,
    relative_reference,
    set_extension,
)
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.conflicts import conflict_issue
from pms.domains.scheduling.periods import Interval, fhir_instant, parse_moment, rule_broken
from pms.domains.scheduling.slots import MAX_SLOT_MINUTES, schedule_actors, slot_interval, slot_minutes
from pms.domains.scheduling.store import SchedulingStore
from pms.domains.scheduling.visit_types import VisitTypeCache
from pms.storage.hooks import ResourceChange
from pms.storage.records import StoredVersion
from pms.storage.repository import FhirRepository

# Called with (appointment id, the interval given back, the actors whose time it was) after a booking
# releases time: the waitlist offers it to someone else.
FreedTime = Callable[[FhirRepository, str, Interval, list[str]], Awaitable[None]]


def appointment_interval(appointment: Mapping[str, Any], config: SchedulingConfig) -> Interval | None:
    start, end = appointment.get("start"), appointment.get("end")
    if not start or not end:
        return None
    return Interval(parse_moment(start, config.zone), parse_moment(end, config.zone))


def holds_time(appointment: Mapping[str, Any] | None) -> bool:
    return appointment is not None and appointment.get("status") in HOLDING_STATUSES


def participant_refs(appointment: Mapping[str, Any]) -> list[str]:
    """The exclusive participants (not declined, not information-only), as `Type/id`."""
    refs = []
    for participant in appointment.get("participant") or ():
        if participant.get("status") == "declined" or participant.get("required") == "information-only":
            continue
        ref = relative_reference((participant.get("actor") or {}).get("reference"))
        if ref and ref.split("/", 1)[0] in EXCLUSIVE_ACTOR_TYPES and ref not in refs:
            refs.append(ref)
    return refs


def _slot_refs(appointment: Mapping[str, Any] | None) -> list[str]:
    refs = (relative_reference(s.get("reference")) for s in (appointment or {}).get("slot") or ())
    return [r.split("/", 1)[1] for r in refs if r and r.startswith("Slot/")]


async def exclusive_actors(store: SchedulingStore, appointment: Mapping[str, Any]) -> list[str]:
    """Whose time the appointment holds. A PractitionerRole also holds its practitioner: one person,
    whatever role they are booked in."""
    actors = participant_refs(appointment)
    for ref in list(actors):
        if ref.startswith("PractitionerRole/"):
            role = await store.read("PractitionerRole", ref.split("/", 1)[1])
            person = relative_reference(((role or {}).get("practitioner") or {}).get("reference"))
            if person and person not in actors:
                actors.append(person)
    return actors


def check_transition(old: str | None, new: str | None) -> None:
    if old is None or old == new or new is None:
        return
    if new not in TRANSITIONS.get(old, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(old, ()))) or "none (it is final)"
        raise rule_broken(
            f"An Appointment cannot go from '{old}' to '{new}'; from '{old}' it may become: {allowed}",
            expression="Appointment.status",
        )


class AppointmentRules:
    resource_types = frozenset({"Appointment"})

    def __init__(self, config: SchedulingConfig, *, on_freed: FreedTime | None = None) -> None:
        self.config = config
        self.on_freed = on_freed
        self.visit_types = VisitTypeCache()

    async def on_write(self, repo: FhirRepository, change: ResourceChange) -> None:
        store = SchedulingStore(repo)
        before, after = change.before, change.after
        interval = self._validate(before, after)
        if holds_time(before) and appointment_interval(before or {}, self.config) is not None:
            await occupancy.release(store.conn, change.id)
        new_slots: list[str] = []
        if after is not None and interval is not None and holds_time(after):
            actors = await exclusive_actors(store, after)
            await self._claim(store, change.id, actors, interval)
            if is_patient_caller(repo):
                await self._check_self_booking(store, repo, after, interval, created=before is None)
            new_slots = await self._occupy_slots(store, actors, interval)
            if new_slots:  # else the client's own Slot references (if any) stand
                after["slot"] = [{"reference": f"Slot/{id_}"} for id_ in new_slots]
            await self._add_video_link(store, change.id, after)
        elif after is not None and holds_time(before):
            after.pop("slot", None)  # the time was given back: the Slots are free again
        released = [s for s in _slot_refs(before) if s not in new_slots]
        await self._free_slots(store, released)
        if self.on_freed is not None and holds_time(before):
            old = appointment_interval(before or {}, self.config)
            if old is not None and (interval is None or not holds_time(after) or interval != old):
                await self.on_freed(repo, change.id, old, participant_refs(before or {}))

    # -- checks ----------------------------------------------------------------------------------------

    def _validate(self, before: Mapping[str, Any] | None, after: dict[str, Any] | None) -> Interval | None:
        if after is None:
            return None
        old_status, new_status = (before or {}).get("status"), after.get("status")
        check_transition(old_status, new_status)
        if new_status == "cancelled" and old_status != "cancelled" and not after.get("cancelationReason"):
            raise rule_broken(
                "Say why the appointment is cancelled (cancelationReason)",
                expression="Appointment.cancelationReason",
            )
        interval = appointment_interval(after, self.config)
        if interval is None and new_status in HOLDING_STATUSES:
            raise rule_broken(
                f"A '{new_status}' appointment needs a start and an end (R4 invariant app-3)",
                expression="Appointment.start",
            )
        if interval is not None and interval.end <= interval.start:
            raise rule_broken("The appointment must end after it starts", expression="Appointment.end")
        return interval

    async def _claim(self, store: SchedulingStore, id_: str, actors: list[str], interval: Interval) -> None:
        taken = await occupancy.claim(store.conn, id_, actors, interval)
        if not taken:
            return
        # Give back what this attempt did claim: the transaction may go on (a batch, the next candidate).
        await occupancy.release(store.conn, id_)
        if is_patient_caller(store.caller):
            # Who else is booked, and by which Appointment, is other patients' business.
            raise conflict("That time is no longer free; please pick another one")
        holders = await occupancy.holders(store.conn, taken, interval, excluding=id_)
        raise AppError(
            409, [await conflict_issue(store, self.config, interval, holders or [(a, "?") for a in taken])]
        )

    async def _check_self_booking(
        self,
        store: SchedulingStore,
        repo: FhirRepository,
        appointment: dict[str, Any],
        interval: Interval,
        *,
        created: bool,
    ) -> None:
        """A patient books only free Slots, only visit types open to online booking, within limits."""
        now = datetime.now(UTC)
        if interval.start <= now:
            raise rule_broken("Appointments can only be booked in the future", expression="Appointment.start")
        visit = await self.visit_types.of(store, appointment)
        if visit is None or not visit.online:
            raise rule_broken(
                "This visit type cannot be booked online; please call the clinic",
                expression="Appointment.serviceType",
            )
        if visit.minutes is not None and interval.minutes != visit.minutes:
            raise rule_broken(
                f"A '{visit.display}' visit lasts {visit.minutes} minutes", expression="Appointment.end"
            )
        practitioners = [
            a
            for a in participant_refs(appointment)
            if a.split("/")[0] in ("Practitioner", "PractitionerRole")
        ]
        if not practitioners:
            raise rule_broken("Choose a practitioner to book with", expression="Appointment.participant")
        if not await self._free_slots_cover(store, practitioners, interval):
            raise conflict("That time is not free in the practitioner's schedule; pick one of the free slots")
        patient = callers_patient(repo)
        if created and patient is not None:
            await self._check_limits(store, patient, now)

    async def _free_slots_cover(self, store: SchedulingStore, actors: list[str], interval: Interval) -> bool:
        """Some Schedule of these actors has contiguous free Slots covering the whole interval."""
        by_schedule: dict[str, list[tuple[Interval, str]]] = {}
        for _, slot in await self._slots_near(store, actors, interval, every_length=True):
            schedule = str((slot.get("schedule") or {}).get("reference"))
            by_schedule.setdefault(schedule, []).append(
                (slot_interval(slot, self.config), slot.get("status", ""))
            )
        for slots in by_schedule.values():
            cursor = interval.start
            for span, status in sorted(slots):
                if span.end <= cursor or span.start > cursor:
                    continue
                if status != "free":
                    break
                cursor = span.end
                if cursor >= interval.end:
                    return True
        return False

    async def _check_limits(self, store: SchedulingStore, patient: str, now: datetime) -> None:
        upcoming = await store.search(
            "Appointment",
            [
                ("patient", patient),
                ("status", ",".join(sorted(HOLDING_STATUSES))),
                ("date", f"ge{fhir_instant(now)}"),
            ],
            limit=self.config.self_booking_max_upcoming + 1,
        )
        if len(upcoming) >= self.config.self_booking_max_upcoming:
            raise AppError(
                429,
                [
                    Issue(
                        "throttled",
                        f"You already have {len(upcoming)} upcoming appointments; "
                        "please call the clinic to book more",
                    )
                ],
            )
        recent = await store.search(
            "Appointment",
            [("patient", patient), ("_lastUpdated", f"ge{fhir_instant(now - timedelta(days=1))}")],
            limit=self.config.self_booking_max_per_day + 1,
        )
        if len(recent) >= self.config.self_booking_max_per_day:
            raise AppError(429, [Issue("throttled", "Too many bookings today; please try again tomorrow")])

    # -- slots -----------------------------------------------------------------------------------------

    async def _slots_near(
        self, store: SchedulingStore, actors: list[str], interval: Interval, *, every_length: bool = False
    ) -> list[tuple[StoredVersion, dict[str, Any]]]:
        """The Slots of these actors' Schedules that overlap the interval.

        A covering Slot starts before the interval by less than its own length. Free Slots are cut at
        their Schedule's current slot length (slots.py regenerates the free ones when it changes), so
        looking back that far finds every free one: a 20-minute schedule's hour instead of four hours of
        every Schedule's Slots to filter. `every_length` looks back the longest
        length allowed, for booked or blocked Slots kept from before such a change.

        The Schedules first, then their Slots by id, rather than one chained search (`schedule.actor=`):
        PostgreSQL estimates a chain's Schedules at one Slot each (the reference index's statistics span
        every parameter) and reads the Schedule's whole horizon, where named Schedules let it take the
        interval from the date index (5.2 -> 1.9 ms of database CPU per search, 20 practitioners)."""
        schedules = await store.search("Schedule", [("actor", ",".join(actors))])
        if not schedules:
            return []
        longest = MAX_SLOT_MINUTES if every_length else max(slot_minutes(s, self.config) for s in schedules)
        earliest = interval.start - timedelta(minutes=longest)
        slots = await store.search_stored(
            "Slot",
            [
                ("schedule", ",".join(f"Schedule/{schedule['id']}" for schedule in schedules)),
                ("start", f"ge{fhir_instant(earliest)}"),
                ("start", f"lt{fhir_instant(interval.end)}"),
            ],
        )
        return [(stored, s) for stored, s in slots if slot_interval(s, self.config).overlaps(interval)]

    async def _occupy_slots(self, store: SchedulingStore, actors: list[str], interval: Interval) -> list[str]:
        """Mark the covered Slots of the actors' Schedules busy; their ids, for Appointment.slot."""
        near = await self._slots_near(store, actors, interval) if actors else []
        await _mark_busy(store, [(stored, slot) for stored, slot in near if slot.get("status") == "free"])
        return [stored.id for stored, _ in near]

    async def _free_slots(self, store: SchedulingStore, slot_ids: list[str]) -> None:
        """Give back Slots no booking covers any more."""
        for slot_id in slot_ids:
            slot = await store.read("Slot", slot_id)
            if slot is None or slot.get("status") != "busy":
                continue
            schedule_ref = relative_reference((slot.get("schedule") or {}).get("reference")) or ""
            schedule = await store.read("Schedule", schedule_ref.partition("/")[2])
            actors = schedule_actors(schedule or {})
            if not await occupancy.holders(store.conn, actors, slot_interval(slot, self.config)):
                await store.repo.update({**slot, "status": "free"}, id_=slot_id)

    async def _add_video_link(self, store: SchedulingStore, id_: str, appointment: dict[str, Any]) -> None:
        if extension_value(appointment, TELEHEALTH_LINK_URL, "valueUrl"):
            return
        visit = await self.visit_types.of(store, appointment)
        if visit is None or not visit.telehealth:
            return
        link = self.config.telehealth_url_template.format(
            appointment_id=id_, secret=secrets.token_urlsafe(12)
        )
        set_extension(appointment, TELEHEALTH_LINK_URL, "valueUrl", link)


async def _mark_busy(store: SchedulingStore, free: list[tuple[StoredVersion, dict[str, Any]]]) -> None:
    """Free Slots turn busy, all in one statement; one changed since it was read is read again (and left
    alone if it is no longer free)."""
    while free:
        written = await store.repo.update_unchanged(
            [(stored, {**slot, "status": "busy"}) for stored, slot in free]
        )
        done = {version.id for version in written}
        again = [await store.read_stored("Slot", stored.id) for stored, _ in free if stored.id not in done]
        free = [found for found in again if found is not None and found[1].get("status") == "free"]


def is_patient_caller(repo: FhirRepository) -> bool:
    """A portal patient (role `patient`) is making this request."""
    access = repo.access
    return access is not None and access.principal.kind == "patient"


def callers_patient(repo: FhirRepository) -> str | None:
    """`Patient/<id>` of the patient the caller is (or was launched for), else None."""
    access = repo.access
    if access is None:
        return None
    principal = access.principal
    patient = principal.patient or principal.own_patient
    return f"Patient/{patient}" if patient else None
