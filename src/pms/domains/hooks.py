"""Every domain's write hooks, for whoever opens a unit of work (the API, the worker, the CLI)."""

from __future__ import annotations

from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.periods import Interval
from pms.domains.scheduling.wiring import scheduling_hooks
from pms.storage.hooks import WriteHooks
from pms.storage.repository import FhirRepository

OFFER_FREED_TIME = "offer_freed_time"  # the worker's job (worker.py)


async def offer_freed_time_after_commit(
    repo: FhirRepository, appointment_id: str, freed: Interval, actors: list[str]
) -> None:
    """Freed time goes to the waitlist in a job, sent only if the write that freed it commits."""
    repo.jobs.enqueue(OFFER_FREED_TIME, freed.start.isoformat(), freed.end.isoformat(), actors)


def write_hooks(scheduling: SchedulingConfig) -> WriteHooks:
    return WriteHooks(scheduling_hooks(scheduling, on_freed=offer_freed_time_after_commit))
