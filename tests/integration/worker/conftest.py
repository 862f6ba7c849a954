"""Fixtures for the worker and reminders: a real Redis (namespaced per run), a local SMTP server
(aiosmtpd) and a local HTTP server standing in for the SMS provider, and an app wired to all of them.

Other test runs share the Redis at 127.0.0.1:6379, so every key this run makes starts with its own queue
name, deleted at the end.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from starlette.requests import Request
from starlette.responses import JSONResponse
from tests.support import free_port, served

from pms.config import Settings
from pms.core.db import Database
from pms.domains.reminders.channels import senders
from pms.domains.reminders.links import load_signer
from pms.domains.reminders.sweep import ReminderConfig, Reminders
from pms.fhir.validation import validate_resource
from pms.storage.registry_provider import RegistryProvider

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


# -- Redis -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("PMS_TEST_REDIS_URL", DEFAULT_REDIS_URL)

    async def reachable() -> bool:
        client = aioredis.from_url(url, socket_connect_timeout=1)
        try:
            return bool(await client.ping())
        except (OSError, aioredis.RedisError):
            return False
        finally:
            await client.aclose()

    if asyncio.run(reachable()):
        yield url
        return
    from pms.core.embedded_redis import EmbeddedRedis

    embedded = EmbeddedRedis(ROOT / ".pytest-redis")
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
async def queue_name(redis_url: str) -> AsyncIterator[str]:
    name = f"pms-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{name}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# -- SMTP and SMS stand-ins --------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the local SMTP server accepted; `reply` makes it answer every DATA with that instead."""

    messages: list[EmailMessage] = field(default_factory=list)
    reply: str | None = None
    attempts: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.reply is not None:
            return self.reply
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@dataclass
class SmsProvider:
    """A Twilio-shaped Messages endpoint that records what it is sent; `status` forces an error answer."""

    messages: list[dict[str, str]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    status: int | None = None
    attempts: int = 0
    ids: count[int] = field(default_factory=count)

    def app(self) -> Any:
        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            request = Request(scope, receive)
            self.attempts += 1
            if self.status is not None:
                response = JSONResponse({"message": "provider unavailable"}, status_code=self.status)
            else:
                form = dict(parse_qsl((await request.body()).decode()))
                self.messages.append(form)
                self.auth.append(request.headers.get("authorization", ""))
                self.paths.append(request.url.path)
                sid = f"SM{next(self.ids):032d}"
                response = JSONResponse({"sid": sid, "status": "queued"}, status_code=201)
            await response(scope, receive, send)

        return _raw_app(endpoint)

    def to(self, number: str) -> list[dict[str, str]]:
        return [m for m in self.messages if m["To"] == number]


def _raw_app(endpoint: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/Messages.json"):
            await endpoint(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.fixture(scope="session")
async def sms() -> AsyncIterator[tuple[SmsProvider, str]]:
    provider = SmsProvider()
    async with served(provider.app()) as url:
        yield provider, url


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- settings, reminders, app ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def worker_settings(
    settings: Settings,
    redis_url: str,
    queue_name: str,
    smtp: tuple[Mailbox, int],
    sms: tuple[SmsProvider, str],
) -> Settings:
    return settings.model_copy(
        update={
            "redis_url": redis_url,
            "queue_name": queue_name,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp[1],
            "smtp_tls": "none",
            "smtp_from": "Clinic <reminders@clinic.test>",
            "sms_base_url": sms[1],
            "sms_account_sid": "AC0123",
            "sms_auth_token": "sms-token",
            "sms_from": "+15550000000",
            "clinic_name": "Harbour Clinic",
            "clinic_timezone": "Asia/Shanghai",
            "public_url": "https://clinic.test",
            "reminder_max_attempts": 3,
        }
    )


@pytest.fixture
async def reminders(worker_settings: Settings) -> AsyncIterator[Reminders]:
    db = await Database.open(worker_settings)
    async with db.transaction() as conn:
        signer = await load_signer(conn, None)  # the key kept in the database, as the session's app uses
    built = Reminders(
        db=db,
        registry_provider=RegistryProvider(ttl=0),
        validator=validate_resource,
        config=ReminderConfig.from_settings(worker_settings),
        signer=signer,
        senders=senders(worker_settings),
    )
    try:
        yield built
    finally:
        for sender in built.senders.values():
            await sender.close()
        await db.dispose()


_SLOTS = count(1)


@pytest.fixture
def now() -> datetime:
    """A moment of this test's own, years ahead and weeks apart from other tests': a sweep at it sees only
    this test's appointments."""
    return datetime(2031, 1, 1, 9, 0, tzinfo=UTC) + timedelta(days=30 * next(_SLOTS))
