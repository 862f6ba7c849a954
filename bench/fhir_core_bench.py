"""Throughput and latency of the core FHIR interactions, next to the ceilings of this machine.

One run, everything on 127.0.0.1, everything it starts stopped and dropped again (also on Ctrl-C):

1. a fresh database `pms_bench_<random>`, migrated to head;
2. the server as in production (`pms serve`, else uvicorn; 2 workers, uvloop, httptools, no access log);
3. 2,000 seeded Patients (transaction Bundles), 500 of them updated so that vread has versions 1..2;
4. wrk (-t2, 2 s warm-up, 10 s measured) at 8 and 32 connections: read, vread, create, update;
5. transaction ingest of the Synthea sample (100 patient Bundles) with 2 and 4 concurrent clients;
6. the baseline of the audit issue: the same app with neither token checks nor audit on reads
   (bench/unaudited_app.py), measured right before the read at 32 connections;
7. ceilings: `pgbench -S` (own database, scale 10) and bench/bare_endpoint.py (FastAPI + asyncpg, one
   primary-key select) measured with the same wrk read script at 32 connections;
8. a markdown table (also bench/results/fhir_core.json) with PASS/MISS against the targets; a py-spy profile
   of the server's workers under every workload that misses its target.

Usage: .venv/bin/python bench/fhir_core_bench.py [--duration 10] [--connections 8,32] [--no-profile]
Exit status: 0 done, 1 some request failed (non-2xx or socket errors), 2 a tool is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: pms, uvicorn, alembic, py-spy
WRK_SCRIPT = ROOT / "bench" / "wrk" / "fhir.lua"
RESULTS = ROOT / "bench" / "results" / "fhir_core.json"
SYNTHEA = Path("/work/shared/synthea/synthea-r4-100.tar.gz")
HOST = "127.0.0.1"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
WORKERS = 2
SEED_PATIENTS = 2_000
SEED_BUNDLE_SIZE = 500
UPDATED_PATIENTS = 500
PROFILE_SECONDS = 8
INGEST_CONCURRENCY = (2, 4)
BENCH_SCOPES = "system/*.cruds"  # the bench's OAuth client may do everything, like a backend integration
SERVER_MAX_CONNECTIONS = WORKERS * (20 + 5 + 10)  # per worker: SQLAlchemy pool + overflow, read pool
FHIR_JSON = "application/fhir+json"
NOISY_PCT = 10.0  # other processes' share of the CPUs above which a figure is flagged

# Targets: read at 32 connections, the best of the create runs, the best of the ingest runs.
READ_MIN_RPS = 2_000.0
READ_MIN_PCT_BARE = 70.0
READ_MAX_P95_MS = 25.0
AUDITED_MIN_PCT = 70.0  # the audit issue: read with auth + audit >= 70% of the unauthenticated read
CREATE_MIN_RPS = 800.0
INGEST_MIN_RESOURCES_PER_S = 1_000.0

FAMILIES = ["Smith", "Garcia", "Nguyen", "Okafor", "Schmidt", "Rossi", "Kowalski", "Tanaka", "Haddad"]
GIVENS = ["Ann", "Bo", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ines", "Jonas", "Kwame", "Lea"]


class BenchError(RuntimeError):
    """Something the bench cannot go on after (a server that does not start, a failed request...)."""


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that every `finally` (servers, databases) runs."""


# -- results -------------------------------------------------------------------------------------------------


@dataclass
class Row:
    operation: str
    connections: int
    rate: float
    unit: str  # "req/s", "resources/s", "tps"
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    non2xx: int = 0
    socket_errors: int = 0
    pct_bare: float | None = None
    pct_pgbench: float | None = None
    other_cpu_pct: float | None = None  # CPU taken by other processes on the machine during the run
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    target: str
    measured: str
    passed: bool
    workload: tuple[str, int] | None  # what to profile when it misses: (operation, connections)


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    sample: str
    load: Reading | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


