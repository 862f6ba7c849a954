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
