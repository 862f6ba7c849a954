"""argon2id hashing and the password policy."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from pms.auth.passwords import (
    MIN_LENGTH,
    WeakPassword,
    check_password_policy,
    hash_password,
    needs_rehash,
    password_problems,
    verify_dummy,
    verify_password,
)

GOOD = "correct horse battery staple"


class TestHashing:
    def test_hashes_are_salted_argon2id_that_verify(self) -> None:
        first, second = hash_password(GOOD), hash_password(GOOD)
        assert first.startswith("$argon2id$")
        assert first != second
        assert verify_password(first, GOOD)
        assert verify_password(second, GOOD)

    def test_a_wrong_password_does_not_verify(self) -> None:
        assert not verify_password(hash_password(GOOD), GOOD + "!")

    def test_an_unreadable_stored_hash_does_not_verify(self) -> None:
        assert not verify_password("not-a-hash", GOOD)
        assert not verify_password("", GOOD)

    def test_hashes_made_with_other_parameters_need_rehash(self) -> None:
        assert not needs_rehash(hash_password(GOOD))
        weaker = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(GOOD)
        assert verify_password(weaker, GOOD)  # old hashes keep working until upgraded
        assert needs_rehash(weaker)
        assert needs_rehash("garbage")

    def test_dummy_verification_accepts_anything_silently(self) -> None:
        verify_dummy(GOOD)
        verify_dummy("")


class TestPolicy:
    def test_a_long_passphrase_passes(self) -> None:
        assert password_problems(GOOD, username="alice") == []
        check_password_policy("Tr0ub4dor&3-extended", username="alice")

    def test_short_passwords_are_refused(self) -> None:
        problems = password_problems("Ab1!" * 2)
        assert any(f"at least {MIN_LENGTH}" in p for p in problems)

    @pytest.mark.parametrize("password", ["abcdefghijklmnop", "ABCDEFGHIJKLMNOP", "8675309867530986"])
    def test_a_single_character_class_is_refused(self, password: str) -> None:
        assert any("two kinds" in p for p in password_problems(password))

    @pytest.mark.parametrize("password", ["Alice.Smith1", "my-alice.smith-pass", "ALICE.SMITH!2024"])
    def test_the_username_is_refused(self, password: str) -> None:
        assert any("username" in p for p in password_problems(password, username="alice.smith"))

    @pytest.mark.parametrize(
        "password", ["qwertyuiop123", "Password1234", "Password2024!!", "Healthcare1234"]
    )
    def test_common_passwords_and_their_numbered_variants_are_refused(self, password: str) -> None:
        assert any("commonly used" in p for p in password_problems(password))

    def test_every_problem_is_reported_at_once(self) -> None:
        with pytest.raises(WeakPassword) as raised:
            check_password_policy("password", username="password")
        assert raised.value.status == 400
        assert len(raised.value.problems) == 4  # too short, one class, the username, common
        assert all(issue.expression == ("password",) for issue in raised.value.issues)

    def test_absurdly_long_passwords_are_refused(self) -> None:
        assert any("at most" in p for p in password_problems("Ab1" * 1000))
