"""TOTP (RFC 6238) verification with replay protection, enrollment, and recovery codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from pms.auth.totp import (
    RECOVERY_CODE_COUNT,
    begin_enrollment,
    code_at,
    hash_recovery_code,
    match_recovery_code,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    time_step,
    verify_totp,
)

NOW = datetime(2026, 11, 22, 12, 0, 10, tzinfo=UTC)


@pytest.fixture
def secret() -> str:
    return new_secret()


def code(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)  # an authenticator app's view


class TestEnrollment:
    def test_secrets_are_random_160_bit_base32(self) -> None:
        first, second = new_secret(), new_secret()
        assert first != second
        assert re.fullmatch(r"[A-Z2-7]{32}", first)

    def test_provisioning_uri_names_issuer_and_account(self, secret: str) -> None:
        uri = provisioning_uri(secret, username="alice@clinic")
        parts = urlsplit(uri)
        assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
        assert unquote(parts.path) == "/PMS:alice@clinic"
        query = parse_qs(parts.query)
        assert query["secret"] == [secret]
        assert query["issuer"] == ["PMS"]
        # What an app scanning it would compute matches what we verify.
        app = pyotp.parse_uri(uri)
        assert isinstance(app, pyotp.TOTP)
        assert app.at(NOW) == code_at(secret, time_step(NOW))

    def test_enrollment_carries_an_inline_svg_qr_code(self) -> None:
        enrollment = begin_enrollment(username="bob")
        assert enrollment.uri.startswith("otpauth://totp/PMS:bob?")
        assert enrollment.secret in enrollment.uri
        assert enrollment.qr_svg.startswith("<svg")
        assert enrollment.qr_svg.rstrip().endswith("</svg>")
        assert "<?xml" not in enrollment.qr_svg and "http" not in enrollment.qr_svg


class TestVerification:
    @pytest.mark.parametrize("offset", [-30, 0, 30])
    def test_codes_within_one_step_are_accepted(self, secret: str, offset: int) -> None:
        step = verify_totp(secret, code(secret, NOW + timedelta(seconds=offset)), now=NOW)
        assert step == time_step(NOW) + offset // 30

    @pytest.mark.parametrize("offset", [-60, 60, 3600])
    def test_codes_further_away_are_refused(self, secret: str, offset: int) -> None:
        assert verify_totp(secret, code(secret, NOW + timedelta(seconds=offset)), now=NOW) is None

    def test_a_code_is_single_use(self, secret: str) -> None:
        current = code(secret, NOW)
        step = verify_totp(secret, current, now=NOW)
        assert step is not None
        assert verify_totp(secret, current, now=NOW + timedelta(seconds=5), last_step=step) is None

    def test_an_older_code_is_refused_after_a_newer_one(self, secret: str) -> None:
        step = verify_totp(secret, code(secret, NOW), now=NOW)
        assert step is not None
        previous = code(secret, NOW - timedelta(seconds=30))
        assert verify_totp(secret, previous, now=NOW, last_step=step) is None
        following = code(secret, NOW + timedelta(seconds=30))
        assert verify_totp(secret, following, now=NOW + timedelta(seconds=30), last_step=step) == step + 1

    @pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "12 34 5x", "١٢٣٤٥٦"])
    def test_malformed_codes_are_refused(self, secret: str, typed: str) -> None:
        assert verify_totp(secret, typed, now=NOW) is None

    def test_spaces_inside_a_code_are_ignored(self, secret: str) -> None:
        current = code(secret, NOW)
        assert verify_totp(secret, f" {current[:3]} {current[3:]} ", now=NOW) == time_step(NOW)

    def test_a_code_of_another_secret_is_refused(self, secret: str) -> None:
        window = {code(secret, NOW + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
        other = next(c for c in (code(new_secret(), NOW) for _ in range(10)) if c not in window)
        assert verify_totp(secret, other, now=NOW) is None


class TestRecoveryCodes:
    def test_ten_distinct_readable_codes(self) -> None:
        codes = new_recovery_codes()
        assert len(codes) == RECOVERY_CODE_COUNT == len(set(codes))
        assert all(re.fullmatch(r"[a-hj-km-np-z2-9]{5}-[a-hj-km-np-z2-9]{5}", c) for c in codes)

    def test_only_hashes_are_stored_and_each_matches_its_code(self) -> None:
        codes = new_recovery_codes(3)
        hashes = [hash_recovery_code(c) for c in codes]
        assert all(h.startswith("$argon2id$") and codes[i] not in h for i, h in enumerate(hashes))
        assert [match_recovery_code(hashes, c) for c in codes] == [0, 1, 2]

    def test_case_spaces_and_dashes_are_forgiven(self) -> None:
        (only,) = new_recovery_codes(1)
        hashes = [hash_recovery_code(only)]
        assert match_recovery_code(hashes, only.upper().replace("-", " ")) == 0

    def test_unknown_codes_do_not_match(self) -> None:
        hashes = [hash_recovery_code(c) for c in new_recovery_codes(2)]
        assert match_recovery_code(hashes, "aaaaa-aaaaa") is None
        assert match_recovery_code(hashes, "") is None
        assert match_recovery_code(["not-a-hash"], "aaaaa-aaaaa") is None
