"""Signing keys of the authorization server: RSA-2048 generation, JWK rendering and the key ring.

Access and id tokens are RS256 JWTs (RFC 7518 §3.3). Each key is named by its RFC 7638 JWK thumbprint,
which is the `kid` in token headers and in the JWKS served at /oauth2/jwks (RFC 7517 §5). A rotated key
stops signing at once but stays in the JWKS, and keeps verifying, until every token it signed has
expired (see `pms.storage.identity.rotate_signing_key`).

Pure code: no database, no HTTP. Loading and caching keys is the storage layer's job.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk
from jose.backends.base import Key

SIGNING_ALGORITHM = "RS256"
RSA_KEY_BITS = 2048

# RFC 7638 §3.2: the members of the thumbprint input, per key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint_b64(value: int) -> str:
    """An unsigned integer as the Base64urlUInt of RFC 7518 §2 (big-endian, no leading zero octets)."""
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def jwk_thumbprint(key: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK: RSA, EC, OKP or oct."""
    kty = key.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError(f"unsupported JWK key type {kty!r}")
    missing = [name for name in members if not isinstance(key.get(name), str)]
    if missing:
        raise ValueError(f"JWK lacks {', '.join(missing)}")
    canonical = json.dumps({name: key[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_jwk_of(private_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The public JWK of an RSA key with `kid` (its thumbprint), `use` and `alg` (RFC 7517 §4)."""
    numbers = private_key.public_key().public_numbers()
    public = {"kty": "RSA", "n": _uint_b64(numbers.n), "e": _uint_b64(numbers.e)}
    return {**public, "kid": jwk_thumbprint(public), "use": "sig", "alg": SIGNING_ALGORITHM}


def generate_rsa_key() -> tuple[str, dict[str, Any]]:
    """A fresh RSA-2048 key: (PKCS#8 private PEM, public JWK with its thumbprint as `kid`)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return pem, public_jwk_of(private_key)


@dataclass(frozen=True)
class SigningKey:
    """One stored key. `retired_at` set: no longer signs; `expires_at` passed: no longer verifies."""

    kid: str
    private_pem: str
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None
    expires_at: datetime | None = None

    @cached_property
    def signer(self) -> Key:
        return jwk.construct(self.private_pem, SIGNING_ALGORITHM)

    @cached_property
    def verifier(self) -> Key:
        return jwk.construct(dict(self.public_jwk), SIGNING_ALGORITHM)

    def verifies_at(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class KeyRing:
    """The keys a process uses: the one that signs new tokens and all that still verify, by kid."""

    signing: SigningKey | None
    verifying: Mapping[str, SigningKey] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: list[SigningKey], *, now: datetime) -> KeyRing:
        live = [key for key in keys if key.verifies_at(now)]
        current = [key for key in live if key.retired_at is None]
        signing = max(current, key=lambda key: key.created_at) if current else None
        return cls(signing, {key.kid: key for key in live})

    def get(self, kid: str) -> SigningKey | None:
        return self.verifying.get(kid)

    def jwks(self) -> dict[str, Any]:
        """The JWK Set (RFC 7517 §5) of every key that still verifies, newest first."""
        ordered = sorted(self.verifying.values(), key=lambda key: key.created_at, reverse=True)
        return {"keys": [dict(key.public_jwk) for key in ordered]}
