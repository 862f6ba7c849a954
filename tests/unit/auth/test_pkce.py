"""PKCE (RFC 7636), S256 only."""

from __future__ import annotations

import pytest

from pms.auth import pkce

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc_example() -> None:
    assert pkce.challenge_for(RFC_VERIFIER) == RFC_CHALLENGE
    assert pkce.verify(RFC_VERIFIER, RFC_CHALLENGE)


def test_generated_verifier_round_trips() -> None:
    verifier = pkce.make_verifier()
    assert 43 <= len(verifier) <= 128
    assert pkce.verify(verifier, pkce.challenge_for(verifier))


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        RFC_VERIFIER[:-1] + "A",  # a different verifier
        "short",  # below 43 characters
        "a" * 129,  # above 128
        RFC_VERIFIER[:42] + " ",  # outside the unreserved set
        RFC_CHALLENGE,  # the challenge itself ("plain" downgrade)
    ],
)
def test_wrong_verifiers_refused(verifier: str | None) -> None:
    assert not pkce.verify(verifier, RFC_CHALLENGE)


def test_plain_method_refused_at_token_time() -> None:
    assert not pkce.verify(RFC_VERIFIER, RFC_VERIFIER, "plain")


class TestChallenge:
    def test_s256_accepted(self) -> None:
        assert pkce.check_challenge(RFC_CHALLENGE, "S256", required=True) == RFC_CHALLENGE

    def test_absent_is_fine_unless_required(self) -> None:
        assert pkce.check_challenge(None, None, required=False) is None
        with pytest.raises(pkce.PkceError, match="required"):
            pkce.check_challenge(None, None, required=True)

    @pytest.mark.parametrize("method", [None, "plain", "s256", "S512", ""])
    def test_other_methods_refused(self, method: str | None) -> None:
        with pytest.raises(pkce.PkceError, match="S256"):
            pkce.check_challenge(RFC_CHALLENGE, method, required=False)

    @pytest.mark.parametrize("challenge", [None, "", "abc", RFC_CHALLENGE + "A", RFC_CHALLENGE[:-1] + "="])
    def test_malformed_challenges_refused(self, challenge: str | None) -> None:
        with pytest.raises(pkce.PkceError):
            pkce.check_challenge(challenge, "S256", required=False)
