"""User accounts, roles and emergency access: the SQL behind sign-in, 2FA, `pms user` and break-the-glass.

Every function works in the caller's transaction and never commits. Failed sign-ins and second factors
are results, not exceptions, so that the caller's transaction commits the failure count they record.
Argon2 runs in a worker thread (it releases the GIL) so a login never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.auth.lockout import DEFAULT_POLICY, LockoutPolicy, LockoutState
from pms.auth.passwords import (
    MAX_LENGTH,
    WeakPassword,
    check_password_policy,
    hash_password,
    needs_rehash,
    verify_dummy,
    verify_password,
)
from pms.auth.totp import (
    Enrollment,
    begin_enrollment,
    hash_recovery_code,
    match_recovery_code,
    new_recovery_codes,
    verify_totp,
)
from pms.core.errors import bad_request, conflict, not_found
from pms.storage.auth_tables import (
    auth_break_glass,
    auth_refresh_token,
    auth_role,
    auth_session,
    auth_user,
)

AnyRow = Row[*tuple[Any, ...]]

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,127}")
_ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# SMART's fhirUser: a Practitioner, PractitionerRole, Patient, RelatedPerson or Person.
_FHIR_USER = re.compile(r"(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}")
_PATIENT_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

MIN_EMERGENCY_REASON = 10
MAX_EMERGENCY_MINUTES = 12 * 60


# -- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserAccount:
    """A user as the rest of the app sees it: no password hash, TOTP secret or recovery codes."""

    user_id: uuid.UUID
    username: str
    roles: tuple[str, ...]
    fhir_user: str | None
    totp_enabled: bool
    disabled: bool
    failed_logins: int
    locked_until: datetime | None
    password_changed_at: datetime
    created_at: datetime
    recovery_codes_left: int

    @classmethod
    def from_row(cls, row: AnyRow) -> UserAccount:
        return cls(
            user_id=row.user_id,
            username=row.username,
            roles=tuple(row.roles),
            fhir_user=row.fhir_user,
            totp_enabled=row.totp_enabled,
            disabled=row.disabled,
            failed_logins=row.failed_logins,
            locked_until=row.locked_until,
            password_changed_at=row.password_changed_at,
            created_at=row.created_at,
            recovery_codes_left=row.recovery_codes_left,
        )


class AuthStatus(StrEnum):
    OK = "ok"
    INVALID = "invalid"  # unknown user, wrong password or wrong code: indistinguishable to the client
    LOCKED = "locked"
    DISABLED = "disabled"
    NOT_ENROLLED = "not-enrolled"  # second factor asked of a user without TOTP


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of a password check. `user` is set whenever the username exists (for the audit
    trail); only `status` OK means signed in (pending the second factor when `needs_second_factor`)."""

    status: AuthStatus
    user: UserAccount | None = None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK

    @property
    def needs_second_factor(self) -> bool:
        return self.ok and self.user is not None and self.user.totp_enabled


@dataclass(frozen=True, slots=True)
class SecondFactorResult:
    status: AuthStatus
    method: Literal["totp", "recovery-code"] | None = None
    recovery_codes_left: int = 0
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    grants: Any  # JSON; its shape belongs to auth/rbac.py


@dataclass(frozen=True, slots=True)
class EmergencyGrant:
    id: uuid.UUID
    user_id: uuid.UUID
    patient: str
    reason: str
    granted_at: datetime
    expires_at: datetime


_USER_COLUMNS = (
    auth_user.c.user_id,
    auth_user.c.username,
    auth_user.c.roles,
    auth_user.c.fhir_user,
    auth_user.c.totp_enabled,
    auth_user.c.disabled,
    auth_user.c.failed_logins,
    auth_user.c.locked_until,
    auth_user.c.password_changed_at,
    auth_user.c.created_at,
    func.cardinality(auth_user.c.recovery_codes).label("recovery_codes_left"),
)


