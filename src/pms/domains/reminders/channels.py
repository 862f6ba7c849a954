"""The two ways a reminder leaves: email over SMTP (aiosmtplib) and SMS over a Twilio-style HTTP API.

Both are async adapters with one job: hand a message to the provider, return the provider's id for it, or
raise `DeliveryError` saying whether trying again later could help (a 4xx SMTP reply or a 5xx/429 HTTP
answer, a timeout, a refused connection) or not (a rejected address).
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Literal, Protocol

import aiosmtplib
import httpx

from pms.config import Settings
from pms.domains.reminders.messages import Message

ChannelName = Literal["email", "sms"]


class DeliveryError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Sender(Protocol):
    channel: ChannelName

    async def send(self, to: str, message: Message) -> str: ...

    async def close(self) -> None: ...


class EmailSender:
    channel: ChannelName = "email"

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host is not None
        self.settings = settings
        self.hostname = settings.smtp_host

    async def send(self, to: str, message: Message) -> str:
        email = EmailMessage()
        email["From"] = self.settings.smtp_from
        email["To"] = to
        email["Subject"] = message.subject
        email["Content-Language"] = message.language
        message_id = make_msgid(domain="pms.local")
        email["Message-ID"] = message_id
        email.set_content(message.text)
        tls = self.settings.smtp_tls
        try:
            await aiosmtplib.send(
                email,
                hostname=self.hostname,
                port=self.settings.smtp_port,
                username=self.settings.smtp_username,
                password=self.settings.smtp_password,
                use_tls=tls == "tls",
                start_tls=tls == "starttls",
                timeout=self.settings.smtp_timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            # RFC 5321: 4yz is a transient negative reply, 5yz a permanent one.
            raise DeliveryError(f"SMTP {exc.code} {exc.message}", transient=exc.code < 500) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}", transient=True) from exc
        return message_id

    async def close(self) -> None:
        return None


class SmsSender:
    """POST {base}/2010-04-01/Accounts/{sid}/Messages.json, form fields To/From/Body, basic auth."""

    channel: ChannelName = "sms"

    def __init__(self, settings: Settings, *, max_connections: int = 50) -> None:
        assert settings.sms_base_url is not None
        self.sender = settings.sms_from or ""
        sid = settings.sms_account_sid or ""
        self.path = f"/2010-04-01/Accounts/{sid}/Messages.json"
        self.http = httpx.AsyncClient(
            base_url=settings.sms_base_url.rstrip("/"),
            auth=(sid, settings.sms_auth_token or ""),
            timeout=settings.sms_timeout,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def send(self, to: str, message: Message) -> str:
        try:
            response = await self.http.post(
                self.path, data={"To": to, "From": self.sender, "Body": message.sms}
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS: {type(exc).__name__}: {exc}", transient=True) from exc
        if response.status_code >= 400:
            transient = response.status_code == 429 or response.status_code >= 500
            raise DeliveryError(
                f"SMS HTTP {response.status_code}: {response.text[:200]}", transient=transient
            )
        try:
            return str(response.json().get("sid", ""))
        except ValueError:
            return ""

    async def close(self) -> None:
        await self.http.aclose()


def senders(settings: Settings) -> dict[ChannelName, Sender]:
    """The channels configured: SMTP when PMS_SMTP_HOST is set, SMS when PMS_SMS_BASE_URL is."""
    configured: dict[ChannelName, Sender] = {}
    if settings.smtp_host:
        configured["email"] = EmailSender(settings)
    if settings.sms_base_url:
        configured["sms"] = SmsSender(settings, max_connections=settings.reminder_concurrency)
    return configured
