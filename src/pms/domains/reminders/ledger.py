"""The delivery ledger (table `reminder_delivery`, migrations/versions/..._0007_reminders.py).

One row per (appointment, offset, channel). Its primary key is the claim that makes a reminder go out
once even when sweeps overlap (a job run twice, two workers): the INSERT that creates the row wins, every
other sweep's conflicts. A delivery that failed transiently waits in `retry` until `next_attempt_at`; a
`sending` row whose worker died is taken over after a lease. Both take-overs are a conditional UPDATE, so
again only one sweep gets them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

Key = tuple[str, int, str]  # appointment id, offset in minutes, channel
Status = Literal["sent", "failed", "retry"]


@dataclass(frozen=True)
class Finished:
    key: Key
    status: Status
    next_attempt_at: datetime | None = None
    communication_id: str | None = None
    error: str | None = None


def _columns(keys: Sequence[Key]) -> dict[str, list[object]]:
    return {"a": [k[0] for k in keys], "o": [k[1] for k in keys], "c": [k[2] for k in keys]}


async def settled(
    conn: AsyncConnection, keys: Sequence[Key], *, now: datetime, lease_expired_before: datetime
) -> set[Key]:
    """Of these deliveries, those nobody may claim now (done, waiting for a retry, or being sent). Only
    spares the work of preparing them: the claims below are what decide."""
    if not keys:
        return set()
    rows = await conn.execute(
        text(
            "SELECT appointment_id, offset_minutes, channel FROM reminder_delivery "
            "WHERE appointment_id = ANY(CAST(:ids AS text[])) AND NOT ("
            "  (status = 'retry' AND next_attempt_at <= :now)"
            "  OR (status = 'sending' AND claimed_at < :lease))"
        ),
        {"ids": list({k[0] for k in keys}), "now": now, "lease": lease_expired_before},
    )
    return {(r.appointment_id, r.offset_minutes, r.channel) for r in rows}


async def claim_new(conn: AsyncConnection, keys: Sequence[Key], *, now: datetime) -> dict[Key, int]:
    """Claim the deliveries nobody has claimed yet; {key: attempt number} of those this call won."""
    if not keys:
        return {}
    rows = await conn.execute(
        text(
            "INSERT INTO reminder_delivery (appointment_id, offset_minutes, channel, status, claimed_at) "
            "SELECT a, o, c, 'sending', :now "
            "FROM unnest(CAST(:a AS text[]), CAST(:o AS integer[]), CAST(:c AS text[])) AS k(a, o, c) "
            "ON CONFLICT DO NOTHING "
            "RETURNING appointment_id, offset_minutes, channel, attempts"
        ),
        {"now": now, **_columns(keys)},
    )
    return {(r.appointment_id, r.offset_minutes, r.channel): r.attempts for r in rows}


async def reclaim(
    conn: AsyncConnection, keys: Sequence[Key], *, now: datetime, lease_expired_before: datetime
) -> dict[Key, int]:
    """Take over deliveries due for a retry, or abandoned mid-send; {key: attempt number}."""
    if not keys:
        return {}
    rows = await conn.execute(
        text(
            "UPDATE reminder_delivery d SET status = 'sending', attempts = d.attempts + 1, "
            "claimed_at = :now, next_attempt_at = NULL "
            "FROM unnest(CAST(:a AS text[]), CAST(:o AS integer[]), CAST(:c AS text[])) AS k(a, o, c) "
            "WHERE d.appointment_id = k.a AND d.offset_minutes = k.o AND d.channel = k.c AND ("
            "  (d.status = 'retry' AND d.next_attempt_at <= :now)"
            "  OR (d.status = 'sending' AND d.claimed_at < :lease)) "
            "RETURNING d.appointment_id, d.offset_minutes, d.channel, d.attempts"
        ),
        {"now": now, "lease": lease_expired_before, **_columns(keys)},
    )
    return {(r.appointment_id, r.offset_minutes, r.channel): r.attempts for r in rows}


async def finish(conn: AsyncConnection, results: Sequence[Finished], *, now: datetime) -> None:
    if not results:
        return
    await conn.execute(
        text(
            "UPDATE reminder_delivery d SET status = u.s, next_attempt_at = u.n, communication_id = u.m, "
            "last_error = u.e, "
            "finished_at = CASE WHEN u.s = 'retry' THEN NULL ELSE CAST(:now AS timestamptz) END "
            "FROM unnest(CAST(:a AS text[]), CAST(:o AS integer[]), CAST(:c AS text[]), CAST(:s AS text[]), "
            "  CAST(:n AS timestamptz[]), CAST(:m AS text[]), CAST(:e AS text[])) AS u(a, o, c, s, n, m, e) "
            "WHERE d.appointment_id = u.a AND d.offset_minutes = u.o AND d.channel = u.c"
        ),
        {
            "now": now,
            **_columns([r.key for r in results]),
            "s": [r.status for r in results],
            "n": [r.next_attempt_at for r in results],
            "m": [r.communication_id for r in results],
            "e": [r.error for r in results],
        },
    )
