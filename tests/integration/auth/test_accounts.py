"""The account store against PostgreSQL: users, sign-in with lockout, 2FA, roles, break-the-glass."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.auth.passwords import WeakPassword
from pms.core.db import Database
from pms.core.errors import AppError
from pms.storage import accounts
from pms.storage.accounts import AuthStatus, UserAccount

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROLE = f"t-staff-{uuid.uuid4().hex[:8]}"
GRANTS = {"allow": [{"types": ["Patient"], "interactions": ["read"]}]}


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def conn(database: Database) -> AsyncIterator[AsyncConnection]:
    """One committed transaction per use: the service functions never commit themselves."""
    async with database.transaction() as connection:
        yield connection


@pytest.fixture
async def role(database: Database) -> str:
    async with database.transaction() as conn:
        await accounts.upsert_role(conn, name=ROLE, description="test staff", grants=GRANTS)
    return ROLE


async def make_user(
    database: Database, role: str, *, username: str | None = None, fhir_user: str | None = None
) -> UserAccount:
    async with database.transaction() as conn:
        return await accounts.create_user(
            conn, username=username or unique(), password=PASSWORD, roles=[role], fhir_user=fhir_user
        )


async def sign_in(database: Database, username: str, password: str, now: datetime) -> accounts.AuthResult:
    async with database.transaction() as conn:
        return await accounts.authenticate(conn, username=username, password=password, now=now)


async def second_factor(
    database: Database, user_id: uuid.UUID, code: str, now: datetime
) -> accounts.SecondFactorResult:
    async with database.transaction() as conn:
        return await accounts.verify_second_factor(conn, user_id=user_id, code=code, now=now)


async def enrolled(database: Database, user: UserAccount) -> tuple[str, list[str]]:
    async with database.transaction() as conn:
        enrollment = await accounts.enroll_totp(conn, user_id=user.user_id)
    async with database.transaction() as conn:
        codes = await accounts.confirm_totp(
            conn, user_id=user.user_id, code=pyotp.TOTP(enrollment.secret).at(NOW), now=NOW
        )
    assert codes is not None
    return enrollment.secret, codes


class TestCreateUser:
    async def test_created_users_can_be_found_by_name_and_id(self, database: Database, role: str) -> None:
        name = unique("Dr.House")
        user = await make_user(database, role, username=f"  {name} ", fhir_user="Practitioner/p-1")
        assert user.username == name.lower()
        assert user.roles == (role,)
        assert user.fhir_user == "Practitioner/p-1"
        assert not (user.totp_enabled or user.disabled)
        async with database.reader() as conn:
            assert await accounts.get_user(conn, username=name.upper()) == user
            assert await accounts.get_user(conn, user_id=user.user_id) == user
            assert await accounts.get_user(conn, username="nobody-" + name) is None
            assert user in await accounts.list_users(conn)

    async def test_the_password_is_stored_only_as_an_argon2id_hash(
        self, database: Database, role: str
    ) -> None:
        user = await make_user(database, role)
        async with database.reader() as conn:
            stored = await conn.scalar(
                text("SELECT password_hash FROM auth_user WHERE user_id = :id"), {"id": user.user_id}
            )
        assert stored.startswith("$argon2id$") and PASSWORD not in stored

    async def test_a_taken_username_is_a_conflict(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        with pytest.raises(AppError) as raised:
            await make_user(database, role, username=user.username.upper())
        assert raised.value.status == 409

    async def test_weak_passwords_are_refused(self, conn: AsyncConnection, role: str) -> None:
        name = unique()
        with pytest.raises(WeakPassword) as raised:
            await accounts.create_user(conn, username=name, password=f"{name}!", roles=[role])
        assert any("username" in p for p in raised.value.problems)

    @pytest.mark.parametrize(
        "changes",
        [
            {"roles": ["no-such-role"]},
            {"fhir_user": "Observation/1"},
            {"fhir_user": "Practitioner/"},
            {"username": "bad name"},
            {"username": ""},
        ],
    )
    async def test_bad_input_is_a_400(
        self, conn: AsyncConnection, role: str, changes: dict[str, object]
    ) -> None:
        arguments: dict[str, object] = {"username": unique(), "password": PASSWORD, "roles": [role]} | changes
        with pytest.raises(AppError) as raised:
            await accounts.create_user(conn, **arguments)  # type: ignore[arg-type]
        assert raised.value.status == 400


class TestAuthenticate:
    async def test_the_right_password_signs_in(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        result = await sign_in(database, user.username.upper(), PASSWORD, NOW)
        assert result.ok and result.user == user and not result.needs_second_factor

    async def test_unknown_users_and_wrong_passwords_look_the_same(
        self, database: Database, role: str
    ) -> None:
        user = await make_user(database, role)
        unknown = await sign_in(database, unique("ghost"), PASSWORD, NOW)
        wrong = await sign_in(database, user.username, PASSWORD + "x", NOW)
        assert unknown.status is wrong.status is AuthStatus.INVALID
        assert unknown.user is None
        assert wrong.user is not None and wrong.user.failed_logins == 1

    async def test_five_failures_lock_even_the_right_password_out_until_the_cooldown(
        self, database: Database, role: str
    ) -> None:
        user = await make_user(database, role)
        statuses = [(await sign_in(database, user.username, "wrong", NOW)).status for _ in range(5)]
        assert statuses == [AuthStatus.INVALID] * 4 + [AuthStatus.LOCKED]
        locked = await sign_in(database, user.username, PASSWORD, NOW + timedelta(seconds=30))
        assert locked.status is AuthStatus.LOCKED
        assert locked.locked_until == NOW + timedelta(minutes=1)
        # Attempts while locked are not even checked, so they neither count nor extend the lock.
        assert locked.user is not None and locked.user.failed_logins == 5
        after = await sign_in(database, user.username, PASSWORD, NOW + timedelta(minutes=1))
        assert after.ok
        assert after.user is not None and (after.user.failed_logins, after.user.locked_until) == (0, None)

    async def test_a_failure_after_the_first_cooldown_locks_for_longer(
        self, database: Database, role: str
    ) -> None:
        user = await make_user(database, role)
        for _ in range(5):
            await sign_in(database, user.username, "wrong", NOW)
        later = NOW + timedelta(minutes=2)
        result = await sign_in(database, user.username, "wrong", later)
        assert (result.status, result.locked_until) == (AuthStatus.LOCKED, later + timedelta(minutes=5))

    async def test_a_disabled_user_is_told_only_with_the_right_password(
        self, database: Database, role: str
    ) -> None:
        user = await make_user(database, role)
        async with database.transaction() as conn:
            await accounts.disable_user(conn, user_id=user.user_id)
        assert (await sign_in(database, user.username, "wrong", NOW)).status is AuthStatus.INVALID
        assert (await sign_in(database, user.username, PASSWORD, NOW)).status is AuthStatus.DISABLED
        async with database.transaction() as conn:
            await accounts.enable_user(conn, user_id=user.user_id)
        assert (await sign_in(database, user.username, PASSWORD, NOW)).ok

    async def test_hashes_with_old_parameters_are_upgraded_at_sign_in(
        self, database: Database, role: str
    ) -> None:
        from argon2 import PasswordHasher

        user = await make_user(database, role)
        weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        query = "SELECT password_hash FROM auth_user WHERE user_id = :id"
        async with database.transaction() as conn:
            await conn.execute(
                text("UPDATE auth_user SET password_hash = :h WHERE user_id = :id"),
                {"h": weak, "id": user.user_id},
            )
        assert (await sign_in(database, user.username, PASSWORD, NOW)).ok
        async with database.reader() as conn:
            upgraded = await conn.scalar(text(query), {"id": user.user_id})
        assert upgraded != weak and "m=19456,t=2,p=1" in upgraded
        assert (await sign_in(database, user.username, PASSWORD, NOW)).ok


class TestSetPassword:
    async def test_the_new_password_replaces_the_old(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        async with database.transaction() as conn:
            await accounts.set_password(conn, user_id=user.user_id, password="a new passphrase 42", now=NOW)
        assert (await sign_in(database, user.username, PASSWORD, NOW)).status is AuthStatus.INVALID
        signed_in = await sign_in(database, user.username, "a new passphrase 42", NOW)
        assert signed_in.user is not None and signed_in.user.password_changed_at == NOW

    async def test_the_policy_applies_and_the_password_must_change(
        self, conn: AsyncConnection, role: str
    ) -> None:
        user = await accounts.create_user(conn, username=unique(), password=PASSWORD, roles=[role])
        with pytest.raises(WeakPassword):
            await accounts.set_password(conn, user_id=user.user_id, password="short", now=NOW)
        with pytest.raises(WeakPassword) as raised:
            await accounts.set_password(conn, user_id=user.user_id, password=PASSWORD, now=NOW)
        assert raised.value.problems == ["The new password must differ from the current one."]


class TestSecondFactor:
    async def test_enrollment_needs_a_code_from_the_app(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        async with database.transaction() as conn:
            enrollment = await accounts.enroll_totp(conn, user_id=user.user_id)
        assert enrollment.uri.startswith("otpauth://totp/PMS:") and enrollment.qr_svg.startswith("<svg")
        async with database.transaction() as conn:
            assert await accounts.confirm_totp(conn, user_id=user.user_id, code="000000", now=NOW) in (
                None,
                [],
            )
            assert (await accounts.get_user(conn, user_id=user.user_id)).totp_enabled is False  # type: ignore[union-attr]
        async with database.transaction() as conn:
            codes = await accounts.confirm_totp(
                conn, user_id=user.user_id, code=pyotp.TOTP(enrollment.secret).at(NOW), now=NOW
            )
        assert codes is not None and len(codes) == 10
        async with database.reader() as conn:
            stored = await conn.scalar(
                text("SELECT recovery_codes FROM auth_user WHERE user_id = :id"), {"id": user.user_id}
            )
            again = await accounts.get_user(conn, user_id=user.user_id)
        assert len(stored) == 10 and not set(stored) & set(codes)
        assert again is not None and again.totp_enabled and again.recovery_codes_left == 10
        assert (await sign_in(database, user.username, PASSWORD, NOW)).needs_second_factor
        async with database.transaction() as conn:
            with pytest.raises(AppError) as raised:
                await accounts.enroll_totp(conn, user_id=user.user_id)
        assert raised.value.status == 409

    async def test_a_totp_code_passes_and_is_not_accepted_twice(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        secret, _ = await enrolled(database, user)
        later = NOW + timedelta(minutes=3)
        code = pyotp.TOTP(secret).at(later)
        first = await second_factor(database, user.user_id, code, later)
        assert (first.status, first.method) == (AuthStatus.OK, "totp")
        replay = await second_factor(database, user.user_id, code, later + timedelta(seconds=10))
        assert replay.status is AuthStatus.INVALID

    async def test_a_recovery_code_works_once(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        _, codes = await enrolled(database, user)
        used = await second_factor(database, user.user_id, codes[4].upper(), NOW)
        assert (used.status, used.method, used.recovery_codes_left) == (AuthStatus.OK, "recovery-code", 9)
        assert (await second_factor(database, user.user_id, codes[4], NOW)).status is AuthStatus.INVALID
        assert (await second_factor(database, user.user_id, codes[0], NOW)).recovery_codes_left == 8

    async def test_wrong_codes_lock_and_a_correct_password_does_not_reset_the_count(
        self, database: Database, role: str
    ) -> None:
        user = await make_user(database, role)
        secret, _ = await enrolled(database, user)
        wrong = "12345"  # malformed: never a valid code
        for _ in range(4):
            assert (await second_factor(database, user.user_id, wrong, NOW)).status is AuthStatus.INVALID
            assert (await sign_in(database, user.username, PASSWORD, NOW)).ok
        locked = await second_factor(database, user.user_id, wrong, NOW)
        assert (locked.status, locked.locked_until) == (AuthStatus.LOCKED, NOW + timedelta(minutes=1))
        refused = await second_factor(database, user.user_id, pyotp.TOTP(secret).at(NOW), NOW)
        assert refused.status is AuthStatus.LOCKED
        later = NOW + timedelta(minutes=2)
        assert (await second_factor(database, user.user_id, pyotp.TOTP(secret).at(later), later)).ok
        async with database.reader() as conn:
            cleared = await accounts.get_user(conn, user_id=user.user_id)
        assert cleared is not None and (cleared.failed_logins, cleared.locked_until) == (0, None)

    async def test_users_without_2fa_are_not_enrolled(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        assert (await second_factor(database, user.user_id, "123456", NOW)).status is AuthStatus.NOT_ENROLLED

    async def test_regenerated_recovery_codes_replace_the_old_ones(
        self, database: Database, role: str
    ) -> None:
        user = await make_user(database, role)
        _, old = await enrolled(database, user)
        async with database.transaction() as conn:
            new = await accounts.regenerate_recovery_codes(conn, user_id=user.user_id)
        assert not set(new) & set(old)
        assert (await second_factor(database, user.user_id, old[0], NOW)).status is AuthStatus.INVALID
        assert (await second_factor(database, user.user_id, new[0], NOW)).ok


async def add_session_and_refresh_token(database: Database, user_id: uuid.UUID) -> None:
    client_id = unique("client")
    async with database.transaction() as conn:
        await conn.execute(
            text("INSERT INTO auth_client (client_id, name, kind) VALUES (:c, 'test', 'public')"),
            {"c": client_id},
        )
        await conn.execute(
            text(
                "INSERT INTO auth_session (session_hash, user_id, expires_at)"
                " VALUES (:h, :u, now() + interval '1 hour')"
            ),
            {"h": unique("session"), "u": user_id},
        )
        await conn.execute(
            text(
                "INSERT INTO auth_refresh_token (token_hash, family_id, client_id, user_id, scope,"
                " expires_at, session_started_at)"
                " VALUES (:h, :f, :c, :u, 'openid', now() + interval '1 day', now())"
            ),
            {"h": unique("refresh"), "f": uuid.uuid4(), "c": client_id, "u": user_id},
        )


async def revoked_flags(database: Database, user_id: uuid.UUID) -> list[bool]:
    async with database.reader() as conn:
        rows = await conn.execute(
            text(
                "SELECT revoked FROM auth_session WHERE user_id = :u"
                " UNION ALL SELECT revoked FROM auth_refresh_token WHERE user_id = :u"
            ),
            {"u": user_id},
        )
        return [row.revoked for row in rows]


class TestDisableAndReset:
    async def test_disabling_revokes_sessions_and_refresh_tokens(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        await add_session_and_refresh_token(database, user.user_id)
        assert await revoked_flags(database, user.user_id) == [False, False]
        async with database.transaction() as conn:
            await accounts.disable_user(conn, user_id=user.user_id)
        assert await revoked_flags(database, user.user_id) == [True, True]

    async def test_reset_2fa_turns_it_off_and_ends_sessions(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        _, codes = await enrolled(database, user)
        await add_session_and_refresh_token(database, user.user_id)
        async with database.transaction() as conn:
            await accounts.reset_2fa(conn, user_id=user.user_id)
        async with database.reader() as conn:
            after = await accounts.get_user(conn, user_id=user.user_id)
        assert after is not None and not after.totp_enabled and after.recovery_codes_left == 0
        assert (await second_factor(database, user.user_id, codes[0], NOW)).status is AuthStatus.NOT_ENROLLED
        assert await revoked_flags(database, user.user_id) == [True, True]
        assert not (await sign_in(database, user.username, PASSWORD, NOW)).needs_second_factor

    async def test_unknown_users_are_404(self, conn: AsyncConnection) -> None:
        for action in (accounts.disable_user, accounts.reset_2fa, accounts.enroll_totp):
            with pytest.raises(AppError) as raised:
                await action(conn, user_id=uuid.uuid4())
            assert raised.value.status == 404


class TestRoles:
    async def test_upsert_list_get_and_delete(self, conn: AsyncConnection) -> None:
        name = unique("t-role")
        created = await accounts.upsert_role(conn, name=name, description="first", grants=GRANTS)
        assert created == accounts.Role(name, "first", GRANTS)
        changed = await accounts.upsert_role(conn, name=name, description="second", grants={"allow": []})
        assert await accounts.get_role(conn, name=name) == changed
        assert changed in await accounts.list_roles(conn)
        await accounts.delete_role(conn, name=name)
        assert await accounts.get_role(conn, name=name) is None
        with pytest.raises(AppError) as raised:
            await accounts.delete_role(conn, name=name)
        assert raised.value.status == 404

    async def test_a_role_in_use_cannot_be_deleted(self, database: Database, role: str) -> None:
        await make_user(database, role)
        async with database.transaction() as conn:
            with pytest.raises(AppError) as raised:
                await accounts.delete_role(conn, name=role)
        assert raised.value.status == 409

    async def test_seeding_inserts_only_missing_roles(self, conn: AsyncConnection) -> None:
        kept, new = unique("t-kept"), unique("t-new")
        await accounts.upsert_role(conn, name=kept, description="edited by an admin", grants={"allow": []})
        inserted = await accounts.seed_roles(
            conn,
            roles=[
                {"name": kept, "description": "shipped", "grants": GRANTS},
                {"name": new, "description": "shipped", "grants": GRANTS},
            ],
        )
        assert inserted == [new]
        assert (await accounts.get_role(conn, name=kept)) == accounts.Role(
            kept, "edited by an admin", {"allow": []}
        )
        assert await accounts.seed_roles(conn, roles=[]) == []

    async def test_role_names_are_validated(self, conn: AsyncConnection) -> None:
        with pytest.raises(AppError):
            await accounts.upsert_role(conn, name="Bad Name", description="", grants={})


class TestEmergencyAccess:
    async def test_a_grant_is_active_until_it_expires(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        async with database.transaction() as conn:
            grant = await accounts.grant_emergency_access(
                conn,
                user_id=user.user_id,
                patient="p-42",
                reason="  patient unconscious in ER  ",
                minutes=30,
                now=NOW,
            )
        assert (grant.patient, grant.reason, grant.expires_at) == (
            "Patient/p-42",
            "patient unconscious in ER",
            NOW + timedelta(minutes=30),
        )
        async with database.reader() as conn:
            assert await accounts.active_emergency_patients(conn, user_id=user.user_id, now=NOW) == {"p-42"}
            late = NOW + timedelta(minutes=30)
            assert (
                await accounts.active_emergency_patients(conn, user_id=user.user_id, now=late) == frozenset()
            )
            assert (
                await accounts.active_emergency_patients(conn, user_id=uuid.uuid4(), now=NOW) == frozenset()
            )

    @pytest.mark.parametrize(
        "changes",
        [
            {"reason": "because"},
            {"minutes": 0},
            {"minutes": 24 * 60},
            {"patient": "Patient/a b"},
            {"patient": ""},
        ],
    )
    async def test_bad_requests_are_refused(
        self, database: Database, role: str, changes: dict[str, object]
    ) -> None:
        user = await make_user(database, role)
        arguments: dict[str, object] = {
            "user_id": user.user_id,
            "patient": "Patient/p1",
            "reason": "patient unconscious in ER",
            "minutes": 60,
            "now": NOW,
        } | changes
        async with database.transaction() as conn:
            with pytest.raises(AppError) as raised:
                await accounts.grant_emergency_access(conn, **arguments)  # type: ignore[arg-type]
        assert raised.value.status == 400

    async def test_disabled_users_get_none(self, database: Database, role: str) -> None:
        user = await make_user(database, role)
        async with database.transaction() as conn:
            await accounts.disable_user(conn, user_id=user.user_id)
            with pytest.raises(AppError):
                await accounts.grant_emergency_access(
                    conn,
                    user_id=user.user_id,
                    patient="p1",
                    reason="patient unconscious in ER",
                    minutes=5,
                    now=NOW,
                )
