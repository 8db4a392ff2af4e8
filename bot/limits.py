"""Rate limits the bot applies to itself: per-person command rate and a global budget for edits.

Discord punishes bots that hammer it (429s, then a temporary IP ban after 10,000 invalid requests),
so the bot refuses extra commands politely and drops progress edits it cannot afford. Final
results are never dropped: only intermediate progress is optional.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from asyncio_throttle import Throttler


class _Throttle(Throttler):
    """asyncio-throttle's sliding window, asked without waiting: commands are refused, not queued."""

    def try_acquire(self) -> bool:
        self.flush()
        if len(self._task_logs) >= self.rate_limit:
            return False
        self._task_logs.append(time.monotonic())
        return True

    def retry_after(self) -> float:
        self.flush()
        if len(self._task_logs) < self.rate_limit:
            return 0.0
        return max(0.0, self._task_logs[0] + self.period - time.monotonic())


class CommandRate:
    """At most ``rate`` commands per person per ``period_s``; remembers the most recent people only."""

    def __init__(self, rate: int, period_s: float, max_people: int = 50_000) -> None:
        self.rate = rate
        self.period_s = period_s
        self.max_people = max_people
        self._people: OrderedDict[str, _Throttle] = OrderedDict()

    def allow(self, user_id: str) -> float:
        """0 when the command may run, else the seconds until it may."""
        throttle = self._people.get(user_id)
        if throttle is None:
            throttle = self._people[user_id] = _Throttle(self.rate, self.period_s)
            while len(self._people) > self.max_people:
                self._people.popitem(last=False)
        else:
            self._people.move_to_end(user_id)
        if throttle.try_acquire():
            return 0.0
        return max(throttle.retry_after(), 0.1)


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
