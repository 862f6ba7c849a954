"""Small helpers shared by the benches: logging, throwaway databases, the server as a subprocess, wrk.

Everything talks to 127.0.0.1 only. Every process started here runs in its own session (process group)
and is stopped, with all its children, by `stop_process_group` in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: pms, uvicorn, alembic
HOST = "127.0.0.1"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_SCOPES = "system/*.cruds"  # the benches' OAuth client may do everything, like a backend integration


class BenchError(RuntimeError):
    """Something a bench cannot go on after (a server that does not start, a failed request...)."""


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that every `finally` (servers, databases) runs."""


def install_sigterm_handler() -> None:
    def handler(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run(
    cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, stdin: str | None = None
) -> str:
    """Run a command to completion (killed on timeout); its stdout, or BenchError with its output."""
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, env=env, check=False, input=stdin
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{cmd[0]} timed out after {timeout:.0f}s") from error
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.stdout


# -- databases -----------------------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def require_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        raise BenchError(f"the benches only talk to 127.0.0.1 (database host is {host!r})")


async def admin_execute(admin_url: str, statement: str, *, seconds: float = 600) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(statement, timeout=seconds)
    finally:
        await conn.close()


def create_database(admin_url: str, prefix: str) -> str:
    """A new database `<prefix>_<random hex>`; its name."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    asyncio.run(admin_execute(admin_url, f'CREATE DATABASE "{name}"'))
    log(f"created database {name}")
    return name


def drop_database(admin_url: str, name: str) -> None:
    asyncio.run(admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    log(f"dropped database {name}")


def migrate(database_url: str) -> None:
    """`pms migrate --database-url URL` (alembic upgrade head)."""
    run([str(BIN / "pms"), "migrate", "--database-url", database_url], timeout=300)


# -- the server ----------------------------------------------------------------------------------------------


class Auth:
    """Bearer tokens, when the server wants them: SMART Backend Services (client_credentials with a client
    secret over HTTP Basic), refreshed a minute before they expire. Without a token URL: no header."""

    def __init__(self, token_url: str | None = None, client_id: str = "", secret: str = "") -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.secret = secret
        self.token = ""
        self.expires = 0.0

    def bearer(self) -> str | None:
        """A token valid for at least another minute (None: the server takes anonymous requests)."""
        if self.token_url is None:
            return None
        if time.monotonic() > self.expires - 60:
            self._refresh(self.token_url)
        return self.token

    def headers(self) -> dict[str, str]:
        token = self.bearer()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _refresh(self, token_url: str) -> None:
        form = {"grant_type": "client_credentials", "scope": BENCH_SCOPES}
        with httpx.Client(timeout=30, trust_env=False) as client:
            response = client.post(token_url, data=form, auth=(self.client_id, self.secret))
        if response.status_code != 200:
            raise BenchError(f"token endpoint answered {response.status_code}: {response.text[:2000]}")
        body = response.json()
        self.token = str(body["access_token"])
        self.expires = time.monotonic() + float(body.get("expires_in", 300))


def register_client(database_url: str, name: str) -> tuple[str, str] | None:
    """(client_id, secret) of a backend-service client registered with `pms client create`; None when this
    checkout's CLI has no such command (a server without authorization)."""
    pms = str(BIN / "pms")
    probe = subprocess.run([pms, "client", "create", "--help"], capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        return None
    client_id, secret = f"{name}-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    command = [
        pms,
        "client",
        "create",
        "--name",
        name,
        "--grant",
        "client_credentials",
        "--scopes",
        BENCH_SCOPES,
        "--client-id",
        client_id,
        "--secret-stdin",
        "--database-url",
        database_url,
    ]
    run(command, timeout=120, stdin=secret)
    return client_id, secret


def connect_auth(server: Server, client: tuple[str, str] | None) -> None:
    """Give the server an Auth token source if it answers 401 to an anonymous FHIR request."""
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
    server.auth.bearer()  # fails here, loudly, if the client cannot get a token
    log(f"the server wants bearer tokens: client_credentials as {client[0]} ({BENCH_SCOPES})")


@dataclass
class Server:
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


def wait_healthy(server: Server, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2, trust_env=False) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(f"the server exited ({server.process.returncode}):\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{server.url}/health").status_code == 200:
                    return
            time.sleep(0.25)
    raise BenchError(f"the server is not healthy after {timeout:.0f}s:\n{server.log_tail()}")


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM to the whole group (server and workers), SIGKILL whatever is left after `grace` seconds."""
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
def pms_server(
    database_url: str, *, workers: int = 2, client: tuple[str, str] | None = None
) -> Iterator[Server]:
    """`pms serve` (production settings, no migration: the caller migrated) on a free 127.0.0.1 port; with
    bearer tokens from `client` (see register_client) if the server asks for them."""
    port = free_port()
    command = [
        str(BIN / "pms"),
        "serve",
        "--workers",
        str(workers),
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-migrate",
    ]
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("WEB_CONCURRENCY", None)
    with tempfile.NamedTemporaryFile(prefix="pms-bench-", suffix=".log", delete=False) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    server = Server(process, port, log_path)
    try:
        wait_healthy(server)
        log(f"server (pid {process.pid}, {workers} workers) healthy at {server.url}")
        connect_auth(server, client)
        yield server
    finally:
        stop_process_group(process)
        log(f"server stopped (pid {process.pid})")
        log_path.unlink(missing_ok=True)


# -- wrk -----------------------------------------------------------------------------------------------------


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
    bodies_answered: int = 0  # bench/wrk/bodies.lua: how many of its bodies got an answer

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def parse_wrk(output: str) -> WrkResult:
    """The `WRK_RESULT key=value ...` line (latencies in microseconds) a bench Lua script prints in done()."""
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk printed no result line:\n{output[-3000:]}")
    values = {k: float(v) for k, v in (item.split("=", 1) for item in line.split()[1:])}
    sample = next(
        (ln[len("WRK_SAMPLE ") :] for ln in output.splitlines() if ln.startswith("WRK_SAMPLE ")), ""
    )
    return WrkResult(
        requests=int(values["requests"]),
        duration_s=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1000,
        p95_ms=values["p95_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        non2xx=int(values["non2xx"]),
        socket_errors=int(sum(values[k] for k in ("connect", "read", "write", "timeout"))),
        sample=sample,
        bodies_answered=int(values.get("answered", 0)),
    )


def run_wrk(
    url: str, script: Path, script_args: Sequence[str], *, connections: int, seconds: float, threads: int = 2
) -> WrkResult:
    if urlsplit(url).hostname not in LOCAL_HOSTS:
        raise BenchError(f"wrk only against 127.0.0.1, not {url}")
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        *script_args,
    ]
    return parse_wrk(run(command, timeout=seconds + 60))


# -- machine load --------------------------------------------------------------------------------------------


def busy_cpu_seconds() -> float:
    """CPU seconds spent not idle (all CPUs) since boot, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields[:8]) - idle) / ticks


