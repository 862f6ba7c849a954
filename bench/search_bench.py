"""Search at scale: write throughput with indexing on, then search latency and plans at ~1M resources.

One run, everything on 127.0.0.1, everything it starts stopped again (also on Ctrl-C / SIGTERM):

1. a fresh database `pms_searchbench_<random>`, migrated (`pms migrate`); `--keep` keeps it, `--reuse NAME`
   skips steps 1-3 and measures an already loaded one (migrated again: the checkout may have moved on);
2. `pms serve` (2 workers; a `pms client create` client_credentials token when the server wants one); the
   Synthea sample's hospital and practitioner Bundles once, then its 100 patient Bundles replicated with
   fresh ids through `POST /fhir` (transactions, `--concurrency` clients) until `--target` resources are
   stored. Each replica gets new uuids for every fullUrl of the Bundle (references follow), and `-NNNN`
   (replica number) appended to Patient family names and identifier values. The patient Bundles' own
   copies of the hospital/practitioner entries are left out, so that their `urn:uuid:` references
   resolve to the stored Organizations/Practitioners;
3. `--appointments` Appointments (booked, Practitioner + Patient actors, over three months) as
   transaction Bundles;
4. `--ingest-check` more patient Bundles on a machine as quiet as we can get (the bulk load shares the
   CPUs with whatever else runs), VACUUM ANALYZE, sizes (database, every table and index);
5. per query: wrk (-t2, `--connections`, `--duration` s, after `--warmup` s) on paths built from values
   sampled out of the loaded data (bench/wrk/search_paths.lua picks one at random per request); with
   `--profile`, py-spy on one server worker during the 32-connection run;
6. per query: the SQL the search engine runs (pms.storage.search.engine, the server's code) for one
   representative request, under EXPLAIN (ANALYZE, BUFFERS) with literal values, and the plan the
   server's prepared statement ends up with after repeated executions (auto_explain, bound parameters,
   PostgreSQL's custom/generic plan choice); a sequential scan of `resource` or a search_* table is a MISS.
   Also the write path's placeholder lookup (FhirRepository.types_by_id) of a Synthea-sized Bundle;
7. a markdown table and bench/results/search.json, with PASS/MISS against the targets.

Usage: .venv/bin/python bench/search_bench.py [--target 1000000] [--keep | --reuse NAME] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import httpx
import orjson
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    DEFAULT_ADMIN_URL,
    ROOT,
    Auth,
    BenchError,
    Server,
    Terminated,
    WrkResult,
    create_database,
    drop_database,
    finish_py_spy,
    install_sigterm_handler,
    log,
    migrate,
    pms_server,
    register_client,
    require_local,
    run_wrk,
    start_py_spy,
    wait_for_quiet,
    with_database,
    worker_pids,
)

from pms.core.db import SESSION_SETTINGS
from pms.fhir.search import parse_search
from pms.fhir.searchparams import default_registry
from pms.storage.indexer import Indexer
from pms.storage.repository import FhirRepository
from pms.storage.search.engine import SearchEngine

SYNTHEA = Path("/work/shared/synthea/synthea-r4-100.tar.gz")
WRK_SCRIPT = ROOT / "bench" / "wrk" / "search_paths.lua"
RESULTS = ROOT / "bench" / "results" / "search.json"
DB_PREFIX = "pms_searchbench"
FHIR_JSON = "application/fhir+json"
PRELUDE_PREFIXES = ("hospitalInformation", "practitionerInformation")
REPLICA_MARK = "~~pms-replica~~"
MAX_REPLICAS = 9_999  # suffixes are -0000..-9999: no suffix is a prefix of another
PATHS_PER_QUERY = 1_000
WRITE_CHECK = "write path: transaction placeholder lookup (types_by_id)"
WRITE_CHECK_IDS = 290  # fullUrls in an average Synthea patient Bundle
PREPARED_RUNS = 7  # PostgreSQL considers a generic plan from the 6th execution of a prepared statement
APPOINTMENT_BUNDLE = 500
APPOINTMENT_START = date(2026, 1, 5)
APPOINTMENT_DAYS = 90
PROGRESS_EVERY_S = 30.0
LOAD_TABLE = "searchbench_load"  # the load figures, kept in the bench database for --reuse
POST_ATTEMPTS = 3

# Targets (the brief): p95 at 1M resources and 32 connections; write throughput with indexing on.
MAX_P95_MS = 50.0
TARGET_CONNECTIONS = 32
CORE_INGEST_TARGET = 1_000.0  # resources/s, bench/fhir_core_bench.py's transaction ingest target
MIN_INGEST_SHARE = 0.70

UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SLOT_RE = re.compile(UUID_RE.pattern + b"|" + re.escape(REPLICA_MARK.encode()))
SEQ_SCAN_RE = re.compile(r"Seq Scan on (resource|search_[a-z_]+)\b")
GENERIC_PARAM_RE = re.compile(r"[=<>~]\s*\(?\$\d+")  # `param = $2`, `code = ($5)::text`: bound parameters
REPLICA_SLOT = -1


# -- Synthea replicas --


@dataclass(frozen=True)
class Template:
    """A patient Bundle cut at every fresh-id position: pieces[0] slot[0] pieces[1] ... pieces[n]."""

    name: str
    pieces: tuple[bytes, ...]
    slots: tuple[int, ...]  # index into the replica's fresh uuids, or REPLICA_SLOT for the `-NNNN` suffix
    uuids: int
    resources: int

    def render(self, replica: int) -> bytes:
        fresh = [str(uuid.uuid4()).encode() for _ in range(self.uuids)]
        suffix = f"-{replica:04d}".encode()
        out = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            out.append(suffix if slot == REPLICA_SLOT else fresh[slot])
            out.append(piece)
        return b"".join(out)


def read_synthea(path: Path) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(hospital and practitioner Bundles, hospital first; patient Bundles), as (name, raw JSON)."""
    if not path.is_file():
        raise BenchError(f"Synthea sample not found: {path}")
    bundles: list[tuple[str, bytes]] = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() and member.name.endswith(".json") else None
            if handle is not None:
                bundles.append((Path(member.name).name, handle.read()))
    prelude = sorted(
        (b for b in bundles if b[0].startswith(PRELUDE_PREFIXES)),
        key=lambda b: (b[0].startswith(PRELUDE_PREFIXES[1]), b[0]),
    )
    patients = sorted((b for b in bundles if not b[0].startswith(PRELUDE_PREFIXES)), key=lambda b: b[0])
    return prelude, patients


