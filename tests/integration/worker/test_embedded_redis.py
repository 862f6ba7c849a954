"""The embedded Redis of `make run`: shared, stopped by its owner, never orphaned by a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pms.core.embedded_redis import EmbeddedRedis, _ping


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


class TestEmbeddedRedis:
    def test_started_reused_and_stopped_by_its_owner(self, tmp_path: Path) -> None:
        owner = EmbeddedRedis(tmp_path)
        url = owner.start()
        try:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert _ping(port) and owner.started
            pid = int(owner.pid_file.read_text())
            guest = EmbeddedRedis(tmp_path)
            assert guest.start() == url and not guest.started
            guest.stop()  # not the owner: leaves it running
            assert _ping(port)
        finally:
            owner.stop()
        assert _wait_gone(pid) and not _ping(port)

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
    def test_a_killed_owner_leaves_no_orphan_and_the_next_start_works(self, tmp_path: Path) -> None:
        script = (
            "import sys, time\n"
            "from pms.core.embedded_redis import EmbeddedRedis\n"
            "print(EmbeddedRedis(sys.argv[1]).start(), flush=True)\n"
            "time.sleep(120)\n"
        )
        owner = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert owner.stdout is not None
            assert owner.stdout.readline().startswith("redis://")
            pid = int((tmp_path / "redis" / "redis.pid").read_text())
            assert _alive(pid)
            os.kill(owner.pid, signal.SIGKILL)
            owner.wait()
            assert _wait_gone(pid), "redis-server outlived the process that started it"
        finally:
            if owner.poll() is None:
                owner.kill()
        again = EmbeddedRedis(tmp_path)
        url = again.start()
        try:
            assert again.started and _ping(int(url.rsplit(":", 1)[1].split("/")[0]))
        finally:
            again.stop()
