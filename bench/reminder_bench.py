"""Reminder sweep over N upcoming appointments (default 10,000; target: under 30 s).

Makes a throwaway database, loads N patients (half English, half Chinese; each with an email address and
a mobile number) and N booked appointments starting within the next two hours (so every one is due for
its 2 h reminder), then times one `sweep()`: 2N messages to a local SMTP server (aiosmtpd, a process of
its own) and a local Twilio-style SMS endpoint (a process of its own), with a Communication recorded for
each. A second sweep right after measures the steady state (everything already sent: the cost of the
every-minute cron when there is nothing to do).

    .venv/bin/python bench/reminder_bench.py [--appointments 10000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import uvloop
from benchlib import (
    DEFAULT_ADMIN_URL,
    admin_execute,
    busy_cpu_seconds,
    create_database,
    drop_database,
    free_port,
    install_sigterm_handler,
    log,
    migrate,
    require_local,
    stop_process_group,
    wait_for_quiet,
    with_database,
)
from sqlalchemy import text

from pms.config import Settings
from pms.core.db import Database
from pms.domains.reminders.channels import senders
from pms.domains.reminders.links import load_signer
from pms.domains.reminders.sweep import ReminderConfig, Reminders, sweep
from pms.fhir.validation import validate_resource
from pms.storage.indexer import Indexer
from pms.storage.registry_provider import RegistryProvider, load_registry
from pms.storage.repository import FhirRepository, new_id

TARGET_SECONDS = 30.0
LOAD_BATCH = 1000


# -- the SMS provider stand-in: a minimal HTTP/1.1 keep-alive server, run as its own process ----------------


async def _sms_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    served = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            served += 1
            body = b'{"sid":"SM%032d","status":"queued"}' % served
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def sms_stand_in(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_sms_connection, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def stand_ins() -> Iterator[tuple[int, int]]:
    """(smtp port, sms port), each served by a process of its own."""
    smtp_port, sms_port = free_port(), free_port()
    smtp = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{smtp_port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        start_new_session=True,
    )
    sms = subprocess.Popen(
        [sys.executable, __file__, "--sms-stand-in", str(sms_port)], start_new_session=True
    )
    try:
        for port in (smtp_port, sms_port):
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stand-in on port {port} did not start")
                time.sleep(0.1)
        yield smtp_port, sms_port
    finally:
        stop_process_group(smtp)
        stop_process_group(sms)


# -- data ---------------------------------------------------------------------------------------------------


def _patient(i: int) -> dict[str, Any]:
    language = "zh-CN" if i % 2 else "en"
    return {
        "resourceType": "Patient",
        "name": [{"family": f"Bench{i}", "given": ["Pat"]}],
        "telecom": [
            {"system": "email", "value": f"patient{i}@bench.test"},
            {"system": "phone", "use": "mobile", "value": f"+1555{i:07d}"},
        ],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}}],
    }


def _appointment(patient_id: str, start: datetime) -> dict[str, Any]:
    end = start + timedelta(minutes=15)
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "needs-action"},
            {"actor": {"reference": "Practitioner/bench", "display": "Dr. Bench"}, "status": "accepted"},
        ],
    }


async def load(db: Database, count: int, now: datetime) -> None:
    for first in range(0, count, LOAD_BATCH):
        async with db.transaction() as conn:
            repo = FhirRepository(
                conn, validator=validate_resource, indexer=Indexer(await load_registry(conn))
            )
            for i in range(first, min(count, first + LOAD_BATCH)):
                patient_id = new_id()
                await repo.create(_patient(i), id_=patient_id)
                start = now + timedelta(minutes=10) + timedelta(seconds=(i * 7200 // count) % 6600)
                await repo.create(_appointment(patient_id, start))
            await repo.flush()
        log(f"loaded {min(count, first + LOAD_BATCH)} patients + appointments")


async def bench(args: argparse.Namespace, database_url: str, smtp_port: int, sms_port: int) -> bool:
    settings = Settings(
        DATABASE_URL=database_url,
        smtp_host="127.0.0.1" if "email" in args.channels else None,
        smtp_port=smtp_port,
        smtp_tls="none",
        sms_base_url=f"http://127.0.0.1:{sms_port}" if "sms" in args.channels else None,
        sms_account_sid="ACbench",
        sms_auth_token="bench",
        sms_from="+15550000000",
        reminder_concurrency=args.concurrency,
        db_pool_size=10,
    )
    db = await Database.open(settings)
    try:
        now = datetime.now(UTC)
        started = time.monotonic()
        await load(db, args.appointments, now)
        log(f"load: {time.monotonic() - started:.1f} s")
        # What autovacuum does minutes after a bulk load in a clinic's database; this machine's PostgreSQL
        # runs with it off, and without statistics the sweep's sorted date search re-plans blind (2-8 s a
        # page: 33 s for a sweep with nothing due, against 3-4 s analyzed).
        await admin_execute(database_url, "VACUUM ANALYZE")
        async with db.transaction() as conn:
            signer = await load_signer(conn, None)
        reminders = Reminders(
            db=db,
            registry_provider=RegistryProvider(ttl=60),
            validator=validate_resource,
            config=ReminderConfig.from_settings(settings),
            signer=signer,
            senders=senders(settings),
        )
        try:
            if args.wait_quiet:
                log(f"machine {wait_for_quiet(args.wait_quiet):.0f}% busy before the sweep")
            started, cpu, machine = time.monotonic(), time.process_time(), busy_cpu_seconds()
            report = await sweep(reminders, now=now)
            first = time.monotonic() - started
            first_cpu, machine_cpu = time.process_time() - cpu, busy_cpu_seconds() - machine
            started = time.monotonic()
            idle = await sweep(reminders, now=now + timedelta(minutes=1))
            second = time.monotonic() - started
        finally:
            for sender in reminders.senders.values():
                await sender.close()
        async with db.reader() as conn:
            ledger = dict(
                (
                    await conn.execute(text("SELECT status, count(*) FROM reminder_delivery GROUP BY status"))
                ).all()
            )
    finally:
        await db.dispose()
    messages = report.sent + report.failed
    passed = first < TARGET_SECONDS and report.sent == len(args.channels.split(",")) * args.appointments
    print()
    print(f"appointments due            {report.appointments:>10,}")
    print(
        f"messages sent ({args.channels:<9})  {report.sent:>10,}   "
        f"failed {report.failed}, retrying {report.retrying}"
    )
    print(f"ledger                      {ledger}")
    print(
        f"first sweep                 {first:>10.2f} s   {messages / first:,.0f} messages/s   "
        f"target < {TARGET_SECONDS:.0f} s: {'PASS' if passed else 'MISS'}"
    )
    print(
        f"  CPU: the sweep's process {first_cpu:.1f} s; the whole machine {machine_cpu:.1f} s of "
        f"{first * (os.cpu_count() or 1):.1f} s on {os.cpu_count()} cores (stand-ins, PostgreSQL, neighbours)"
    )
    print(f"second sweep (nothing due)  {second:>10.2f} s   sent {idle.sent}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appointments", type=int, default=10_000)
    parser.add_argument(
        "--concurrency", type=int, default=50, help="messages in flight (PMS_REMINDER_CONCURRENCY)"
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=60, help="wait up to this long for an idle machine (0: don't)"
    )
    parser.add_argument("--channels", default="email,sms", help="which to send: email, sms or both")
    parser.add_argument("--admin-url", default=os.environ.get("PMS_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--sms-stand-in", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sms_stand_in:
        sms_stand_in(args.sms_stand_in)
        return 0
    install_sigterm_handler()
    require_local(args.admin_url)
    name = create_database(args.admin_url, "pms_bench_reminders")
    try:
        database_url = with_database(args.admin_url, name)
        migrate(database_url)
        with stand_ins() as (smtp_port, sms_port):
            # The event loop `pms worker` runs on (uvloop, as the API does).
            return 0 if uvloop.run(bench(args, database_url, smtp_port, sms_port)) else 1
    finally:
        drop_database(args.admin_url, name)


if __name__ == "__main__":
    sys.exit(main())
