"""What both queue backends promise, and what a job runner is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from generation.jobs import JobEvent, JobSpec, JobState, ResultImage
from generation.pipelines.types import OutOfMemory

__all__ = ["JobCancelled", "JobFailed", "JobQueue", "JobStatus", "OutOfMemory", "Progress", "QueueStorageError",
           "Runner", "out_of_memory_outcome"]

# (step, total). The runner calls it between denoising steps; it raises JobCancelled when asked to stop.
Progress = Callable[[int, int], None]


class JobFailed(Exception):  # noqa: N818 - an outcome, reported to the person
    """The job cannot succeed as asked (no face, refused prompt, ...): fail it now, never retry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobCancelled(Exception):  # noqa: N818 - a signal
    """Raised inside a runner when its job was cancelled; the queue records it as cancelled."""


OUT_OF_MEMORY_REASON = ("The GPU ran out of memory, even for one image. Try again later, or ask the server owner "
                        "to free the GPU (a smaller image size or the fast preset also needs less).")


def out_of_memory_outcome(count: int, smaller: bool) -> str | None:
    """The one out-of-memory policy (both queues and `closeup generate`; the backend has already freed
    the device's cache). ``count``: images asked for; ``smaller``: this run already had just one.

    None: run the job once more with one image. A string: the job fails with that reason, as an
    outcome, not a crash (it is not retried as one, and never set aside).
    """
    if smaller or count == 1:
        return OUT_OF_MEMORY_REASON
    return None


def fewer_images_note(spec: JobSpec, smaller: bool) -> str:
    """Said with the results of a job that was re-run with one image after running out of memory."""
    if not smaller or spec.count == 1:
        return ""
    return (f"The GPU ran out of memory making {spec.count} images at once, so this is one. "
            "Ask again for more, or try later when it is less busy.")


# The reason on the QUEUED event of a failed or set-aside job the host queued again (`closeup queue retry`):
# the bot takes such a job up again instead of treating it as finished.
RETRIED = "Queued again by the host."


class EventFanout:
    """Hands every job event to each subscriber's own asyncio queue: the bot's delivery, `closeup generate`'s
    progress bar, a test. Both queues announce events this way; where the events come from differs."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[JobEvent]] = set()

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event from now on, in order (subscribe before submitting to miss nothing)."""
        queue = self.subscribe()
        try:
            while True:
                yield await queue.get()
        finally:
            self.unsubscribe(queue)

    def subscribe(self) -> asyncio.Queue[JobEvent]:
        """A queue receiving every event from now on; pass it to unsubscribe() when done."""
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[JobEvent]) -> None:
        self._subscribers.discard(queue)

    def _announce(self, event: JobEvent) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(event)


class QueueStorageError(RuntimeError):
    """The job journal cannot be written or read; the message says why and what to do."""


class Runner(Protocol):
    """Runs one job to the end. Blocking: the queue calls it in a worker thread or process."""

    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]: ...


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    user_id: str
    guild_id: str
    state: JobState
    position: int | None  # queued: jobs ahead
    eta_s: float | None
    attempts: int
    reason: str
    enqueued_at: float
    prompt: str


class JobQueue(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, spec: JobSpec) -> JobEvent: ...

    async def cancel(self, job_id: str, user_id: str | None = None) -> bool: ...

    async def status(self, job_id: str) -> JobStatus | None: ...

    async def jobs_for(self, user_id: str) -> list[JobStatus]: ...

    def events(self) -> AsyncIterator[JobEvent]: ...

    def subscribe(self) -> asyncio.Queue[JobEvent]:
        """Every event from now on lands in the returned queue (EventFanout), until unsubscribe()."""
        ...

    def unsubscribe(self, queue: asyncio.Queue[JobEvent]) -> None: ...

    async def undelivered(self) -> list[JobEvent]: ...

    async def results(self, job_id: str) -> tuple[ResultImage, ...]:
        """A finished job's portraits (events carry none), until ack() drops them."""
        ...

    async def ack(self, job_id: str) -> None: ...

    async def purge(self, user_id: str) -> int:
        """/forget: every job of this person gone now, bytes included; a running one is stopped."""
        ...