# -- validation --------------------------------------------------------------------------------------------


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and looked up in lower case."""
    return username.strip().casefold()


def _valid_username(username: str) -> str:
    name = normalise_username(username)
    if not _USERNAME.fullmatch(name):
        raise bad_request(
            "A username is 1-128 characters: letters, digits and . _ @ + - (starting with a letter or digit)",
            expression=("username",),
        )
    return name


def _valid_fhir_user(fhir_user: str | None) -> str | None:
    if fhir_user is None or not fhir_user.strip():
        return None
    value = fhir_user.strip()
    if not _FHIR_USER.fullmatch(value):
        raise bad_request(
            f"fhirUser {value!r} must be a relative reference to a Practitioner, PractitionerRole, "
            "Patient, RelatedPerson or Person, e.g. Practitioner/123",
            expression=("fhirUser",),
        )
    return value


async def _require_roles(conn: AsyncConnection, roles: Sequence[str]) -> None:
    known = set((await conn.execute(select(auth_role.c.name))).scalars())
    unknown = [role for role in roles if role not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none (roles are not seeded yet)"
        raise bad_request(
            f"Unknown role(s): {', '.join(unknown)}. Known roles: {listed}", expression=("roles",)
        )


# -- users -------------------------------------------------------------------------------------------------


async def create_user(
    conn: AsyncConnection,
    *,
    username: str,
    password: str,
    roles: Sequence[str],
    fhir_user: str | None = None,
) -> UserAccount:
    """A new enabled account without 2FA. Raises WeakPassword, 400 on a bad name/role/fhirUser, 409 when
    the username is taken."""
    name = _valid_username(username)
    check_password_policy(password, username=name)
    linked = _valid_fhir_user(fhir_user)
    wanted = list(dict.fromkeys(roles))
    await _require_roles(conn, wanted)
    password_hash = await asyncio.to_thread(hash_password, password)
    statement = (
        pg_insert(auth_user)
        .values(
            user_id=uuid.uuid4(),
            username=name,
            password_hash=password_hash,
            roles=wanted,
            fhir_user=linked,
        )
        # Not an IntegrityError: that would abort the caller's transaction.
        .on_conflict_do_nothing(index_elements=[auth_user.c.username])
        .returning(*_USER_COLUMNS)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        raise conflict(f"A user named {name!r} already exists")
    return UserAccount.from_row(row)


async def get_user(
    conn: AsyncConnection, *, username: str | None = None, user_id: uuid.UUID | None = None
) -> UserAccount | None:
    """The account with this username or id (exactly one of them), or None."""
    if (username is None) == (user_id is None):
        raise ValueError("give exactly one of username and user_id")
    condition = (
        auth_user.c.user_id == user_id
        if user_id is not None
        else auth_user.c.username == normalise_username(username or "")
    )
    row = (await conn.execute(select(*_USER_COLUMNS).where(condition))).first()
    return None if row is None else UserAccount.from_row(row)


async def require_user(conn: AsyncConnection, *, username: str) -> UserAccount:
    """`get_user` by name, as a 404 when there is no such user."""
    user = await get_user(conn, username=username)
    if user is None:
        raise not_found(f"No user named {normalise_username(username)!r}")
    return user


async def list_users(conn: AsyncConnection) -> list[UserAccount]:
    rows = await conn.execute(select(*_USER_COLUMNS).order_by(auth_user.c.username))
    return [UserAccount.from_row(row) for row in rows]


async def _update_user(conn: AsyncConnection, user_id: uuid.UUID, values: Mapping[str, Any]) -> None:
    statement = update(auth_user).where(auth_user.c.user_id == user_id).values(**values)
    result = await conn.execute(statement.returning(auth_user.c.user_id))
    if result.first() is None:
        raise not_found(f"No user with id {user_id}")


def _lockout_values(state: LockoutState) -> dict[str, Any]:
    return {"failed_logins": state.failed_logins, "locked_until": state.locked_until}


async def authenticate(
    conn: AsyncConnection,
    *,
    username: str,
    password: str,
    now: datetime,
    policy: LockoutPolicy = DEFAULT_POLICY,
) -> AuthResult:
    """Check a username and password, applying the lockout policy; the caller must commit even when
    the result is not OK (the failure count is part of it).

    The row is locked (FOR UPDATE) so parallel guesses are counted one after another, not all against
    the same count. While locked, the password is not even checked.
    """
    row = (
        await conn.execute(
            select(*_USER_COLUMNS, auth_user.c.password_hash)
            .where(auth_user.c.username == normalise_username(username))
            .with_for_update()
        )
    ).first()
    if row is None:
        await asyncio.to_thread(verify_dummy, password[:MAX_LENGTH])
        return AuthResult(AuthStatus.INVALID)
    user = UserAccount.from_row(row)
    state = LockoutState(user.failed_logins, user.locked_until)
    if policy.is_locked(state, now):
        return AuthResult(AuthStatus.LOCKED, user, user.locked_until)
    matches = len(password) <= MAX_LENGTH and await asyncio.to_thread(
        verify_password, row.password_hash, password
    )
    if not matches:
        state = policy.after_failure(state, now)
        await _update_user(conn, user.user_id, _lockout_values(state))
        user = replace(user, failed_logins=state.failed_logins, locked_until=state.locked_until)
        status = AuthStatus.LOCKED if policy.is_locked(state, now) else AuthStatus.INVALID
        return AuthResult(status, user, state.locked_until)
    if user.disabled:
        return AuthResult(AuthStatus.DISABLED, user)
    values: dict[str, Any] = {}
    # With 2FA the count is reset only once the second factor passes: otherwise someone who knows the
    # password could re-enter it between code guesses and never be locked out.
    if not user.totp_enabled and (state.failed_logins or state.locked_until):
        values |= _lockout_values(policy.after_success())
        user = replace(user, failed_logins=0, locked_until=None)
    if needs_rehash(row.password_hash):
        values["password_hash"] = await asyncio.to_thread(hash_password, password)
    if values:
        await _update_user(conn, user.user_id, values)
    return AuthResult(AuthStatus.OK, user)


async def set_password(conn: AsyncConnection, *, user_id: uuid.UUID, password: str, now: datetime) -> None:
    """Replace the password (policy checked; must differ from the current one) and clear any lockout."""
    row = (
        await conn.execute(
            select(auth_user.c.username, auth_user.c.password_hash).where(auth_user.c.user_id == user_id)
        )
    ).first()
    if row is None:
        raise not_found(f"No user with id {user_id}")
    check_password_policy(password, username=row.username)
    if await asyncio.to_thread(verify_password, row.password_hash, password):
        raise WeakPassword.of(["The new password must differ from the current one."])
    password_hash = await asyncio.to_thread(hash_password, password)
    values = {"password_hash": password_hash, "password_changed_at": now}
    await _update_user(conn, user_id, values | _lockout_values(LockoutState(0, None)))


async def _revoke_sessions(conn: AsyncConnection, user_id: uuid.UUID) -> None:
    """End the user's sign-in sessions and refresh tokens at once (access tokens expire on their own)."""
    await conn.execute(
        update(auth_session)
        .where(auth_session.c.user_id == user_id, auth_session.c.revoked.is_(False))
        .values(revoked=True)
    )
    await conn.execute(
        update(auth_refresh_token)
        .where(auth_refresh_token.c.user_id == user_id, auth_refresh_token.c.revoked.is_(False))
        .values(revoked=True)
    )


