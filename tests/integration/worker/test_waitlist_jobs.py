"""Freed time reaches the waitlist through the queue: an Appointment cancelled over the FHIR API enqueues
`offer_freed_time` once its transaction commits, and a real arq worker turns it into a hold."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from arq.connections import create_pool
from arq.worker import Worker
from tests.integration.scheduling.clinic import SYSTEM, Clinic, appointment, at, next_weekday
from tests.support import SYSTEM_TOKENS, auth_headers, served

from pms.config import Settings
from pms.core.queue import redis_settings
from pms.domains.hooks import OFFER_FREED_TIME
from pms.main import create_app
from pms.worker import worker_options


async def queued(configured: Settings) -> list[str]:
    pool = await create_pool(redis_settings(configured.redis_url or ""))
    try:
        return [job.function for job in await pool.queued_jobs(queue_name=configured.queue_name)]
    finally:
        await pool.aclose()


class TestFreedTimeJob:
    async def test_a_cancellation_queues_an_offer_that_the_worker_makes(
        self, worker_settings: Settings, server_url: str
    ) -> None:
        configured = worker_settings.model_copy(
            update={"queue_name": f"{worker_settings.queue_name}:waitlist", "base_url": f"{server_url}/fhir"}
        )
        async with served(create_app(configured)) as url:
            SYSTEM_TOKENS[url] = SYSTEM_TOKENS[server_url]  # same database and keys; audience as configured
            async with httpx.AsyncClient(
                base_url=f"{url}/fhir", timeout=60, headers=auth_headers(url)
            ) as http:
                clinic = await Clinic(http).setup()
                staff = await clinic.practitioner()
                waiting = await clinic.patient("Waiting")
                entry: dict[str, Any] = await clinic.create(
                    {
                        "resourceType": "Appointment",
                        "status": "waitlist",
                        "serviceType": [{"coding": [{"system": SYSTEM, "code": clinic.code("follow-up")}]}],
                        "participant": [
                            {"actor": {"reference": f"Patient/{waiting}"}, "status": "needs-action"},
                            {"actor": {"reference": staff.ref}, "status": "needs-action"},
                        ],
                    }
                )
                day = next_weekday(2) + timedelta(weeks=3)
                body = appointment(clinic, staff, await clinic.patient(), at(day, 9), at(day, 9, 20))
                booked = (await http.post("/Appointment/$book", json=body)).json()
                assert await queued(configured) == []  # booking frees nothing

                refused = await http.put(  # a write that fails (invalid transition) queues nothing
                    f"/Appointment/{booked['id']}", json={**booked, "status": "proposed"}
                )
                assert refused.status_code >= 400 and await queued(configured) == []
                cancelled = await http.put(
                    f"/Appointment/{booked['id']}",
                    json={**booked, "status": "cancelled", "cancelationReason": {"text": "ill"}},
                )
                assert cancelled.status_code == 200
                assert await queued(configured) == [OFFER_FREED_TIME]

                worker = Worker(**worker_options(configured), burst=True, handle_signals=False)
                try:
                    await asyncio.wait_for(worker.async_run(), 60)
                finally:
                    await worker.close()
                assert worker.jobs_failed == 0

                holds = await http.get(
                    "/Appointment", params={"patient": f"Patient/{waiting}", "status": "pending"}
                )
                [hold] = [e["resource"] for e in holds.json().get("entry", [])]
                assert hold["start"] == booked["start"]
                assert entry["id"] in str(hold.get("extension"))