def full_urls(raw: bytes) -> set[str]:
    return {e["fullUrl"] for e in orjson.loads(raw)["entry"] if isinstance(e.get("fullUrl"), str)}


def mark_patient(patient: dict[str, Any]) -> None:
    """Family names and identifier values get the replica mark (replaced by `-NNNN` per replica)."""
    for name in patient.get("name", []):
        if isinstance(name.get("family"), str):
            name["family"] += REPLICA_MARK
    for identifier in patient.get("identifier", []):
        if isinstance(identifier.get("value"), str):
            identifier["value"] += REPLICA_MARK


def build_template(name: str, raw: bytes, prelude_urls: set[str]) -> Template:
    bundle = orjson.loads(raw)
    entries = [e for e in bundle["entry"] if e.get("fullUrl") not in prelude_urls]
    for entry in entries:
        if entry["resource"]["resourceType"] == "Patient":
            mark_patient(entry["resource"])
    own = [
        e["fullUrl"].removeprefix("urn:uuid:")
        for e in entries
        if e.get("fullUrl", "").startswith("urn:uuid:")
    ]
    slot_of = {u.encode(): i for i, u in enumerate(own)}
    text = orjson.dumps({**bundle, "entry": entries})
    pieces: list[bytes] = []
    slots: list[int] = []
    start = 0
    for match in SLOT_RE.finditer(text):
        token = match.group(0)
        slot = REPLICA_SLOT if token == REPLICA_MARK.encode() else slot_of.get(token)
        if slot is None:  # a uuid that is not one of this Bundle's fullUrls (identifier values...): as is
            continue
        pieces.append(text[start : match.start()])
        slots.append(slot)
        start = match.end()
    pieces.append(text[start:])
    return Template(name, tuple(pieces), tuple(slots), len(own), len(entries))


def replica_plan(templates: Sequence[Template], target: int) -> list[tuple[int, Template]]:
    """(replica, template) pairs, whole passes over the templates, until `target` resources."""
    plan: list[tuple[int, Template]] = []
    total = 0
    per_pass = sum(t.resources for t in templates)
    passes = min(MAX_REPLICAS, math.ceil(target / per_pass) if per_pass else 0)
    for replica in range(passes):
        for template in templates:
            if total >= target:
                return plan
            plan.append((replica, template))
            total += template.resources
    return plan


# -- loading --


@dataclass
class LoadStats:
    what: str
    bundles: int = 0
    resources: int = 0
    seconds: float = 0.0
    bundle_ms: list[float] = field(default_factory=list)
    retries: int = 0

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.bundle_ms)
        p50 = ordered[len(ordered) // 2] if ordered else None
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else None
        return {
            "what": self.what,
            "bundles": self.bundles,
            "resources": self.resources,
            "seconds": round(self.seconds, 1),
            "resources_per_s": round(self.rate, 1),
            "bundle_ms_p50": p50,
            "bundle_ms_p95": p95,
            "retries": self.retries,
        }


async def post_bundle(client: httpx.AsyncClient, body: bytes, auth: Auth) -> dict[str, Any]:
    headers = {"Content-Type": FHIR_JSON, **auth.headers()}
    response = await client.post("/fhir", content=body, headers=headers)
    if response.status_code != 200:
        raise BenchError(f"POST /fhir answered {response.status_code}:\n{response.text[:3000]}")
    result: dict[str, Any] = response.json()
    return result


async def post_with_retry(client: httpx.AsyncClient, body: bytes, stats: LoadStats, auth: Auth) -> None:
    """A transaction is all or nothing, so a failed one (5xx, a dropped connection) can be sent again."""
    for attempt in range(POST_ATTEMPTS):
        try:
            await post_bundle(client, body, auth)
            return
        except (BenchError, httpx.TransportError) as error:
            if attempt == POST_ATTEMPTS - 1 or (
                isinstance(error, BenchError) and "answered 5" not in str(error)
            ):
                raise
            stats.retries += 1
            log(f"!!! bundle failed (attempt {attempt + 1}), retrying: {str(error)[:500]}")
            await asyncio.sleep(2)


@contextlib.asynccontextmanager
async def fhir_client(base_url: str, concurrency: int) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=900, limits=limits, trust_env=False) as client:
        yield client


