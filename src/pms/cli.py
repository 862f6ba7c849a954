"""The `pms` command: `pms serve | migrate | db start|stop|url`.

Each subcommand is a `Command` (how to configure its parser, what to run) in `commands()`; later ones
(worker, user, client, import, reindex) are added there. Heavy imports happen inside the handlers so that
`pms --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    )


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
    import asyncio
    from datetime import UTC, datetime

    from pms.core.db import Database
    from pms.core.errors import AppError
    from pms.serve import resolved_database_url
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
        "migrate": Command(
            "upgrade the database schema to the latest revision", _configure_migrate, _migrate
        ),
        "db": Command("manage the embedded development database", _configure_db, _db),
        "reindex": Command(
            "rebuild search indexes (apply new or changed SearchParameters)", _configure_reindex, _reindex
        ),
        "user": Command("manage staff and portal user accounts", _configure_user, _user),
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
