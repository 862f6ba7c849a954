"""Scheduling at clinic scale: 50 practitioners, 4 weeks of availability, 70% booked.

Prints (and writes to bench/results/scheduling.json):
- set-up: Schedules created (their Slots materialised in the same transaction), Slots per second;
- bookings: `$book` throughput and latency while filling the calendar to ~70% (target >= 200/s);
- free-slot search: `Slot?schedule.actor=Practitioner/X&status=free&start=ge..&start=lt..` for one
  practitioner and day (target p95 < 100 ms);
- `$find` across all practitioners for a visit type (target p95 < 250 ms).

Run: `.venv/bin/python bench/scheduling_bench.py` (about 5 minutes). It makes its own database, starts
`pms serve --workers 2`, and stops and drops everything at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from resource import RUSAGE_CHILDREN, RUSAGE_SELF, getrusage
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from benchlib import (
    ROOT,
    BenchError,
    Server,
    admin_execute,
    create_database,
    drop_database,
    finish_py_spy,
    install_sigterm_handler,
    log,
    migrate,
    percentile,
    pms_server,
    register_client,
    run_wrk,
    start_py_spy,
    wait_for_quiet,
    with_database,
    worker_pids,
)

ZONE = ZoneInfo("America/New_York")
SYSTEM = "https://pms.example.org/fhir/CodeSystem/visit-type"
EXT = "https://pms.example.org/fhir/StructureDefinition"
SLOT_MINUTES = 20
DAY_SLOTS = 24  # 09:00-17:00
HORIZON_DAYS = 28
BODIES_SCRIPT = ROOT / "bench" / "wrk" / "bodies.lua"
BOOKING_TIMEOUT_S = 900


@dataclass
class Latencies:
    name: str
    seconds: list[float]
    failures: int
    wall: float

    def summary(self) -> dict[str, float]:
        ms = [s * 1000 for s in self.seconds]
        return {
            "requests": len(ms),
            "failures": self.failures,
            "per_second": round(len(ms) / self.wall, 1) if self.wall else 0.0,
            "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1),
            "max_ms": round(max(ms), 1) if ms else 0.0,
        }


async def drive(name: str, calls: list[Callable[[], Awaitable[bool]]], *, concurrency: int) -> Latencies:
    """Run the calls `concurrency` at a time; latency of each, and how many failed."""
    queue = list(reversed(calls))
    seconds: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            call = queue.pop()
            began = time.perf_counter()
            ok = await call()
            seconds.append(time.perf_counter() - began)
            failures += 0 if ok else 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Latencies(name, seconds, failures, time.perf_counter() - began)


def book_with_wrk(server: Server, plan: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """POST every planned visit to `$book` once, `concurrency` at a time, from wrk (bench/wrk/bodies.lua):
    a load generator in C leaves the two CPUs to the server and PostgreSQL (an httpx client here took
    1.1 ms of CPU per booking, an eighth of what the server and PostgreSQL spent; wrk takes 0.1 ms)."""
    with tempfile.NamedTemporaryFile("w", prefix="pms-bench-book-", suffix=".jsonl", delete=False) as file:
        file.writelines(json.dumps(body, separators=(",", ":")) + "\n" for body in plan)
        bodies = Path(file.name)
    try:
        result = run_wrk(
            server.url,
            BODIES_SCRIPT,
            ["/fhir/Appointment/$book", str(bodies), "201", server.auth.bearer() or ""],
            connections=concurrency,
            seconds=BOOKING_TIMEOUT_S,
            threads=1,  # one list of bodies, each sent once
        )
    finally:
        bodies.unlink(missing_ok=True)
    if result.bodies_answered != len(plan):
        raise BenchError(f"$book: {result.bodies_answered} of {len(plan)} bookings answered in time")
    return {
        "requests": len(plan),
        "failures": result.non2xx,
        "per_second": round(len(plan) / result.duration_s, 1),
        "p50_ms": round(result.p50_ms, 1),
        "p95_ms": round(result.p95_ms, 1),
        "p99_ms": round(result.p99_ms, 1),
        **({"first_failure": result.sample} if result.sample else {}),
    }


def instant(day: date, minutes: int) -> str:
    local = datetime(day.year, day.month, day.day, 9, tzinfo=ZONE) + timedelta(minutes=minutes)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def visit_type(code: str, minutes: int) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "active": True,
        "name": code,
        "type": [{"coding": [{"system": SYSTEM, "code": code}]}],
        "extension": [
            {
                "url": f"{EXT}/visit-duration",
                "valueDuration": {"value": minutes, "code": "min", "system": "http://unitsofmeasure.org"},
            },
            {"url": f"{EXT}/online-booking", "valueBoolean": True},
        ],
    }


def practitioner_bundle(number: int, services: list[str]) -> dict[str, Any]:
    person, role = f"urn:uuid:{os.urandom(16).hex()}", f"urn:uuid:{os.urandom(16).hex()}"
    entries = [
        ({"resourceType": "Practitioner", "name": [{"family": f"Bench{number}"}]}, person),
        (
            {
                "resourceType": "PractitionerRole",
                "active": True,
                "practitioner": {"reference": person},
                "healthcareService": [{"reference": f"HealthcareService/{s}"} for s in services],
                "availableTime": [
                    {
                        "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                        "availableStartTime": "09:00:00",
                        "availableEndTime": "17:00:00",
                    }
                ],
            },
            role,
        ),
        (
            {
                "resourceType": "Schedule",
                "actor": [{"reference": role}, {"reference": person}],
                "extension": [{"url": f"{EXT}/slot-minutes", "valuePositiveInt": SLOT_MINUTES}],
            },
            f"urn:uuid:{os.urandom(16).hex()}",
        ),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for resource, url in entries
        ],
    }


def working_days(first: date) -> list[date]:
    days = [first + timedelta(days=n) for n in range(HORIZON_DAYS)]
    return [d for d in days if d.weekday() < 5]


def booking_plan(
    practitioners: list[str], patients: list[str], days: list[date], fill: float, rng: random.Random
) -> list[dict[str, Any]]:
    """Visits filling about `fill` of every practitioner's slots: 3 in 4 are 20-minute follow-ups, the
    rest 40-minute new-patient visits. Patients are drawn per practitioner column, so nobody is in two
    places at once."""
    visits = []
    columns = len(practitioners)
    for column, practitioner in enumerate(practitioners):
        for day in days:
            index = 0
            while index < DAY_SLOTS:
                length = 2 if rng.random() < 0.25 and index + 1 < DAY_SLOTS else 1
                if rng.random() < fill:
                    patient = patients[column + columns * rng.randrange(len(patients) // columns)]
                    code = "new-patient" if length == 2 else "follow-up"
                    visits.append(
                        {
                            "resourceType": "Appointment",
                            "status": "booked",
                            "serviceType": [{"coding": [{"system": SYSTEM, "code": code}]}],
                            "start": instant(day, index * SLOT_MINUTES),
                            "end": instant(day, (index + length) * SLOT_MINUTES),
                            "participant": [
                                {
                                    "actor": {"reference": f"Practitioner/{practitioner}"},
                                    "status": "accepted",
                                },
                                {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
                            ],
                        }
                    )
                index += length
    rng.shuffle(visits)
    return visits


def location_id(entry: dict[str, Any]) -> str:
    """The id in a transaction-response entry's location (`[base/]Type/id/_history/n`)."""
    path = entry["response"]["location"].split("/_history/")[0]
    return str(path.rsplit("/", 1)[1])