async def disable_user(conn: AsyncConnection, *, user_id: uuid.UUID) -> None:
    """Block sign-in and revoke the user's sessions and refresh tokens."""
    await _update_user(conn, user_id, {"disabled": True})
    await _revoke_sessions(conn, user_id)


async def enable_user(conn: AsyncConnection, *, user_id: uuid.UUID) -> None:
    await _update_user(conn, user_id, {"disabled": False, "failed_logins": 0, "locked_until": None})


# -- second factor -----------------------------------------------------------------------------------------


async def _second_factor_row(conn: AsyncConnection, user_id: uuid.UUID) -> AnyRow | None:
    columns = [
        *_USER_COLUMNS,
        auth_user.c.totp_secret,
        auth_user.c.recovery_codes,
        auth_user.c.totp_last_step,
    ]
    statement = select(*columns).where(auth_user.c.user_id == user_id).with_for_update()
    return (await conn.execute(statement)).first()


async def enroll_totp(conn: AsyncConnection, *, user_id: uuid.UUID) -> Enrollment:
    """Start TOTP enrollment: a new pending secret, its otpauth:// URI and QR code. 2FA stays off until
    `confirm_totp` sees a code from the app; 409 when 2FA is already on (reset it first)."""
    row = await _second_factor_row(conn, user_id)
    if row is None:
        raise not_found(f"No user with id {user_id}")
    if row.totp_enabled:
        raise conflict("Two-factor authentication is already enabled; reset it before enrolling again")
    enrollment = begin_enrollment(username=row.username)
    await _update_user(conn, user_id, {"totp_secret": enrollment.secret})
    return enrollment


async def _hash_recovery_codes(codes: Sequence[str]) -> list[str]:
    return await asyncio.to_thread(lambda: [hash_recovery_code(code) for code in codes])


