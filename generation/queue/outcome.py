"""How one run of a job ended, decided in one place for both queues.

The local queue and the Redis worker run a job the same way (on a thread, with a progress callback and a
cancel flag) but keep their books differently (a SQLite journal; Redis scripts). What the runner's ending
*means* — done with these results, failed with this reason, cancelled, run again with one image, or crashed
(retry, then set aside) — and the words a person reads are the same for both, so they live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from generation.jobs import EventKind, JobEvent, JobSpec, JobState, ResultImage
from generation.queue.base import JobCancelled, JobFailed, OutOfMemory, fewer_images_note, out_of_memory_outcome


class Ending(StrEnum):
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRY_SMALLER = "retry-smaller"  # out of memory with several images: run again with one
    CRASHED = "crashed"  # a bug or a transient fault: retry a few times, then set the job aside


@dataclass(frozen=True)
class RunEnd:
    """``event`` is the final event to record for DONE, FAILED and CANCELLED; ``error`` is set for CRASHED."""

    ending: Ending
    event: JobEvent | None = None
    error: Exception | None = None

    @property
    def state(self) -> JobState:
        return {Ending.DONE: JobState.DONE, Ending.FAILED: JobState.FAILED,
                Ending.CANCELLED: JobState.CANCELLED}[self.ending]


def timeout_reason(timeout_s: float) -> str:
    return f"This portrait took longer than {timeout_s:.0f} s and was stopped. Try fewer images."


def judge_run(spec: JobSpec, attempt: int, smaller: bool, results: object, error: Exception | None, *,
              timed_out_after: float | None = None) -> RunEnd:
    """What a run that returned ``results`` or raised ``error`` amounts to. ``smaller``: this run had one image
    after running out of memory; ``timed_out_after``: the queue stopped it at its time limit."""
    job_id = spec.job_id
    if timed_out_after is not None:
        return RunEnd(Ending.FAILED, JobEvent(EventKind.FAILED, job_id, attempt=attempt,
                                              reason=timeout_reason(timed_out_after)))
    if isinstance(error, JobCancelled):
        return RunEnd(Ending.CANCELLED, JobEvent(EventKind.CANCELLED, job_id, reason="Cancelled.", attempt=attempt))
    if isinstance(error, JobFailed):
        return RunEnd(Ending.FAILED, JobEvent(EventKind.FAILED, job_id, reason=error.reason, attempt=attempt))
    if isinstance(error, OutOfMemory):
        reason = out_of_memory_outcome(spec.count, smaller)
        if reason is None:
            return RunEnd(Ending.RETRY_SMALLER)
        return RunEnd(Ending.FAILED, JobEvent(EventKind.FAILED, job_id, attempt=attempt, reason=reason))
    if error is not None:
        return RunEnd(Ending.CRASHED, error=error)
    # A runner that returned something other than a list of ResultImages crashed, it did not finish (checked
    # by type: encoding the images here would cost a full JSON pass on the event loop, and the queue encodes once).
    if not isinstance(results, list | tuple) or not all(isinstance(r, ResultImage) for r in results):
        return RunEnd(Ending.CRASHED, error=TypeError(f"the runner returned {type(results).__name__}, "
                                                      "not a list of ResultImage"))
    return RunEnd(Ending.DONE, JobEvent(EventKind.DONE, job_id, results=tuple(results), attempt=attempt,
                                        reason=fewer_images_note(spec, smaller)))


def set_aside_event(job_id: str, attempt: int, failures: int, error: Exception) -> JobEvent:
    """The final event of a job that crashed ``failures`` times: it is set aside (poisoned), not retried."""
    return JobEvent(EventKind.FAILED, job_id, attempt=attempt,
                    reason=f"Making this portrait failed {failures} times ({type(error).__name__}: {error}); it was "
                    "set aside. The server owner can see the details in the log.")
