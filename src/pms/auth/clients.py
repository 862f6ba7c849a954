"""What makes an OAuth client registration valid (RFC 6749, SMART App Launch, SMART Backend Services):
the same checks for `pms client create` and the admin API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pms.auth.scopes import parse_scopes

ClientKind = Literal["public", "confidential", "backend"]
GRANTS = ("authorization_code", "client_credentials", "refresh_token")


@dataclass(frozen=True)
class ClientRegistration:
    name: str
    kind: ClientKind
    grant_types: list[str]
    scopes: list[str]
    redirect_uris: list[str]
    secret: str | None
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    client_id: str | None
    generated_secret: bool = False


def check_registration(
    *,
    name: str,
    grants: Sequence[str],
    scopes: Sequence[str],
    redirect_uris: Sequence[str] = (),
    public: bool = False,
    secret: str | None = None,
    jwks: Any = None,
    jwks_uri: str | None = None,
    client_id: str | None = None,
    new_secret: str | None = None,
) -> ClientRegistration:
    """The registration to store, or ValueError saying what is wrong. `new_secret` is used when a
    confidential client without keys gives no secret of its own."""
    if not name.strip():
        raise ValueError("a client needs a name (users see it on the consent screen)")
    unknown = [g for g in grants if g not in GRANTS]
    if not grants or unknown:
        raise ValueError(f"grant types are {', '.join(GRANTS)}; not {', '.join(unknown) or '(none given)'}")
    grant_types = list(dict.fromkeys(grants))
    if "authorization_code" in grant_types and "refresh_token" not in grant_types:
        grant_types.append("refresh_token")
    rejected = parse_scopes(list(scopes)).rejected
    if not scopes or rejected:
        raise ValueError(f"Not valid SMART scopes: {' '.join(rejected) or '(none given)'}")
    for uri in redirect_uris:
        parts = urlsplit(uri)
        if not parts.scheme or not (parts.netloc or parts.scheme not in ("http", "https")) or parts.fragment:
            raise ValueError(f"{uri!r}: a redirect URI is absolute and has no fragment (RFC 6749 3.1.2)")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ValueError("authorization_code needs at least one redirect URI")
    if jwks is not None:
        keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(keys, list) or not keys:
            raise ValueError("jwks: not a JWK Set (an object with a non-empty 'keys' array)")
        if any(isinstance(k, dict) and ({"d", "p", "q", "k"} & k.keys()) for k in keys):
            raise ValueError("jwks: contains private key material; register public keys only")
    if jwks_uri and urlsplit(jwks_uri).scheme != "https":
        raise ValueError("jwks_uri must be an https URL")
    has_keys = jwks is not None or bool(jwks_uri)
    if public and (has_keys or "client_credentials" in grant_types or secret):
        raise ValueError("a public client has no credentials: no secret, keys or client_credentials")
    generated = False
    if secret is None and not public and not has_keys:
        secret, generated = new_secret, True
    kind: ClientKind = (
        "public" if public else "backend" if grant_types == ["client_credentials"] else "confidential"
    )
    return ClientRegistration(
        name,
        kind,
        grant_types,
        list(scopes),
        list(redirect_uris),
        secret,
        dict(jwks) if jwks is not None else None,
        jwks_uri,
        client_id,
        generated,
    )