async def post(http: httpx.AsyncClient, server: Server, path: str, body: dict[str, Any], expect: int) -> Any:
    response = await http.post(path, json=body, headers=server.auth.headers())
    if response.status_code != expect:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    return response.json()


async def analyze(database_url: str) -> None:
    """What autovacuum keeps up in a clinic whose schedules exist for weeks: planner statistics (straight
    after a bulk load they are empty and every plan is a guess), and the visibility map and hint bits
    (without them index-only scans read the heap, and the first reader of each page sets its hint bits).
    Run by hand because the machine's own PostgreSQL has autovacuum off."""
    await admin_execute(database_url, "VACUUM ANALYZE")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still running."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return found


async def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends connected to this database (the server's pool)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


def load_generator_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that ended (wrk, once run_wrk has waited for it)."""
    own, children = getrusage(RUSAGE_SELF), getrusage(RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """CPU time the server's processes and this database's PostgreSQL backends spend during a phase: less
    sensitive to a busy neighbour than throughput is. The load generator (this process and the children it
    waited for: wrk) is counted apart, as it shares the machine's CPUs with what it measures. Sampled every
    half second, as the pool closes some connections (and their backends end) on the way."""

    def __init__(self, server: Server, database_url: str) -> None:
        self.server = server
        self.database_url = database_url
        self.initial: dict[str, dict[int, float]] = {}
        self.last: dict[str, dict[int, float]] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._load_generator = 0.0

    async def _sample(self) -> dict[str, dict[int, float]]:
        pids = {
            "server": [self.server.process.pid, *worker_pids(self.server)],
            "postgres": await backend_pids(self.database_url),
        }
        found = {name: cpu_seconds(ids) for name, ids in pids.items()}
        for name, seconds in found.items():
            self.last.setdefault(name, {}).update(seconds)
        return found

    async def _keep_sampling(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self._sample()

    async def start(self) -> None:
        self.initial = await self._sample()
        self._load_generator = load_generator_cpu_seconds()
        self._sampler = asyncio.create_task(self._keep_sampling())

    async def per_request_ms(self, requests: int) -> dict[str, float]:
        """Stop sampling; CPU milliseconds per request, by kind of process (a process that started
        during the phase counts whole)."""
        if self._sampler is not None:
            self._sampler.cancel()
        await self._sample()
        spent: dict[str, float] = {}
        for name, last in self.last.items():
            initial = self.initial.get(name, {})
            seconds = sum(t - initial.get(pid, 0.0) for pid, t in last.items())
            spent[f"{name}_cpu_ms"] = round(1000 * seconds / max(1, requests), 2)
        generator = load_generator_cpu_seconds() - self._load_generator
        spent["load_generator_cpu_ms"] = round(1000 * generator / max(1, requests), 2)
        return spent


def start_profiles(
    server: Server, folder: Path | None, name: str, *, seconds: float
) -> dict[int, tuple[subprocess.Popen[bytes], Path]]:
    """py-spy on every server worker for about `seconds` (none without `--profile`)."""
    if folder is None:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    return {
        pid: (
            start_py_spy(pid, seconds, folder / f"pyspy-{name}-{pid}.txt"),
            folder / f"pyspy-{name}-{pid}.txt",
        )
        for pid in worker_pids(server)
    }


async def run_bench(server: Server, args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    rng = random.Random(11)
    results: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=f"{server.url}/fhir", timeout=120, limits=limits) as http:
        services = [
            (await post(http, server, "/HealthcareService", visit_type(code, minutes), 201))["id"]
            for code, minutes in (("follow-up", 20), ("new-patient", 40))
        ]
        began = time.perf_counter()
        practitioners = []
        for number in range(args.practitioners):
            result = await post(http, server, "", practitioner_bundle(number, services), 200)
            practitioners.append(location_id(result["entry"][0]))
        setup = time.perf_counter() - began
        slots = (await http.get("/Slot", params={"_summary": "count"}, headers=server.auth.headers())).json()[
            "total"
        ]
        results["setup"] = {
            "schedules": len(practitioners),
            "slots": slots,
            "seconds": round(setup, 1),
            "slots_per_second": round(slots / setup, 1),
        }
        log(f"set-up: {len(practitioners)} schedules, {slots} slots in {setup:.1f}s")

        patients: list[str] = []
        for start in range(0, args.patients, 500):
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient", "name": [{"family": f"Bench{n}"}]},
                        "request": {"method": "POST", "url": "Patient"},
                    }
                    for n in range(start, min(args.patients, start + 500))
                ],
            }
            result = await post(http, server, "", bundle, 200)
            patients += [location_id(e) for e in result["entry"]]

        await analyze(database_url)
        first = (datetime.now(ZONE) + timedelta(days=1)).date()
        days = working_days(first)
        plan = booking_plan(practitioners, patients, days, args.fill, rng)

        if args.wait_quiet:
            quiet = await asyncio.to_thread(wait_for_quiet, args.wait_quiet)
            log(f"machine load before the bookings: {quiet:.0f}% CPU; {os.getloadavg()[0]:.1f} load average")
        spies = start_profiles(server, args.profile, "book", seconds=len(plan) / 150)
        meter = CpuMeter(server, database_url)
        await meter.start()
        booked = await asyncio.to_thread(book_with_wrk, server, plan, args.concurrency)
        results["book"] = {**booked, **await meter.per_request_ms(len(plan))}
        log(f"$book: {results['book']}")
        for pid, (spy, out) in spies.items():
            log(f"py-spy of worker {pid} during $book ({out}):\n{finish_py_spy(spy, out)}")
        if args.book_only:
            return results
        await analyze(database_url)

        def slot_search() -> Callable[[], Awaitable[bool]]:
            practitioner, day = rng.choice(practitioners), rng.choice(days)
            params = {
                "schedule.actor": f"Practitioner/{practitioner}",
                "status": "free",
                "start": [f"ge{day.isoformat()}", f"lt{(day + timedelta(days=1)).isoformat()}"],
            }

            async def call() -> bool:
                response = await http.get("/Slot", params=params, headers=server.auth.headers())
                return response.status_code == 200

            return call

        for clients in (1, 8):
            searches = await drive(
                "slot-search", [slot_search() for _ in range(args.queries)], concurrency=clients
            )
            results[f"free_slot_search_c{clients}"] = searches.summary()
            log(f"free-slot search, {clients} client(s): {searches.summary()}")

        def find() -> Callable[[], Awaitable[bool]]:
            day = rng.choice(days)
            code = rng.choice(("follow-up", "new-patient"))
            body = {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "visit-type", "valueString": code},
                    {"name": "start", "valueDateTime": day.isoformat()},
                    {"name": "end", "valueDateTime": (day + timedelta(days=7)).isoformat()},
                ],
            }

            async def call() -> bool:
                response = await http.post("/Appointment/$find", json=body, headers=server.auth.headers())
                return response.status_code == 200 and bool(response.json().get("entry"))

            return call

        for clients in (1, 8):
            finds = await drive("find", [find() for _ in range(args.queries)], concurrency=clients)
            results[f"find_c{clients}"] = finds.summary()
            log(f"$find, {clients} client(s): {finds.summary()}")
        free = (
            await http.get(
                "/Slot", params={"status": "free", "_summary": "count"}, headers=server.auth.headers()
            )
        ).json()["total"]
        results["booked_fraction"] = round(1 - free / slots, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--practitioners", type=int, default=50)
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--fill", type=float, default=0.7, help="fraction of slots to book (0.7)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent $book clients (16)")
    parser.add_argument("--queries", type=int, default=400, help="searches and $finds each (400)")
    parser.add_argument(
        "--book-only", action="store_true", help="stop after the bookings (no searches, no $find)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before the bookings, wait up to this long for other processes to leave the CPUs idle",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy every server worker during the bookings: raw stacks to DIR, a summary to the log",
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the database for inspection (its name is logged)"
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PMS_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    install_sigterm_handler()
    name = create_database(args.admin_url, "pms_schedbench")
    try:
        url = with_database(args.admin_url, name)
        migrate(url)
        client = register_client(url, "schedbench")
        os.environ.update({"PMS_CLINIC_TIMEZONE": str(ZONE), "PMS_SLOT_HORIZON_DAYS": str(HORIZON_DAYS)})
        with pms_server(url, workers=2, client=client) as server:
            results = asyncio.run(run_bench(server, args, url))
    finally:
        if args.keep_database:
            log(f"kept database {name}")
        else:
            drop_database(args.admin_url, name)
    # The issue gives latency targets without a load: one client is the latency of a request, eight
    # concurrent clients (on this 2-core machine) adds the queueing of a busy front desk. Both are printed.
    targets = {
        "book": ("per_second", ">=", 200),
        "free_slot_search_c1": ("p95_ms", "<", 100),
        "free_slot_search_c8": ("p95_ms", "<", 100),
        "find_c1": ("p95_ms", "<", 250),
        "find_c8": ("p95_ms", "<", 250),
    }
    if args.book_only:
        print(f"book: {results['book']}; set-up: {results['setup']}")
        return
    for key, (field, op, target) in targets.items():
        value = results[key][field]
        met = value >= target if op == ">=" else value < target
        print(f"{key:20} {field} {value:>8} (target {op} {target}) {'PASS' if met else 'MISS'}")
    print(f"set-up: {results['setup']}; booked fraction {results['booked_fraction']}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    Path(out / "scheduling.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
