"""The GPU worker: takes jobs from the shared Redis queue, runs them, reports back, survives outages.

One job at a time, in a thread (the runner blocks), exactly as LocalQueue runs it: same outcomes for
cancel, timeout, out-of-memory, refusals and bugs. What is new is the distance to the bot: the worker
heartbeats (a key with a TTL, carrying its health) so a dead worker's job is found and handed back, and
every Redis call that must not be lost (the final result, a requeue) is retried with capped exponential
backoff until Redis answers again. A result that arrives after the job was handed to someone else is
dropped by the store's ticket check, so the bot never gets one result twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from generation.jobs import EventKind, JobEvent, JobFormatError, JobSpec, JobState, ResultImage
from generation.logging_setup import in_job_context, job_logging, mask_secrets
from generation.queue.base import JobCancelled, QueueStorageError, Runner
from generation.queue.outcome import Ending, RunEnd, judge_run, set_aside_event
from generation.queue.redis_store import (
    DEFAULT_PREFIX,
    GROUP,
    RETRYABLE,
    Backoff,
    Claim,
    Keys,
    RedisStore,
    stop_tasks,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_name() -> str:
    """Unique per process, so a restarted worker never mistakes another's jobs for its own."""
    return f"{socket.gethostname()}-{os.getpid()}"