async def load_bundles(
    server: Server, what: str, bodies: Iterator[tuple[bytes, int]], concurrency: int, expected: int
) -> LoadStats:
    """POST (body, resources) pairs with `concurrency` clients, logging the rate every PROGRESS_EVERY_S."""
    stats = LoadStats(what)
    start = time.perf_counter()
    last = [start, 0]

    def progress(force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - last[0] < PROGRESS_EVERY_S:
            return
        overall = stats.resources / (now - start)
        recent = (stats.resources - last[1]) / max(now - last[0], 1e-9)
        eta = (expected - stats.resources) / overall if overall else float("nan")
        log(
            f"{what}: {stats.resources:,}/{expected:,} resources, {stats.bundles:,} bundles, "
            f"{overall:,.0f} resources/s overall, {recent:,.0f} in the last {now - last[0]:.0f}s, "
            f"ETA {max(eta, 0):,.0f}s"
        )
        last[0], last[1] = now, stats.resources

    async def client_loop(client: httpx.AsyncClient) -> None:
        for body, resources in bodies:  # a shared iterator: each bundle goes to exactly one client
            began = time.perf_counter()
            await post_with_retry(client, body, stats, server.auth)
            stats.bundle_ms.append((time.perf_counter() - began) * 1000)
            stats.bundles += 1
            stats.resources += resources
            progress()

    async with fhir_client(server.url, concurrency) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    stats.seconds = time.perf_counter() - start
    progress(force=True)
    return stats


def replica_bodies(plan: Sequence[tuple[int, Template]]) -> Iterator[tuple[bytes, int]]:
    for replica, template in plan:
        yield template.render(replica), template.resources


QUARTERS_PER_DAY = 32  # 08:00-16:00 in 15-minute visits
PLACE_STRIDE = 1_013  # a prime that divides no count of places (32 a day x 90 days = 2,880 = 2^6 3^2 5)


def appointment(
    rng: random.Random, index: int, practitioners: Sequence[str], patients: Sequence[str]
) -> dict[str, Any]:
    """The `index`-th visit: each practitioner's n-th visit takes the n-th place of a fixed permutation of
    their 15-minute places over the APPOINTMENT_DAYS (the server refuses double bookings), so that every
    practitioner's visits spread over the whole period, as a clinic's do; no patient is in two rooms at
    once."""
    practitioner = practitioners[index % len(practitioners)]
    # Patients are drawn per practitioner column, so two visits at one time never share a patient.
    column = index % len(practitioners)
    patient = patients[
        column + len(practitioners) * rng.randrange(max(1, len(patients) // len(practitioners)))
    ]
    nth = index // len(practitioners)
    places = QUARTERS_PER_DAY * APPOINTMENT_DAYS
    if nth >= places:
        raise BenchError(f"{nth + 1} Appointments per practitioner do not fit in {APPOINTMENT_DAYS} days")
    place = nth * PLACE_STRIDE % places  # a permutation: the stride is coprime to the number of places
    day = APPOINTMENT_START + timedelta(days=place // QUARTERS_PER_DAY)
    start = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(
        minutes=15 * (place % QUARTERS_PER_DAY)
    )
    end = start + timedelta(minutes=15)
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "description": "Follow-up visit",
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
        "participant": [
            {"actor": {"reference": f"Practitioner/{practitioner}"}, "status": "accepted"},
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
        ],
    }


def appointment_bodies(
    count: int, practitioners: Sequence[str], patients: Sequence[str], seed: int = 7
) -> Iterator[tuple[bytes, int]]:
    rng = random.Random(seed)
    for start in range(0, count, APPOINTMENT_BUNDLE):
        size = min(APPOINTMENT_BUNDLE, count - start)
        entries = [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": appointment(rng, start + offset, practitioners, patients),
                "request": {"method": "POST", "url": "Appointment"},
            }
            for offset in range(size)
        ]
        yield orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}), size


