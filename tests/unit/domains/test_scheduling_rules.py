"""Pure scheduling rules: working hours across DST, slot cutting, status transitions, recurrences."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from pms.core.errors import AppError
from pms.domains.scheduling.appointments import check_transition, participant_refs
from pms.domains.scheduling.availability import cut_slots, working_intervals
from pms.domains.scheduling.booking import occurrences
from pms.domains.scheduling.codes import relative_reference
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.periods import Interval, local_moment, parse_moment, subtract

LONDON = ZoneInfo("Europe/London")
CONFIG = SchedulingConfig(LONDON, 15, 56, "https://video/{appointment_id}", 3, 5)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class TestWorkingHours:
    ROLE = {
        "resourceType": "PractitionerRole",
        "availableTime": [
            {"daysOfWeek": ["fri", "mon"], "availableStartTime": "09:00:00", "availableEndTime": "10:00:00"}
        ],
    }

    def test_wall_clock_hours_across_the_autumn_change(self) -> None:
        # Europe/London leaves BST on Sunday 2026-10-25.
        window = Interval(utc("2026-10-23T00:00:00"), utc("2026-10-27T00:00:00"))
        hours = working_intervals([self.ROLE], window, LONDON)
        assert hours == [
            Interval(utc("2026-10-23T08:00:00"), utc("2026-10-23T09:00:00")),  # BST, UTC+1
            Interval(utc("2026-10-26T09:00:00"), utc("2026-10-26T10:00:00")),  # GMT
        ]

    def test_absences_and_open_ended_ones(self) -> None:
        role = {**self.ROLE, "notAvailable": [{"description": "Leave", "during": {"start": "2026-10-26"}}]}
        window = Interval(utc("2026-10-23T00:00:00"), utc("2026-11-30T00:00:00"))
        assert working_intervals([role], window, LONDON) == [
            Interval(utc("2026-10-23T08:00:00"), utc("2026-10-23T09:00:00"))
        ]

    def test_location_hours_and_all_day(self) -> None:
        room = {"resourceType": "Location", "hoursOfOperation": [{"daysOfWeek": ["sat"], "allDay": True}]}
        window = Interval(utc("2026-11-27T00:00:00"), utc("2026-11-30T00:00:00"))
        assert working_intervals([room], window, LONDON) == [
            Interval(utc("2026-11-28T00:00:00"), utc("2026-11-29T00:00:00"))
        ]

    def test_slots_are_whole(self) -> None:
        hours = [Interval(utc("2026-11-23T09:00:00"), utc("2026-11-23T09:50:00"))]
        assert [s.start.minute for s in cut_slots(hours, 20)] == [0, 20]

    def test_time_in_the_spring_gap_moves_forward_by_the_gap(self) -> None:
        # London skips 01:00-02:00 on 2027-03-28: "01:30" is read as 02:30 BST.
        moment = local_moment(datetime(2027, 3, 28).date(), time(1, 30), LONDON)
        assert moment == utc("2027-03-28T01:30:00")
        assert moment.astimezone(LONDON).hour == 2

    def test_subtract(self) -> None:
        whole = [Interval(utc("2026-11-23T09:00:00"), utc("2026-11-23T12:00:00"))]
        hole = [Interval(utc("2026-11-23T10:00:00"), utc("2026-11-23T11:00:00"))]
        assert [i.minutes for i in subtract(whole, hole)] == [60, 60]


class TestTransitions:
    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("proposed", "booked"),
            ("booked", "arrived"),
            ("arrived", "fulfilled"),
            ("booked", "cancelled"),
            ("noshow", "arrived"),
            ("waitlist", "pending"),
            ("cancelled", "entered-in-error"),
            ("booked", "booked"),
        ],
    )
    def test_allowed(self, old: str, new: str) -> None:
        check_transition(old, new)

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("cancelled", "booked"),
            ("fulfilled", "pending"),
            ("entered-in-error", "booked"),
            ("noshow", "fulfilled"),
        ],
    )
    def test_refused_with_422(self, old: str, new: str) -> None:
        with pytest.raises(AppError) as raised:
            check_transition(old, new)
        assert raised.value.status == 422


class TestRecurrence:
    def test_weekly_keeps_local_time_across_dst(self) -> None:
        first = Interval(utc("2026-10-19T08:00:00"), utc("2026-10-19T08:20:00"))  # 09:00 BST
        dates = occurrences("FREQ=WEEKLY;COUNT=3", first, CONFIG)
        assert [d.start for d in dates] == [
            utc("2026-10-19T08:00:00"),
            utc("2026-10-26T09:00:00"),
            utc("2026-11-02T09:00:00"),
        ]
        assert all(d.minutes == 20 for d in dates)

    def test_unbounded_rule_is_refused(self) -> None:
        first = Interval(utc("2026-10-19T08:00:00"), utc("2026-10-19T08:20:00"))
        with pytest.raises(AppError) as raised:
            occurrences("FREQ=DAILY", first, CONFIG)
        assert raised.value.status == 422


class TestReferences:
    def test_participants_skip_declined_and_optional_information(self) -> None:
        appointment = {
            "participant": [
                {"actor": {"reference": "Practitioner/1"}, "status": "accepted"},
                {"actor": {"reference": "http://x/fhir/Patient/2/_history/3"}, "status": "accepted"},
                {"actor": {"reference": "Location/3"}, "status": "declined"},
                {"actor": {"reference": "HealthcareService/4"}, "status": "accepted"},
                {"actor": {"reference": "Device/5"}, "status": "accepted", "required": "information-only"},
            ]
        }
        assert participant_refs(appointment) == ["Practitioner/1", "Patient/2"]

    def test_relative_reference(self) -> None:
        assert relative_reference("#contained") is None
        assert relative_reference("urn:uuid:123") is None
        assert relative_reference("Slot/abc") == "Slot/abc"

    def test_dates_without_time_are_whole_local_days(self) -> None:
        assert parse_moment("2026-11-23", LONDON) == utc("2026-11-23T00:00:00")
        assert parse_moment("2026-11-23", LONDON, end=True) == utc("2026-11-24T00:00:00")


class TestICalendar:
    def test_long_lines_fold_at_75_octets_without_splitting_characters(self) -> None:
        from pms.domains.scheduling.icalendar import escape, fold

        line = "SUMMARY:" + "复诊" * 40
        folded = fold(line)
        parts = folded.split("\r\n ")
        assert all(len(p.encode()) <= 75 for p in parts)
        assert "".join(parts) == line
        assert escape("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"


class TestChunks:
    def test_or_lists_split_below_the_limit(self) -> None:
        from pms.domains.scheduling.store import _chunks

        values = [f"Schedule/{n:040d}" for n in range(100)]
        chunks = _chunks(values, 500)
        assert [v for c in chunks for v in c] == values
        assert all(len(",".join(c)) <= 500 for c in chunks)


class TestVisitTypeCache:
    async def test_one_entry_per_visit_type_whoever_books(self) -> None:
        from typing import Any

        from pms.domains.scheduling import visit_types

        looked_up: list[str] = []

        async def lookup(_store: Any, appointment: Any) -> None:
            looked_up.append(appointment["participant"][0]["actor"]["reference"])

        cache = visit_types.VisitTypeCache()
        original = visit_types.appointment_visit_type
        visit_types.appointment_visit_type = lookup  # type: ignore[assignment]
        try:
            for patient in ("Patient/1", "Patient/2"):
                appointment = {
                    "participant": [{"actor": {"reference": patient}}],
                    "serviceType": [{"coding": [{"system": "s", "code": "follow-up"}]}],
                }
                await cache.of(None, appointment)  # type: ignore[arg-type]
        finally:
            visit_types.appointment_visit_type = original
        assert looked_up == ["Patient/1"]
