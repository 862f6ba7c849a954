"""Scheduling settings, resolved once at start-up from the app's Settings."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class SchedulingConfig:
    zone: ZoneInfo  # the clinic's time zone: working hours are wall-clock times there
    slot_minutes: int  # default Slot length when a Schedule does not say (slot-minutes extension)
    horizon_days: int  # how far ahead Slots are materialised
    telehealth_url_template: str  # `{appointment_id}` and `{secret}` are filled in
    self_booking_max_upcoming: int  # a patient's own future bookings at once
    self_booking_max_per_day: int  # Appointments a patient may create in 24 hours
