"""The arq worker (`pms worker`): runs the domains' jobs and crons. The only module that imports every
domain's `tasks.py`.

`WorkerSettings` is also usable with arq's own CLI (`arq pms.worker.WorkerSettings`); `pms worker` builds
the same options from the Settings it was given (so tests can pass a queue name of their own).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from arq.cron import CronJob, cron
from arq.worker import Worker, func

from pms.config import Settings, get_settings
from pms.core.db import Database
from pms.core.queue import JobQueue, heartbeat_key, redis_settings
from pms.domains.hooks import OFFER_FREED_TIME, write_hooks
from pms.domains.reminders import tasks as reminder_tasks
from pms.domains.scheduling.tasks import SchedulingJobs
from pms.domains.scheduling.wiring import scheduling_config
from pms.fhir.validation import validate_resource
from pms.storage.audit_backlog import AuditBacklog
from pms.storage.identity import KeyCache
from pms.storage.links import LinkSigner
from pms.storage.registry_provider import RegistryProvider
from pms.storage.units import SystemUnits

HEARTBEAT_TTL = 300  # seconds; /health calls the worker down after 90 s without a beat


async def heartbeat(ctx: dict[str, Any]) -> None:
    """Refresh the key `/health` reads to tell whether a worker is alive."""
    redis: ArqRedis = ctx["redis"]
    settings: Settings = ctx["settings"]
    await redis.set(heartbeat_key(settings.queue_name), datetime.now(UTC).isoformat(), ex=HEARTBEAT_TTL)


async def audit_catch_up(ctx: dict[str, Any]) -> int:
    """Move the reads' audit records into the store as searchable AuditEvents (storage/audit_backlog.py),
    so that the next AuditEvent search finds little left to do."""
    return await AuditBacklog.catch_up_store(ctx["db"], ctx["registry_provider"])


# -- scheduling (domains/scheduling/tasks.py): the waitlist -----------------------------------------------


async def offer_freed_time(ctx: dict[str, Any], start: str, end: str, actors: list[str]) -> str | None:
    """Offer time an Appointment write gave back to the best waitlisted patient (domains/hooks.py)."""
    jobs: SchedulingJobs = ctx["scheduling"]
    offer = await jobs.offer_freed_time(datetime.fromisoformat(start), datetime.fromisoformat(end), actors)
    return None if offer is None else str(offer.offer_id)


async def expire_waitlist_offers(ctx: dict[str, Any]) -> int:
    """Cancel the holds of offers nobody answered in time (each frees the time for the next one)."""
    jobs: SchedulingJobs = ctx["scheduling"]
    return await jobs.expire_offers()


async def extend_slot_horizons(ctx: dict[str, Any]) -> int:
    """Daily: Slots for the days entering every active Schedule's horizon (PMS_SLOT_HORIZON_DAYS)."""
    jobs: SchedulingJobs = ctx["scheduling"]
    return await jobs.extend_horizons()


def _scheduling_jobs(
    settings: Settings, db: Database, queue: JobQueue, registry_provider: RegistryProvider
) -> SchedulingJobs:
    config = scheduling_config(settings)
    units = SystemUnits(
        db,
        validator=validate_resource,
        registry_provider=registry_provider,
        hooks=write_hooks(config),
        queue=queue,  # a job's writes can free time again (an expired hold): that is a job too
    )
    return SchedulingJobs(
        units=units,
        config=config,
        links=LinkSigner(KeyCache(db), settings),
        hold_minutes=settings.waitlist_hold_minutes,
    )


# -- lifecycle ----------------------------------------------------------------------------------------------


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["db"] = db = await Database.open(settings)
    ctx["registry_provider"] = provider = RegistryProvider(ttl=settings.search_registry_ttl)
    ctx["queue"] = queue = JobQueue(settings.redis_url or "", queue_name=settings.queue_name)
    ctx["scheduling"] = _scheduling_jobs(settings, db, queue, provider)
    await reminder_tasks.startup(ctx)
    await heartbeat(ctx)


async def shutdown(ctx: dict[str, Any]) -> None:
    await reminder_tasks.shutdown(ctx)
    queue: JobQueue | None = ctx.get("queue")
    if queue is not None:
        await queue.close()
    db: Database | None = ctx.get("db")
    if db is not None:
        await db.dispose()


def functions() -> list[Any]:
    return [func(offer_freed_time, name=OFFER_FREED_TIME), *reminder_tasks.FUNCTIONS]


def cron_jobs(settings: Settings) -> list[CronJob]:
    beat = cron(
        heartbeat,
        name=f"{settings.queue_name}:heartbeat",
        second={0, 30},
        unique=False,  # every worker beats
        run_at_startup=False,
        keep_result=0,
    )
    expire = cron(
        expire_waitlist_offers, name=f"{settings.queue_name}:expire-waitlist-offers", second=30, timeout=300
    )
    horizons = cron(
        extend_slot_horizons,
        name=f"{settings.queue_name}:extend-slot-horizons",
        hour=2,
        minute=17,
        second=0,
        timeout=1800,
    )  # a quiet hour (the worker's local time); it redoes the last two days, so a missed run loses nothing
    audit = cron(audit_catch_up, name=f"{settings.queue_name}:audit-catch-up", second={15, 45}, timeout=600)
    return [beat, expire, horizons, audit, *reminder_tasks.cron_jobs(settings)]


def worker_options(settings: Settings) -> dict[str, Any]:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (`pms worker` starts an embedded Redis when it is unset)")
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    return {
        "functions": functions(),
        "cron_jobs": cron_jobs(settings),
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": settings.queue_name,
        "health_check_key": f"{settings.queue_name}:health-check",
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "max_jobs": 10,
        "job_timeout": 600,
    }


async def run(settings: Settings, *, burst: bool = False, handle_signals: bool = True) -> None:
    """Run a worker until stopped (SIGINT/SIGTERM), or until the queue is empty with `burst`."""
    worker = Worker(**worker_options(settings), burst=burst, handle_signals=handle_signals)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # arq's signal handler cancels its main task: a requested stop. Our own cancellation propagates.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    finally:
        await worker.close()


def main(settings: Settings) -> int:
    asyncio.run(run(settings))
    return 0


class WorkerSettings:
    """For `arq pms.worker.WorkerSettings`: the same options, from the environment."""

    _settings = get_settings()
    functions = functions()
    cron_jobs = cron_jobs(_settings) if _settings.redis_url and _settings.database_url else []
    redis_settings = redis_settings(_settings.redis_url) if _settings.redis_url else None
    queue_name = _settings.queue_name
    on_startup = startup
    on_shutdown = shutdown
    ctx = {"settings": _settings}
