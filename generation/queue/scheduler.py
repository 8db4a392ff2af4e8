"""Fair scheduling, caps and ETA: pure functions over the queue's state, shared by both backends.

Fairness is round-robin across users. Every job gets a round when it is queued: the round now being
served if its user has nothing waiting, else one after that user's last job. Jobs start round by
round, oldest first within a round. A user who queues twenty jobs fills rounds n..n+19; someone
else's single job joins round n and so waits for at most one of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class QueueLimitError(Exception):
    """A job refused because a cap is reached; ``user_message`` says which and what to do."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


@dataclass(frozen=True)
class Waiting:
    """What scheduling needs to know about a queued job."""

    job_id: str
    user_id: str
    guild_id: str
    priority: int
    enqueued_at: float
    round: int = 0


@dataclass(frozen=True)
class Limits:
    per_user: int = 3  # queued + running jobs one person may have
    per_guild: int = 20  # queued + running jobs one server may have
    total: int = 10_000  # queued jobs in all (keeps memory bounded)


def check_caps(user_id: str, guild_id: str, active: Iterable[tuple[str, str]], limits: Limits) -> None:
    """Raise QueueLimitError when one more job for (user, guild) would pass a cap.

    ``active`` holds (user_id, guild_id) for every queued or running job.
    """
    user = guild = total = 0
    for active_user, active_guild in active:
        total += 1
        user += active_user == user_id
        guild += active_guild == guild_id
    check_counts(user, guild, total, limits)


def check_counts(user: int, guild: int, total: int, limits: Limits) -> None:
    """check_caps from counts a store keeps itself: the person's, the server's and all active jobs."""
    if user >= limits.per_user:
        raise QueueLimitError(f"You already have {user} portrait jobs waiting or running (the limit is "
                              f"{limits.per_user}). Wait for one to finish or cancel one with /queue.")
    if guild >= limits.per_guild:
        raise QueueLimitError(f"This server has {guild} portrait jobs waiting or running (the limit is "
                              f"{limits.per_guild}). Please try again in a few minutes.")
    if total >= limits.total:
        raise QueueLimitError("The portrait queue is full right now. Please try again in a few minutes.")


def assign_round(current_round: int, user_last_round: int | None) -> int:
    """The round for a new job: now, or right after the same user's last waiting/running job."""
    if user_last_round is None:
        return current_round
    return max(current_round, user_last_round + 1)


def fair_order(waiting: Sequence[Waiting]) -> list[Waiting]:
    """Waiting jobs in the order they will start: by round, then priority, then age."""
    return sorted(waiting, key=lambda j: (j.round, -j.priority, j.enqueued_at, j.job_id))


class EtaEstimator:
    """Moving average of recent job durations (seconds), with a sane first guess."""

    def __init__(self, first_guess_s: float = 30.0, window: int = 20) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self.first_guess_s = first_guess_s

    def record(self, seconds: float) -> None:
        if seconds > 0:
            self._recent.append(seconds)

    @property
    def average_s(self) -> float:
        return sum(self._recent) / len(self._recent) if self._recent else self.first_guess_s

    def eta(self, position: int, running_elapsed_s: Sequence[float] = (), workers: int = 1) -> float:
        """Seconds until the job at ``position`` (0 = next) starts, given how long running jobs have run."""
        average = self.average_s
        remaining_running = sum(max(0.0, average - elapsed) for elapsed in running_elapsed_s)
        return (position * average + remaining_running) / max(1, workers)
