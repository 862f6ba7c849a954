"""Time intervals for scheduling: parsing FHIR dates in the clinic's zone, and interval arithmetic.

Every interval is half-open [start, end) in aware datetimes, so back-to-back visits do not overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pms.core.errors import AppError, Issue, unprocessable


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    start: datetime
    end: datetime

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end


def rule_broken(message: str, *, expression: str | None = None) -> AppError:
    """A write that breaks a scheduling rule (http.html#2.21.0.4: 422 for business rules)."""
    return unprocessable([Issue("business-rule", message, expression=(expression,) if expression else ())])


def parse_moment(value: str, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """A FHIR date, dateTime or instant as an aware datetime. A date without a time means the whole
    day in the clinic's zone: its start, or (for the end of a period) the start of the next day."""
    try:
        if len(value) == 4:
            day = date(int(value), 1, 1)
            return _day_start(date(day.year + 1, 1, 1) if end else day, zone)
        if len(value) == 7:
            year, month = int(value[:4]), int(value[5:7])
            if end:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            return _day_start(date(year, month, 1), zone)
        if len(value) == 10:
            day = date.fromisoformat(value)
            return _day_start(day + timedelta(days=1) if end else day, zone)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise rule_broken(f"'{value}' is not a date or time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return local_moment(day, time(0, 0), zone)


def local_moment(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant a wall clock in `zone` shows `clock` on `day`, in UTC. In the repeated autumn hour
    it is the first pass; a time the spring change skips (02:30) moves forward by the gap (03:30), as
    PEP 495's fold=0 defines."""
    return datetime.combine(day, clock).replace(tzinfo=zone, fold=0).astimezone(UTC)


def fhir_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping and touching intervals joined."""
    merged: list[Interval] = []
    for interval in sorted(intervals):
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def subtract(intervals: Iterable[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """The parts of `intervals` outside every hole."""
    result = merge(intervals)
    for hole in merge(holes):
        remaining: list[Interval] = []
        for interval in result:
            if not interval.overlaps(hole):
                remaining.append(interval)
                continue
            if interval.start < hole.start:
                remaining.append(Interval(interval.start, hole.start))
            if hole.end < interval.end:
                remaining.append(Interval(hole.end, interval.end))
        result = remaining
    return result


def local_days(window: Interval, zone: ZoneInfo) -> list[date]:
    """The clinic-local dates that the window touches."""
    first = window.start.astimezone(zone).date()
    last = (window.end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
