"""An embedded, real PostgreSQL for development: `make run` / `pms serve` without DATABASE_URL.

The cluster lives in `<data_dir>/pgdata` and survives restarts: a private trust-auth server on 127.0.0.1
(port chosen once, saved in `<data_dir>/pgdata.port`) with its unix sockets in the data dir. Binaries are
Debian's (`/usr/lib/postgresql/<major>/bin`), else the ones bundled in the `pgserver` wheel (PostgreSQL 16).
initdb/pg_ctl refuse to run as root, so as root they run as the `postgres` OS user.
A server left running by a crashed run from the same data dir is reused (and left running on `stop()`);
a stale `postmaster.pid` (dead process, or a pid since reused by something else) is cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import shlex
import signal
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pms.core.filelock import exclusive_lock

DATABASE = "pms"
SUPERUSER = "postgres"
OS_USER = "postgres"  # initdb/pg_ctl refuse to run as root; as root we run them as this user
DEBIAN_ROOT = Path("/usr/lib/postgresql")
LISTEN = "127.0.0.1"
START_TIMEOUT = 60.0  # crash recovery after an unclean stop can take a while on a big cluster
STOP_TIMEOUT = 30.0
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.65535.lock"
LOG_ROTATE_BYTES = 10 * 1024 * 1024


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster could not be initialised, started or stopped."""


@dataclass(frozen=True)
class Postmaster:
    """The interesting lines of `pgdata/postmaster.pid`."""

    pid: int
    port: int
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> Postmaster | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        # The file is written in steps while the server starts: pad the missing lines.
        lines += [""] * (8 - len(lines))
        try:
            pid, port = int(lines[0]), int(lines[3] or 0)
        except ValueError:
            return None
        return cls(pid=pid, port=port, status=lines[7].strip())


