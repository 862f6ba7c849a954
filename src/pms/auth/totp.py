"""Second factor: TOTP (RFC 6238: SHA-1, 30 s steps, 6 digits) and single-use recovery codes.

Pure functions; the account store keeps the secret, the last accepted time step and the recovery-code
hashes.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ISSUER = "PMS"
STEP_SECONDS = 30
DIGITS = 6
# Accept the previous and next step too: phones drift and people type slowly (RFC 6238 section 5.2).
WINDOW = 1

RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper, typed by hand
_RECOVERY_GROUP = 5
# Recovery codes are random (~49 bits each), not chosen by people, so a cheap argon2 suffices and keeps
# checking a code against ten hashes fast.
_recovery_hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What the user needs to add the account to an authenticator app; shown once, at enrollment."""

    secret: str
    uri: str
    qr_svg: str


def new_secret() -> str:
    """A random base32 secret of 160 bits (the SHA-1 block size RFC 4226 recommends)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, username: str, issuer: str = ISSUER) -> str:
    """The `otpauth://totp/...` URI authenticator apps import (Key Uri Format)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=username, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """`uri` as a QR code in an inline `<svg>` element (no external image request leaks the secret)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, title="Scan with your authenticator app"))


def begin_enrollment(*, username: str, issuer: str = ISSUER) -> Enrollment:
    secret = new_secret()
    uri = provisioning_uri(secret, username=username, issuer=issuer)
    return Enrollment(secret=secret, uri=uri, qr_svg=qr_svg(uri))


def time_step(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def _normalise_code(code: str) -> str | None:
    digits = "".join(code.split())
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def verify_totp(secret: str, code: str, *, now: datetime, last_step: int | None = None) -> int | None:
    """The time step `code` belongs to when it is valid at `now` (within +-WINDOW steps), else None.

    A code is refused when its step is not after `last_step` (the step of the last code accepted for this
    user), which makes every code single-use and stops an eavesdropper replaying it within its window.
    The caller persists the returned step as the new `last_step`.
    """
    candidate = _normalise_code(code)
    if candidate is None:
        return None
    current = time_step(now)
    matched = None
    # Compare against every step in the window in constant time, so timing tells nothing about which
    # step (if any) matched.
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, step), candidate) and matched is None:
            matched = step
    if matched is None or (last_step is not None and matched <= last_step):
        return None
    return matched


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """Random codes like `k7pq2-x9mfa`, to be shown once and stored only as hashes."""

    def one() -> str:
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(2 * _RECOVERY_GROUP))
        return f"{chars[:_RECOVERY_GROUP]}-{chars[_RECOVERY_GROUP:]}"

    return [one() for _ in range(count)]


def _normalise_recovery_code(code: str) -> str:
    return "".join(char for char in code.casefold() if char.isalnum())


def hash_recovery_code(code: str) -> str:
    return _recovery_hasher.hash(_normalise_recovery_code(code))


def match_recovery_code(hashes: Sequence[str], code: str) -> int | None:
    """The index in `hashes` of the one `code` matches (the caller then removes it), else None.

    Case, spaces and dashes are ignored, as people copy codes off paper."""
    candidate = _normalise_recovery_code(code)
    if len(candidate) != 2 * _RECOVERY_GROUP:
        return None
    for index, stored in enumerate(hashes):
        try:
            if _recovery_hasher.verify(stored, candidate):
                return index
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
    return None