async def fetch_column(dsn: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return [row[0] for row in await conn.fetch(sql, *args, timeout=600)]
    finally:
        await conn.close()


async def load_all(server: Server, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    prelude, patients = read_synthea(args.synthea)
    prelude_urls = set().union(*(full_urls(raw) for _, raw in prelude))
    templates = [build_template(name, raw, prelude_urls) for name, raw in patients]
    prelude_resources = sum(len(full_urls(raw)) for _, raw in prelude)
    plan = replica_plan(templates, args.target - prelude_resources)
    expected = sum(t.resources for _, t in plan)
    log(
        f"{len(templates)} patient Bundle templates, {sum(t.resources for t in templates):,} resources/pass; "
        f"loading {len(plan):,} Bundles ({plan[-1][0] + 1 if plan else 0} replicas), {expected:,} resources"
    )
    first = await load_bundles(
        server, "prelude", iter([(raw, len(full_urls(raw))) for _, raw in prelude]), 1, prelude_resources
    )
    synthea = await load_bundles(server, "synthea", replica_bodies(plan), args.concurrency, expected)
    practitioners = [u.removeprefix("urn:uuid:") for _, raw in prelude[1:] for u in full_urls(raw)]
    patient_ids = await fetch_column(
        dsn, "SELECT id FROM resource WHERE resource_type = 'Patient' ORDER BY random() LIMIT 5000"
    )
    appointments = await load_bundles(
        server,
        "appointments",
        appointment_bodies(args.appointments, practitioners, patient_ids),
        args.concurrency,
        args.appointments,
    )
    return {"prelude": first.summary(), "synthea": synthea.summary(), "appointments": appointments.summary()}


def ingest_check(dsn: str, client: tuple[str, str] | None, args: argparse.Namespace) -> dict[str, Any]:
    """Write throughput on the loaded database, on a machine as quiet as we can get: `--ingest-check`
    more patient Bundles (one more replica; the bulk load above shares the CPUs with whatever else runs)."""
    prelude, patients = read_synthea(args.synthea)
    prelude_urls = set().union(*(full_urls(raw) for _, raw in prelude))
    templates = [build_template(name, raw, prelude_urls) for name, raw in patients[: args.ingest_check]]
    replica = random.Random().randrange(9_000, MAX_REPLICAS + 1)
    plan = [(replica, t) for t in templates]
    expected = sum(t.resources for t in templates)
    busy = wait_for_quiet(args.wait_quiet)
    log(f"ingest check: {len(plan)} Bundles, {expected:,} resources (machine load before: {busy:.0f}% CPU)")
    with pms_server(dsn, client=client) as server:
        stats = asyncio.run(
            load_bundles(server, "ingest check", replica_bodies(plan), args.concurrency, expected)
        )
    return {**stats.summary(), "busy_before_pct": round(busy, 1)}


# -- sizes --


async def database_sizes(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        database = await conn.fetchval("SELECT pg_database_size(current_database())")
        tables = await conn.fetch(
            """SELECT c.relname, c.reltuples::bigint AS rows, pg_relation_size(c.oid) AS heap,
                      pg_indexes_size(c.oid) AS indexes, pg_total_relation_size(c.oid) AS total
               FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
                 AND c.relname <> 'searchbench_load'
               ORDER BY total DESC"""
        )
        indexes = await conn.fetch(
            """SELECT i.relname, t.relname AS table, pg_relation_size(i.oid) AS size
               FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
               WHERE t.relnamespace = 'public'::regnamespace ORDER BY size DESC"""
        )
        counts = await conn.fetch(
            "SELECT resource_type, count(*) AS n FROM resource GROUP BY 1 ORDER BY 2 DESC"
        )
    finally:
        await conn.close()
    return {
        "database_bytes": database,
        "resources": sum(r["n"] for r in counts),
        "resources_by_type": {r["resource_type"]: r["n"] for r in counts},
        "tables": [dict(r) for r in tables],
        "indexes": [dict(r) for r in indexes],
    }


def mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def print_sizes(sizes: dict[str, Any]) -> None:
    print(f"\nDatabase size: {mb(sizes['database_bytes'])} ({sizes['resources']:,} resources)")
    print("\n| table | rows | heap | indexes | total |\n|---|---:|---:|---:|---:|")
    for t in sizes["tables"]:
        print(f"| {t['relname']} | {t['rows']:,} | {mb(t['heap'])} | {mb(t['indexes'])} | {mb(t['total'])} |")
    print("\n| index | table | size |\n|---|---|---:|")
    for i in sizes["indexes"]:
        print(f"| {i['relname']} | {i['table']} | {mb(i['size'])} |")


# -- query values --


@dataclass(frozen=True)
class PatientSample:
    id: str
    family: str
    ssn: str | None
    birth_date: str | None
    gender: str | None


@dataclass
class Samples:
    patients: list[PatientSample]
    observations: list[tuple[str, str, str]]  # (patient id, LOINC code, effective date)
    appointments: list[tuple[str, str]]  # (practitioner id, start date)


def patient_sample(row: asyncpg.Record) -> PatientSample | None:
    content = orjson.loads(row["content"])
    families = [n["family"] for n in content.get("name", []) if n.get("family")]
    ssn = next(
        (
            i["value"]
            for i in content.get("identifier", [])
            if i.get("system") == "http://hl7.org/fhir/sid/us-ssn" and i.get("value")
        ),
        None,
    )
    if not families:
        return None
    return PatientSample(row["id"], families[0], ssn, content.get("birthDate"), content.get("gender"))


def observation_sample(raw: str) -> tuple[str, str, str] | None:
    content = orjson.loads(raw)
    subject = (content.get("subject") or {}).get("reference", "")
    code = next(
        (
            c["code"]
            for c in (content.get("code") or {}).get("coding", [])
            if c.get("system") == "http://loinc.org" and c.get("code")
        ),
        None,
    )
    when = content.get("effectiveDateTime")
    if not subject.startswith("Patient/") or code is None or not isinstance(when, str):
        return None
    return subject.removeprefix("Patient/"), code, when[:10]


def appointment_sample(raw: str) -> tuple[str, str] | None:
    content = orjson.loads(raw)
    refs = [p.get("actor", {}).get("reference", "") for p in content.get("participant", [])]
    practitioner = next(
        (r.removeprefix("Practitioner/") for r in refs if r.startswith("Practitioner/")), None
    )
    start = content.get("start")
    return (practitioner, start[:10]) if practitioner and isinstance(start, str) else None


async def sample_values(dsn: str) -> Samples:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        patients = await conn.fetch(
            "SELECT id, content::text AS content FROM resource "
            "WHERE resource_type = 'Patient' AND NOT deleted ORDER BY random() LIMIT 2000",
            timeout=600,
        )
        observations = await conn.fetch(
            "SELECT content::text FROM resource TABLESAMPLE SYSTEM (2) REPEATABLE (1) "
            "WHERE resource_type = 'Observation' AND NOT deleted LIMIT 3000",
            timeout=600,
        )
        appointments = await conn.fetch(
            "SELECT content::text FROM resource WHERE resource_type = 'Appointment' AND NOT deleted "
            "ORDER BY random() LIMIT 2000",
            timeout=600,
        )
    finally:
        await conn.close()
    return Samples(
        [p for r in patients if (p := patient_sample(r)) is not None],
        [o for r in observations if (o := observation_sample(r[0])) is not None],
        [a for r in appointments if (a := appointment_sample(r[0])) is not None],
    )


def shifted(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def base_family(family: str) -> str:
    return re.sub(r"-\d{4}$", "", family)


def query_paths(samples: Samples, rng: random.Random) -> dict[str, list[str]]:
    """Per query name, PATHS_PER_QUERY request paths built from the sampled values."""
    if not samples.patients or not samples.observations or not samples.appointments:
        raise BenchError(
            f"not enough data to sample from: {len(samples.patients)} patients, "
            f"{len(samples.observations)} observations, {len(samples.appointments)} appointments"
        )
    with_ssn = [p for p in samples.patients if p.ssn] or samples.patients
    with_birth = [p for p in samples.patients if p.birth_date and p.gender] or samples.patients

    def path(resource_type: str, pairs: list[tuple[str, str]]) -> str:
        return f"/fhir/{resource_type}?{urlencode(pairs)}"

    def name_prefix() -> str:
        return path("Patient", [("name", base_family(rng.choice(samples.patients).family)[:4])])

    def identifier() -> str:
        return path("Patient", [("identifier", f"http://hl7.org/fhir/sid/us-ssn|{rng.choice(with_ssn).ssn}")])

    def birthdate_gender() -> str:
        p = rng.choice(with_birth)
        return path("Patient", [("birthdate", f"ge{p.birth_date}"), ("gender", p.gender or "female")])

    def observations() -> str:
        patient, code, when = rng.choice(samples.observations)
        return path(
            "Observation",
            [
                ("patient", patient),
                ("code", f"http://loinc.org|{code}"),
                ("date", f"ge{shifted(when, -365)}"),
                ("_sort", "-date"),
            ],
        )

    def encounters() -> str:
        return path(
            "Encounter",
            [("patient", rng.choice(samples.patients).id), ("_revinclude", "Observation:encounter")],
        )

    def appointments() -> str:
        practitioner, start = rng.choice(samples.appointments)
        return path(
            "Appointment",
            [
                ("practitioner", practitioner),
                ("date", f"ge{shifted(start, -3)}"),
                ("date", f"lt{shifted(start, 4)}"),
            ],
        )

    def chained() -> str:
        return path("Encounter", [("patient.name", rng.choice(samples.patients).family)])

    builders = {
        "Patient?name=<prefix>": name_prefix,
        "Patient?identifier=<system>|<value>": identifier,
        "Patient?birthdate=ge&gender": birthdate_gender,
        "Observation?patient&code&date=ge&_sort=-date": observations,
        "Encounter?patient&_revinclude=Observation:encounter": encounters,
        "Appointment?practitioner&date=ge&date=lt": appointments,
        "Encounter?patient.name=<family> (chained)": chained,
    }
    return {name: [build() for _ in range(PATHS_PER_QUERY)] for name, build in builders.items()}


# -- plans --


class RecordingConnection:
    """Stands in for the AsyncConnection the SearchEngine gets: runs every statement, and keeps it."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.statements: list[Any] = []

    @property
    def sync_engine(self) -> Any:
        return self.conn.sync_engine

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(statement)
        return await self.conn.execute(statement, *args, **kwargs)


@dataclass
class PlanCheck:
    query: str
    request: str
    statements: list[str] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    seq_scans: list[str] = field(default_factory=list)
    prepared_plans: list[str] = field(default_factory=list)
    prepared_generic: bool = False
    prepared_seq_scans: list[str] = field(default_factory=list)

    @property
    def uses_indexes(self) -> bool:
        return not self.seq_scans and not self.prepared_seq_scans


def split_path(request_path: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(request_path)
    return parts.path.rsplit("/", 1)[-1], parse_qsl(parts.query, keep_blank_values=True)


async def run_engine(conn: AsyncConnection, request_path: str) -> list[Any]:
    """The statements the server's search engine runs for one request (run for real, recorded)."""
    resource_type, pairs = split_path(request_path)
    registry = default_registry()
    request = parse_search(resource_type, pairs, registry, handling="strict")
    recorder = RecordingConnection(conn)
    engine = SearchEngine(
        cast(AsyncConnection, recorder), registry, base="http://127.0.0.1/fhir", default_count=20
    )
    await engine.search(request)
    return recorder.statements


async def run_types_by_id(conn: AsyncConnection, ids: list[str]) -> list[Any]:
    """The statement a transaction Bundle runs (twice) to see which of its urn:uuid placeholders are
    stored ids (FhirRepository.types_by_id), run for real, recorded."""
    recorder = RecordingConnection(conn)
    repo = FhirRepository(
        cast(AsyncConnection, recorder), validator=cast(Any, None), indexer=Indexer(default_registry())
    )
    await repo.types_by_id(ids)
    return recorder.statements


def literal_sql(statement: Any) -> str:
    dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
    compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


async def explain_literal(conn: AsyncConnection, sql: str) -> str:
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    rows = await raw.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", timeout=300)
    return "\n".join(r[0] for r in rows)


async def prepared_plans(conn: AsyncConnection, paths: Sequence[str]) -> list[str]:
    """auto_explain output of the last of several executions of the engine's (prepared, parameterised)
    statements, as the server runs them: PostgreSQL may have switched to a generic plan by then."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    messages: list[str] = []

    def listener(connection: Any, message: Any) -> None:
        messages.append(str(message.message))

    for statement in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_buffers = on",
        "SET auto_explain.log_timing = on",
        "SET client_min_messages = log",
    ):
        await raw.execute(statement)
    raw.add_log_listener(listener)
    try:
        for request_path in paths[:-1]:
            await run_engine(conn, request_path)
        messages.clear()
        await run_engine(conn, paths[-1])
    finally:
        raw.remove_log_listener(listener)
        await raw.execute("SET auto_explain.log_min_duration = -1")
        await raw.execute("RESET client_min_messages")
    return [plan_body(m) for m in messages if "plan:" in m]


async def check_write_path(engine: AsyncEngine) -> PlanCheck | None:
    """The placeholder lookup of a Synthea-sized transaction (290 fresh uuids), under EXPLAIN ANALYZE."""
    ids = [str(uuid.uuid4()) for _ in range(WRITE_CHECK_IDS)]
    check = PlanCheck(WRITE_CHECK, f"FhirRepository.types_by_id({WRITE_CHECK_IDS} fresh uuids)")
    try:
        async with engine.connect() as conn:
            for statement in await run_types_by_id(conn, ids):
                sql = literal_sql(statement)
                plan = await explain_literal(conn, sql)
                check.statements.append(clip_lines(sql, 2000))
                check.plans.append(clip_lines(plan, 2000))
                check.seq_scans += SEQ_SCAN_RE.findall(plan)
            await conn.rollback()
    except Exception as error:
        log(f"!!! could not reproduce the write path's placeholder lookup: {error!r}")
        return None
    return check


async def check_plans(dsn: str, paths: dict[str, list[str]]) -> list[PlanCheck]:
    engine: AsyncEngine = create_async_engine(
        dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        # the server's own session settings (plans per execution among them), under the bench's name
        connect_args={"server_settings": {**SESSION_SETTINGS, "application_name": "pms-searchbench"}},
    )
    checks: list[PlanCheck] = []
    try:
        for name, candidates in paths.items():
            check = PlanCheck(name, candidates[0])
            async with engine.connect() as conn:
                for statement in await run_engine(conn, candidates[0]):
                    sql = literal_sql(statement)
                    plan = await explain_literal(conn, sql)
                    check.statements.append(sql)
                    check.plans.append(plan)
                    check.seq_scans += SEQ_SCAN_RE.findall(plan)
                await conn.rollback()
            async with engine.connect() as conn:
                check.prepared_plans = await prepared_plans(conn, candidates[:PREPARED_RUNS])
                await conn.rollback()
            check.prepared_seq_scans = [s for p in check.prepared_plans for s in SEQ_SCAN_RE.findall(p)]
            check.prepared_generic = any(GENERIC_PARAM_RE.search(p) for p in check.prepared_plans)
            checks.append(check)
        write = await check_write_path(engine)
        if write is not None:
            checks.append(write)
    finally:
        await engine.dispose()
    return checks


def plan_body(message: str) -> str:
    """The plan part of an auto_explain message (after its `Query Text:` lines)."""
    lines = message.splitlines()
    start = next((i for i, line in enumerate(lines) if "(cost=" in line), 0)
    return "\n".join(lines[start:])


def clip_lines(text: str, width: int = 400) -> str:
    """Long lines (IN lists of hundreds of ids) shortened for reading."""
    return "\n".join(
        line if len(line) <= width else f"{line[: width - 40]} ...[{len(line):,} chars]"
        for line in text.splitlines()
    )


def print_plan(check: PlanCheck) -> None:
    verdict = "PASS" if check.uses_indexes else "MISS"
    print(
        f"\n### {check.query}: {verdict} (no sequential scan of resource/search_*)\nrequest: {check.request}"
    )
    for sql, plan in zip(check.statements, check.plans, strict=True):
        print(f"\n```sql\n{clip_lines(sql)}\n```")
        print(f"EXPLAIN (ANALYZE, BUFFERS), literal values:\n```\n{clip_lines(plan)}\n```")
    kind = "a GENERIC plan ($n parameters)" if check.prepared_generic else "custom plans"
    if check.prepared_plans:
        print(f"\nprepared statement after {PREPARED_RUNS} executions (auto_explain) uses {kind}:")
    for plan in check.prepared_plans:
        print(f"```\n{clip_lines(plan)}\n```")
    if check.seq_scans or check.prepared_seq_scans:
        print(f"sequential scans: literal {check.seq_scans}, prepared {check.prepared_seq_scans}")


# -- wrk --


@dataclass
class QueryRow:
    query: str
    connections: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    sample: str
    busy_before_pct: float  # CPU use of other processes just before the run


def wrk_args(paths_file: Path, server: Server) -> list[str]:
    """The Lua script's arguments: the paths file, and a bearer token (fresh: they live minutes) if needed."""
    token = server.auth.bearer()
    return [str(paths_file), token] if token else [str(paths_file)]


def measure_queries(
    server: Server, paths: dict[str, list[str]], args: argparse.Namespace
) -> tuple[list[QueryRow], dict[str, str]]:
    """wrk rows per (query, connections); with --profile, a py-spy summary of one worker per query during
    its TARGET_CONNECTIONS run."""
    rows: list[QueryRow] = []
    profiles: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="searchbench-") as tmp:
        for index, (name, candidates) in enumerate(paths.items()):
            paths_file = Path(tmp) / f"{index}.txt"
            paths_file.write_text("\n".join(candidates) + "\n")
            busy = wait_for_quiet(args.wait_quiet)
            if args.warmup > 0:
                warm = run_wrk(
                    server.url, WRK_SCRIPT, wrk_args(paths_file, server), connections=8, seconds=args.warmup
                )
                if warm.non2xx:
                    log(f"!!! warm-up of {name}: {warm.non2xx} non-2xx; first: {warm.sample}")
            for connections in args.connections:
                pids = worker_pids(server) if args.profile and connections == TARGET_CONNECTIONS else []
                out = Path(tmp) / f"{index}.folded"
                spy = start_py_spy(pids[0], max(1, args.duration - 1), out) if pids else None
                result = run_wrk(
                    server.url,
                    WRK_SCRIPT,
                    wrk_args(paths_file, server),
                    connections=connections,
                    seconds=args.duration,
                )
                if spy is not None:
                    profiles[name] = finish_py_spy(spy, out)
                rows.append(query_row(name, connections, result, busy))
    return rows, profiles


def query_row(name: str, connections: int, result: WrkResult, busy_before_pct: float) -> QueryRow:
    log(
        f"{name} @ {connections}: {result.rps:,.0f} req/s  p50 {result.p50_ms:.1f}  p95 {result.p95_ms:.1f}  "
        f"p99 {result.p99_ms:.1f} ms  ({result.requests:,} requests, non-2xx {result.non2xx}, "
        f"socket errors {result.socket_errors})"
    )
    if result.non2xx or result.socket_errors:
        log(f"!!! {name} @ {connections}: failures; first: {result.sample}")
    return QueryRow(
        name,
        connections,
        result.rps,
        result.p50_ms,
        result.p95_ms,
        result.p99_ms,
        result.requests,
        result.non2xx,
        result.socket_errors,
        result.sample,
        round(busy_before_pct, 1),
    )


# -- report --


def git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"{head}{' (+ uncommitted changes)' if dirty else ''}"
    return "unknown"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


def verdicts(rows: list[QueryRow], checks: list[PlanCheck], load: dict[str, Any] | None) -> list[str]:
    lines = []
    for row in rows:
        if row.connections == TARGET_CONNECTIONS:
            ok = row.p95_ms < MAX_P95_MS and not row.non2xx and not row.socket_errors
            lines.append(
                f"{'PASS' if ok else 'MISS'}: {row.query} p95 {row.p95_ms:.1f} ms < {MAX_P95_MS:.0f} ms "
                f"at {row.connections} connections"
            )
    for check in checks:
        lines.append(
            f"{'PASS' if check.uses_indexes else 'MISS'}: {check.query} plan without sequential scans"
            + ("" if check.uses_indexes else f" ({check.seq_scans + check.prepared_seq_scans})")
        )
    minimum = MIN_INGEST_SHARE * CORE_INGEST_TARGET
    for key in ("synthea", "ingest_check"):
        part = (load or {}).get(key)
        if part:
            rate = part["resources_per_s"]
            lines.append(
                f"{'PASS' if rate >= minimum else 'MISS'}: write throughput with indexing ({part['what']}) "
                f"{rate:,.0f} resources/s >= {minimum:,.0f} (70% of the core ingest target)"
            )
    return lines


def report(
    database: str,
    load: dict[str, Any] | None,
    sizes: dict[str, Any],
    rows: list[QueryRow],
    checks: list[PlanCheck],
) -> dict[str, Any]:
    uses = {c.query: c.uses_indexes for c in checks}
    print("\n## Search at scale\n")
    print("| query | connections | req/s | p50 ms | p95 ms | p99 ms | plan uses indexes? |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        index = "n/a" if r.query not in uses else ("yes" if uses[r.query] else "NO")
        print(
            f"| `{r.query}` | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
            f"{r.p99_ms:.1f} | {index} |"
        )
    if load is not None:
        print("\n| load | bundles | resources | seconds | resources/s | bundle p50 ms | bundle p95 ms |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for part in load.values():
            print(
                f"| {part['what']} | {part['bundles']:,} | {part['resources']:,} | {part['seconds']:,.0f} | "
                f"{part['resources_per_s']:,.0f} | {part['bundle_ms_p50'] or 0:,.0f} | "
                f"{part['bundle_ms_p95'] or 0:,.0f} |"
            )
    print_sizes(sizes)
    lines = verdicts(rows, checks, load)
    print("\n" + "\n".join(lines))
    meta = {
        "machine": machine(),
        "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": database,
        "postgres": sizes.get("postgres"),
    }
    print(
        f"\nmachine: {meta['machine']}\ncommit: {meta['commit']}\ndate: {meta['date']}\ndatabase: {database}"
    )
    return {
        **meta,
        "load": load,
        "sizes": sizes,
        "queries": [asdict(r) for r in rows],
        "plans": [{**asdict(c), "uses_indexes": c.uses_indexes} for c in checks],
        "verdicts": lines,
    }


async def save_load(dsn: str, load: dict[str, Any]) -> None:
    """Keep the load figures in the bench database itself, for later `--reuse` runs."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {LOAD_TABLE} (id int PRIMARY KEY, figures text NOT NULL)"
        )
        await conn.execute(
            f"INSERT INTO {LOAD_TABLE} VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET figures = $1",
            json.dumps(load),
        )
    finally:
        await conn.close()


async def saved_load(dsn: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if await conn.fetchval("SELECT to_regclass($1)", LOAD_TABLE) is None:
            return None
        figures = await conn.fetchval(f"SELECT figures FROM {LOAD_TABLE} WHERE id = 1")
    finally:
        await conn.close()
    return cast(dict[str, Any], json.loads(figures)) if figures else None


# -- main --


async def vacuum_analyze(dsn: str) -> str:
    began = time.perf_counter()
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("VACUUM ANALYZE", timeout=7200)
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    log(f"VACUUM ANALYZE took {time.perf_counter() - began:.0f}s (PostgreSQL {version})")
    return str(version)


def bench(args: argparse.Namespace) -> int:
    require_local(args.admin_url)
    name = args.reuse or create_database(args.admin_url, DB_PREFIX)
    dsn = with_database(args.admin_url, name)
    drop = args.reuse is None and not args.keep
    try:
        load = asyncio.run(saved_load(dsn)) if args.reuse else None
        migrate(dsn)  # with --reuse too: the checkout may have new migrations since the load
        client = register_client(dsn, "search-bench")
        if args.reuse is None:
            log(f"machine load before loading: {wait_for_quiet(args.wait_quiet):.0f}% CPU")
            with pms_server(dsn, client=client) as server:
                load = asyncio.run(load_all(server, dsn, args))
            asyncio.run(save_load(dsn, load))
        if args.ingest_check > 0:
            load = {**(load or {}), "ingest_check": ingest_check(dsn, client, args)}
        postgres = asyncio.run(vacuum_analyze(dsn))
        sizes = asyncio.run(database_sizes(dsn))
        sizes["postgres"] = postgres
        paths = query_paths(asyncio.run(sample_values(dsn)), random.Random(args.seed))
        rows: list[QueryRow] = []
        profiles: dict[str, str] = {}
        if not args.plans_only:
            with pms_server(dsn, client=client) as server:
                rows, profiles = measure_queries(server, paths, args)
        for query, summary in profiles.items():
            print(
                f"\n### py-spy, one worker, {query} at {TARGET_CONNECTIONS} connections\n```\n{summary}\n```"
            )
        checks = asyncio.run(check_plans(dsn, paths))
        for check in checks:
            print_plan(check)
        result = {**report(name, load, sizes, rows, checks), "profiles": profiles}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"wrote {RESULTS.relative_to(ROOT)}")
        failed = any(r.non2xx or r.socket_errors for r in rows)
        return 1 if failed else 0
    finally:
        if drop:
            drop_database(args.admin_url, name)
        else:
            log(f"kept database {name} (measure it again with --reuse {name})")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PMS_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL to run CREATE/DROP DATABASE in (env PMS_BENCH_ADMIN_URL)",
    )
    parser.add_argument(
        "--target", type=int, default=1_000_000, help="Synthea resources to load (default 1M)"
    )
    parser.add_argument(
        "--appointments", type=int, default=20_000, help="Appointments to create (default 20,000)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=3,
        choices=range(1, 9),
        metavar="N",
        help="concurrent transaction clients while loading (default 3)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--reuse", metavar="NAME", help="measure an already loaded database (kept)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"py-spy one server worker during each {TARGET_CONNECTIONS}-connection run",
    )
    parser.add_argument(
        "--ingest-check",
        type=int,
        default=100,
        metavar="N",
        help="after loading (or with --reuse), time N more patient Bundles on a quiet machine (0: skip)",
    )
    parser.add_argument("--plans-only", action="store_true", help="no wrk: sizes and plans only")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of wrk before each query's runs")
    parser.add_argument(
        "--connections",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[32, 8],
        help="comma-separated wrk connection counts (default 32,8)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        help="wait up to this many seconds for other processes to leave the CPUs idle before loading and "
        "before each query's runs (default 120)",
    )
    parser.add_argument("--seed", type=int, default=20261122, help="seed for picking query values")
    parser.add_argument(
        "--synthea", type=Path, default=SYNTHEA, help="tar.gz of Synthea R4 transaction Bundles"
    )
    args = parser.parse_args(argv)
    if args.reuse and args.keep:
        parser.error("--reuse keeps the database anyway")
    if args.reuse and not re.fullmatch(r"[A-Za-z0-9_]{1,63}", args.reuse):
        parser.error("--reuse takes a plain database name")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    try:
        return bench(args)
    except BenchError as error:
        print(f"\nbench stopped: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated):
        print(
            "\ninterrupted; server stopped" + ("" if args.reuse or args.keep else ", database dropped"),
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