class EmbeddedPostgres:
    """A private PostgreSQL cluster under `data_dir`; `start()` returns a URL to its "pms" database."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        # Absolute: postgres records and chdirs into the data dir; we compare against that.
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self._port = port
        self._started_pid: int | None = None

    # -- public API ------------------------------------------------------------------------------------

    def start(self) -> str:
        """Initialise on first use, start (or reuse a healthy running server), create the database."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            while True:
                postmaster = self._running_postmaster()
                if postmaster is None:
                    postmaster = self._start_server(_bindir(self.pgdata))
                    self._started_pid = postmaster.pid
                try:
                    _ensure_database(postmaster)
                except EmbeddedPostgresError:
                    # A server we meant to reuse can die between the check and the connect (it was being
                    # killed): then start our own. Any other failure is real.
                    if self._started_pid is not None or _is_our_postmaster(postmaster.pid, self.pgdata):
                        raise
                    continue
                return _url(postmaster.port)

    def stop(self) -> None:
        """Fast shutdown of the server this instance started; a reused server is left running."""
        pid, self._started_pid = self._started_pid, None
        if pid is not None:
            _shutdown(pid, self.pgdata)

    def shutdown(self) -> bool:
        """Stop whatever server runs from this data dir, whoever started it (`pms db stop`)."""
        with self._lock():
            postmaster = Postmaster.read(self.pgdata)
            if postmaster is None or not _is_our_postmaster(postmaster.pid, self.pgdata):
                return False
            _shutdown(postmaster.pid, self.pgdata)
            self._started_pid = None
            return True

    def running_url(self) -> str | None:
        """The URL of a ready server running from this data dir, or None (`pms db url`)."""
        postmaster = Postmaster.read(self.pgdata)
        if postmaster and postmaster.status == "ready" and _is_our_postmaster(postmaster.pid, self.pgdata):
            return _url(postmaster.port)
        return None

    @property
    def started(self) -> bool:
        """True while this instance owns (started) the running server."""
        return self._started_pid is not None

    # -- starting --------------------------------------------------------------------------------------

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        # Two `pms` processes starting at once must not both initdb/start the same cluster.
        return exclusive_lock(self.data_dir / "pgdata.lock")

    def _running_postmaster(self) -> Postmaster | None:
        """A ready server from our data dir (waiting while it starts), after cleaning stale state."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            postmaster = Postmaster.read(self.pgdata)
            if postmaster is None or not _is_our_postmaster(postmaster.pid, self.pgdata):
                # Under our lock nobody else is starting a server here, so a pid file that is garbled
                # (crash mid-write) or names a dead/foreign process is stale.
                self._clear_stale()
                return None
            if postmaster.status == "ready":
                return postmaster
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"server in {self.pgdata} stuck in state {postmaster.status!r}")
            time.sleep(0.05)

    def _clear_stale(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        # After a kill -9 of the postmaster its children exit on their own within moments; a new
        # postmaster refuses to start while they still hold the old shared memory, so wait for them.
        deadline = time.monotonic() + 5.0
        while (orphans := _processes_in(self.pgdata)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Postgres itself only ignores a lock file whose pid is dead; a pid reused by another process
        # (common in containers) would block the start, so remove the files ourselves.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.pgdata.glob(".s.PGSQL.*"):
            lock.unlink(missing_ok=True)

    def _start_server(self, bindir: Path) -> Postmaster:
        run_as = _os_user() if os.geteuid() == 0 else None
        if run_as is not None:
            # e.g. the wheel's binaries in a venv under /root, or a data dir under a 0700 home or temp dir
            _ensure_traversable(bindir, run_as.pw_uid)
            _ensure_traversable(self.data_dir, run_as.pw_uid)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir, run_as)
        log = self.pgdata / "server.log"
        if log.exists() and log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_suffix(".log.1"))
        attempts = 1 if self._port else 2  # a freshly chosen port can be taken in between: pick again
        for attempt in range(attempts):
            port = self._choose_port(fresh=attempt > 0)
            options = f"-p {port} -c listen_addresses={LISTEN} -k {shlex.quote(self._socket_dir())}"
            result = _run(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT)),
                    "-s",
                    "-o",
                    options,
                ],
                run_as=run_as,
                check=False,
            )
            postmaster = Postmaster.read(self.pgdata)
            if result.returncode == 0 and postmaster is not None:
                return postmaster
        raise EmbeddedPostgresError(
            f"pg_ctl start failed ({result.stderr.strip()}); server log {log}:\n{_tail(log)}"
        )

    def _initdb(self, bindir: Path, run_as: pwd.struct_passwd | None) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(self.pgdata, run_as.pw_uid, run_as.pw_gid)
        # C collation: fast, deterministic sorting; a UTF-8 ctype so lower()/ILIKE handle non-ASCII names.
        ctype = "C.UTF-8" if _has_locale("C.utf8") else "C"
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                f"--lc-ctype={ctype}",
                "--no-instructions",
            ],
            run_as=run_as,
        )

    def _socket_dir(self) -> str:
        # Sockets in the data dir keep us clear of the system cluster's /var/run/postgresql; a path too
        # long for sun_path would make postgres fail, so then go TCP-only.
        return str(self.pgdata) if len(str(self.pgdata)) <= SOCKET_PATH_MAX else ""

    def _choose_port(self, *, fresh: bool) -> int:
        """The explicit port, else the one saved in data_dir while it is free, else a new free one."""
        if self._port:
            return self._port
        saved_file = self.data_dir / "pgdata.port"
        if not fresh:
            with contextlib.suppress(OSError, ValueError):
                saved = int(saved_file.read_text())
                if _port_is_free(saved):
                    return saved
        port = _free_port()
        saved_file.write_text(f"{port}\n")
        return port


# -- binaries and users ---------------------------------------------------------------------------------


def _bindir(pgdata: Path) -> Path:
    bindir = debian_bindir(pgdata) or pgserver_bindir()
    if bindir is None:
        raise EmbeddedPostgresError(
            "no PostgreSQL binaries: install Debian's postgresql package or the pgserver wheel"
        )
    return bindir


def pgserver_bindir() -> Path | None:
    """The binaries bundled in the pgserver wheel, found without importing it (its import has side
    effects: a lock dir under $XDG_RUNTIME_DIR). We only use the binaries; starting is ours, as above."""
    spec = importlib.util.find_spec("pgserver")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bindir = Path(location) / "pginstall" / "bin"
        if (bindir / "pg_ctl").exists():
            return bindir
    return None


def debian_bindir(pgdata: Path) -> Path | None:
    """Debian's bin dir matching the cluster's PG_VERSION if installed, else the highest version."""
    versions: dict[int, Path] = {}
    with contextlib.suppress(OSError):
        for bindir in DEBIAN_ROOT.glob("*/bin"):
            if bindir.parent.name.isdigit() and (bindir / "pg_ctl").exists():
                versions[int(bindir.parent.name)] = bindir
    if not versions:
        return None
    with contextlib.suppress(OSError, ValueError):
        existing = int((pgdata / "PG_VERSION").read_text())
        if existing in versions:
            return versions[existing]
    return versions[max(versions)]


def _os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise EmbeddedPostgresError(
            f"as root, PostgreSQL must run as the {OS_USER!r} OS user: none exists"
        ) from exc


def _ensure_traversable(path: Path, uid: int) -> None:
    """Let `uid` reach `path`: add o+x (search, not listing) to ancestors that lack it, e.g. a 0700 $HOME."""
    for directory in [path, *path.parents]:
        info = directory.stat()
        if info.st_uid != uid and not info.st_mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


def _run(
    cmd: list[str], *, run_as: pwd.struct_passwd | None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # PGDATA etc. must not leak in
    user: dict[str, Any] = {}
    if run_as is not None:
        # extra_groups=[] drops root's supplementary groups; cwd "/" because root's may be unreadable.
        user = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": [], "cwd": "/"}
        env["HOME"] = run_as.pw_dir
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, **user
    )
    if check and result.returncode != 0:
        raise EmbeddedPostgresError(f"{Path(cmd[0]).name} failed: {(result.stderr or result.stdout).strip()}")
    return result


def _has_locale(name: str) -> bool:
    try:
        result = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    except OSError:
        return False
    return name.lower() in {line.strip().lower().replace("utf-8", "utf8") for line in result.stdout.split()}


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- ports ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LISTEN, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Postgres binds with SO_REUSEADDR too, so a TIME_WAIT left by our last run does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LISTEN, port))
        except OSError:
            return False
        return True


# -- processes ------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    # If we are the parent (pid 1 in a container adopts the daemonised postmaster) reap it, else a
    # zombie would look alive forever.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return status.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    """Alive, a postgres process, and (where /proc says) running in our data dir."""
    if not _alive(pid):
        return False
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: trust the pid file
    if name != "postgres":
        return False
    cwd = _cwd(pid)
    return cwd is None or cwd == pgdata.resolve()


def _processes_in(pgdata: Path) -> list[int]:
    """Processes whose working directory is the data dir: postgres backends of a dead postmaster."""
    target, found = pgdata.resolve(), []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and _cwd(int(entry.name)) == target and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _shutdown(pid: int, pgdata: Path) -> None:
    """SIGINT is postgres' fast shutdown (what `pg_ctl stop -m fast` sends); escalate if it hangs."""
    for sig, timeout in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        if not _is_our_postmaster(pid, pgdata):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _alive(pid):
            return
    raise EmbeddedPostgresError(f"postgres (pid {pid}) did not stop")


# -- connections ----------------------------------------------------------------------------------------


def _url(port: int) -> str:
    return f"postgresql://{SUPERUSER}@{LISTEN}:{port}/{DATABASE}"


def _ensure_database(postmaster: Postmaster) -> None:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(
            host=LISTEN, port=postmaster.port, user=SUPERUSER, database="postgres", timeout=10
        )
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()

    # A thread of its own, so this works whether or not the caller is inside a running event loop.
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            asyncio.run(create())
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=runner, name="embedded-pg-createdb")
    thread.start()
    thread.join()
    if errors:
        raise EmbeddedPostgresError(f"could not create database {DATABASE!r}: {errors[0]}") from errors[0]
