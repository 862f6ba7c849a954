"""`pms user create | list | disable | reset-2fa` against a real database, passwords via stdin."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest

from pms.core.db import Database
from pms.storage import accounts

PASSWORD = "correct horse battery staple"
ROLES = (f"t-cli-a-{uuid.uuid4().hex[:8]}", f"t-cli-b-{uuid.uuid4().hex[:8]}")


async def pms(database_url: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pms.cli",
        "user",
        *args,
        "--database-url",
        database_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.fixture
async def roles(database: Database) -> tuple[str, str]:
    async with database.transaction() as conn:
        await accounts.seed_roles(conn, roles=[{"name": name, "grants": {"allow": []}} for name in ROLES])
    return ROLES


class TestUserCommand:
    async def test_create_with_the_password_on_stdin(
        self, database: Database, database_url: str, roles: tuple[str, str]
    ) -> None:
        name = f"cli-{uuid.uuid4().hex[:8]}"
        code, out, err = await pms(
            database_url,
            "create",
            "--username",
            name,
            "--role",
            roles[0],
            "--role",
            roles[1],
            "--fhir-user",
            "Practitioner/cli-1",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert code == 0, err
        assert f"Created user {name}" in out
        assert PASSWORD not in out + err
        async with database.transaction() as conn:
            user = await accounts.get_user(conn, username=name)
            assert user is not None and user.roles == roles and user.fhir_user == "Practitioner/cli-1"
            signed_in = await accounts.authenticate(
                conn, username=name, password=PASSWORD, now=user.created_at
            )
        assert signed_in.ok

        code, out, _ = await pms(database_url, "list")
        assert code == 0
        (line,) = [line for line in out.splitlines() if line.startswith(name)]
        assert line.split("\t") == [name, ",".join(roles), "Practitioner/cli-1", "active, no-2fa"]

        code, out, err = await pms(database_url, "disable", "--username", name)
        assert code == 0, err
        code, out, err = await pms(database_url, "reset-2fa", "--username", name)
        assert code == 0, err
        async with database.reader() as conn:
            after = await accounts.get_user(conn, username=name)
        assert after is not None and after.disabled and not after.totp_enabled

    async def test_refusals_exit_1_with_the_reason(self, database_url: str, roles: tuple[str, str]) -> None:
        name = f"cli-{uuid.uuid4().hex[:8]}"
        create = ("create", "--username", name, "--role", roles[0], "--password-stdin")
        code, _, err = await pms(database_url, *create, stdin="password\n")
        assert code == 1
        assert "at least 12 characters" in err and "commonly used" in err
        code, _, err = await pms(
            database_url, "create", "--username", name, "--role", "nope", "--password-stdin", stdin=PASSWORD
        )
        assert (code, "Unknown role(s): nope" in err) == (1, True)
        assert (await pms(database_url, *create, stdin=PASSWORD))[0] == 0
        code, _, err = await pms(database_url, *create, stdin=PASSWORD)
        assert (code, "already exists" in err) == (1, True)
        code, _, err = await pms(database_url, "disable", "--username", f"ghost-{name}")
        assert (code, "No user named" in err) == (1, True)

    async def test_passwords_are_not_accepted_as_arguments(self, database_url: str) -> None:
        code, _, err = await pms(
            database_url, "create", "--username", "x", "--role", "r", "--password", PASSWORD
        )
        assert code == 2
        assert "unrecognized arguments" in err
