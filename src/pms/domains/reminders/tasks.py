"""The reminder jobs run by the arq worker (src/pms/worker.py wires them in)."""

from __future__ import annotations

from typing import Any

from arq.cron import CronJob, cron

from pms.config import Settings
from pms.core.db import Database
from pms.domains.reminders.channels import senders
from pms.domains.reminders.links import load_signer
from pms.domains.reminders.outbox import deliver_outbox
from pms.domains.reminders.sweep import ReminderConfig, Reminders, sweep
from pms.fhir.validation import validate_resource
from pms.storage.registry_provider import RegistryProvider


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    db: Database = ctx["db"]
    async with db.transaction() as conn:
        signer = await load_signer(conn, settings.link_secret)
    ctx["reminders"] = Reminders(
        db=db,
        registry_provider=RegistryProvider(ttl=settings.search_registry_ttl),
        validator=validate_resource,
        config=ReminderConfig.from_settings(settings),
        signer=signer,
        senders=senders(settings),
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    reminders: Reminders | None = ctx.get("reminders")
    if reminders is not None:
        for sender in reminders.senders.values():
            await sender.close()


async def reminder_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Send the reminders due now; safe to run concurrently and repeatedly (see ledger.py)."""
    report = await sweep(ctx["reminders"])
    return report.as_dict()


async def outbox(ctx: dict[str, Any]) -> dict[str, int]:
    """Deliver the Communications other flows queued (waitlist offers, alerts); see outbox.py."""
    report = await deliver_outbox(ctx["reminders"])
    return report.as_dict()


FUNCTIONS = [reminder_sweep, outbox]


def cron_jobs(settings: Settings) -> list[CronJob]:
    # Named after the queue: arq's cron job ids are global in Redis, and deployments may share one.
    return [
        cron(reminder_sweep, name=f"{settings.queue_name}:reminder-sweep", second=0, timeout=600),
        cron(outbox, name=f"{settings.queue_name}:outbox", second=15, timeout=300),
    ]