async def confirm_totp(
    conn: AsyncConnection, *, user_id: uuid.UUID, code: str, now: datetime
) -> list[str] | None:
    """Turn 2FA on when `code` matches the pending secret: returns the recovery codes (show them once;
    only their hashes are kept), or None when the code is wrong."""
    row = await _second_factor_row(conn, user_id)
    if row is None:
        raise not_found(f"No user with id {user_id}")
    if row.totp_enabled:
        raise conflict("Two-factor authentication is already enabled")
    if row.totp_secret is None:
        raise conflict("No two-factor enrollment is in progress; start one first")
    step = verify_totp(row.totp_secret, code, now=now)
    if step is None:
        return None
    codes = new_recovery_codes()
    values: dict[str, Any] = {
        "totp_enabled": True,
        "recovery_codes": await _hash_recovery_codes(codes),
        "totp_last_step": step,
    }
    await _update_user(conn, user_id, values)
    return codes


async def regenerate_recovery_codes(conn: AsyncConnection, *, user_id: uuid.UUID) -> list[str]:
    """A fresh set of recovery codes, replacing all earlier ones (show them once)."""
    user = await get_user(conn, user_id=user_id)
    if user is None:
        raise not_found(f"No user with id {user_id}")
    if not user.totp_enabled:
        raise conflict("Two-factor authentication is not enabled")
    codes = new_recovery_codes()
    await _update_user(conn, user_id, {"recovery_codes": await _hash_recovery_codes(codes)})
    return codes


async def verify_second_factor(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    code: str,
    now: datetime,
    policy: LockoutPolicy = DEFAULT_POLICY,
) -> SecondFactorResult:
    """Check a TOTP code or, failing that, a recovery code (which is then used up). Wrong codes count
    towards the same lockout as wrong passwords; a success clears it. The caller commits either way."""
    row = await _second_factor_row(conn, user_id)
    if row is None:
        return SecondFactorResult(AuthStatus.INVALID)
    if row.disabled:
        return SecondFactorResult(AuthStatus.DISABLED)
    if not row.totp_enabled or row.totp_secret is None:
        return SecondFactorResult(AuthStatus.NOT_ENROLLED)
    state = LockoutState(row.failed_logins, row.locked_until)
    if policy.is_locked(state, now):
        return SecondFactorResult(AuthStatus.LOCKED, locked_until=row.locked_until)
    reset = _lockout_values(policy.after_success())
    step = verify_totp(row.totp_secret, code, now=now, last_step=row.totp_last_step)
    if step is not None:
        await _update_user(conn, user_id, reset | {"totp_last_step": step})
        return SecondFactorResult(AuthStatus.OK, "totp", len(row.recovery_codes))
    hashes = list(row.recovery_codes)
    index = await asyncio.to_thread(match_recovery_code, hashes, code)
    if index is not None:
        del hashes[index]
        await _update_user(conn, user_id, reset | {"recovery_codes": hashes})
        return SecondFactorResult(AuthStatus.OK, "recovery-code", len(hashes))
    state = policy.after_failure(state, now)
    await _update_user(conn, user_id, _lockout_values(state))
    status = AuthStatus.LOCKED if policy.is_locked(state, now) else AuthStatus.INVALID
    return SecondFactorResult(status, locked_until=state.locked_until)


async def reset_2fa(conn: AsyncConnection, *, user_id: uuid.UUID) -> None:
    """Turn 2FA off (lost phone): secret and recovery codes are dropped, sessions revoked; the user
    enrolls again at the next sign-in."""
    values: dict[str, Any] = {
        "totp_secret": None,
        "totp_enabled": False,
        "recovery_codes": [],
        "totp_last_step": None,
    }
    await _update_user(conn, user_id, values)
    await _revoke_sessions(conn, user_id)


# -- roles -------------------------------------------------------------------------------------------------


def _role(row: AnyRow) -> Role:
    return Role(name=row.name, description=row.description, grants=row.grants)


async def list_roles(conn: AsyncConnection) -> list[Role]:
    rows = await conn.execute(select(auth_role).order_by(auth_role.c.name))
    return [_role(row) for row in rows]


async def get_role(conn: AsyncConnection, *, name: str) -> Role | None:
    row = (await conn.execute(select(auth_role).where(auth_role.c.name == name))).first()
    return None if row is None else _role(row)