class _Outage:
    """Tracks one stretch of lost Redis: logs its start and end once, counts recoveries."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.since: float | None = None
        self.recoveries = 0
        self.backoff = Backoff()

    async def wait(self, exc: BaseException, what: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("lost Redis at %s while %s (%s); reconnecting with backoff", self.where, what,
                        mask_secrets(str(exc)))
        await asyncio.sleep(self.backoff.next())

    def over(self) -> None:
        if self.since is not None:
            log.info("Redis at %s is back after %.1f s", self.where, time.monotonic() - self.since)
            self.since = None
            self.recoveries += 1
        self.backoff.reset()


class Worker:
    """Runs jobs from the queue at ``prefix`` until stop() or SIGTERM/SIGINT. ``name`` must be unique."""

    def __init__(self, name: str, redis_url: str, runner: Runner, *, prefix: str = DEFAULT_PREFIX,
                 heartbeat_s: float = 2.0, dead_after_s: float = 10.0, timeout_s: float = 900.0,
                 max_failures: int = 3, shutdown_grace_s: float = 30.0, keep_finished_s: float = 7 * 86400,
                 events_maxlen: int = 10_000, handle_signals: bool = True) -> None:
        if dead_after_s <= heartbeat_s:
            raise ValueError("dead_after_s must be longer than heartbeat_s, or live workers look dead")
        self.name = name
        self.redis_url = redis_url
        self.runner = runner
        self.keys = Keys(prefix)
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.timeout_s = timeout_s
        self.max_failures = max_failures
        self.shutdown_grace_s = shutdown_grace_s
        self.handle_signals = handle_signals
        self._store = RedisStore(redis_url, self.keys, keep_finished_s=keep_finished_s, events_maxlen=events_maxlen)
        self._outage = _Outage(self._store.where)
        self._poll_s = min(0.5, heartbeat_s)
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = False
        self._closing = False  # ends the heartbeat loop even if a cancel gets lost (asyncio.wait_for in 3.11)
        self._grace_deadline = float("inf")
        self._ticket: str | None = None
        self._job: str | None = None
        self._lost_ticket: str | None = None
        self._jobs_done = 0
        self._last_error: str | None = None
        self._last_heartbeat: float | None = None
        self._started_at = time.time()
        self._instance = uuid.uuid4().hex  # tells this run's heartbeat from another process's

    # ------------------------------------------------------------------ health and control

    def health(self) -> dict[str, Any]:
        """What an operator (or ``RedisQueue.workers()``) wants to know; also stored in the heartbeat."""
        state = "stopping" if self._stopping else ("busy" if self._job else "idle")
        return {"name": self.name, "state": state, "job": self._job, "jobs_done": self._jobs_done,
                "last_error": self._last_error, "last_heartbeat": self._last_heartbeat,
                "reconnects": self._outage.recoveries, "started_at": self._started_at, "pid": os.getpid(),
                "host": socket.gethostname(), "instance": self._instance}

    def stop(self) -> None:
        """Stop taking jobs; the current one may finish within the grace period, else it is handed back."""
        if not self._stopping:
            log.info("worker %s stopping (grace %.0f s)", self.name, self.shutdown_grace_s)
            self._stopping = True
            self._grace_deadline = time.monotonic() + self.shutdown_grace_s

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        """Work until stopped. QueueStorageError at once if Redis is not reachable at start."""
        await self._store.open()
        try:
            await self._take_name()
        except BaseException:
            await self._store.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="closeup-job")
        signals = self._install_signals()
        heart = asyncio.create_task(self._heartbeat_loop(), name=f"closeup-heartbeat-{self.name}")
        recover = True  # jobs held under this name before a crash, or read but lost in an outage
        try:
            with contextlib.suppress(*RETRYABLE):
                await self._beat()
            while not self._stopping:
                try:
                    if recover:
                        handed = await self._store.reclaim(self.dead_after_s, self.max_failures, owner=self.name)
                        if handed:
                            log.warning("worker %s: %d job(s) from an earlier run handed back", self.name, handed)
                        recover = False
                    await self._next()
                    self._outage.over()
                except RETRYABLE as exc:
                    self._last_error = f"Redis unreachable: {mask_secrets(str(exc))}"
                    recover = True
                    await self._outage.wait(exc, "waiting for jobs")
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):  # the stream vanished (Redis restarted empty, or flushed)
                        with contextlib.suppress(*RETRYABLE, ResponseError):
                            await self._store.ensure_group()
                    else:
                        log.error("worker %s: Redis refused a command: %s", self.name, mask_secrets(str(exc)))
                        self._last_error = mask_secrets(str(exc))
                        await asyncio.sleep(self._outage.backoff.next())
        finally:
            for sig in signals:
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(sig)
            self._closing = True
            await stop_tasks([heart])
            with contextlib.suppress(*RETRYABLE, TimeoutError, ResponseError):
                async with asyncio.timeout(2.0):
                    await self._sign_off()
            await self._store.close()
            self._pool.shutdown(wait=False)

    async def _take_name(self) -> None:
        """Wait out the heartbeat of this name's previous (crashed) run; refuse if it is still refreshed:
        two live workers with one name would hand each other's jobs back."""
        deadline = time.monotonic() + self.dead_after_s + self.heartbeat_s
        try:
            while (value := await self._store.client.get(self.keys.worker(self.name))) is not None:
                if time.monotonic() > deadline:
                    raise QueueStorageError(f"Another worker named {self.name!r} is running on this queue; give "
                                            "each worker its own name.")
                log.info("worker %s: waiting for the heartbeat of an earlier run to lapse (%s)", self.name, value)
                await asyncio.sleep(self.heartbeat_s / 2)
        except RETRYABLE as exc:
            raise QueueStorageError(f"Lost Redis at {self._store.where} while starting: {mask_secrets(str(exc))}") \
                from None

    async def _next(self) -> None:
        """Wait for a ticket, claim the fair-next job with it, run the job."""
        reply = await self._store.client.xreadgroup(GROUP, self.name, {self.keys.jobs: ">"}, count=1,
                                                    block=int(self._poll_s * 1000))
        if not reply or not reply[0][1]:
            await self._store.rearm_if_waiting()
            return
        ticket, fields = reply[0][1][0]
        if not fields or not fields.get("job_id"):
            log.warning("worker %s: set aside stream entry %s without a job id: %r", self.name, ticket, fields)
            await self._store.release(ticket, rearm=False)
            return
        if self._stopping:
            await self._store.release(ticket, rearm=True)  # wake another worker instead
            return
        self._ticket = ticket
        try:
            claim = await self._store.claim(ticket, self.name)
            if claim is None:  # the job was cancelled or taken meanwhile
                await self._store.release(ticket, rearm=False)
                return
            await self._run(claim)
        finally:
            self._ticket = None

    # ------------------------------------------------------------------ one job

    async def _run(self, claim: Claim) -> None:
        job_id, attempts = claim.job_id, claim.attempts
        try:
            spec = JobSpec.from_json(claim.spec_json)
            if spec.job_id != job_id:
                raise JobFormatError(f"its id {spec.job_id!r} does not match the queue entry {job_id!r}")
        except JobFormatError as exc:
            log.warning("job %s set aside: %s", job_id, exc)
            await self._end(claim, JobState.POISONED, JobEvent(
                EventKind.FAILED, job_id, reason=f"This job could not be read ({exc}).", attempt=attempts))
            return
        self._job = job_id
        try:
            await self._execute(claim, spec)
        finally:
            self._job = None

    async def _execute(self, claim: Claim, spec: JobSpec) -> None:
        loop = asyncio.get_running_loop()
        job_id, attempts = claim.job_id, claim.attempts
        cancelled = threading.Event()
        inbox: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
        await self._best_effort(self._store.publish(JobEvent(EventKind.STARTED, job_id, attempt=attempts)))

        def progress(step: int, total: int) -> None:  # called on the job thread
            if cancelled.is_set():
                raise JobCancelled
            loop.call_soon_threadsafe(inbox.put_nowait, (step, total))

        run_spec = dataclasses.replace(spec, count=1) if claim.smaller else spec
        assert self._pool is not None
        with job_logging(job_id):
            future = loop.run_in_executor(self._pool, in_job_context(self.runner.run, run_spec, progress, cancelled))
        future.add_done_callback(lambda _: inbox.put_nowait(None))
        timeout = spec.timeout_s or self.timeout_s
        why = await self._watch(claim, inbox, cancelled, loop.time() + timeout)
        results: list[ResultImage] = []
        error: Exception | None = None
        try:
            results = await future
        except Exception as exc:
            error = exc
        end = judge_run(spec, attempts, claim.smaller, results, error,
                        timed_out_after=timeout if why == "timeout" else None)
        if why == "lost" and end.ending in (Ending.DONE, Ending.CRASHED):
            log.warning("job %s was handed to another worker meanwhile; dropping this run's result", job_id)
        elif end.ending is Ending.CANCELLED:
            await self._stopped(claim, why, end)
        elif end.ending is Ending.RETRY_SMALLER:
            log.warning("job %s: out of memory with %d images; retrying with one", job_id, spec.count)
            await self._durably("requeueing a job", lambda: self._store.requeue(job_id, claim.ticket, smaller=True))
        elif end.ending is Ending.CRASHED:
            assert end.error is not None
            await self._crashed(claim, end.error)
        else:
            assert end.event is not None
            if await self._end(claim, end.state, end.event) and end.ending is Ending.DONE:
                self._jobs_done += 1

    async def _watch(self, claim: Claim, inbox: asyncio.Queue[tuple[int, int] | None], cancelled: threading.Event,
                     deadline: float) -> str | None:
        """Relay progress and watch for cancel, timeout, shutdown and a lost claim until the job returns.

        Returns why the job was stopped ("cancel", "timeout", "handback", "lost") or None.
        """
        loop = asyncio.get_running_loop()
        why: str | None = None
        finished = False
        while not finished:
            wait = self._poll_s if why else max(0.01, min(self._poll_s, deadline - loop.time()))
            batch: list[tuple[int, int] | None] = []
            with contextlib.suppress(TimeoutError):
                batch.append(await asyncio.wait_for(inbox.get(), wait))
            while not inbox.empty():
                batch.append(inbox.get_nowait())
            finished = None in batch
            steps = [item for item in batch if item is not None]
            flagged = await self._best_effort(self._relay(claim, steps))
            if why is None:
                if flagged:
                    why = "cancel"
                elif self._lost_ticket == claim.ticket:
                    why = "lost"
                elif loop.time() >= deadline:
                    why = "timeout"
                elif self._stopping and time.monotonic() >= self._grace_deadline:
                    why = "handback"
                if why is not None:
                    cancelled.set()  # the runner stops at its next step
        return why

    async def _relay(self, claim: Claim, steps: list[tuple[int, int]]) -> bool:
        """Publish progress and read the cancel flag in one round trip; True when cancel was asked."""
        async with self._store.client.pipeline(transaction=False) as pipe:
            for step, total in steps:
                event = JobEvent(EventKind.PROGRESS, claim.job_id, step=step, total=total, attempt=claim.attempts)
                pipe.xadd(self.keys.events, {"event": event.to_json()}, maxlen=self._store.events_maxlen)
            pipe.exists(f"{self.keys.prefix}cancel:{claim.job_id}")
            replies = await pipe.execute()
        return bool(replies[-1])

    async def _stopped(self, claim: Claim, why: str | None, end: RunEnd) -> None:
        if why == "lost":
            log.warning("job %s was handed to another worker meanwhile; stopped here", claim.job_id)
        elif why == "cancel" or (why is None and not self._stopping):
            assert end.event is not None
            await self._end(claim, JobState.CANCELLED, end.event)
        else:  # shutdown: hand the job back rather than lose it; this try does not count
            await self._durably("handing a job back",
                                lambda: self._store.requeue(claim.job_id, claim.ticket, refund=True))
            log.info("shutdown: job %s handed back to the queue", claim.job_id)

    async def _crashed(self, claim: Claim, exc: Exception) -> None:
        log.error("job %s failed (attempt %d)", claim.job_id, claim.attempts, exc_info=exc)
        self._last_error = f"{type(exc).__name__}: {mask_secrets(str(exc))}"
        failures = claim.failures + 1
        if failures < self.max_failures:
            await self._durably("requeueing a job", lambda: self._store.requeue(claim.job_id, claim.ticket,
                                                                                failed=True))
            return
        await self._end(claim, JobState.POISONED, set_aside_event(claim.job_id, claim.attempts, failures, exc),
                        add_failure=True)

    async def _end(self, claim: Claim, state: JobState, event: JobEvent, *, add_failure: bool = False) -> bool:
        stored = await self._durably("storing a result", lambda: self._store.finish(
            claim.job_id, claim.ticket, state, event, add_failure=add_failure))
        if stored is False:
            log.warning("job %s was handed to another worker meanwhile; this run's outcome is dropped", claim.job_id)
        return bool(stored)

    # ------------------------------------------------------------------ Redis plumbing

    async def _durably(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """Retry until Redis answers. Gives up only when stopping and past the grace period: the job is
        then still held by this worker's ticket and is reclaimed once the heartbeat lapses."""
        while True:
            try:
                result = await call()
            except RETRYABLE as exc:
                self._last_error = f"Redis unreachable: {mask_secrets(str(exc))}"
                if self._stopping and time.monotonic() > self._grace_deadline:
                    log.error("worker %s: gave up %s; the job will be reclaimed", self.name, what)
                    return None
                await self._outage.wait(exc, what)
                continue
            self._outage.over()
            return result

    async def _best_effort(self, call: Awaitable[T]) -> T | None:
        """Progress and flags may be skipped while Redis is away; they never block the job for long."""
        try:
            async with asyncio.timeout(max(1.0, self.heartbeat_s)):
                return await call
        except (*RETRYABLE, TimeoutError) as exc:
            log.debug("worker %s: skipped a progress update (%s)", self.name, mask_secrets(str(exc)))
            return None

    async def _beat(self) -> None:
        self._last_heartbeat = time.time()
        ticket = self._ticket
        async with self._store.client.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.worker(self.name), json.dumps(self.health()), px=int(self.dead_after_s * 1000))
            pipe.sadd(self.keys.workers, self.name)
            if ticket is not None:  # keeps the held ticket's idle time low: that is what says "alive"
                pipe.xclaim(self.keys.jobs, GROUP, self.name, 0, [ticket], justid=True)
            replies = await pipe.execute()
        if ticket is not None and not replies[-1] and ticket == self._ticket and self._job is not None:
            self._lost_ticket = ticket

    async def _heartbeat_loop(self) -> None:
        next_reclaim = 0.0
        while not self._closing:
            try:
                async with asyncio.timeout(max(1.0, self.heartbeat_s)):
                    await self._beat()
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + self.heartbeat_s
                    await self._store.reclaim(self.dead_after_s, self.max_failures)
            except (*RETRYABLE, TimeoutError, ResponseError) as exc:
                self._last_error = f"Redis unreachable: {mask_secrets(str(exc))}"
                log.debug("worker %s: heartbeat failed (%s)", self.name, self._last_error)
            await asyncio.sleep(self.heartbeat_s)

    async def _sign_off(self) -> None:
        await self._store.client.delete(self.keys.worker(self.name))
        await self._store.client.srem(self.keys.workers, self.name)

    def _install_signals(self) -> list[signal.Signals]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                continue
            installed.append(sig)
        return installed


