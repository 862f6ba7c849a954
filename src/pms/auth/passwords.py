"""Password hashing (argon2id) and the password policy for staff and portal accounts.

Hashes are PHC strings (`$argon2id$v=19$m=...`): the parameters travel with each hash, so raising the
cost later only means new hashes are stronger and old ones are upgraded at the next successful login
(`needs_rehash`).
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pms.core.errors import AppError, Issue

MIN_LENGTH = 12
# Far above any passphrase a person types; bounds the work an anonymous login form can ask of argon2.
MAX_LENGTH = 1024

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): ~50 ms per login on a server core, and small
# enough in memory that a burst of concurrent logins cannot exhaust the host.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# The most common passwords of public breach corpora (lower-cased). Candidates are compared whole and with
# trailing digits/punctuation stripped, so "Password2024!" is refused along with "password".
_COMMON_PASSWORDS_TEXT = """
    123456 123456789 12345678 1234567890 123456789012 1234567 12345 1234 111111 000000 123123 654321
    666666 888888 121212 112233 123321 987654321 0987654321 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y 1qaz2wsx
    1qaz2wsx3edc zaq12wsx zaq1zaq1 qwerty qwertyuiop qwerty123 qwerty123456 qwertyuiop123 asdfghjkl
    asdfgh asdf1234 zxcvbnm zxcvbnm123 azerty password passw0rd p@ssw0rd p@ssword password1 password12
    password123 password1234 passwordpassword passphrase letmein letmeinplease welcome welcome1
    welcome123 changeme changeme123 secret secret123 admin admin123 administrator root toor login
    guest master iloveyou iloveyou123 princess sunshine monkey dragon football baseball soccer
    hockey superman batman starwars pokemon shadow michael jennifer jordan hunter trustno1 whatever
    freedom charlie donald summer winter spring autumn hello hello123 abc123 abcdef abcd1234
    abcdefghijkl qazwsxedc qazwsx default temp temp123 test test123 testing user user123 pass pass123
    computer internet mustang access ninja killer flower cookie chocolate butterfly purple orange
    hospital clinic doctor nurse patient medical health healthcare
"""
COMMON_PASSWORDS = frozenset(_COMMON_PASSWORDS_TEXT.split())

_TRAILING_NOISE = "0123456789!@#$%^&*()-_=+.,;:?~ "


class WeakPassword(AppError):
    """A new password the policy refuses; each issue says what to change."""

    @classmethod
    def of(cls, problems: list[str]) -> WeakPassword:
        return cls(400, [Issue("invalid", problem, "error", ("password",)) for problem in problems])

    @property
    def problems(self) -> list[str]:
        return [issue.diagnostics for issue in self.issues]


def _character_classes(password: str) -> int:
    classes = set()
    for char in password:
        if char.isdigit():
            classes.add("digit")
        elif char.islower():
            classes.add("lower")
        elif char.isupper():
            classes.add("upper")
        else:
            classes.add("other")  # punctuation, spaces, uncased letters
    return len(classes)


def _is_common(password: str) -> bool:
    lowered = password.casefold()
    return lowered in COMMON_PASSWORDS or lowered.rstrip(_TRAILING_NOISE) in COMMON_PASSWORDS


def password_problems(password: str, *, username: str | None = None) -> list[str]:
    """Every reason the policy refuses `password` (empty when it is acceptable)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters (a few unrelated words work well).")
    if len(password) > MAX_LENGTH:
        problems.append(f"Use at most {MAX_LENGTH} characters.")
    if password and _character_classes(password) < 2:
        problems.append(
            "Mix at least two kinds of characters (lower case, upper case, digits, symbols or spaces)."
        )
    name = (username or "").strip().casefold()
    if name and (password.casefold() == name or (len(name) >= 4 and name in password.casefold())):
        problems.append("The password must not contain the username.")
    if _is_common(password):
        problems.append("This password is among the most commonly used ones; choose another.")
    return problems


def check_password_policy(password: str, *, username: str | None = None) -> None:
    """Raise `WeakPassword` (400, one issue per problem) unless `password` meets the policy."""
    problems = password_problems(password, username=username)
    if problems:
        raise WeakPassword.of(problems)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False on a mismatch or an unreadable stored hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other (older) parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_dummy(password: str) -> None:
    """Spend the time a real verification takes, so that unknown usernames answer no faster than
    known ones (no username probing by timing)."""
    verify_password(_dummy_hash(), password)