def _valid_role_name(name: str) -> str:
    if not _ROLE_NAME.fullmatch(name):
        raise bad_request(
            f"Role name {name!r}: 1-64 lower-case letters, digits, '_' or '-', starting with a letter",
            expression=("name",),
        )
    return name


async def upsert_role(conn: AsyncConnection, *, name: str, description: str, grants: Any) -> Role:
    """Create the role or replace its description and grants."""
    insert = pg_insert(auth_role).values(name=_valid_role_name(name), description=description, grants=grants)
    upsert = insert.on_conflict_do_update(
        index_elements=[auth_role.c.name],
        set_={"description": insert.excluded.description, "grants": insert.excluded.grants},
    )
    return _role((await conn.execute(upsert.returning(*auth_role.c))).one())


async def delete_role(conn: AsyncConnection, *, name: str) -> None:
    """Remove a role no user holds (409 otherwise, naming how many do)."""
    holders = await conn.scalar(
        select(func.count()).select_from(auth_user).where(auth_user.c.roles.any_() == name)
    )
    if holders:
        raise conflict(f"Role {name!r} is held by {holders} user(s); take it away from them first")
    result = await conn.execute(delete(auth_role).where(auth_role.c.name == name).returning(auth_role.c.name))
    if result.first() is None:
        raise not_found(f"No role named {name!r}")


async def seed_roles(conn: AsyncConnection, *, roles: Iterable[Mapping[str, Any]]) -> list[str]:
    """Insert the roles (mappings with name, description, grants) that do not exist yet; roles an admin
    already has, edited or not, are left alone. Returns the names inserted."""
    rows = [
        {
            "name": _valid_role_name(str(role["name"])),
            "description": str(role.get("description", "")),
            "grants": role["grants"],
        }
        for role in roles
    ]
    if not rows:
        return []
    statement = (
        pg_insert(auth_role)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[auth_role.c.name])
        .returning(auth_role.c.name)
    )
    return sorted((await conn.execute(statement)).scalars())


# -- emergency access ("break the glass") ------------------------------------------------------------------


def _patient_reference(patient: str) -> str:
    value = patient.strip()
    patient_id = value.removeprefix("Patient/")
    if not _PATIENT_ID.fullmatch(patient_id):
        raise bad_request(
            f"{patient!r} is not a Patient id or a Patient/<id> reference", expression=("patient",)
        )
    return f"Patient/{patient_id}"


async def grant_emergency_access(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    patient: str,
    reason: str,
    minutes: int,
    now: datetime,
) -> EmergencyGrant:
    """Let the user past their role's limits for one patient for `minutes`, with a stated reason.

    Recording the AuditEvent and alerting admins is the caller's part, in the same transaction."""
    reference = _patient_reference(patient)
    stated = reason.strip()
    if len(stated) < MIN_EMERGENCY_REASON:
        raise bad_request(
            f"State the reason for emergency access (at least {MIN_EMERGENCY_REASON} characters)",
            expression=("reason",),
        )
    if not 1 <= minutes <= MAX_EMERGENCY_MINUTES:
        raise bad_request(
            f"Emergency access lasts 1 to {MAX_EMERGENCY_MINUTES} minutes", expression=("minutes",)
        )
    user = await get_user(conn, user_id=user_id)
    if user is None or user.disabled:
        raise not_found(f"No enabled user with id {user_id}")
    grant = EmergencyGrant(
        id=uuid.uuid4(),
        user_id=user_id,
        patient=reference,
        reason=stated,
        granted_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    await conn.execute(
        pg_insert(auth_break_glass).values(
            id=grant.id,
            user_id=grant.user_id,
            patient=grant.patient,
            reason=grant.reason,
            granted_at=grant.granted_at,
            expires_at=grant.expires_at,
        )
    )
    return grant


async def active_emergency_patients(
    conn: AsyncConnection, *, user_id: uuid.UUID, now: datetime
) -> frozenset[str]:
    """Ids of the patients the user currently holds emergency access to (what `Principal.break_glass`
    holds); the rows themselves keep `Patient/<id>` references."""
    rows = await conn.execute(
        select(auth_break_glass.c.patient)
        .where(
            auth_break_glass.c.user_id == user_id,
            auth_break_glass.c.expires_at > now,
            auth_break_glass.c.granted_at <= now,
        )
        .distinct()
    )
    return frozenset(patient.removeprefix("Patient/") for patient in rows.scalars())
