"""Signed, expiring links that let a patient confirm or cancel an appointment without signing in.

token = `<expiry unix seconds>.<base64url HMAC-SHA256(key, "appointment-id|action|expiry")>`. The action
is signed, so a confirm link cannot be turned into a cancel link. The key is PMS_LINK_SECRET, or one
generated on first use and kept in the `app_secret` table, so every API and worker process shares it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

Action = Literal["confirm", "cancel"]
ACTIONS: tuple[Action, ...] = ("confirm", "cancel")
SECRET_NAME = "reminder-links"


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, appointment_id: str, action: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{appointment_id}|{action}|{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def token(self, appointment_id: str, action: Action, *, expires: datetime) -> str:
        stamp = int(expires.timestamp())
        return f"{stamp}.{self._mac(appointment_id, action, stamp)}"

    def verify(self, token: str, appointment_id: str, action: str, *, now: datetime) -> bool:
        """Authentic for this appointment and action, and not expired (constant-time comparison)."""
        stamp, _, mac = token.partition(".")
        if not stamp.isdigit() or action not in ACTIONS:
            return False
        if not hmac.compare_digest(mac, self._mac(appointment_id, action, int(stamp))):
            return False
        return now.timestamp() < int(stamp)

    def url(
        self, base: str, appointment_id: str, action: Action, *, expires: datetime, lang: str = ""
    ) -> str:
        """The link; `lang` (the message's language, not signed: it only chooses the page's words)."""
        params = {"action": action, "token": self.token(appointment_id, action, expires=expires)}
        query = urlencode({**params, "lang": lang} if lang else params)
        return f"{base.rstrip('/')}/api/appointments/{appointment_id}/respond?{query}"


async def load_signer(conn: AsyncConnection, configured: str | None) -> LinkSigner:
    """The configured key, else the stored one (created by whichever process gets here first)."""
    if configured:
        return LinkSigner(configured.encode())
    await conn.execute(
        text("INSERT INTO app_secret (name, value) VALUES (:name, :value) ON CONFLICT (name) DO NOTHING"),
        {"name": SECRET_NAME, "value": secrets.token_urlsafe(32)},
    )
    value = (
        await conn.execute(text("SELECT value FROM app_secret WHERE name = :name"), {"name": SECRET_NAME})
    ).scalar_one()
    return LinkSigner(str(value).encode())
