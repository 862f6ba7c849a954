"""The scheduling rules as the repository's write hooks, built from the app's settings."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pms.config import Settings
from pms.domains.scheduling.appointments import AppointmentRules, FreedTime
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.slots import AvailabilityHook
from pms.storage.hooks import WriteHook


def scheduling_config(settings: Settings) -> SchedulingConfig:
    return SchedulingConfig(
        zone=ZoneInfo(settings.clinic_timezone),
        slot_minutes=settings.slot_minutes,
        horizon_days=settings.slot_horizon_days,
        telehealth_url_template=settings.telehealth_url_template,
        self_booking_max_upcoming=settings.self_booking_max_upcoming,
        self_booking_max_per_day=settings.self_booking_max_per_day,
    )


def scheduling_hooks(config: SchedulingConfig, *, on_freed: FreedTime | None = None) -> list[WriteHook]:
    return [AppointmentRules(config, on_freed=on_freed), AvailabilityHook(config)]
