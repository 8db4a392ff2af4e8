"""The embedded queue: asyncio in the bot's process, a SQLite journal (WAL) on disk, one GPU worker.

Every state change is written to the journal before it is announced, so a restart loses nothing:
queued jobs wait again, a job that was running runs again (job ids are idempotent), and finished
results that were not yet delivered are handed out again until ``ack`` says they arrived.
All SQLite work happens on one dedicated thread, and the job itself runs in another, so the event
loop never blocks on either.

One class in one file: the journal's SQL and the asyncio side share one connection, one thread
and one invariant (write, then announce); what both queues share lives in base.py, scheduler.py and
outcome.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from generation.jobs import (
    EventKind,
    JobEvent,
    JobFormatError,
    JobSpec,
    JobState,
    ResultImage,
    prompt_of,
    results_from_json,
    results_to_json,
    without_images,
)
from generation.lifecycle import StartClose
from generation.logging_setup import in_job_context, job_logging
from generation.queue.base import EventFanout, JobCancelled, JobStatus, QueueStorageError, Runner
from generation.queue.outcome import Ending, RunEnd, judge_run, set_aside_event
from generation.queue.scheduler import EtaEstimator, Limits, Waiting, assign_round, check_counts, fair_order
from generation.sqlite_errors import sqlite_problem

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    guild_id    TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,
    smaller     INTEGER NOT NULL DEFAULT 0,
    round       INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    reason      TEXT NOT NULL DEFAULT '',
    final_event TEXT,
    delivered   INTEGER NOT NULL DEFAULT 0,
    results     TEXT  -- finished portraits (base64 PNG), until the bot acknowledges them
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
-- Covers the scheduler's reads, so they never walk the rows' large spec column (reference photos).
CREATE INDEX IF NOT EXISTS jobs_scheduling ON jobs(state, job_id, user_id, guild_id, priority, enqueued_at, round,
                                                   started_at);
-- Submit's caps, position and round, and the worker's next job, each without a pass over the queue.
CREATE INDEX IF NOT EXISTS jobs_user_state ON jobs(user_id, state, round);
CREATE INDEX IF NOT EXISTS jobs_guild_state ON jobs(guild_id, state);
CREATE INDEX IF NOT EXISTS jobs_fair ON jobs(state, round, priority DESC, enqueued_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_round ON jobs(round);
CREATE INDEX IF NOT EXISTS jobs_undelivered ON jobs(delivered, state);
"""
ACTIVE = (JobState.QUEUED, JobState.RUNNING)
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0  # backoff while the journal is locked or the disk is full


def _storage_error(exc: sqlite3.Error, path: Path) -> QueueStorageError:
    return QueueStorageError(sqlite_problem(exc, path, "the job journal", "no job was lost",
                                            "queued and finished jobs"))


