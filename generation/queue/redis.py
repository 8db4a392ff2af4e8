"""The scale-out queue, bot side: ``RedisQueue`` has LocalQueue's API and meaning, its jobs run on GPU workers.

It submits (caps and rounds decided under WATCH by the shared pure functions), cancels, lists, retries and
forgets jobs, fans the events stream out to subscribers, and hands back the jobs of dead workers. The Redis
layout, the Lua scripts and the state changes it shares with the workers are in ``redis_store`` (which the
worker imports without this module).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from redis.exceptions import ResponseError, WatchError

from generation.jobs import (
    EventKind,
    JobEvent,
    JobFormatError,
    JobSpec,
    JobState,
    ResultImage,
    prompt_of,
    results_from_json,
)
from generation.lifecycle import StartClose
from generation.logging_setup import mask_secrets
from generation.queue.base import RETRIED, EventFanout, JobStatus, QueueStorageError
from generation.queue.redis_store import (
    DEFAULT_PREFIX,
    DEFAULT_URL,
    RETRYABLE,
    Backoff,
    Keys,
    RedisStore,
    active_entries,
    stop_tasks,
    unreachable_error,
    waiting_member,
)
from generation.queue.scheduler import EtaEstimator, Limits, assign_round, check_counts

log = logging.getLogger(__name__)


class RedisQueue(EventFanout, StartClose):
    """The bot's view of the shared queue: same API and meaning as LocalQueue, jobs run on ``Worker``s.

    Use ``async with RedisQueue(url)`` or start()/close(). Events of every worker reach ``events()`` and
    ``subscribe()``; finished results wait in Redis until ``ack`` so a bot restart loses none.
    """

    def __init__(self, redis_url: str = DEFAULT_URL, *, prefix: str = DEFAULT_PREFIX, limits: Limits | None = None,
                 max_failures: int = 3, eta: EtaEstimator | None = None, dead_after_s: float = 10.0,
                 reclaim_every_s: float = 5.0, keep_finished_s: float = 7 * 86400, events_maxlen: int = 10_000,
                 cancel_flag_ttl_s: int = 3600) -> None:
        super().__init__()
        self.keys = Keys(prefix)
        self.limits = limits or Limits()
        self.max_failures = max_failures
        self.eta = eta or EtaEstimator()
        self.dead_after_s = dead_after_s
        self.reclaim_every_s = reclaim_every_s
        self.cancel_flag_ttl_s = cancel_flag_ttl_s
        self.reconnects = 0  # outages of the event reader that ended; for health checks and tests
        self._store = RedisStore(redis_url, self.keys, keep_finished_s=keep_finished_s, events_maxlen=events_maxlen)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._last_id = "0-0"
        self._started_at: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect (QueueStorageError naming the URL, password hidden, if Redis is not there) and listen."""
        await self._store.open()
        try:
            last = await self._store.client.xrevrange(self.keys.events, count=1)
        except (*RETRYABLE, ResponseError) as exc:
            await self._store.close()
            raise unreachable_error(self._store.url, exc) from None
        self._last_id = last[0][0] if last else "0-0"
        self._tasks = [asyncio.create_task(self._read_events(), name="closeup-redis-events"),
                       asyncio.create_task(self._maintain(), name="closeup-redis-reclaim")]

    async def close(self) -> None:
        self._closing = True
        await stop_tasks(self._tasks)
        self._tasks = []
        await self._store.close()

    @contextlib.contextmanager
    def _storage(self, what: str) -> Iterator[None]:
        try:
            yield
        except RETRYABLE as exc:
            raise QueueStorageError(f"Redis at {self._store.where} is unreachable, so the queue could not {what} "
                                    f"({mask_secrets(str(exc))}). Nothing was changed; try again shortly.") from None

    # ------------------------------------------------------------------ public API

    async def submit(self, spec: JobSpec, *, reason: str = "") -> JobEvent:
        """Store the job (idempotent by job_id) and return its queued event; QueueLimitError on a cap."""
        with self._storage("accept the job"):
            for _ in range(100):
                try:
                    return await self._try_submit(spec, reason)
                except WatchError:  # someone queued, claimed or finished meanwhile: decide again
                    continue
            raise QueueStorageError("The queue is too busy to accept the job right now; try again shortly.")

    async def _try_submit(self, spec: JobSpec, reason: str = "") -> JobEvent:
        keys, job_key = self.keys, self.keys.job(spec.job_id)
        async with self._store.client.pipeline(transaction=True) as pipe:
            user_key = keys.user_active(spec.user_id)
            # Only what this job's caps and round depend on is watched and read: the person's own active jobs
            # and the per-server counts, never the whole queue, so a submit costs the same at 10 or 10,000 jobs.
            await pipe.watch(job_key, user_key, keys.guild_active, keys.round)
            if await pipe.exists(job_key):
                await pipe.unwatch()
                position, eta = await self._position(spec.job_id)
                event = JobEvent(EventKind.QUEUED, spec.job_id, position=position, eta_s=eta)
                await self._store.publish(event)
                return event
            mine = [int(r) for r in await pipe.hvals(user_key)]
            in_guild = int(await pipe.hget(keys.guild_active, spec.guild_id) or 0)
            check_counts(len(mine), in_guild, await pipe.hlen(keys.active), self.limits)
            current = int(float(await pipe.get(keys.round) or 0))
            round_ = assign_round(current, max(mine) if mine else None)
            enqueued_at = time.time()
            member = waiting_member(spec.priority, enqueued_at, spec.job_id)
            ahead = await pipe.zcount(keys.waiting, "-inf", f"({round_}")
            ahead += sum(m < member for m in await pipe.zrange(keys.waiting, round_, round_, byscore=True))
            eta = await self._eta(ahead)
            event = JobEvent(EventKind.QUEUED, spec.job_id, position=ahead, eta_s=eta, reason=reason)
            pipe.multi()
            pipe.hset(job_key, mapping={
                "spec": spec.to_json(), "state": str(JobState.QUEUED), "attempts": 0, "failures": 0, "smaller": 0,
                "round": round_, "priority": spec.priority, "user_id": spec.user_id, "guild_id": spec.guild_id,
                "enqueued_at": repr(enqueued_at), "started_at": "", "finished_at": "", "reason": "", "worker": "",
                "ticket": "", "final_event": "", "delivered": 0, "wkey": member})
            pipe.hset(keys.active, spec.job_id, json.dumps([spec.user_id, spec.guild_id, round_]))
            pipe.hset(user_key, spec.job_id, round_)
            pipe.hincrby(keys.guild_active, spec.guild_id, 1)
            pipe.sadd(keys.user(spec.user_id), spec.job_id)
            pipe.expire(keys.user(spec.user_id), self._store.keep_finished_s)
            pipe.zadd(keys.waiting, {member: round_})
            pipe.xadd(keys.events, {"event": event.to_json()}, maxlen=self._store.events_maxlen)
            pipe.xadd(keys.jobs, {"job_id": spec.job_id})
            await pipe.execute()
        return event

    async def cancel(self, job_id: str, user_id: str | None = None) -> bool:
        """Remove a queued job, or ask its worker to stop a running one at its next step. False if it is not
        active (or belongs to someone else when ``user_id`` is given)."""
        event = JobEvent(EventKind.CANCELLED, job_id, reason="Cancelled.")
        with self._storage("cancel the job"):
            outcome = await self._store.cancel_script(args=[
                self.keys.prefix, job_id, user_id or "", event.to_json(), repr(time.time()),
                self._store.keep_finished_s, self._store.events_maxlen, self.cancel_flag_ttl_s])
        return outcome in ("removed", "stopping")

    async def status(self, job_id: str) -> JobStatus | None:
        with self._storage("read the job"):
            rows = await self._statuses([job_id])
        return rows[0] if rows else None

    async def active_jobs(self) -> list[JobStatus]:
        """Every queued and running job, whoever's (the host's `closeup queue ls`)."""
        with self._storage("list the jobs"):
            active = await self._store.client.hgetall(self.keys.active)
            ids = [job_id for job_id, _, _, _ in active_entries(active)]
            return [s for s in await self._statuses(ids) if s.state in (JobState.QUEUED, JobState.RUNNING)]

    async def set_aside_jobs(self) -> list[JobStatus]:
        """Failed and set-aside jobs the queue still keeps (for queue.keep_finished_s), oldest first."""
        with self._storage("list the jobs"):
            prefix = self.keys.job("")
            ids = [key.removeprefix(prefix) async for key in
                   self._store.client.scan_iter(match=self.keys.job("*"), count=500)]
            return [s for s in await self._statuses(ids) if s.state in (JobState.FAILED, JobState.POISONED)]

    async def retry(self, job_id: str) -> JobEvent | None:
        """Queue a failed or set-aside job again as it was (same id and photos, attempts from zero); the
        bot hears a QUEUED event whose reason is RETRIED and takes the job up again. None if the job is not
        failed or set aside (or has expired), or the bot has not yet taken its failure (then its late
        acknowledgement would land on the new run)."""
        with self._storage("queue the job again"):
            client = self._store.client
            state, spec_json, delivered = await client.hmget(self.keys.job(job_id), ["state", "spec", "delivered"])
            if not spec_json or _state(state) not in (JobState.FAILED, JobState.POISONED) or delivered != "1":
                return None
            spec = JobSpec.from_json(spec_json)
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.job(job_id))
                pipe.srem(self.keys.undelivered, job_id)
                await pipe.execute()
        return await self.submit(spec, reason=RETRIED)

    async def open_for_inspection(self) -> None:
        """Connect without reading events or reclaiming jobs: for the host's tools beside a running bot."""
        await self._store.open()

    async def jobs_for(self, user_id: str) -> list[JobStatus]:
        with self._storage("list the jobs"):
            active = await self._store.client.hgetall(self.keys.active)
            ids = [job_id for job_id, user, _, _ in active_entries(active) if user == user_id]
            return [s for s in await self._statuses(ids) if s.state in (JobState.QUEUED, JobState.RUNNING)]

    async def undelivered(self) -> list[JobEvent]:
        """Final events (done, failed, cancelled) not yet acknowledged: deliver them, then ack()."""
        client = self._store.client
        with self._storage("list finished jobs"):
            ids = sorted(await client.smembers(self.keys.undelivered))
            async with client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(self.keys.job(job_id), "final_event", "finished_at", "delivered")
                rows = await pipe.execute()
            found: list[tuple[float, JobEvent]] = []
            gone = []
            for job_id, (final, finished_at, delivered) in zip(ids, rows, strict=True):
                if not final or delivered == "1":
                    gone.append(job_id)  # expired, purged or acked elsewhere
                    continue
                try:
                    found.append((float(finished_at or 0), JobEvent.from_json(final)))
                except (JobFormatError, ValueError) as exc:
                    log.warning("job %s: unreadable final event set aside (%s)", job_id, exc)
                    gone.append(job_id)
            if gone:
                await client.srem(self.keys.undelivered, *gone)
        return [event for _, event in sorted(found, key=lambda item: item[0])]

    async def results(self, job_id: str) -> tuple[ResultImage, ...]:
        """The portraits of a finished job, until ack() drops them; () when there are none (any more)."""
        with self._storage("read the results"):
            text = await self._store.client.hget(self.keys.job(job_id), "results")
        return results_from_json(text)

    async def ack(self, job_id: str) -> None:
        with self._storage("record the delivery"):
            await self._store.ack_script(args=[self.keys.prefix, job_id])

    async def purge(self, user_id: str) -> int:
        """/forget: every job of this person gone from Redis now — queued, running (stopped at its next
        step; what it returns is dropped) and finished ones, with their results and their events."""
        client, user_key = self._store.client, self.keys.user(user_id)
        with self._storage("forget the jobs"):
            active = await client.hgetall(self.keys.active)
            ids = set(await client.smembers(user_key))
            ids |= {job_id for job_id, user, _, _ in active_entries(active) if user == user_id}
            removed = 0
            for job_id in sorted(ids):
                removed += int(await self._store.forget_script(args=[self.keys.prefix, job_id,
                                                                     self.cancel_flag_ttl_s]))
            await client.delete(user_key)
            if ids:
                await self._drop_events(ids)
        return removed

    async def _drop_events(self, job_ids: set[str]) -> None:
        """Delete these jobs' entries from the events stream (bounded by events_maxlen)."""
        client, last = self._store.client, "-"
        while True:
            entries = await client.xrange(self.keys.events, min=last, max="+", count=1000)
            doomed = []
            for entry_id, fields in entries:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    if json.loads((fields or {}).get("event", "")).get("job_id") in job_ids:
                        doomed.append(entry_id)
            if doomed:
                await client.xdel(self.keys.events, *doomed)
            if len(entries) < 1000:
                return
            last = "(" + entries[-1][0]

    async def sweep(self) -> int:
        """Apply the retention period now. Redis itself forgets finished jobs (their hashes carry a TTL of
        ``keep_finished_s``); this drops what still points at them. Returns how many references went."""
        client = self._store.client
        with self._storage("apply the retention period"):
            ids = sorted(await client.smembers(self.keys.undelivered))
            async with client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.exists(self.keys.job(job_id))
                alive = await pipe.execute()
            gone = [job_id for job_id, exists in zip(ids, alive, strict=True) if not exists]
            removed = await client.srem(self.keys.undelivered, *gone) if gone else 0
        if removed:
            log.info("queue: forgot %d finished job(s) past the retention period", removed)
        return removed

    async def workers(self) -> list[dict[str, Any]]:
        """Health of every live worker (what ``Worker.health()`` says, as of its last heartbeat)."""
        with self._storage("list the workers"):
            return await self._store.workers()

    # ------------------------------------------------------------------ internals

    async def _eta(self, position: int) -> float:
        elapsed = await self._store.running_elapsed()
        live = len(await self._store.workers())
        return self.eta.eta(position, elapsed, workers=max(1, live))

    async def _position(self, job_id: str) -> tuple[int, float]:
        member = await self._store.client.hget(self.keys.job(job_id), "wkey")
        rank = await self._store.client.zrank(self.keys.waiting, member) if member else None
        position = rank or 0
        return position, await self._eta(position)

    async def _statuses(self, job_ids: list[str]) -> list[JobStatus]:
        if not job_ids:
            return []
        client = self._store.client
        async with client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            rows = await pipe.execute()
        elapsed: list[float] | None = None
        live = 1
        statuses = []
        for job_id, row in zip(job_ids, rows, strict=True):
            if not row:
                continue
            state = _state(row.get("state"))
            position = eta = None
            if state == JobState.QUEUED and row.get("wkey"):
                position = await client.zrank(self.keys.waiting, row["wkey"])
            if position is not None:
                if elapsed is None:
                    elapsed, live = await self._store.running_elapsed(), max(1, len(await self._store.workers()))
                eta = self.eta.eta(position, elapsed, workers=live)
            statuses.append(JobStatus(
                job_id, row.get("user_id", ""), row.get("guild_id", ""), state, position, eta,
                _int(row.get("attempts")), row.get("reason", ""), _float(row.get("enqueued_at")),
                prompt_of(row.get("spec", ""))))
        return sorted(statuses, key=lambda s: s.enqueued_at)

    def _emit(self, event: JobEvent) -> None:
        if event.kind == EventKind.STARTED:
            if len(self._started_at) > 10_000:  # final events we never saw (trimmed stream): forget them
                self._started_at.clear()
            self._started_at[event.job_id] = event.at
        elif event.kind in (EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED):
            started = self._started_at.pop(event.job_id, None)
            if started is not None and event.kind == EventKind.DONE:
                self.eta.record(event.at - started)
        self._announce(event)

    async def _read_events(self) -> None:
        """Fan the events stream out to subscribers; after a lost connection, resume from the last id."""
        backoff, down_since = Backoff(), None
        while not self._closing:
            try:
                reply = await self._store.client.xread({self.keys.events: self._last_id}, count=200, block=1000)
            except RETRYABLE as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("events: lost Redis at %s (%s); reconnecting", self._store.where,
                                mask_secrets(str(exc)))
                await asyncio.sleep(backoff.next())
                continue
            if down_since is not None:
                log.info("events: Redis at %s is back after %.1f s", self._store.where, time.monotonic() - down_since)
                self.reconnects += 1
                down_since = None
                backoff.reset()
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    try:
                        event = JobEvent.from_json((fields or {}).get("event", ""))
                    except JobFormatError as exc:
                        log.warning("events: skipping unreadable entry %s (%s)", entry_id, exc)
                        continue
                    self._emit(event)

    async def _maintain(self) -> None:
        """Hand back the jobs of dead workers even while no worker is alive to notice."""
        next_prune = 0.0
        while not self._closing:
            await asyncio.sleep(self.reclaim_every_s)
            try:
                await self._store.reclaim(self.dead_after_s, self.max_failures)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + 600
                    await self._store.prune_consumers()
            except (*RETRYABLE, ResponseError) as exc:
                log.debug("reclaim skipped: %s", mask_secrets(str(exc)))


def _state(value: str | None) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        return JobState.POISONED


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
