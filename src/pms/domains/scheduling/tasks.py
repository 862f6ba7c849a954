"""Background work of scheduling (run by the worker; callable from anywhere that has the lifespan
objects): offering freed time to the waitlist, expiring unanswered offers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pms.domains.scheduling.codes import OFFER_PURPOSE
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.offers import Offer
from pms.domains.scheduling.periods import Interval
from pms.domains.scheduling.slots import SlotPlanner
from pms.domains.scheduling.store import SchedulingStore
from pms.domains.scheduling.waitlist import Waitlist
from pms.storage.links import LinkSigner
from pms.storage.units import SystemUnits


@dataclass(frozen=True)
class SchedulingJobs:
    units: SystemUnits
    config: SchedulingConfig
    links: LinkSigner
    hold_minutes: int

    async def _offer_links(self, offer: Offer, language: str = "en") -> tuple[str, str]:
        """The accept and decline links; `lang` (the message's language) sets the page's language."""
        lifetime = self.hold_minutes * 60 + 24 * 3600  # an answer after the hold still gets a clear reply
        path = f"/api/waitlist-offers/{offer.offer_id}"
        links = [
            await self.links.url(
                path,
                purpose=OFFER_PURPOSE,
                subject=str(offer.offer_id),
                lifetime=lifetime,
                answer=answer,
                lang=language,
            )
            for answer in ("accept", "decline")
        ]
        return links[0], links[1]

    async def offer_freed_time(self, start: datetime, end: datetime, actors: list[str]) -> Offer | None:
        async with self.units.transaction() as repo:
            waitlist = Waitlist(SchedulingStore(repo), self.config, hold_minutes=self.hold_minutes)
            return await waitlist.offer(Interval(start, end), actors, links=self._offer_links)

    async def expire_offers(self, now: datetime | None = None) -> int:
        async with self.units.transaction() as repo:
            waitlist = Waitlist(SchedulingStore(repo), self.config, hold_minutes=self.hold_minutes)
            return await waitlist.expire_due(now)

    async def extend_horizons(self, now: datetime | None = None) -> int:
        """Daily: the days entering the horizon get their Slots, for every active Schedule (the last two
        days are redone, so one missed run loses nothing). The number of Schedules looked at."""
        async with self.units.transaction() as repo:
            store = SchedulingStore(repo)
            planner = SlotPlanner(store, self.config)
            horizon = planner.horizon(now)
            window = Interval(horizon.end - timedelta(days=2), horizon.end)
            schedules = await store.search("Schedule", [("active:not", "false")], limit=100_000)
            for schedule in schedules:
                await planner.regenerate(schedule["id"], schedule, window=window)
            return len(schedules)
