"""The arq worker: real workers over a real Redis, and `pms worker` as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import redis.asyncio as aioredis
from arq.connections import create_pool
from arq.worker import Worker
from tests.integration.worker.conftest import Mailbox, SmsProvider
from tests.integration.worker.helpers import appointment, email_of, mobile_of, patient
from tests.support import served

from pms.config import Settings
from pms.core.queue import heartbeat_key, redis_settings
from pms.main import create_app
from pms.worker import worker_options


class TestWorkers:
    async def test_two_workers_running_sweeps_send_each_reminder_once(
        self,
        client: httpx.AsyncClient,
        worker_settings: Settings,
        smtp: tuple[Mailbox, int],
        sms: tuple[SmsProvider, str],
    ) -> None:
        configured = worker_settings.model_copy(update={"queue_name": f"{worker_settings.queue_name}:two"})
        people = [await patient(client) for _ in range(3)]
        soon = datetime.now(UTC) + timedelta(hours=1)
        for person in people:
            await appointment(client, person, start=soon)
        pool = await create_pool(redis_settings(configured.redis_url or ""))
        try:
            for _ in range(4):
                job_id = f"{configured.queue_name}:{uuid.uuid4().hex}"
                await pool.enqueue_job("reminder_sweep", _job_id=job_id, _queue_name=configured.queue_name)
            workers = [
                Worker(**{**worker_options(configured), "max_jobs": 1}, burst=True, handle_signals=False)
                for _ in range(2)
            ]
            try:
                await asyncio.wait_for(asyncio.gather(*(w.async_run() for w in workers)), 60)
            finally:
                for worker in workers:
                    await worker.close()
            heartbeat = await pool.get(heartbeat_key(configured.queue_name))
        finally:
            await pool.aclose()

        assert sum(w.jobs_complete for w in workers) >= 4 and sum(w.jobs_failed for w in workers) == 0
        assert heartbeat is not None  # written at startup
        for person in people:
            assert len(smtp[0].to(email_of(person))) == 1
            assert len(sms[0].to(mobile_of(person))) == 1


class TestWorkerCommand:
    async def test_pms_worker_beats_shows_ok_in_health_and_stops_on_sigterm(
        self, worker_settings: Settings
    ) -> None:
        configured = worker_settings.model_copy(update={"queue_name": f"{worker_settings.queue_name}:cli"})
        env = {
            **os.environ,
            "DATABASE_URL": configured.database_url or "",
            "REDIS_URL": configured.redis_url or "",
            "PMS_QUEUE_NAME": configured.queue_name,
            "PMS_SMTP_HOST": "127.0.0.1",
            "PMS_SMTP_PORT": str(configured.smtp_port),
            "PMS_SMTP_TLS": "none",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pms.cli", "worker", "--no-migrate",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        redis = aioredis.from_url(configured.redis_url or "")
        key = heartbeat_key(configured.queue_name)
        try:
            deadline = time.monotonic() + 60
            while await redis.get(key) is None:
                assert process.returncode is None, "`pms worker` exited"
                assert time.monotonic() < deadline, "no heartbeat from `pms worker`"
                await asyncio.sleep(0.2)
            async with served(create_app(configured)) as url, httpx.AsyncClient(base_url=url) as http:
                worker = (await http.get("/health")).json()["worker"]
            assert worker["state"] == "ok"

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await redis.delete(key)
            await redis.aclose()
