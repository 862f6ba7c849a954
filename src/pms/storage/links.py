"""Signed links for people who have no session: a patient answering a waitlist offer from a text
message, a phone subscribing to a calendar. The token names one purpose and one subject and expires;
it is signed with the server's own keys (rotated with `pms keys rotate`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pms.auth.tokens import issue_link_token, verify_link_token
from pms.config import Settings
from pms.storage.identity import KeyCache

LINK_ISSUER = "urn:pms:links"  # the same for the API and the worker, whatever host name a request used


class LinkSigner:
    def __init__(self, keys: KeyCache, settings: Settings) -> None:
        self.keys = keys
        self.root = settings.app_base_url  # PMS_PUBLIC_URL, else the FHIR base's parent

    async def url(self, path: str, *, purpose: str, subject: str, lifetime: int, **query: str) -> str:
        key = (await self.keys.ring()).signing
        if key is None:
            raise RuntimeError("no signing key: run `pms keys rotate` or start the API once")
        token = issue_link_token(key, issuer=LINK_ISSUER, purpose=purpose, subject=subject, lifetime=lifetime)
        return f"{self.root}{path}?{urlencode({**query, 'token': token})}"

    async def verify(self, token: str, *, purpose: str) -> dict[str, Any]:
        """The claims; InvalidToken if forged, expired or for another purpose."""
        return verify_link_token(token, await self.keys.ring(), issuer=LINK_ISSUER, purpose=purpose)