async def run_worker(config_path: str | None, runner: Runner | None = None, *, redis_url: str | None = None,
                     prefix: str | None = None, name: str | None = None, shutdown_grace_s: float = 30.0) -> int:
    """Entry point for ``closeup worker``: 0 after a clean stop, 1 when Redis fails, 2 on a setup problem.

    Settings come from the ``[queue]`` section (``CLOSEUP_QUEUE__REDIS_URL`` and friends); ``redis_url``
    and ``prefix`` override it. Redis is checked before the models load, so a wrong URL fails in a
    second, not after a minute of loading. Without ``runner``, the GPU engine is built from the config.
    """
    from generation.config import ConfigError, load_config
    from generation.logging_setup import setup_logging

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    setup_logging(config.logging.level, config.logging.format)
    queue = config.queue
    url = redis_url or queue.redis_url
    probe = RedisStore(url, Keys(prefix or queue.redis_prefix))
    try:
        await probe.open()
    except QueueStorageError as exc:
        log.error("%s", exc)
        return 1
    finally:
        await probe.close()
    if runner is None:
        try:
            from generation.queue.engine_runner import EngineRunner

            runner = await asyncio.to_thread(EngineRunner.from_config, config)
        except Exception as exc:  # missing models, no GPU stack, ...: say so and stop
            log.error("the GPU engine could not be loaded: %s", mask_secrets(str(exc)))
            return 2
    worker = Worker(name or default_name(), url, runner, prefix=prefix or queue.redis_prefix,
                    heartbeat_s=queue.heartbeat_s, dead_after_s=queue.dead_after_s, timeout_s=queue.job_timeout_s,
                    max_failures=queue.max_failures, keep_finished_s=config.queue_retention_s,
                    events_maxlen=queue.events_maxlen, shutdown_grace_s=shutdown_grace_s)
    log.info("worker %s serving %s (prefix %r)", worker.name, mask_secrets(url), worker.keys.prefix)
    try:
        await worker.run()
    except QueueStorageError as exc:
        log.error("%s", exc)
        return 1
    return 0
