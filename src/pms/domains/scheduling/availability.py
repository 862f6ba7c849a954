"""When an actor works, from the R4 elements that say so, in the clinic's time zone.

- PractitionerRole and HealthcareService: `availableTime` (daysOfWeek, allDay, availableStartTime,
  availableEndTime) minus `notAvailable` (one-off absences, holidays);
- Location (rooms): `hoursOfOperation` (daysOfWeek, allDay, openingTime, closingTime).
Wall-clock hours are applied per local date, so 09:00-17:00 stays 09:00-17:00 across a DST change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pms.domains.scheduling.periods import Interval, local_days, local_moment, merge, parse_moment, subtract

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(value: Any, default: time) -> time:
    if not isinstance(value, str):
        return default
    return time.fromisoformat(value)


def _weekly_rules(resource: Mapping[str, Any]) -> list[tuple[frozenset[str], time, time | None]]:
    """(days, start, end) per rule; end None = until midnight."""
    if resource.get("resourceType") == "Location":
        entries, start_key, end_key = resource.get("hoursOfOperation") or (), "openingTime", "closingTime"
    else:
        entries, start_key, end_key = (
            resource.get("availableTime") or (),
            "availableStartTime",
            "availableEndTime",
        )
    rules: list[tuple[frozenset[str], time, time | None]] = []
    for entry in entries:
        days = frozenset(entry.get("daysOfWeek") or WEEKDAYS)
        if entry.get("allDay"):
            rules.append((days, time(0, 0), None))
            continue
        start = _clock(entry.get(start_key), time(0, 0))
        end_value = entry.get(end_key)
        end = None if end_value in (None, "24:00:00") else _clock(end_value, time(0, 0))
        rules.append((days, start, end))
    return rules


def absences(resource: Mapping[str, Any], zone: ZoneInfo) -> list[Interval]:
    """`notAvailable[].during` periods (an absence without an end lasts until further notice)."""
    holes = []
    for entry in resource.get("notAvailable") or ():
        during = entry.get("during") or {}
        start = during.get("start")
        end = during.get("end")
        lower = parse_moment(start, zone) if start else parse_moment("1900-01-01", zone)
        upper = parse_moment(end, zone, end=True) if end else parse_moment("9999-01-01", zone)
        if upper > lower:
            holes.append(Interval(lower, upper))
    return holes


def defines_hours(resource: Mapping[str, Any]) -> bool:
    return bool(_weekly_rules(resource))


def working_intervals(
    resources: Iterable[Mapping[str, Any]], window: Interval, zone: ZoneInfo
) -> list[Interval]:
    """The time inside `window` when the actor works: the union of the weekly hours of the resources that
    define any, minus all their absences."""
    open_times: list[Interval] = []
    holes: list[Interval] = []
    for resource in resources:
        holes.extend(absences(resource, zone))
        for day in local_days(window, zone):
            weekday = WEEKDAYS[day.weekday()]
            for days, start, end in _weekly_rules(resource):
                if weekday not in days:
                    continue
                lower = local_moment(day, start, zone)
                upper = (
                    local_moment(day + timedelta(days=1), time(0, 0), zone)
                    if end is None
                    else local_moment(day, end, zone)
                )
                if upper > lower:
                    open_times.append(Interval(max(lower, window.start), min(upper, window.end)))
    return [i for i in subtract(merge(open_times), holes) if i.end > i.start]


def cut_slots(intervals: Iterable[Interval], minutes: int) -> list[Interval]:
    """Whole slots of `minutes` from the start of each working interval (a remainder is not bookable)."""
    step = timedelta(minutes=minutes)
    slots = []
    for interval in intervals:
        start = interval.start
        while start + step <= interval.end:
            slots.append(Interval(start, start + step))
            start += step
    return slots
