"""Who is busy when: the table that makes double booking impossible.

One row per (appointment, exclusive participant) while the appointment holds time. An exclusion
constraint (migration 0006) rejects two rows for the same actor with overlapping ranges, so the database,
not a read-then-write check, decides which of two concurrent bookings wins. Rows are written in the
same transaction as the Appointment (through the repository's write hook).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from pms.domains.scheduling.periods import Interval

# Fixed SQL (this table is the scheduling domain's own): prepared once per connection, nothing built per
# booking. $2 and $3 are an interval's start and end, as a half-open range.
_RANGE = "tstzrange($2::timestamptz, $3::timestamptz, '[)')"
_RELEASE = "DELETE FROM appointment_occupancy WHERE appointment_id = $1"
_CLAIM = (
    "INSERT INTO appointment_occupancy (appointment_id, actor, during) "
    f"SELECT $1::text, actor, {_RANGE} FROM unnest($4::text[]) AS actor "
    "ON CONFLICT DO NOTHING RETURNING actor"
)
_HOLDERS = (
    "SELECT actor, appointment_id FROM appointment_occupancy "
    f"WHERE actor = ANY($1::text[]) AND during && {_RANGE} AND appointment_id IS DISTINCT FROM $4::text"
)
_BUSY = (
    "SELECT lower(during) AS low, upper(during) AS high FROM appointment_occupancy "
    f"WHERE actor = ANY($1::text[]) AND during && {_RANGE}"
)


async def release(conn: AsyncConnection, appointment_id: str) -> None:
    await conn.exec_driver_sql(_RELEASE, (appointment_id,))


async def claim(
    conn: AsyncConnection, appointment_id: str, actors: Sequence[str], interval: Interval
) -> list[str]:
    """Hold `interval` for each actor. Returns the actors whose time was already taken (nothing is
    claimed for them). A concurrent claim on the same time waits for the other transaction, then loses
    if it committed; ON CONFLICT DO NOTHING keeps this transaction usable for the 409 that follows."""
    if not actors:
        return []
    rows = await conn.exec_driver_sql(_CLAIM, (appointment_id, interval.start, interval.end, list(actors)))
    claimed = {row.actor for row in rows}
    return [actor for actor in actors if actor not in claimed]


async def holders(
    conn: AsyncConnection, actors: Iterable[str], interval: Interval, *, excluding: str | None = None
) -> list[tuple[str, str]]:
    """(actor, appointment id) of the bookings overlapping `interval` for these actors."""
    actors = list(actors)
    if not actors:
        return []
    rows = await conn.exec_driver_sql(_HOLDERS, (actors, interval.start, interval.end, excluding))
    return [(row.actor, row.appointment_id) for row in rows]


async def busy_intervals(conn: AsyncConnection, actors: Iterable[str], window: Interval) -> list[Interval]:
    """The booked time of these actors inside `window` (for free-time searches)."""
    actors = list(actors)
    if not actors:
        return []
    rows = await conn.exec_driver_sql(_BUSY, (actors, window.start, window.end))
    return [Interval(row.low, row.high) for row in rows]
