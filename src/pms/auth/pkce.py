"""Proof Key for Code Exchange (RFC 7636), S256 only.

SMART App Launch 2.0 requires PKCE with S256 and forbids `plain` ("app-launch.html#step-1-register");
we require it of public clients and check it whenever a client sent a challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from pms.auth.keys import b64url

S256 = "S256"
# RFC 7636 §4.1: code_verifier = 43*128 unreserved characters.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# §4.2: BASE64URL(SHA256(verifier)) is always 43 characters.
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


class PkceError(ValueError):
    """The request's PKCE parameters are unacceptable (an `invalid_request` / `invalid_grant`)."""


def make_verifier() -> str:
    """A random code_verifier with 256 bits of entropy (§7.1)."""
    return secrets.token_urlsafe(32)


def challenge_for(verifier: str) -> str:
    """The S256 code_challenge of a verifier (§4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def check_challenge(challenge: str | None, method: str | None, *, required: bool) -> str | None:
    """Validate the authorization request's challenge; return it (or None when absent and optional).

    `method` defaults to `plain` in RFC 7636 §4.3, which we refuse, so it must say S256.
    """
    if challenge is None and method is None:
        if required:
            raise PkceError("code_challenge (PKCE, S256) is required for this client")
        return None
    if method != S256:
        raise PkceError("code_challenge_method must be S256 (plain is not supported)")
    if challenge is None or not _CHALLENGE.fullmatch(challenge):
        raise PkceError("code_challenge must be the 43-character base64url SHA-256 of the verifier")
    return challenge


def verify(verifier: str | None, challenge: str, method: str = S256) -> bool:
    """Does the token request's code_verifier match the stored challenge (§4.6)? Constant time."""
    if method != S256 or verifier is None or not _VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(challenge_for(verifier), challenge)