# -- small helpers -------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def loud(message: str) -> None:
    bar = "!" * 100
    print(f"\n{bar}\n!!! {message}\n{bar}\n", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def require_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        raise BenchError(f"{url!r}: the bench only talks to 127.0.0.1 (host is {host!r})")


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run(cmd: Sequence[str], *, timeout: float, stdin: str | None = None) -> str:
    """Run a command to completion (killed on timeout); its stdout, or BenchError with its output."""
    try:
        done = subprocess.run(
            list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{cmd[0]} timed out after {timeout:.0f}s: {' '.join(cmd)}") from error
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.stdout


def check_tools() -> None:
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: `apt-get install wrk` (https://github.com/wg/wrk), then run again.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    missing = [tool for tool in ("pgbench",) if shutil.which(tool) is None]
    if missing or not (BIN / "uvicorn").exists() or not (BIN / "alembic").exists():
        print(
            f"missing: {missing or ''} (pgbench: `apt-get install postgresql-client`), "
            "or run with the project's .venv/bin/python",
            file=sys.stderr,
        )
        raise SystemExit(2)


# -- databases -----------------------------------------------------------------------------------------------


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(statement, timeout=120)
    finally:
        await conn.close()


@contextlib.contextmanager
def temporary_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database `<prefix>_<random>` on the admin URL's server; dropped (forcibly) on the way out."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    log(f"created database {name}")
    try:
        yield with_database(admin_url, name)
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        log(f"dropped database {name}")


def migrate(database_url: str) -> None:
    alembic = [str(BIN / "alembic"), "-c", str(ROOT / "alembic.ini")]
    run([*alembic, "-x", f"url={database_url}", "upgrade", "head"], timeout=180)


# -- servers -------------------------------------------------------------------------------------------------


@dataclass
class Auth:
    """Bearer tokens, when the server wants them: SMART Backend Services (client_credentials, client secret
    over HTTP Basic), refreshed a minute before they expire. Without a token_url the server is open."""

    token_url: str | None = None
    client_id: str = ""
    secret: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    expires_at: float = 0.0

    def headers(self) -> dict[str, str]:
        if self.token_url is None:
            return {}
        if time.monotonic() > self.expires_at - 60:
            self._refresh(self.token_url)
        return {"Authorization": f"Bearer {self.token}"}

    def _refresh(self, token_url: str) -> None:
        form = {"grant_type": "client_credentials", "scope": BENCH_SCOPES}
        with httpx.Client(timeout=30, trust_env=False) as client:
            response = client.post(token_url, data=form, auth=(self.client_id, self.secret))
        if response.status_code != 200:
            raise BenchError(f"token endpoint answered {response.status_code}: {response.text[:2000]}")
        body = response.json()
        self.token = body["access_token"]
        self.expires_at = time.monotonic() + float(body.get("expires_in", 300))


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    auth: Auth = field(default_factory=Auth)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (multiprocessing children) in the server's process group."""
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(entry.name)) != self.process.pid:
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if "spawn_main" in cmdline:
                    pids.append(int(entry.name))
        return sorted(pids)


def pms_serve_command(port: int) -> list[str] | None:
    """`pms serve ...` if this checkout's CLI has it (--no-migrate when supported: we migrated already)."""
    pms = BIN / "pms"
    if not pms.exists():
        return None
    try:
        help_text = subprocess.run(
            [str(pms), "serve", "--help"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    if help_text.returncode != 0 or "--workers" not in help_text.stdout:
        return None
    command = [str(pms), "serve", "--workers", str(WORKERS), "--host", HOST, "--port", str(port)]
    return [*command, "--no-migrate"] if "--no-migrate" in help_text.stdout else command


def uvicorn_command(app: str, port: int, *, app_dir: Path | None = None) -> list[str]:
    """uvicorn as `pms serve` runs it in production: worker processes, uvloop, httptools, no access log."""
    production = ["--workers", str(WORKERS), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    command = [str(BIN / "uvicorn"), app, "--factory", *production, "--host", HOST, "--port", str(port)]
    return [*command, "--app-dir", str(app_dir)] if app_dir else command


def wait_healthy(server: Server, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2, trust_env=False) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(f"{server.name} exited ({server.process.returncode}):\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{server.url}/health").status_code == 200:
                    return
            time.sleep(0.25)
    raise BenchError(f"{server.name} not healthy after {timeout:.0f}s:\n{server.log_tail()}")


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM to the whole group (server + workers), SIGKILL whatever is left after `grace` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers (workers) even when the leader is gone
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@contextlib.contextmanager
def running_server(name: str, command: list[str], database_url: str, port: int) -> Iterator[Server]:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("WEB_CONCURRENCY", None)
    with tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    server = Server(name, process, port, log_path)
    log(f"starting {name}: {' '.join(command)}")
    try:
        wait_healthy(server)
        log(f"{name} healthy at {server.url} (workers {server.worker_pids()})")
        yield server
    finally:
        stop_process_group(process)
        log(f"stopped {name}")
        log_path.unlink(missing_ok=True)


def register_client(database_url: str) -> tuple[str, str] | None:
    """(client_id, secret) of a backend-service client registered with `pms client create`; None when this
    checkout's CLI has no such command (a server without authorization)."""
    pms = str(BIN / "pms")
    probe = subprocess.run([pms, "client", "create", "--help"], capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        return None
    client_id, secret = f"fhir-core-bench-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    options = ["--grant", "client_credentials", "--scopes", BENCH_SCOPES, "--client-id", client_id]
    command = [pms, "client", "create", "--name", "fhir_core_bench", *options, "--secret-stdin"]
    run([*command, "--database-url", database_url], timeout=120, stdin=secret)
    return client_id, secret


def connect_auth(server: Server, client: tuple[str, str] | None) -> None:
    """Give the server's Auth a token source if it answers 401 to an anonymous FHIR request."""
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        if http.get("/fhir/Patient/pms-bench-probe").status_code != 401:
            log("the server takes anonymous requests")
            return
        config = http.get("/fhir/.well-known/smart-configuration")
    if client is None:
        raise BenchError("the server wants bearer tokens, and there is no `pms client create` to get some")
    token_url = f"{server.url}/oauth2/token"
    with contextlib.suppress(ValueError, KeyError, TypeError):
        discovered = str(config.json()["token_endpoint"])
        if urlsplit(discovered).hostname in LOCAL_HOSTS:
            token_url = discovered
    server.auth = Auth(token_url, *client)
    server.auth.headers()  # fails here, loudly, if the client cannot get a token
    log(f"the server wants bearer tokens: client_credentials as {client[0]} ({BENCH_SCOPES}) at {token_url}")


# -- load from other processes (this is a shared 2-core machine) ------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU-seconds spent busy on all CPUs since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass(frozen=True)
class Proc:
    ppid: int
    cpu_s: float
    name: str


def process_table() -> dict[int, Proc]:
    """Every process: parent, CPU-seconds used so far, command name."""
    table: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                rest = stat[stat.rindex(")") + 2 :].split()
                cpu_s = (int(rest[11]) + int(rest[12])) / CLOCK_TICKS  # utime + stime
                table[int(entry.name)] = Proc(int(rest[1]), cpu_s, name)
    return table


def descendants(table: dict[int, Proc], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(c for c in children.get(pid, ()) if c not in found)
    return found


@dataclass(frozen=True)
class PostgresView:
    foreign_backends: set[int]  # backends connected to other people's databases
    sessions: int  # sessions ever opened on our database (pg_stat_database.sessions)


async def _postgres_view(admin_url: str, database: str) -> PostgresView:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        foreign = "SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> $1"
        pids = await conn.fetch(foreign, database, timeout=10)
        sessions = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", database, timeout=10
        )
    finally:
        await conn.close()
    return PostgresView({row["pid"] for row in pids}, int(sessions or 0))


@dataclass
class Reading:
    other_cpu_pct: float | None = None  # a lower bound: processes that came and went in between are missed
    db_sessions_per_s: float | None = None  # new connections to our database: pool churn


@dataclass
class LoadMeter:
    """What the neighbours did while we measured: the CPU used by processes that are neither ours (this
    process and its children: servers, wrk) nor PostgreSQL working for our database (its backends and the
    shared WAL writer, checkpointer...); and how many new connections our database got."""

    admin_url: str
    database: str

    def _snapshot(self) -> tuple[dict[int, float], int | None]:
        try:
            view: PostgresView | None = asyncio.run(_postgres_view(self.admin_url, self.database))
        except (OSError, TimeoutError, asyncpg.PostgresError):  # e.g. too many connections: count less
            view = None
        table = process_table()
        ours = descendants(table, os.getpid())
        foreign_backends = view.foreign_backends if view else set()
        foreign = {
            pid: proc.cpu_s
            for pid, proc in table.items()
            if pid not in ours and (proc.name != "postgres" or pid in foreign_backends)
        }
        return foreign, view.sessions if view else None

    @contextlib.contextmanager
    def measuring(self) -> Iterator[Reading]:
        """Yields a Reading, filled in when the block ends."""
        reading = Reading()
        before, sessions_before = self._snapshot()
        start = time.monotonic()
        yield reading
        elapsed = time.monotonic() - start
        after, sessions_after = self._snapshot()
        other = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        reading.other_cpu_pct = min(100.0, 100 * max(0.0, other) / (elapsed * len(os.sched_getaffinity(0))))
        if sessions_before is not None and sessions_after is not None:
            reading.db_sessions_per_s = (sessions_after - sessions_before) / elapsed


def describe(load: Reading) -> str:
    other = "?" if load.other_cpu_pct is None else f"{load.other_cpu_pct:.0f}%"
    sessions = "" if load.db_sessions_per_s is None else f", {load.db_sessions_per_s:.1f} new db sessions/s"
    return f"other processes >= {other} CPU{sessions}"


def with_load(row: Row, load: Reading | None) -> Row:
    if load is not None:
        row.other_cpu_pct = load.other_cpu_pct
        row.extra["db_sessions_per_s"] = load.db_sessions_per_s
    return row


def wait_for_quiet(max_wait: float, threshold_pct: float = 10.0) -> float:
    """Wait (at most max_wait seconds) until the machine's CPU use drops below threshold; the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        busy, start = busy_cpu_seconds(), time.monotonic()
        time.sleep(3)
        pct = 100 * (busy_cpu_seconds() - busy) / ((time.monotonic() - start) * len(os.sched_getaffinity(0)))
        if pct < threshold_pct or time.monotonic() >= deadline:
            return pct
        log(f"machine busy ({pct:.0f}% CPU by other processes); waiting for it to calm down")


# -- seeding -------------------------------------------------------------------------------------------------


def seed_patient(rng: random.Random, index: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "active": True,
        "identifier": [{"system": "urn:pms:bench", "value": f"B{index:05d}"}],
        "name": [{"family": rng.choice(FAMILIES), "given": [rng.choice(GIVENS), rng.choice(GIVENS)]}],
        "gender": rng.choice(["male", "female", "other", "unknown"]),
        "birthDate": f"{rng.randint(1925, 2024):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def post_bundle(client: httpx.AsyncClient, auth: Auth, body: bytes | dict[str, Any]) -> dict[str, Any]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": FHIR_JSON, **auth.headers()}
    response = await client.post("/fhir", content=content, headers=headers)
    if response.status_code != 200:
        raise BenchError(f"POST /fhir answered {response.status_code}:\n{response.text[:4000]}")
    result: dict[str, Any] = response.json()
    return result


def location_id(entry: dict[str, Any]) -> tuple[str, int]:
    """("id", version) from a transaction-response entry's `[base/]Type/<id>/_history/<v>` location."""
    location = entry["response"]["location"]
    match = re.search(r"/?[A-Za-z]+/([A-Za-z0-9\-.]{1,64})/_history/(\d+)$", location)
    if match is None:
        raise BenchError(f"unexpected location in a transaction response: {location!r}")
    return match.group(1), int(match.group(2))


async def seed(server: Server) -> tuple[list[str], list[tuple[str, int]]]:
    """Create the Patients, update a subset; (ids, [(id, version)] for every version stored)."""
    rng = random.Random(20261122)
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=120, trust_env=False) as client:
        for start in range(0, SEED_PATIENTS, SEED_BUNDLE_SIZE):
            entries = [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": seed_patient(rng, i),
                    "request": {"method": "POST", "url": "Patient"},
                }
                for i in range(start, min(start + SEED_BUNDLE_SIZE, SEED_PATIENTS))
            ]
            result = await post_bundle(client, server.auth, transaction(entries))
            ids.extend(location_id(e)[0] for e in result["entry"])
        updated = ids[:UPDATED_PATIENTS]
        entries = [
            {
                "resource": {**seed_patient(rng, i), "id": id_},
                "request": {"method": "PUT", "url": f"Patient/{id_}"},
            }
            for i, id_ in enumerate(updated)
        ]
        result = await post_bundle(client, server.auth, transaction(entries))
        versions = [location_id(e) for e in result["entry"]]
        if any(v != 2 for _, v in versions):
            raise BenchError(f"updates did not make version 2: {versions[:5]}")
        headers = {"Accept": FHIR_JSON, **server.auth.headers()}
        check = await client.get(f"/fhir/Patient/{ids[-1]}", headers=headers)
        if check.status_code != 200:
            raise BenchError(f"reading a seeded Patient answered {check.status_code}: {check.text[:2000]}")
    pairs = [(id_, 1) for id_ in ids] + [(id_, 2) for id_ in updated]
    return ids, pairs


# -- wrk -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    operation: str  # read | vread | create | update
    ids_file: Path | None


def wrk_command(server: Server, workload: Workload, connections: int, seconds: float) -> list[str]:
    options = ["-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for name, value in server.auth.headers().items():
        options += ["-H", f"{name}: {value}"]
    command = ["wrk", *options, "-s", str(WRK_SCRIPT), server.url, "--", workload.operation]
    return [*command, str(workload.ids_file)] if workload.ids_file else command


def parse_wrk(output: str) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk printed no result line:\n{output[-3000:]}")
    values = {k: float(v) for k, v in (item.split("=", 1) for item in line.split()[1:])}
    sample = next(
        (ln[len("WRK_SAMPLE ") :] for ln in output.splitlines() if ln.startswith("WRK_SAMPLE ")), ""
    )
    socket_errors = int(sum(values[k] for k in ("connect", "read", "write", "timeout")))
    return WrkResult(
        requests=int(values["requests"]),
        duration_s=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1000,
        p95_ms=values["p95_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        non2xx=int(values["non2xx"]),
        socket_errors=socket_errors,
        sample=sample,
    )


def run_wrk(server: Server, workload: Workload, connections: int, seconds: float) -> WrkResult:
    return parse_wrk(run(wrk_command(server, workload, connections, seconds), timeout=seconds + 60))


def report_failures(what: str, result: WrkResult) -> None:
    if result.non2xx or result.socket_errors:
        loud(
            f"{what}: {result.non2xx} NON-2xx responses and {result.socket_errors} socket errors "
            f"out of {result.requests} requests. First failure: {result.sample or '(no body)'}"
        )


def measure(
    server: Server, workload: Workload, connections: int, args: argparse.Namespace, meter: LoadMeter
) -> WrkResult:
    what = f"{workload.operation} @ {connections} connections ({server.name})"
    warm = run_wrk(server, workload, connections, args.warmup)
    report_failures(f"warm-up of {what}", warm)
    with meter.measuring() as load:
        result = run_wrk(server, workload, connections, args.duration)
    result.load = load
    log(
        f"{what}: {result.rps:,.0f} req/s  p50 {result.p50_ms:.2f}  p95 {result.p95_ms:.2f}  "
        f"p99 {result.p99_ms:.2f} ms  ({result.requests:,} requests, non-2xx {result.non2xx}; "
        f"{describe(load)})"
    )
    report_failures(what, result)
    return result


def wrk_row(operation: str, connections: int, r: WrkResult) -> Row:
    row = Row(
        operation,
        connections,
        r.rps,
        "req/s",
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.requests,
        r.non2xx,
        r.socket_errors,
    )
    return with_load(row, r.load)


# -- transaction ingest --------------------------------------------------------------------------------------


@dataclass
class SyntheaBundle:
    name: str
    body: bytes
    resources: int


def load_synthea(path: Path) -> tuple[list[SyntheaBundle], list[SyntheaBundle]]:
    """(organisation and practitioner bundles, hospital first; the patient bundles), in name order."""
    if not path.is_file():
        raise BenchError(f"Synthea sample not found: {path}")
    bundles: list[SyntheaBundle] = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() and member.name.endswith(".json") else None
            if handle is not None:
                body = handle.read()
                bundles.append(SyntheaBundle(Path(member.name).name, body, len(json.loads(body)["entry"])))
    order = ("hospitalInformation", "practitionerInformation")
    prelude = sorted(
        (b for b in bundles if b.name.startswith(order)), key=lambda b: (b.name.startswith(order[1]), b.name)
    )
    patients = sorted((b for b in bundles if not b.name.startswith(order)), key=lambda b: b.name)
    return prelude, patients


@dataclass
class IngestResult:
    seconds: float
    bundles: int
    resources: int
    latencies_ms: list[float]


async def ingest(
    server: Server, bundles: list[SyntheaBundle], concurrency: int, stop_after: float | None = None
) -> IngestResult:
    """POST the bundles with `concurrency` clients; every answer must be 200. With stop_after, the clients
    stop taking new bundles after that many seconds (the profiling run)."""
    queue = iter(bundles)
    latencies: list[float] = []
    done_resources = 0
    start = time.perf_counter()

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal done_resources
        for bundle in queue:  # a shared iterator: each bundle goes to exactly one client
            if stop_after is not None and time.perf_counter() - start > stop_after:
                return
            began = time.perf_counter()
            await post_bundle(client, server.auth, bundle.body)
            latencies.append((time.perf_counter() - began) * 1000)
            done_resources += bundle.resources

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=300, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return IngestResult(time.perf_counter() - start, len(latencies), done_resources, latencies)


def measure_ingest(
    server: Server,
    prelude: list[SyntheaBundle],
    patients: list[SyntheaBundle],
    concurrency: int,
    meter: LoadMeter,
) -> Row:
    asyncio.run(ingest(server, prelude, 1))  # organisations, practitioners: untimed, before the patients
    with meter.measuring() as load:
        result = asyncio.run(ingest(server, patients, concurrency))
    rate = result.resources / result.seconds
    p50, p95, p99 = (percentile(result.latencies_ms, p) for p in (50, 95, 99))
    log(
        f"ingest @ {concurrency} clients: {rate:,.0f} resources/s, "
        f"{result.bundles / result.seconds:.2f} bundles/s, "
        f"per bundle p50 {p50:.0f} p95 {p95:.0f} p99 {p99:.0f} ms ({result.resources:,} resources, "
        f"{result.bundles} bundles in {result.seconds:.1f}s; {describe(load)})"
    )
    row = Row(
        "transaction ingest",
        concurrency,
        rate,
        "resources/s",
        p50,
        p95,
        p99,
        result.bundles,
        extra={
            "bundles_per_s": result.bundles / result.seconds,
            "resources": result.resources,
            "seconds": result.seconds,
            "mean_resources_per_bundle": statistics.mean(b.resources for b in patients),
        },
    )
    return with_load(row, load)


# -- ceilings ------------------------------------------------------------------------------------------------


def pgbench_tps(admin_url: str) -> Row:
    with temporary_database(admin_url, "pms_pgbench") as url:
        run(["pgbench", "-i", "-s", "10", "-q", url], timeout=600)
        output = run(["pgbench", "-S", "-c", "32", "-j", "2", "-T", "10", "-n", url], timeout=120)
    match = re.search(r"tps = ([\d.]+)", output)
    if match is None:
        raise BenchError(f"no tps in pgbench output:\n{output}")
    latency = re.search(r"latency average = ([\d.]+) ms", output)
    tps = float(match.group(1))
    log(f"pgbench -S -c 32 -j 2: {tps:,.0f} tps")
    return Row(
        "pgbench -S (ceiling)",
        32,
        tps,
        "tps",
        extra={"latency_avg_ms": float(latency.group(1)) if latency else None},
    )


BARE = "bare FastAPI+asyncpg read (ceiling)"
BARE_CONNECTIONS = 32


def measure_bare_endpoint(
    database_url: str, read: Workload, args: argparse.Namespace, meter: LoadMeter
) -> WrkResult:
    """Started for its own measurement only: idle, its pools would hold 20 of the database's connections."""
    port = free_port()
    command = uvicorn_command("bare_endpoint:create_app", port, app_dir=ROOT / "bench")
    with running_server("bare-endpoint", command, database_url, port) as bare:
        return measure(bare, read, BARE_CONNECTIONS, args, meter)


UNAUDITED = "read without auth and audit (baseline)"


def measure_unaudited(
    database_url: str, read: Workload, args: argparse.Namespace, meter: LoadMeter
) -> WrkResult:
    """The same app with neither token checks nor audit on reads (bench/unaudited_app.py): the FHIR core's
    own read path, and the figure the audit issue's target is a share of."""
    port = free_port()
    command = uvicorn_command("unaudited_app:create_app", port, app_dir=ROOT / "bench")
    with running_server("unaudited", command, database_url, port) as unaudited:
        return measure(unaudited, read, BARE_CONNECTIONS, args, meter)


AUDIT_CATCH_UP = "audit backlog -> searchable AuditEvents (one catch-up)"


async def _backlog_size(database_url: str) -> int | None:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_backlog", timeout=60))
    except asyncpg.UndefinedTableError:
        return None  # a checkout from before the audit backlog (migration 0011)
    finally:
        await conn.close()


def measure_audit_catch_up(server: Server, database_url: str) -> Row | None:
    """The audit records the read phases left in the backlog, made searchable AuditEvents by the next
    AuditEvent search (the worker's half-minute job otherwise): the indexing the reads did not pay for,
    in records per second of one catch-up (one server process, one connection)."""
    waiting = asyncio.run(_backlog_size(database_url))
    if not waiting:
        return None
    log(f"catching up {waiting:,} audit records (one AuditEvent search)")
    with httpx.Client(base_url=server.url, timeout=1800, trust_env=False) as http:
        started = time.perf_counter()
        answer = http.get("/fhir/AuditEvent", params={"_count": 1}, headers=server.auth.headers())
        seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise BenchError(f"the AuditEvent search answered {answer.status_code}: {answer.text[:300]}")
    extra = {"records": waiting, "seconds": round(seconds, 2)}
    return Row(AUDIT_CATCH_UP, 1, waiting / seconds, "records/s", requests=waiting, extra=extra)


async def _free_connection_slots(admin_url: str) -> int:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        free = await conn.fetchval(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
    finally:
        await conn.close()
    return int(free)


def check_connection_budget(admin_url: str, needed: int) -> None:
    free = asyncio.run(_free_connection_slots(admin_url))
    if free < needed:
        loud(
            f"PostgreSQL has {free} free connection slots; the server may open up to {needed} (2 workers x "
            "(pool 10 + overflow 10 + fast-read pool 10)): expect 'too many clients' errors under load"
        )


# -- profiling -----------------------------------------------------------------------------------------------


def _frame_name(frame: str) -> str:
    """`fetchrow (asyncpg/connection.py:690)` -> `fetchrow (asyncpg/connection.py)`: one row per function."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    return f"{match.group(1)} ({match.group(2)})" if match else frame


MAIN_LOOP_FRAME = "Server.run (uvicorn/server.py)"  # on every stack of the worker's event-loop thread
LOOP_LEAF = "Runner.run (asyncio/runners.py)"  # leaf there = inside uvloop's C loop (I/O, parsing, idle wait)


def _package(frame: str) -> str:
    """The library a frame belongs to: `asyncpg`, `sqlalchemy`, ...; `pms/storage` for the app's own code."""
    if frame == LOOP_LEAF:
        return "[uvloop/httptools C code + idle wait]"
    path = frame[frame.rfind("(") + 1 : -1].split("/")
    if len(path) == 1:
        return path[0]
    return "/".join(path[:2]) if path[0] == "pms" and len(path) > 2 else path[0]


def _percent_lines(counts: Counter[str], total: int, top: int) -> list[str]:
    return [f"    {100 * n / total:5.1f}%  {name}" for name, n in counts.most_common(top)]


def summarize_raw_profile(raw: str, top: int = 15) -> str:
    """Own time by library and by function, and the app's (pms/) functions by inclusive time, over the
    samples of the event-loop thread (uvicorn's pong thread and other idle threads are dropped)."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = dropped = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if MAIN_LOOP_FRAME not in frames:
            dropped += int(count_text)
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            if "(pms/" in frame:
                inclusive[frame] += count
    if not total:
        return f"  (no samples of the event-loop thread; {dropped} others)"
    lines = [
        f"  {total} samples of the workers' event-loop threads ({dropped} of other threads dropped)",
        "  own time by library:",
    ]
    lines += _percent_lines(packages, total, 12)
    lines.append("  top functions by own time:")
    lines += _percent_lines(own, total, top)
    lines.append("  the app's functions (pms/) by inclusive time:")
    lines += _percent_lines(inclusive, total, top)
    return "\n".join(lines)


@dataclass
class Profiler:
    """py-spy recording every worker of a server at once (the kernel may hand a few client connections
    all to one worker), merged into one summary; the raw folded stacks stay in bench/results/."""

    name: str
    spies: list[tuple[int, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, server: Server) -> bool:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        for stale in RESULTS.parent.glob(f"pyspy-{self.name}-*.txt"):  # an earlier run's workers
            stale.unlink()
        for pid in server.worker_pids():
            out = RESULTS.parent / f"pyspy-{self.name}-{pid}.txt"
            out.unlink(missing_ok=True)
            command = [str(BIN / "py-spy"), "record", "-p", str(pid), "-d", str(PROFILE_SECONDS), "-f", "raw"]
            spy = subprocess.Popen(
                [*command, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            self.spies.append((pid, spy, out))
        return bool(self.spies)

    def finish(self) -> str:
        raw: list[str] = []
        notes: list[str] = []
        for pid, spy, out in self.spies:
            try:
                _, stderr = spy.communicate(timeout=PROFILE_SECONDS + 60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.communicate()
                notes.append(f"  py-spy on {pid} timed out")
                continue
            if out.exists():
                raw.append(out.read_text(errors="replace"))
                notes.append(f"  worker {pid}: {out}")
            else:
                notes.append(
                    f"  py-spy on {pid} failed ({spy.returncode}): {stderr.decode(errors='replace')[-800:]}"
                )
        return "\n".join([*notes, summarize_raw_profile("\n".join(raw))])


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    if process.poll() is None:
        process.kill()
        process.wait()


def profile_wrk(server: Server, workload: Workload, connections: int) -> str:
    load = subprocess.Popen(
        wrk_command(server, workload, connections, PROFILE_SECONDS + 4),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profiler = Profiler(f"{workload.operation}-{connections}")
    try:
        time.sleep(2)
        if not profiler.start(server):
            return "  no worker process found to profile"
    finally:
        summary = profiler.finish()
        stop(load)
    return f"  all workers under {workload.operation} @ {connections} connections\n{summary}"


def profile_ingest(server: Server, patients: list[SyntheaBundle], concurrency: int) -> str:
    profiler = Profiler(f"ingest-{concurrency}")
    if not profiler.start(server):
        return "  no worker process found to profile"
    try:
        asyncio.run(ingest(server, patients, concurrency, stop_after=PROFILE_SECONDS + 1))
    finally:
        summary = profiler.finish()
    return f"  all workers under transaction ingest @ {concurrency} clients\n{summary}"


# -- targets and report --------------------------------------------------------------------------------------


def find(rows: list[Row], operation: str, connections: int) -> Row | None:
    return next((r for r in rows if r.operation == operation and r.connections == connections), None)


def best(rows: list[Row], operation: str) -> Row | None:
    return max((r for r in rows if r.operation == operation), key=lambda r: r.rate, default=None)


def verdicts(rows: list[Row]) -> list[Verdict]:
    out: list[Verdict] = []
    read = find(rows, "read", 32)
    unaudited = find(rows, UNAUDITED, 32)
    for row, label, workload in (
        (unaudited, "read by id @32, FHIR core (no auth, no audit)", None),
        (read, "read by id @32 with auth + audit", ("read", 32)),
    ):
        if row is None:
            continue
        pct = row.pct_bare or 0.0
        out.append(
            Verdict(
                f"{label}: >= {READ_MIN_RPS:,.0f} req/s, >= {READ_MIN_PCT_BARE:.0f}% of bare, "
                f"p95 < {READ_MAX_P95_MS:.0f} ms",
                f"{row.rate:,.0f} req/s, {pct:.0f}% of bare, p95 {row.p95_ms or 0:.1f} ms",
                row.rate >= READ_MIN_RPS
                and pct >= READ_MIN_PCT_BARE
                and (row.p95_ms or 1e9) < READ_MAX_P95_MS,
                workload,
            )
        )
    if read is not None and unaudited is not None:
        share = 100 * read.rate / unaudited.rate
        out.append(
            Verdict(
                f"read by id @32 with auth + audit: >= {AUDITED_MIN_PCT:.0f}% of the unaudited read",
                f"{share:.0f}% ({read.rate:,.0f} of {unaudited.rate:,.0f} req/s)",
                share >= AUDITED_MIN_PCT,
                None,  # the read with auth + audit is profiled for its own verdict above
            )
        )
    create = best(rows, "create")
    if create is not None:
        out.append(
            Verdict(
                f"create: >= {CREATE_MIN_RPS:,.0f} req/s (best connection count)",
                f"{create.rate:,.0f} req/s @{create.connections}",
                create.rate >= CREATE_MIN_RPS,
                ("create", create.connections),
            )
        )
    ingest_row = best(rows, "transaction ingest")
    if ingest_row is not None:
        out.append(
            Verdict(
                f"transaction ingest: >= {INGEST_MIN_RESOURCES_PER_S:,.0f} resources/s (best concurrency)",
                f"{ingest_row.rate:,.0f} resources/s @{ingest_row.connections}",
                ingest_row.rate >= INGEST_MIN_RESOURCES_PER_S,
                ("ingest", ingest_row.connections),
            )
        )
    return out


def add_ratios(rows: list[Row]) -> None:
    bare = best(rows, "bare FastAPI+asyncpg read (ceiling)")
    pgbench = best(rows, "pgbench -S (ceiling)")
    for row in rows:
        if row.unit != "req/s":
            continue  # resources/s and tps are not comparable to one select
        if bare is not None:
            row.pct_bare = 100 * row.rate / bare.rate
        if pgbench is not None:
            row.pct_pgbench = 100 * row.rate / pgbench.rate


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?"
    )
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    mem_kb = int(mem.group(1)) if mem else 0
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    try:
        commit = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], timeout=10).strip()
        dirty = run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], timeout=10
        ).strip()
    except BenchError:
        return "unknown"
    return f"{commit}{' (uncommitted changes in the tree)' if dirty else ''}"


def _cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def markdown(rows: list[Row], checks: list[Verdict], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}",
        f"Commit: {meta['commit']}  Date: {meta['date']}  Server: {meta['server_command']}",
        "",
        "| operation | connections | req/s (or resources/s) | p50 ms | p95 ms | p99 ms | % of bare endpoint "
        "| % of pgbench -S | other processes' CPU (at least) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = f"{r.rate:,.0f} {r.unit}" + (
            f" ({r.extra['bundles_per_s']:.2f} bundles/s)" if "bundles_per_s" in r.extra else ""
        )
        failures = (
            f" **{r.non2xx} non-2xx, {r.socket_errors} socket errors**" if r.non2xx or r.socket_errors else ""
        )
        lines.append(
            f"| {r.operation}{failures} | {r.connections} | {rate} | {_cell(r.p50_ms)} | {_cell(r.p95_ms)} "
            f"| {_cell(r.p99_ms)} | {_cell(r.pct_bare, '{:.0f}%')} | {_cell(r.pct_pgbench, '{:.0f}%')} "
            f"| {_cell(r.other_cpu_pct, '{:.0f}%')} |"
        )
    noisy = [r for r in rows if (r.other_cpu_pct or 0) > NOISY_PCT]
    if noisy:
        lines += [
            "",
            f"**Other processes used more than {NOISY_PCT:.0f}% of the CPUs during "
            + ", ".join(f"{r.operation} @{r.connections}" for r in noisy)
            + ": those figures understate what the server does on a machine of its own.**",
        ]
    lines += ["", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {c.target} | {c.measured} | {'PASS' if c.passed else '**MISS**'} |" for c in checks]
    return "\n".join(lines)


def write_json(
    rows: list[Row], checks: list[Verdict], meta: dict[str, Any], profiles: dict[str, str]
) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **meta,
        "rows": [asdict(r) for r in rows],
        "targets": [asdict(c) for c in checks],
        "profiles": profiles,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")


# -- the run -------------------------------------------------------------------------------------------------


def write_ids(directory: Path, ids: list[str], versions: list[tuple[str, int]]) -> tuple[Path, Path]:
    ids_file, versions_file = directory / "ids.txt", directory / "versions.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    versions_file.write_text("".join(f"{i} {v}\n" for i, v in versions))
    return ids_file, versions_file


def measure_interactions(
    server: Server,
    database_url: str,
    workloads: dict[str, Workload],
    args: argparse.Namespace,
    meter: LoadMeter,
) -> list[Row]:
    """wrk over every interaction and connection count; the bare endpoint right before the server's read at
    the same connections, so that both see the same neighbours on a shared machine."""
    rows: list[Row] = []
    read = workloads["read"]
    if BARE_CONNECTIONS not in args.connections:
        rows.append(wrk_row(BARE, BARE_CONNECTIONS, measure_bare_endpoint(database_url, read, args, meter)))
    for connections in args.connections:
        for operation, workload in workloads.items():
            if operation == "read" and connections == BARE_CONNECTIONS:
                bare = measure_bare_endpoint(database_url, read, args, meter)
                rows.append(wrk_row(BARE, connections, bare))
                unaudited = measure_unaudited(database_url, read, args, meter)
                rows.append(wrk_row(UNAUDITED, connections, unaudited))
            result = measure(server, workload, connections, args, meter)
            rows.append(wrk_row(operation, connections, result))
    return rows


def profile_misses(
    checks: list[Verdict], server: Server, workloads: dict[str, Workload], patients: list[SyntheaBundle]
) -> dict[str, str]:
    profiles: dict[str, str] = {}
    for check in checks:
        if check.passed or check.workload is None:
            continue
        operation, connections = check.workload
        log(f"MISS: {check.target} -> profiling {operation} @ {connections} with py-spy")
        if operation == "ingest":
            profiles[check.target] = profile_ingest(server, patients, connections)
        else:
            profiles[check.target] = profile_wrk(server, workloads[operation], connections)
    return profiles


def report(rows: list[Row], checks: list[Verdict], meta: dict[str, Any], profiles: dict[str, str]) -> int:
    print("\n" + markdown(rows, checks, meta))
    for target, summary in profiles.items():
        print(f"\npy-spy profile for the MISS of: {target}\n{summary}")
    write_json(rows, checks, meta, profiles)
    print(f"\nwritten: {RESULTS}")
    failed = [r for r in rows if r.non2xx or r.socket_errors]
    if failed:
        loud("FAILED REQUESTS in: " + ", ".join(f"{r.operation} @{r.connections}" for r in failed))
        return 1
    return 0


def run_metadata(command: list[str], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "machine": machine(),
        "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "server_command": " ".join([Path(command[0]).name, *command[1:]]),
        "wrk": {"threads": 2, "duration_s": args.duration, "warmup_s": args.warmup},
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
    }


def bench(args: argparse.Namespace) -> int:
    require_local(args.admin_url)
    prelude, patients = load_synthea(args.synthea)
    patients = patients[: args.ingest_bundles]
    if args.wait_quiet > 0:
        log(f"machine load before the run: {wait_for_quiet(args.wait_quiet):.0f}% CPU")
    pgbench = pgbench_tps(args.admin_url)  # first, while none of our servers holds connections
    check_connection_budget(args.admin_url, SERVER_MAX_CONNECTIONS)
    with contextlib.ExitStack() as stack:  # unwinds servers, temp files and databases on every way out
        database_url = stack.enter_context(temporary_database(args.admin_url, "pms_bench"))
        log("migrating")
        migrate(database_url)
        port = free_port()
        command = pms_serve_command(port) or uvicorn_command("pms.main:create_app", port)
        client = register_client(database_url)
        server = stack.enter_context(running_server("pms", command, database_url, port))
        connect_auth(server, client)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pms-bench-")))

        log(f"seeding {SEED_PATIENTS:,} Patients, updating {UPDATED_PATIENTS}")
        ids, versions = asyncio.run(seed(server))
        ids_file, versions_file = write_ids(tmp, ids, versions)
        workloads = {
            "read": Workload("read", ids_file),
            "vread": Workload("vread", versions_file),
            "create": Workload("create", None),
            "update": Workload("update", ids_file),
        }
        meter = LoadMeter(args.admin_url, urlsplit(database_url).path.lstrip("/"))
        rows = measure_interactions(server, database_url, workloads, args, meter)
        rows += [row for row in [measure_audit_catch_up(server, database_url)] if row is not None]
        rows += [measure_ingest(server, prelude, patients, c, meter) for c in INGEST_CONCURRENCY]
        rows.append(pgbench)
        add_ratios(rows)
        checks = verdicts(rows)
        profiles = {} if args.no_profile else profile_misses(checks, server, workloads, patients)
        meta = run_metadata(command, args)
    return report(rows, checks, meta, profiles)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PMS_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL of a database to run CREATE/DROP DATABASE in (env PMS_BENCH_ADMIN_URL)",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before each measured run")
    parser.add_argument(
        "--connections",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[8, 32],
        help="comma-separated wrk connection counts (default 8,32)",
    )
    parser.add_argument(
        "--synthea", type=Path, default=SYNTHEA, help="tar.gz of Synthea R4 transaction Bundles"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        help="wait up to this many seconds for other processes to leave the CPUs idle first (default 120)",
    )
    parser.add_argument(
        "--ingest-bundles", type=int, default=100, help="Synthea patient Bundles to ingest (default: all 100)"
    )
    parser.add_argument("--no-profile", action="store_true", help="do not run py-spy on targets that miss")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        return bench(args)
    except BenchError as error:
        loud(f"bench stopped: {error}")
        return 1
    except (KeyboardInterrupt, _Terminated):
        print("\ninterrupted; servers stopped and databases dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