def cpu_busy_pct(seconds: float = 2.0) -> float:
    """How busy the machine's CPUs are, measured over `seconds`."""
    busy, start = busy_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100 * (busy_cpu_seconds() - busy) / ((time.monotonic() - start) * (os.cpu_count() or 1))


def wait_for_quiet(max_wait: float, threshold_pct: float = 15.0) -> float:
    """Wait (at most max_wait seconds) until other processes leave the CPUs mostly idle; the last reading."""
    deadline = time.monotonic() + max_wait
    logged = 0.0
    while True:
        pct = cpu_busy_pct()
        if pct < threshold_pct or time.monotonic() >= deadline:
            return pct
        if time.monotonic() - logged >= 15:
            log(f"machine busy ({pct:.0f}% CPU used by other processes); waiting for it to calm down")
            logged = time.monotonic()


# -- profiling -----------------------------------------------------------------------------------------------


def worker_pids(server: Server) -> list[int]:
    """The uvicorn worker processes (multiprocessing children) in the server's process group."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if os.getpgid(int(entry.name)) != server.process.pid:
                continue
            if b"spawn_main" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return sorted(pids)


def start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling one process for `seconds`, folded stacks to `out` (stop it with finish_py_spy)."""
    command = [
        str(BIN / "py-spy"),
        "record",
        "-p",
        str(pid),
        "-d",
        str(max(1, round(seconds))),
        "-r",
        "200",
        "-f",
        "raw",
        "-o",
        str(out),
        "--nonblocking",
    ]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def finish_py_spy(spy: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> str:
    """Wait for py-spy; a summary of the top frames (own and inclusive time) or why there is none."""
    try:
        _, stderr = spy.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(spy)
        return "py-spy timed out"
    if spy.returncode != 0 or not out.exists():
        return f"py-spy failed ({spy.returncode}): {stderr.decode(errors='replace')[-800:]}"
    return summarize_folded(out.read_text(errors="replace"))


def _frame(frame: str) -> str:
    """`fetch (asyncpg/connection.py:690)` -> `fetch (asyncpg/connection.py)`: one row per function."""
    head, sep, tail = frame.rpartition(" (")
    return f"{head} ({tail.rsplit(':', 1)[0].rstrip(')')})" if sep else frame


def _package(frame: str) -> str:
    """The top-level package of a `function (path/file.py)` frame (`stdlib` for the rest)."""
    path = frame.rpartition(" (")[2].rstrip(")")
    head = path.split("/", 1)[0] if "/" in path else ""
    return head if head and not head.startswith("<") else "stdlib/other"


def summarize_folded(raw: str, top: int = 15) -> str:
    """Own time by package and by function, and the inclusive time of the project's (pms/) functions."""
    own: dict[str, int] = {}
    packages: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        total += count
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
            packages[_package(frames[-1])] = packages.get(_package(frames[-1]), 0) + count
        for frame in {f for f in frames if "(pms/" in f}:
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return "(no samples)"

    def ranked(counts: dict[str, int]) -> list[str]:
        best = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [f"  {100 * n / total:5.1f}%  {name}" for name, n in best]

    return "\n".join(
        [
            f"{total} samples; own time by package:",
            *ranked(packages),
            "own time by function:",
            *ranked(own),
            "inclusive time of pms functions:",
            *ranked(inclusive),
        ]
    )
