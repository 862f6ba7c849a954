"""Helpers shared by the integration tests: authenticated FHIR clients.

The session's server gets one backend client registered with `system/*.*` (as `pms client create` would)
and a token from `/oauth2/token` (client_credentials, client_secret_basic): the tests exercise the API
the way an integrator does. `SYSTEM_TOKENS` maps a server URL to that token.
"""

from __future__ import annotations

import httpx

SYSTEM_TOKENS: dict[str, str] = {}


def auth_headers(server_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SYSTEM_TOKENS[server_url]}"}


def fhir_client(server_url: str, *, timeout: float = 60) -> httpx.AsyncClient:
    """An httpx client for `{server_url}/fhir` carrying the session's system token."""
    return httpx.AsyncClient(base_url=f"{server_url}/fhir", timeout=timeout, headers=auth_headers(server_url))
