"""Rate limits the bot applies to itself: per-person command rate and a global budget for edits.

Discord punishes bots that hammer it (429s, then a temporary IP ban after 10,000 invalid requests),
so the bot refuses extra commands politely and drops progress edits it cannot afford. Final
results are never dropped: only intermediate progress is optional.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from asyncio_throttle import Throttler
from discord import app_commands

# Photo downloads from Discord's CDN, across the whole bot, per second: a burst of /portrait waits its
# turn (downloads are worth waiting for) instead of hammering the CDN.
CDN_FETCHES_PER_S = 10


def cdn_throttle() -> Throttler:
    """asyncio-throttle's sliding window, used as published: ``async with throttle:`` waits for a slot."""
    return Throttler(rate_limit=CDN_FETCHES_PER_S, period=1.0)


class CommandRate:
    """At most ``rate`` commands per person per window of ``period_s`` (a fixed window starting at their first
    command, so near its end a person may get up to twice ``rate`` within one period); remembers the most
    recent people only. Refused, not queued: discord.py's app-command cooldown bucket, through its public API.
    """

    def __init__(self, rate: int, period_s: float, max_people: int = 50_000) -> None:
        self.rate = rate
        self.period_s = period_s
        self.max_people = max_people
        self._people: OrderedDict[str, app_commands.Cooldown] = OrderedDict()

    def allow(self, user_id: str) -> float:
        """0 when the command may run, else the seconds until it may (refusals do not count)."""
        bucket = self._people.get(user_id)
        if bucket is None:
            bucket = self._people[user_id] = app_commands.Cooldown(self.rate, self.period_s)
            while len(self._people) > self.max_people:
                self._people.popitem(last=False)
        else:
            self._people.move_to_end(user_id)
        retry_after = bucket.update_rate_limit()
        return 0.0 if retry_after is None else max(retry_after, 0.1)


class EditBudget:
    """A token bucket shared by every progress edit the bot makes."""

    def __init__(self, per_s: float, burst: float | None = None) -> None:
        self.per_s = per_s
        self.capacity = burst if burst is not None else max(1.0, per_s * 2)
        self._tokens = self.capacity
        self._at = time.monotonic()
        self.skipped = 0

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.skipped += 1
        return False