class LocalQueue(EventFanout, StartClose):
    """Embedded job queue with one worker. Use ``async with LocalQueue(...)`` or start()/close()."""

    def __init__(self, path: str | Path, runner: Runner, *, limits: Limits | None = None,
                 timeout_s: float = 900.0, max_failures: int = 3, eta: EtaEstimator | None = None,
                 shutdown_grace_s: float = 30.0, busy_timeout_s: float = 5.0,
                 keep_finished_s: float = 7 * 86400.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.runner = runner
        self.limits = limits or Limits()
        self.timeout_s = timeout_s
        self.max_failures = max_failures
        self.eta = eta or EtaEstimator()
        self.shutdown_grace_s = shutdown_grace_s
        self.busy_timeout_s = busy_timeout_s
        self.keep_finished_s = keep_finished_s
        self._last_sweep = 0.0
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="closeup-journal")
        self._work_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="closeup-worker")
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._current: tuple[str, threading.Event, float] | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._db(self._open)
        recovered = await self._db(self._recover)
        if recovered:
            log.info("journal: %d job(s) that were running will run again", recovered)
        self._worker = asyncio.create_task(self._work(), name="closeup-local-worker")

    async def close(self) -> None:
        """Stop taking jobs; a running job may finish within the grace period, else it is handed back."""
        self._stopping = True
        self._wakeup.set()
        if self._worker is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), self.shutdown_grace_s)
            except TimeoutError:
                if self._current is not None:
                    self._current[1].set()  # stop at the next step; _work hands the job back
                with contextlib.suppress(Exception):
                    await self._worker
        if self._conn is not None:
            await self._db(self._conn.close)
            self._conn = None
        self._db_thread.shutdown(wait=True)
        self._work_thread.shutdown(wait=False)

    # ------------------------------------------------------------------ journal (journal thread only)

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._db_thread, functools.partial(fn, *args, **kwargs))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path) from None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA secure_delete=ON")  # deleted photos and portraits are overwritten, not left in free pages
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Results pass through (MBs a job): after a checkpoint the log file shrinks back to this size.
        conn.execute("PRAGMA journal_size_limit=8388608")
        conn.executescript(SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        if "results" not in columns:  # a journal from before results were kept apart from the final event
            conn.execute("ALTER TABLE jobs ADD COLUMN results TEXT")
        self._conn = conn

    def _scrub(self) -> None:
        """Push deleted bytes out of the write-ahead log: checkpoint it and cut it to zero length."""
        self._sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def _sql(self) -> sqlite3.Connection:
        if self._conn is None:
            raise QueueStorageError("the queue is not started")
        return self._conn

    def _recover(self) -> int:
        """Jobs left running by a crash run again, unless they already crashed the worker too often."""
        sql = self._sql
        rows = sql.execute("SELECT job_id, attempts FROM jobs WHERE state = ?", (JobState.RUNNING,)).fetchall()
        for job_id, attempts in rows:
            if attempts >= self.max_failures:
                self._finish(job_id, JobState.POISONED, JobEvent(
                    EventKind.FAILED, job_id, reason=f"The worker stopped {attempts} times while making this "
                    "portrait, so it was set aside. Try a different photo or prompt.", attempt=attempts))
            else:
                sql.execute("UPDATE jobs SET state = ?, started_at = NULL WHERE job_id = ?", (JobState.QUEUED, job_id))
        return len(rows)

    def _insert(self, spec: JobSpec) -> tuple[int, float]:
        sql = self._sql
        sql.execute("BEGIN IMMEDIATE")
        try:
            existing = sql.execute("SELECT state FROM jobs WHERE job_id = ?", (spec.job_id,)).fetchone()
            if existing is None:
                count = "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)"
                check_counts(sql.execute(f"{count} AND user_id = ?", (*ACTIVE, spec.user_id)).fetchone()[0],
                             sql.execute(f"{count} AND guild_id = ?", (*ACTIVE, spec.guild_id)).fetchone()[0],
                             sql.execute(count, ACTIVE).fetchone()[0], self.limits)
                started = [state for state in JobState if state != JobState.QUEUED]  # IN: an index seek per state
                current = sql.execute(f"SELECT MAX(round) FROM jobs WHERE state IN ({', '.join('?' * len(started))})",
                                      started).fetchone()[0]
                last = sql.execute("SELECT MAX(round) FROM jobs WHERE user_id = ? AND state IN (?, ?)",
                                   (spec.user_id, *ACTIVE)).fetchone()[0]
                sql.execute(
                    "INSERT INTO jobs (job_id, user_id, guild_id, priority, spec, state, enqueued_at, round) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (spec.job_id, spec.user_id, spec.guild_id, spec.priority, spec.to_json(), JobState.QUEUED,
                     time.time(), assign_round(current or 0, last)),
                )
            sql.execute("COMMIT")
        except BaseException:
            if sql.in_transaction:  # SQLite has already rolled back after SQLITE_FULL or an I/O error
                sql.execute("ROLLBACK")
            raise
        return self._position(spec.job_id)

    def _order(self) -> list[Waiting]:
        sql = self._sql
        return fair_order([Waiting(*row) for row in sql.execute(
            "SELECT job_id, user_id, guild_id, priority, enqueued_at, round FROM jobs WHERE state = ?",
            (JobState.QUEUED,))])

    def _running_elapsed(self) -> list[float]:
        now = time.time()
        return [now - started for (started,) in self._sql.execute(
            "SELECT started_at FROM jobs WHERE state = ? AND started_at IS NOT NULL", (JobState.RUNNING,))]

    def _position(self, job_id: str) -> tuple[int, float]:
        """Waiting jobs ahead of this one in fair_order, counted by SQLite (no Python pass over the queue)."""
        row = self._sql.execute("SELECT round, priority, enqueued_at FROM jobs WHERE job_id = ? AND state = ?",
                                (job_id, JobState.QUEUED)).fetchone()
        position = 0
        if row is not None:
            round_, priority, enqueued_at = row
            position = self._sql.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = ? AND (round < ? OR (round = ? AND (priority > ? OR "
                "(priority = ? AND (enqueued_at < ? OR (enqueued_at = ? AND job_id < ?))))))",
                (JobState.QUEUED, round_, round_, priority, priority, enqueued_at, enqueued_at, job_id)).fetchone()[0]
        return position, self.eta.eta(position, self._running_elapsed())

    def _claim_next(self) -> tuple[JobSpec, int, bool] | None:
        sql = self._sql
        # fair_order's key, in SQL: the head of the queue without reading the rest of it.
        heads = sql.execute("SELECT job_id FROM jobs WHERE state = ? ORDER BY round, priority DESC, enqueued_at, "
                            "job_id LIMIT 20", (JobState.QUEUED,)).fetchall()
        for (candidate_id,) in heads:
            row = sql.execute("SELECT spec, attempts, smaller FROM jobs WHERE job_id = ?",
                              (candidate_id,)).fetchone()
            try:
                spec = JobSpec.from_json(row[0])
            except JobFormatError as exc:  # written by another release, or damaged: set aside, keep going
                self._finish(candidate_id, JobState.POISONED, JobEvent(
                    EventKind.FAILED, candidate_id, reason=f"This job could not be read ({exc})."))
                continue
            attempts = row[1] + 1
            sql.execute("UPDATE jobs SET state = ?, attempts = ?, started_at = ? WHERE job_id = ?",
                        (JobState.RUNNING, attempts, time.time(), candidate_id))
            return spec, attempts, bool(row[2])
        return None

    def _finish(self, job_id: str, state: JobState, event: JobEvent) -> None:
        """Record how a job ended. The portraits are kept apart from the event until ack(); a job that is
        no longer in the journal (forgotten meanwhile) stays gone."""
        sql = self._sql
        row = sql.execute("SELECT spec FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            return
        spec = row[0]
        with contextlib.suppress(JobFormatError):  # a foreign entry is kept as it was, for its reason
            # A finished job never runs again: its reference photos (hundreds of KB) need not stay on disk.
            spec = dataclasses.replace(JobSpec.from_json(spec), references=()).to_json()
        sql.execute(
            "UPDATE jobs SET state = ?, finished_at = ?, reason = ?, final_event = ?, delivered = 0, spec = ?, "
            "results = ? WHERE job_id = ?",
            (state, time.time(), event.reason, without_images(event).to_json(), spec,
             results_to_json(event.results) if event.results else None, job_id),
        )

    def _requeue(self, job_id: str, *, failed: bool = False, smaller: bool = False, refund: bool = False) -> int:
        sql = self._sql
        sql.execute(
            "UPDATE jobs SET state = ?, started_at = NULL, failures = failures + ?, smaller = MAX(smaller, ?), "
            "attempts = attempts - ? WHERE job_id = ?",
            (JobState.QUEUED, int(failed), int(smaller), int(refund), job_id),
        )
        row = sql.execute("SELECT failures FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return 0 if row is None else row[0]  # forgotten meanwhile: nothing to retry

    def _sweep(self, now: float) -> int:
        """Forget finished jobs (and their results) older than keep_finished_s, delivered or not."""
        cutoff = now - self.keep_finished_s
        removed = self._sql.execute("DELETE FROM jobs WHERE state NOT IN (?, ?) AND finished_at < ?",
                                    (*ACTIVE, cutoff)).rowcount
        if removed:
            self._scrub()
        return removed

    def _status_rows(self, where: str, args: tuple[Any, ...]) -> list[JobStatus]:
        order = [job.job_id for job in self._order()]
        elapsed = self._running_elapsed()
        statuses = []
        for job_id, user_id, guild_id, state, attempts, reason, enqueued_at, spec in self._sql.execute(
                "SELECT job_id, user_id, guild_id, state, attempts, reason, enqueued_at, spec FROM jobs "
                f"WHERE {where} ORDER BY enqueued_at", args):
            position = order.index(job_id) if job_id in order else None
            eta = self.eta.eta(position, elapsed) if position is not None else None
            statuses.append(JobStatus(job_id, user_id, guild_id, JobState(state), position, eta, attempts, reason,
                                      enqueued_at, prompt_of(spec)))
        return statuses

    # ------------------------------------------------------------------ public API (event loop)

    async def submit(self, spec: JobSpec) -> JobEvent:
        """Journal the job (idempotent by job_id) and return its queued event; QueueLimitError on a cap."""
        position, eta = await self._db(self._insert, spec)
        event = JobEvent(EventKind.QUEUED, spec.job_id, position=position, eta_s=eta)
        self._emit(event)
        self._wakeup.set()
        return event

    async def cancel(self, job_id: str, user_id: str | None = None) -> bool:
        """Remove a queued job, or stop a running one at its next step. False if it is not active
        (or belongs to someone else when ``user_id`` is given)."""
        def cancel_queued() -> str | None:
            row = self._sql.execute("SELECT state, user_id FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None or (user_id is not None and row[1] != user_id):
                return None
            if row[0] == JobState.QUEUED:
                self._finish(job_id, JobState.CANCELLED, JobEvent(EventKind.CANCELLED, job_id, reason="Cancelled."))
            return row[0]

        state = await self._db(cancel_queued)
        if state == JobState.QUEUED:
            self._emit(JobEvent(EventKind.CANCELLED, job_id, reason="Cancelled."))
            return True
        if state == JobState.RUNNING and self._current is not None and self._current[0] == job_id:
            self._current[1].set()
            return True
        return False

    async def status(self, job_id: str) -> JobStatus | None:
        rows = await self._db(self._status_rows, "job_id = ?", (job_id,))
        return rows[0] if rows else None

    async def jobs_for(self, user_id: str) -> list[JobStatus]:
        return await self._db(self._status_rows, "user_id = ? AND state IN (?, ?)", (user_id, *ACTIVE))

    async def active_jobs(self) -> list[JobStatus]:
        """Every queued and running job, whoever's (the host's `closeup queue ls`)."""
        return await self._db(self._status_rows, "state IN (?, ?)", ACTIVE)

    async def set_aside_jobs(self) -> list[JobStatus]:
        """Failed and set-aside jobs the journal still keeps, oldest first."""
        return await self._db(self._status_rows, "state IN (?, ?)", (JobState.FAILED, JobState.POISONED))

    async def open_for_inspection(self) -> None:
        """Open the journal to read it, without a worker and without recovering running jobs: the bot that
        owns this journal may be running in another process."""
        await self._db(self._open)

    async def undelivered(self) -> list[JobEvent]:
        """Final events (done, failed, cancelled) not yet acknowledged: deliver them, then ack()."""
        rows = await self._db(lambda: self._sql.execute(
            "SELECT final_event FROM jobs WHERE delivered = 0 AND final_event IS NOT NULL ORDER BY finished_at"
        ).fetchall())
        return [JobEvent.from_json(row[0]) for row in rows]

    async def results(self, job_id: str) -> tuple[ResultImage, ...]:
        """The portraits of a finished job, until ack() drops them; () when there are none (any more)."""
        row = await self._db(lambda: self._sql.execute("SELECT results FROM jobs WHERE job_id = ?",
                                                       (job_id,)).fetchone())
        return results_from_json(row[0]) if row else ()

    async def ack(self, job_id: str) -> None:
        """The bot has the results: the journal keeps how the job ended, not the portraits."""
        await self._db(lambda: self._sql.execute("UPDATE jobs SET delivered = 1, results = NULL WHERE job_id = ?",
                                                 (job_id,)))

    async def purge(self, user_id: str) -> int:
        """Forget every job of a person (the /forget command), now: queued, running and finished rows go at
        once and their bytes are overwritten; a running job is stopped at its next step, and what it
        returns finds no row to land in."""
        for status in await self.jobs_for(user_id):
            await self.cancel(status.job_id)

        def purge() -> int:
            removed = self._sql.execute("DELETE FROM jobs WHERE user_id = ?", (user_id,)).rowcount
            self._scrub()
            return removed

        return await self._db(purge)

    def _emit(self, event: JobEvent) -> None:
        self._announce(event)

    # ------------------------------------------------------------------ the worker

    async def sweep(self, now: float | None = None) -> int:
        """Apply the retention period now (as of ``now``); the worker also does this once an hour."""
        self._last_sweep = time.time()
        removed = await self._db(self._sweep, self._last_sweep if now is None else now)
        if removed:
            log.info("journal: forgot %d finished job(s) past the retention period", removed)
        return removed

    async def _work(self) -> None:
        """Take jobs until stopped; a journal that is locked or full pauses the worker, never ends it."""
        delay = RETRY_FIRST_S
        while not self._stopping:
            try:
                await self._work_once()
                delay = RETRY_FIRST_S
            except QueueStorageError as exc:
                log.error("%s The worker waits %.1f s and tries again.", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _work_once(self) -> None:
        if time.time() - self._last_sweep > 3600:
            await self.sweep()
        claimed = await self._db(self._claim_next)
        if claimed is None:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)
            return
        spec, attempts, smaller = claimed
        await self._run_one(spec, attempts, smaller)

    async def _run_one(self, spec: JobSpec, attempts: int, smaller: bool) -> None:
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        started = time.monotonic()
        self._current = (spec.job_id, cancelled, started)
        self._emit(JobEvent(EventKind.STARTED, spec.job_id, attempt=attempts))

        def progress(step: int, total: int) -> None:  # called on the worker thread
            if cancelled.is_set():
                raise JobCancelled
            loop.call_soon_threadsafe(self._emit, JobEvent(EventKind.PROGRESS, spec.job_id, step=step, total=total,
                                                           attempt=attempts))

        run_spec = spec if not smaller else _one_image(spec)
        with job_logging(spec.job_id):
            future = loop.run_in_executor(self._work_thread,
                                          in_job_context(self.runner.run, run_spec, progress, cancelled))
        timeout = spec.timeout_s or self.timeout_s
        results: list[ResultImage] = []
        error: Exception | None = None
        timed_out = False
        try:
            try:
                results = await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                timed_out = True
                cancelled.set()
                with contextlib.suppress(BaseException):
                    await future  # it stops at its next step
            except Exception as exc:
                error = exc
            await self._record(spec, attempts, judge_run(spec, attempts, smaller, results, error,
                                                         timed_out_after=timeout if timed_out else None), started)
        finally:
            self._current = None
            self._wakeup.set()

    async def _record(self, spec: JobSpec, attempts: int, end: RunEnd, started: float) -> None:
        if end.ending is Ending.CANCELLED and self._stopping:  # shutdown: hand the job back rather than lose it
            await self._db(self._requeue, spec.job_id, refund=True)
            log.info("shutdown: job %s handed back to the queue", spec.job_id)
        elif end.ending is Ending.RETRY_SMALLER:
            log.warning("job %s: out of memory with %d images; retrying with one", spec.job_id, spec.count)
            await self._db(self._requeue, spec.job_id, smaller=True)
        elif end.ending is Ending.CRASHED:
            assert end.error is not None
            log.error("job %s failed (attempt %d)", spec.job_id, attempts, exc_info=end.error)
            failures = await self._db(self._requeue, spec.job_id, failed=True)
            if failures >= self.max_failures:
                await self._end(spec.job_id, JobState.POISONED,
                                set_aside_event(spec.job_id, attempts, failures, end.error))
        else:
            assert end.event is not None
            if end.ending is Ending.DONE:
                self.eta.record(time.monotonic() - started)
            await self._end(spec.job_id, end.state, end.event)

    async def _end(self, job_id: str, state: JobState, event: JobEvent) -> None:
        """Journal first, then announce. A finished job's outcome is worth waiting for: a locked or full
        journal is retried until it takes the write (or the queue is closing)."""
        delay = RETRY_FIRST_S
        while True:
            try:
                await self._db(self._finish, job_id, state, event)
                break
            except QueueStorageError as exc:
                if self._stopping:
                    raise
                log.error("%s Recording how job %s ended is retried in %.1f s.", exc, job_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        self._emit(without_images(event))  # the bot reads the portraits once, through results()


def _one_image(spec: JobSpec) -> JobSpec:
    import dataclasses

    return dataclasses.replace(spec, count=1)

