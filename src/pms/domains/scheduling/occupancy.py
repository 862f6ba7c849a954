"""Who is busy when: the table that makes double booking impossible.

One row per (appointment, exclusive participant) while the appointment holds time. An exclusion
constraint (migration 0006) rejects two rows for the same actor with overlapping ranges, so the database,
not a read-then-write check, decides which of two concurrent bookings wins. Rows are written in the
same transaction as the Appointment (through the repository's write hook).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Column, MetaData, Table, Text, delete, select
from sqlalchemy.dialects.postgresql import TSTZRANGE, Range, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.domains.scheduling.periods import Interval

metadata = MetaData()

appointment_occupancy = Table(
    "appointment_occupancy",
    metadata,
    Column("appointment_id", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("during", TSTZRANGE, nullable=False),
)

_table = appointment_occupancy


def _range(interval: Interval) -> Range[object]:
    return Range(interval.start, interval.end, bounds="[)")


async def release(conn: AsyncConnection, appointment_id: str) -> None:
    await conn.execute(delete(_table).where(_table.c.appointment_id == appointment_id))


async def claim(
    conn: AsyncConnection, appointment_id: str, actors: Sequence[str], interval: Interval
) -> list[str]:
    """Hold `interval` for each actor. Returns the actors whose time was already taken (nothing is
    claimed for them). A concurrent claim on the same time waits for the other transaction, then loses
    if it committed; ON CONFLICT DO NOTHING keeps this transaction usable for the 409 that follows."""
    if not actors:
        return []
    statement = (
        insert(_table)
        .values([{"appointment_id": appointment_id, "actor": a, "during": _range(interval)} for a in actors])
        .on_conflict_do_nothing()
        .returning(_table.c.actor)
    )
    claimed = {row.actor for row in await conn.execute(statement)}
    return [actor for actor in actors if actor not in claimed]


async def holders(
    conn: AsyncConnection, actors: Iterable[str], interval: Interval, *, excluding: str | None = None
) -> list[tuple[str, str]]:
    """(actor, appointment id) of the bookings overlapping `interval` for these actors."""
    actors = list(actors)
    if not actors:
        return []
    query = select(_table.c.actor, _table.c.appointment_id).where(
        _table.c.actor.in_(actors), _table.c.during.overlaps(_range(interval))
    )
    if excluding is not None:
        query = query.where(_table.c.appointment_id != excluding)
    return [(row.actor, row.appointment_id) for row in await conn.execute(query)]


async def busy_intervals(conn: AsyncConnection, actors: Iterable[str], window: Interval) -> list[Interval]:
    """The booked time of these actors inside `window` (for free-time searches)."""
    actors = list(actors)
    if not actors:
        return []
    rows = await conn.execute(
        select(_table.c.during).where(_table.c.actor.in_(actors), _table.c.during.overlaps(_range(window)))
    )
    return [Interval(row.during.lower, row.during.upper) for row in rows]
