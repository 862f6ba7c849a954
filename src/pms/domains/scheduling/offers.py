"""The waitlist's own ledger (migration 0008): one row per offer of freed time to a waitlisted patient."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, Table, Text, insert, select, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.domains.scheduling.periods import Interval

metadata = MetaData()

waitlist_offer = Table(
    "waitlist_offer",
    metadata,
    Column("offer_id", UUID(as_uuid=True), primary_key=True),
    Column("waitlist_id", Text, nullable=False),
    Column("hold_id", Text, nullable=False),
    Column("patient", Text, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", DateTime(timezone=True)),
)
_t = waitlist_offer


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: uuid.UUID
    waitlist_id: str
    hold_id: str
    patient: str
    interval: Interval
    expires_at: datetime
    state: str


def _offer(row: object) -> Offer:
    r = row._mapping  # type: ignore[attr-defined]
    return Offer(
        r["offer_id"],
        r["waitlist_id"],
        r["hold_id"],
        r["patient"],
        Interval(r["starts_at"], r["ends_at"]),
        r["expires_at"],
        r["state"],
    )


async def offered_before(conn: AsyncConnection, waitlist_id: str, start: datetime) -> bool:
    row = await conn.execute(
        select(_t.c.offer_id).where(_t.c.waitlist_id == waitlist_id, _t.c.starts_at == start)
    )
    return row.first() is not None


async def record(
    conn: AsyncConnection,
    *,
    waitlist_id: str,
    hold_id: str,
    patient: str,
    interval: Interval,
    expires_at: datetime,
) -> Offer | None:
    """The new offer, or None if this entry was already offered this time (another worker was first)."""
    offer_id = uuid.uuid4()
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(_t).values(
                    offer_id=offer_id,
                    waitlist_id=waitlist_id,
                    hold_id=hold_id,
                    patient=patient,
                    starts_at=interval.start,
                    ends_at=interval.end,
                    expires_at=expires_at,
                    state="offered",
                )
            )
    except IntegrityError:
        return None
    return Offer(offer_id, waitlist_id, hold_id, patient, interval, expires_at, "offered")


async def lock(conn: AsyncConnection, offer_id: uuid.UUID) -> Offer | None:
    row = (await conn.execute(select(_t).where(_t.c.offer_id == offer_id).with_for_update())).first()
    return None if row is None else _offer(row)


async def set_state(conn: AsyncConnection, offer_id: uuid.UUID, state: str) -> None:
    await conn.execute(update(_t).where(_t.c.offer_id == offer_id).values(state=state))


async def due(conn: AsyncConnection, now: datetime, *, limit: int = 100) -> list[Offer]:
    """Open offers past their hold, locked (SKIP LOCKED: two workers expire different ones)."""
    rows = await conn.execute(
        select(_t)
        .where(_t.c.state == "offered", _t.c.expires_at <= now)
        .order_by(_t.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_offer(row) for row in rows]


async def by_waitlist(conn: AsyncConnection, waitlist_id: str) -> list[Offer]:
    rows = await conn.execute(select(_t).where(_t.c.waitlist_id == waitlist_id).order_by(_t.c.created_at))
    return [_offer(row) for row in rows]


async def peek(conn: AsyncConnection, offer_id: uuid.UUID) -> Offer | None:
    """The offer as it is now, without a lock (for showing it)."""
    row = (await conn.execute(select(_t).where(_t.c.offer_id == offer_id))).first()
    return None if row is None else _offer(row)
