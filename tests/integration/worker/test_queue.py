"""The transactional job queue and the worker's health as the API reports it."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from tests.support import SYSTEM_TOKENS, auth_headers, free_port, served

from pms.config import Settings
from pms.core.db import Database
from pms.core.queue import JobQueue, after_commit, heartbeat_key
from pms.main import create_app


class Boom(Exception):
    pass


async def queued_ids(queue: JobQueue) -> set[str]:
    pool: ArqRedis = await queue.pool()
    return {job.job_id for job in await pool.queued_jobs(queue_name=queue.queue_name)}


class TestAfterCommit:
    async def test_jobs_are_sent_after_commit_and_dropped_on_rollback(
        self, database: Database, redis_url: str, queue_name: str
    ) -> None:
        queue = JobQueue(redis_url, queue_name=f"{queue_name}:after-commit")
        committed, rolled_back = uuid.uuid4().hex, uuid.uuid4().hex
        try:
            async with after_commit(queue) as jobs, database.transaction() as conn:
                await conn.execute(text("SELECT 1"))
                jobs.enqueue("reminder_sweep", job_id=committed)
                assert committed not in await queued_ids(queue)  # not before the commit
            with pytest.raises(Boom):
                async with after_commit(queue) as jobs, database.transaction() as conn:
                    jobs.enqueue("reminder_sweep", job_id=rolled_back)
                    raise Boom
            with pytest.raises(Exception, match="duplicate key"):
                # The COMMIT itself fails (a deferred constraint): nothing is sent either.
                async with after_commit(queue) as jobs, database.transaction() as conn:
                    await conn.execute(
                        text("CREATE TEMP TABLE once (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
                    )
                    await conn.execute(text("INSERT INTO once VALUES (1), (1)"))
                    jobs.enqueue("reminder_sweep", job_id=rolled_back)

            assert await queued_ids(queue) == {committed}
        finally:
            pool = await queue.pool()
            await pool.delete(f"{queue.queue_name}")
            await queue.close()

    async def test_redis_down_loses_no_request(self, database: Database) -> None:
        queue = JobQueue(f"redis://127.0.0.1:{free_port()}/0", queue_name="unreachable")
        started = time.monotonic()
        async with after_commit(queue) as jobs, database.transaction() as conn:
            await conn.execute(text("SELECT 1"))
            jobs.enqueue("reminder_sweep")
        assert time.monotonic() - started < 3


@pytest.fixture
def redis_down_settings(settings: Settings, server_url: str) -> Settings:
    # The suite's token names the session server as its audience: this app presents itself as that one.
    return settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "base_url": f"{server_url}/fhir"}
    )


class TestHealth:
    async def test_redis_down_the_api_works_and_says_the_worker_is_down(
        self, redis_down_settings: Settings, server_url: str
    ) -> None:
        async with served(create_app(redis_down_settings)) as url:
            SYSTEM_TOKENS[url] = SYSTEM_TOKENS[server_url]  # same database, same signing keys
            async with httpx.AsyncClient(base_url=url, timeout=10, headers=auth_headers(url)) as http:
                started = time.monotonic()
                health = await http.get("/health")
                elapsed = time.monotonic() - started
                created = await http.post(
                    "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Down"}]}
                )
        assert health.status_code == 200 and elapsed < 3
        body = health.json()
        assert body["status"] == "ok" and body["database"] == "ok"
        assert body["worker"] == {"state": "down", "last_heartbeat": None}
        assert created.status_code == 201

    async def test_worker_state_follows_the_heartbeat(
        self, settings: Settings, redis_url: str, queue_name: str
    ) -> None:
        configured = settings.model_copy(update={"redis_url": redis_url, "queue_name": f"{queue_name}:hb"})
        queue = JobQueue(redis_url, queue_name=configured.queue_name)
        pool = await queue.pool()
        key = heartbeat_key(configured.queue_name)
        try:
            async with served(create_app(configured)) as url, httpx.AsyncClient(base_url=url) as http:
                assert (await http.get("/health")).json()["worker"]["state"] == "down"  # never beat
                beat = datetime.now(UTC)
                await pool.set(key, beat.isoformat())
                worker = (await http.get("/health")).json()["worker"]
                assert worker["state"] == "ok"
                assert datetime.fromisoformat(worker["last_heartbeat"]) == beat
                await pool.set(key, (beat - timedelta(minutes=5)).isoformat())
                assert (await http.get("/health")).json()["worker"]["state"] == "down"  # stale
        finally:
            await pool.delete(key)
            await queue.close()

    async def test_without_redis_configured_the_state_is_unknown(self, server_url: str) -> None:
        async with httpx.AsyncClient(base_url=server_url) as http:
            assert (await http.get("/health")).json()["worker"] == {
                "state": "unknown",
                "last_heartbeat": None,
            }
