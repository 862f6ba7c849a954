"""The `pms` command: `pms serve | worker | migrate | db | reindex | audit | user | keys | client`.

Each subcommand is a `Command` (how to configure its parser, what to run) in `commands()`; later ones
(worker, user, client, import, reindex) are added there. Heavy imports happen inside the handlers so that
`pms --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pms.auth.clients import ClientRegistration, check_registration
from pms.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


@dataclass(frozen=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser, Settings], None]
    run: Handler


# -- serve -------------------------------------------------------------------------------------------------


def _configure_serve(parser: argparse.ArgumentParser, settings: Settings) -> None:
    from pms.serve import default_workers

    parser.add_argument("--host", default=settings.host, help="bind address (env HOST; default %(default)s)")
    parser.add_argument("--port", type=int, default=settings.port, help="env PORT (default %(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="worker processes (env WEB_CONCURRENCY; default one per CPU: %(default)s)",
    )
    parser.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    _add_no_migrate(parser)
    parser.add_argument(
        "--with-worker",
        action="store_true",
        help="also run `pms worker` as a child process (what `make run` does)",
    )


def _add_no_migrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="skip `alembic upgrade head` at start (when `pms migrate` runs as its own step)",
    )


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from pms.serve import serve

    return serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        reload=args.reload,
        migrate=args.migrate,
        with_worker=args.with_worker,
    )


# -- worker ------------------------------------------------------------------------------------------------


def _configure_worker(parser: argparse.ArgumentParser, settings: Settings) -> None:
    _add_no_migrate(parser)
    parser.add_argument(
        "--burst", action="store_true", help="run the jobs queued now, then exit (cron jobs do not run)"
    )


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import logging

    from pms.serve import resolved_database_url, resolved_redis_url, run_migrations
    from pms.worker import run

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        with resolved_database_url(settings) as url, resolved_redis_url(settings) as redis_url:
            if args.migrate:
                run_migrations(url)
            print(f"PMS worker on queue {settings.queue_name!r} at {redis_url}", flush=True)
            configured = settings.model_copy(update={"database_url": url, "redis_url": redis_url})
            asyncio.run(run(configured, burst=args.burst))
    except KeyboardInterrupt:
        pass
    return 0


# -- migrate -----------------------------------------------------------------------------------------------


def _configure_migrate(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "--database-url",
        default=settings.database_url,
        help="PostgreSQL URL (default: env DATABASE_URL; unset: the embedded database)",
    )


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pms.serve import resolved_database_url, run_migrations

    with resolved_database_url(settings.model_copy(update={"database_url": args.database_url})) as url:
        run_migrations(url)
    print("Database schema is up to date.")
    return 0


# -- db ----------------------------------------------------------------------------------------------------


def _configure_db(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "action",
        choices=["start", "stop", "url"],
        help="start (and leave running), stop, or print the URL of the embedded database",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(settings.data_dir),
        help="env PMS_DATA_DIR (default %(default)s); the cluster lives in DATA_DIR/pgdata",
    )


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from pms.storage.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(args.data_dir)
    if args.action == "start":
        print(embedded.start())  # deliberately not stopped: `pms db stop` does that
        return 0
    if args.action == "stop":
        stopped = embedded.shutdown()
        print("stopped" if stopped else f"no embedded database running in {embedded.pgdata}")
        return 0
    url = embedded.running_url()
    if url is None:
        print(f"no embedded database running in {embedded.pgdata} (`pms db start`)", file=sys.stderr)
        return 1
    print(url)
    return 0


# -- reindex -----------------------------------------------------------------------------------------------


def _configure_reindex(parser: argparse.ArgumentParser, settings: Settings) -> None:
    _configure_migrate(parser, settings)
    parser.add_argument("--type", dest="resource_type", help="only this resource type (default: all)")
    parser.add_argument("--batch-size", type=int, default=500, help="resources per transaction (%(default)s)")


def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from pms.core.db import Database
    from pms.serve import resolved_database_url
    from pms.storage.reindex import ReindexReport, reindex

    def progress(report: ReindexReport) -> None:
        print(f"\r{report.resources} resources reindexed", end="", flush=True)

    async def run(url: str) -> ReindexReport:
        db = await Database.open(settings.model_copy(update={"database_url": url}))
        try:
            return await reindex(
                db, resource_type=args.resource_type, batch_size=args.batch_size, progress=progress
            )
        finally:
            await db.dispose()

    with resolved_database_url(settings.model_copy(update={"database_url": args.database_url})) as url:
        report = asyncio.run(run(url))
    print(f"\nReindexed {report.resources} resources in {report.batches} batches.")
    return 0


# -- audit -------------------------------------------------------------------------------------------------


def _configure_audit(parser: argparse.ArgumentParser, settings: Settings) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    catch_up = actions.add_parser(
        "catch-up",
        help="make every audit record in the backlog a searchable AuditEvent now (the worker does it "
        "every half minute, and AuditEvent searches before they run)",
    )
    _configure_migrate(catch_up, settings)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from pms.storage.audit_backlog import AuditBacklog
    from pms.storage.registry_provider import RegistryProvider

    async def catch_up(db: Any) -> str:
        moved = await AuditBacklog.catch_up_store(db, RegistryProvider())
        return f"{moved} audit records stored as AuditEvents."

    return _run_db(args, settings, catch_up)


# -- user --------------------------------------------------------------------------------------------------


def _configure_user(parser: argparse.ArgumentParser, settings: Settings) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="create a user (password from stdin or a prompt)", allow_abbrev=False
    )
    create.add_argument("--username", required=True)
    create.add_argument(
        "--role", dest="roles", action="append", required=True, help="a role to grant (repeatable)"
    )
    create.add_argument("--fhir-user", help="the linked resource, e.g. Practitioner/123")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (passwords never go on the command line)",
    )
    disable = actions.add_parser("disable", help="block sign-in and revoke the user's sessions")
    disable.add_argument("--username", required=True)
    reset = actions.add_parser("reset-2fa", help="turn 2FA off so the user enrolls again (lost phone)")
    reset.add_argument("--username", required=True)
    actions.add_parser("list", help="list users, their roles and status")
    for sub in (create, disable, reset, actions.choices["list"]):
        _configure_migrate(sub, settings)


def _read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise ValueError("The passwords do not match.")
    return password


def _user(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from pms.core.db import Database
    from pms.storage import accounts

    def status(user: accounts.UserAccount) -> str:
        flags = ["disabled" if user.disabled else "active"]
        if user.locked_until is not None and user.locked_until > datetime.now(UTC):
            flags.append(f"locked until {user.locked_until:%Y-%m-%d %H:%M %Z}")
        flags.append("2fa" if user.totp_enabled else "no-2fa")
        return ", ".join(flags)

    password = ""
    if args.action == "create":
        try:
            password = _read_new_password(args.password_stdin)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1

    async def act(db: Database) -> str:
        async with db.transaction() as conn:
            if args.action == "create":
                user = await accounts.create_user(
                    conn,
                    username=args.username,
                    password=password,
                    roles=args.roles,
                    fhir_user=args.fhir_user,
                )
                return f"Created user {user.username} ({user.user_id}) with roles {', '.join(user.roles)}."
            if args.action == "list":
                users = await accounts.list_users(conn)
                rows = [(u.username, ",".join(u.roles) or "-", u.fhir_user or "-", status(u)) for u in users]
                return "\n".join(
                    "\t".join(row) for row in [("USERNAME", "ROLES", "FHIR USER", "STATUS"), *rows]
                )
            user = await accounts.require_user(conn, username=args.username)
            if args.action == "disable":
                await accounts.disable_user(conn, user_id=user.user_id)
                return f"Disabled {user.username}; their sessions and refresh tokens are revoked."
            await accounts.reset_2fa(conn, user_id=user.user_id)
            return f"Two-factor authentication reset for {user.username}; they enroll again at next sign-in."

    return _run_db(args, settings, act)


# -- keys and clients (the authorization server; docs/security.md) -----------------------------------------


def _configure_keys(parser: argparse.ArgumentParser, settings: Settings) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = actions.add_parser(
        "rotate",
        help="sign new tokens with a fresh RSA key; older keys keep verifying until their tokens expire",
    )
    listing = actions.add_parser("list", help="list signing keys (kid, created, retired, expires)")
    for sub in (rotate, listing):
        _configure_migrate(sub, settings)


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    from pms.core.db import Database
    from pms.storage import identity

    async def act(db: Database) -> str:
        now = datetime.now(UTC)
        async with db.transaction() as conn:
            if args.action == "rotate":
                # Retired keys verify for the longest token lifetime plus the verifiers' clock leeway.
                retain = timedelta(seconds=settings.max_token_lifetime + 60)
                key = await identity.rotate_signing_key(conn, now=now, retain_for=retain)
                return (
                    f"New signing key {key.kid}. Servers pick it up within seconds; the previous key keeps "
                    f"verifying until {(now + retain):%Y-%m-%d %H:%M %Z}."
                )
            keys = sorted(await identity.load_keys(conn, now=now), key=lambda k: k.created_at)
            rows = [
                (
                    k.kid,
                    f"{k.created_at:%Y-%m-%d %H:%M}",
                    "signing" if k.retired_at is None else f"retired {k.retired_at:%Y-%m-%d %H:%M}",
                    f"{k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "-",
                )
                for k in keys
            ]
            header = ("KID", "CREATED", "STATUS", "VERIFIES UNTIL")
            return "\n".join("\t".join(row) for row in [header, *rows]) if rows else "No keys yet."

    return _run_db(args, settings, act)


def _configure_client(parser: argparse.ArgumentParser, settings: Settings) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="register an OAuth client; prints its client_id (and secret)",
        description=(
            "Register an OAuth client. Backend services: --grant client_credentials with --jwks-file or "
            "--jwks-uri (private_key_jwt) or a secret (client_secret_basic). Apps: --grant "
            "authorization_code with --redirect-uri (exact match), --public for PKCE-only clients. "
            "Without --public, --secret, --secret-stdin or keys, a random secret is generated, printed once."
        ),
        allow_abbrev=False,
    )
    create.add_argument("--name", required=True, help="shown to users on the consent screen")
    create.add_argument(
        "--grant",
        dest="grants",
        action="append",
        required=True,
        choices=["authorization_code", "client_credentials", "refresh_token"],
        help="a grant type (repeatable); authorization_code implies refresh_token",
    )
    create.add_argument(
        "--scopes", required=True, help="allowed scopes, space-separated, e.g. 'system/Observation.cruds'"
    )
    secret = create.add_mutually_exclusive_group()
    secret.add_argument("--secret", help="the client secret (default: generated)")
    secret.add_argument("--secret-stdin", action="store_true", help="read the secret from stdin")
    secret.add_argument("--public", action="store_true", help="a public client (no secret; PKCE required)")
    create.add_argument(
        "--redirect-uri", dest="redirect_uris", action="append", default=[], help="repeatable; exact match"
    )
    keys = create.add_mutually_exclusive_group()
    keys.add_argument("--jwks-file", help="a JSON Web Key Set file with the client's public keys")
    keys.add_argument("--jwks-uri", help="where the client publishes its JWKS (https)")
    create.add_argument("--client-id", help="choose the client_id (default: a random UUID)")
    listing = actions.add_parser("list", help="list registered clients")
    disable = actions.add_parser("disable", help="refuse a client's requests from now on")
    disable.add_argument("--client-id", required=True)
    for sub in (create, listing, disable):
        _configure_migrate(sub, settings)


def _client_registration(args: argparse.Namespace) -> ClientRegistration:
    """Check `pms client create` arguments (auth/clients.py); ValueError or OSError if wrong."""
    import json

    from pms.storage.identity import new_secret

    jwks = None
    if args.jwks_file:
        with open(args.jwks_file, encoding="utf-8") as handle:
            jwks = json.load(handle)
    secret: str | None = args.secret
    if args.secret_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    try:
        return check_registration(
            name=args.name,
            grants=args.grants,
            scopes=args.scopes.split(),
            redirect_uris=args.redirect_uris,
            public=args.public,
            secret=secret,
            jwks=jwks,
            jwks_uri=args.jwks_uri,
            client_id=args.client_id,
            new_secret=new_secret(),
        )
    except ValueError as exc:
        raise ValueError(
            f"{args.jwks_file}: {exc}" if args.jwks_file and "jwks" in str(exc) else str(exc)
        ) from exc


def _client(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from pms.core.db import Database
    from pms.storage import identity

    registration: ClientRegistration | None = None
    if args.action == "create":
        try:
            registration = _client_registration(args)
        except (ValueError, OSError) as exc:
            print(exc, file=sys.stderr)
            return 1

    async def act(db: Database) -> str:
        async with db.transaction() as conn:
            if args.action == "create":
                assert registration is not None
                client = await identity.register_client(conn, registration, now=datetime.now(UTC))
                lines = [f"client_id: {client.client_id}", f"kind: {client.kind}"]
                if registration.secret and not args.secret_stdin:
                    lines.append(f"client_secret: {registration.secret}")
                auth = (
                    "private_key_jwt"
                    if client.jwks or client.jwks_uri
                    else "none (PKCE)"
                    if client.is_public
                    else "client_secret_basic"
                )
                lines.append(f"token_endpoint_auth_method: {auth}")
                return "\n".join(lines)
            if args.action == "disable":
                if not await identity.set_client_disabled(conn, args.client_id, disabled=True):
                    raise ValueError(f"No client with client_id {args.client_id!r}")
                return f"Disabled client {args.client_id}."
            rows = [
                (
                    c.client_id,
                    c.name,
                    c.kind + (" (disabled)" if c.disabled else ""),
                    ",".join(c.grant_types),
                    " ".join(c.allowed_scopes),
                )
                for c in await identity.list_clients(conn)
            ]
            header = ("CLIENT_ID", "NAME", "KIND", "GRANTS", "SCOPES")
            return "\n".join("\t".join(row) for row in [header, *rows])

    return _run_db(args, settings, act)


def _run_db(args: argparse.Namespace, settings: Settings, act: Callable[[Any], Awaitable[str]]) -> int:
    """Run `act` against the database of `--database-url` (or the embedded one); print its message."""
    import asyncio

    from pms.core.db import Database
    from pms.core.errors import AppError
    from pms.serve import resolved_database_url

    async def run(url: str) -> str:
        db = await Database.open(settings.model_copy(update={"database_url": url}))
        try:
            return await act(db)
        finally:
            await db.dispose()

    with resolved_database_url(settings.model_copy(update={"database_url": args.database_url})) as url:
        try:
            message = asyncio.run(run(url))
        except AppError as exc:
            for issue in exc.issues:
                print(issue.diagnostics, file=sys.stderr)
            return 1
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1
    if message:
        print(message)
    return 0


# -- wiring ------------------------------------------------------------------------------------------------


def commands() -> dict[str, Command]:
    return {
        "serve": Command(
            "run the HTTP API (migrates first; embedded PostgreSQL without DATABASE_URL)",
            _configure_serve,
            _serve,
        ),
        "worker": Command(
            "run the background job worker (reminders; embedded Redis without REDIS_URL)",
            _configure_worker,
            _worker,
        ),
        "migrate": Command(
            "upgrade the database schema to the latest revision", _configure_migrate, _migrate
        ),
        "db": Command("manage the embedded development database", _configure_db, _db),
        "reindex": Command(
            "rebuild search indexes (apply new or changed SearchParameters)", _configure_reindex, _reindex
        ),
        "audit": Command("the audit trail's backlog (reads' audit records)", _configure_audit, _audit),
        "user": Command("manage staff and portal user accounts", _configure_user, _user),
        "keys": Command("rotate and list token signing keys", _configure_keys, _keys),
        "client": Command(
            "register and list OAuth clients (apps, backend services)", _configure_client, _client
        ),
    }


def build_parser(settings: Settings, registry: dict[str, Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pms", description="PMS: a FHIR R4 patient management server.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in registry.items():
        command.configure(sub.add_parser(name, help=command.help, description=command.help), settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings()
    registry = commands()
    args = build_parser(settings, registry).parse_args(argv)
    return registry[args.command].run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
