"""The transactional job queue: jobs asked for during a unit of work reach Redis only after it commits.

A unit of work collects jobs in `PendingJobs`; `after_commit` sends them once the block (and the database
transaction inside it) succeeded, and drops them when it raised. So a worker never runs a job about data
that was rolled back, and a job never runs before the data it reads is visible.

Redis being down must not break a request whose transaction already committed: sending uses short
timeouts and a failure is logged, not raised. What is lost that way is recovered by the periodic jobs
(the reminder sweep reads the database, not the queue).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from arq.connections import ArqRedis, RedisSettings, create_pool
from pydantic import BaseModel
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1  # seconds; arq's own default retries for 5 s, which would hang a request
SEND_TIMEOUT = 2.0
HEARTBEAT_STALE_AFTER = timedelta(seconds=90)  # three missed beats (the worker beats every 30 s)


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = CONNECT_TIMEOUT
    settings.conn_retries = 0
    return settings


def heartbeat_key(queue_name: str) -> str:
    """Namespaced by queue, so that deployments (and test runs) sharing one Redis keep apart."""
    return f"{queue_name}:worker-heartbeat"


@dataclass(frozen=True)
class Job:
    function: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None  # arq ignores a job whose id is already queued or running
    defer_by: timedelta | None = None


class PendingJobs:
    """Jobs requested in one unit of work, not yet sent."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def enqueue(
        self,
        function: str,
        *args: Any,
        job_id: str | None = None,
        defer_by: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        self.jobs.append(Job(function, args, kwargs, job_id, defer_by))

    def __len__(self) -> int:
        return len(self.jobs)


class WorkerHealth(BaseModel):
    state: Literal["ok", "down", "unknown"]
    last_heartbeat: datetime | None = None


class JobQueue:
    """The app's connection to the arq queue (a lifespan object). It connects lazily and reconnects after
    Redis comes back, so the API starts and serves with Redis down."""

    def __init__(self, url: str, *, queue_name: str) -> None:
        self.url = url
        self.queue_name = queue_name
        self._pool: ArqRedis | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> ArqRedis:
        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(
                    redis_settings(self.url), retry=0, default_queue_name=self.queue_name
                )
            return self._pool

    async def send(self, jobs: list[Job]) -> bool:
        """Enqueue `jobs`; False (logged) when Redis cannot be reached in time."""
        if not jobs:
            return True
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                pool = await self.pool()
                for job in jobs:
                    await pool.enqueue_job(
                        job.function,
                        *job.args,
                        _job_id=job.job_id,
                        _queue_name=self.queue_name,
                        _defer_by=job.defer_by,
                        **job.kwargs,
                    )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not enqueue %d job(s) (%s): %s", len(jobs), type(exc).__name__, exc)
            await self._reset()
            return False
        return True

    async def worker_health(self, *, now: datetime | None = None) -> WorkerHealth:
        """From the heartbeat the worker refreshes; `down` when it is stale or Redis is unreachable."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                pool = await self.pool()
                raw = await pool.get(heartbeat_key(self.queue_name))
        except (RedisError, OSError, TimeoutError):
            await self._reset()
            return WorkerHealth(state="down")
        if raw is None:
            return WorkerHealth(state="down")
        beat = datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
        fresh = (now or datetime.now(UTC)) - beat < HEARTBEAT_STALE_AFTER
        return WorkerHealth(state="ok" if fresh else "down", last_heartbeat=beat)

    async def _reset(self) -> None:
        # A broken pool is dropped so that the next call reconnects from scratch.
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await pool.aclose()
            except (RedisError, OSError, TimeoutError):
                pass

    async def close(self) -> None:
        await self._reset()


@asynccontextmanager
async def after_commit(queue: JobQueue | None) -> AsyncIterator[PendingJobs]:
    """Collect jobs for the enclosed unit of work; send them only if the block completes.

    Open the database transaction *inside* this block, so that it has committed when the block ends:

        async with after_commit(queue) as jobs, db.transaction() as conn:
            ...; jobs.enqueue("send_x", id_)
    """
    jobs = PendingJobs()
    yield jobs
    if queue is not None:
        await queue.send(jobs.jobs)
    elif jobs.jobs:
        log.warning("no REDIS_URL configured: dropped %d job(s)", len(jobs.jobs))
