"""The Redis side the bot and the GPU workers share: key layout, connection, Lua scripts, one job's state changes.

``RedisStore`` is what both ends hold: the bot-side ``RedisQueue`` (generation/queue/redis.py) and the
``Worker`` (generation/queue/worker.py) each build one, and the worker imports only this module, never the
bot-side queue. The Lua scripts live in ``lua/*.lua`` beside this file (package data), each loaded with the
common prelude ``lua/common.lua`` in front.

Layout (``p`` is the prefix, default ``closeup:``):

* ``p job:<id>`` hash: spec JSON, state, attempts, failures, round, user/guild, times, reason, worker,
  ticket, final_event, delivered. Finished jobs get a TTL (``keep_finished_s``) so Redis stays bounded.
* ``p waiting`` sorted set: score = round, member = ``<priority key>|<enqueued_at>|<job id>``. Members of
  one round sort by bytes, so ``ZRANGE 0 0`` is exactly what ``fair_order`` puts first.
* ``p jobs`` stream with consumer group ``workers``: *tickets*. Every submit and requeue adds one. A
  worker blocks on ``XREADGROUP``; a ticket it reads is its right to claim one job, and the ``claim``
  script pops the fair-next job from ``waiting`` (not the job the ticket was written for: a stream is
  FIFO, fairness is not). The ticket then stays in the worker's pending list until the job ends, and
  the ending (done, failed, requeued) acks it in the same script. So the pending entries list *is*
  the ledger of who holds what: a live worker resets its ticket's idle time at every heartbeat, and a
  ticket idle longer than ``dead_after_s`` whose worker heartbeat key expired is reclaimed (the job is
  requeued, the attempt counted, poisoned after ``max_failures``). That is the at-least-once part.
* Every state change is a Lua script that checks (state, ticket) first, so two workers never hold
  one job, and a worker presumed dead that comes back cannot finish a job twice: results are
  delivered exactly once even though a job may run more than once.
* ``p active`` hash (id -> [user, guild, round]) and ``p round``: what caps and ``assign_round`` need.
  ``submit`` reads them under WATCH and writes in MULTI, so the shared pure functions decide.
* ``p events`` stream (capped with MAXLEN ~): every event for the bot. Read with plain ``XREAD`` from
  the last id seen, not a consumer group: every bot-side reader wants every event (a group would
  split them), and after a lost connection it resumes from its last id, so nothing is skipped.
  Events carry no portraits: those sit once in the job hash (``results``) until the bot's ``ack`` drops
  them; final events wait there too (``p undelivered``), so a trimmed stream loses no result.
* ``p claims`` (ticket -> job) and ``p running`` (job -> worker) let a reclaim find the job behind an
  idle ticket and the ETA see running jobs; ``p user:<id>`` lists a person's jobs for ``purge``.
* ``p cancel:<id>`` flag, read by the worker at each progress step; ``p worker:<name>`` heartbeat
  (health JSON with a TTL) and ``p workers`` (names, to list them).
* Tickets carry ``job_id`` (only a hint). One with ``job_id = "-"`` is a re-arm: an idle worker that sees
  jobs waiting but got no ticket adds one, so a lost ticket delays a job by a second, never forever.
  An entry without ``job_id`` is foreign: acked, dropped and logged.

Scripts touch keys they build from the prefix, which is fine on one Redis (or Sentinel), not Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from generation.jobs import EventKind, JobEvent, JobState, results_to_json, without_images
from generation.logging_setup import mask_secrets
from generation.queue.base import QueueStorageError

log = logging.getLogger(__name__)

GROUP = "workers"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "closeup:"
# Errors after which the same call can simply be tried again once Redis answers.
RETRYABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ConnectionError)
_PRIORITY_OFFSET = 10**15


async def stop_tasks(tasks: list[asyncio.Task[Any]], timeout_s: float = 5.0) -> None:
    """Cancel and wait, cancelling again while any still runs: a cancel that lands while redis-py opens a
    connection can get lost (seen with redis-py 8.1 on Python 3.11). Never swallows a cancel of the caller."""
    pending = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in pending:
        log.warning("task %s did not stop within %.0f s", task.get_name(), timeout_s)


class Backoff:
    """Exponential delays for reconnecting: short at first, capped so recovery is never far away."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 10.0) -> None:
        self.first_s, self.cap_s = first_s, cap_s
        self._next = first_s

    def next(self) -> float:
        delay, self._next = self._next, min(self.cap_s, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs"

    @property
    def waiting(self) -> str:
        return f"{self.prefix}waiting"

    @property
    def active(self) -> str:
        return f"{self.prefix}active"

    @property
    def round(self) -> str:
        return f"{self.prefix}round"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def undelivered(self) -> str:
        return f"{self.prefix}undelivered"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def guild_active(self) -> str:
        """guild id → how many of its jobs are queued or running (the per-server cap, in O(1))."""
        return f"{self.prefix}gactive"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def user_active(self, user_id: str) -> str:
        """job id → round of this person's queued or running jobs (their cap and next round, in O(1))."""
        return f"{self.prefix}uactive:{user_id}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}worker:{name}"


def waiting_member(priority: int, enqueued_at: float, job_id: str) -> str:
    """The sorted-set member whose byte order within a round is fair_order's (-priority, age, id)."""
    rank = _PRIORITY_OFFSET - max(-_PRIORITY_OFFSET + 1, min(_PRIORITY_OFFSET - 1, priority))
    return f"{rank:020d}|{enqueued_at:020.6f}|{job_id}"


@dataclass(frozen=True)
class Claim:
    """A job a worker now holds, with the ticket that proves it."""

    job_id: str
    ticket: str
    spec_json: str
    attempts: int
    smaller: bool
    failures: int


# ---------------------------------------------------------------------------------------- Lua scripts

# Every script the store registers; each is lua/<name>.lua with lua/common.lua in front.
SCRIPT_NAMES = ("claim", "finish", "requeue", "reclaim", "release", "cancel", "forget", "ack")
LUA_PACKAGE = "generation.queue"
LUA_FOLDER = "lua"


def script_resource(name: str) -> Traversable:
    """The package resource of ``lua/<name>.lua``; ``common`` is the shared prelude."""
    return files(LUA_PACKAGE).joinpath(LUA_FOLDER, f"{name}.lua")


@functools.cache
def load_script(name: str) -> str:
    """The full text of one script: the common prelude (ARGV[1] as prefix, release/unlist/finish) and its body."""
    if name not in SCRIPT_NAMES:
        raise ValueError(f"unknown queue script {name!r}")
    return script_resource("common").read_text(encoding="utf-8") + script_resource(name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------- shared store


def unreachable_error(url: str, exc: BaseException) -> QueueStorageError:
    """The error to raise when Redis at ``url`` failed to answer or set up with ``exc``: says which, password hidden."""
    where = mask_secrets(url)
    if isinstance(exc, AuthenticationError) or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
        return QueueStorageError(f"Redis at {where} refused the credentials: check the user and password in the URL.")
    if isinstance(exc, ResponseError):
        return QueueStorageError(f"Redis at {where} refused to set up the queue ({mask_secrets(str(exc))}). Is the "
                                 "prefix used by something else, or is this server read-only?")
    return QueueStorageError(f"Cannot reach Redis at {where} ({mask_secrets(str(exc))}). Is Redis running, and "
                             "is the URL right?")


async def check_reachable(url: str, timeout_s: float = 2.0) -> None:
    """Raise QueueStorageError (password hidden) unless Redis at ``url`` answers a PING within about
    ``timeout_s``: a start-up check that fails in seconds, before anything slow (logging in to Discord,
    loading models) has begun."""
    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                         retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        raise QueueStorageError(f"The Redis URL {mask_secrets(url)} is not valid: {mask_secrets(str(exc))}") from None
    try:
        await asyncio.wait_for(client.ping(), timeout_s + 0.5)
    except (*RETRYABLE, ResponseError, TimeoutError, OSError) as exc:
        raise unreachable_error(url, exc) from None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


class RedisStore:
    """The Redis side both ends share: connection, scripts, and the state changes of one job."""

    def __init__(self, url: str, keys: Keys, *, keep_finished_s: float = 7 * 86400,
                 events_maxlen: int = 10_000, socket_timeout_s: float = 10.0) -> None:
        self.url = url
        self.where = mask_secrets(url)
        self.keys = keys
        self.keep_finished_s = int(max(1, keep_finished_s))
        self.events_maxlen = events_maxlen
        try:
            # One quick retry covers a pooled connection that went stale; longer outages are ours to back off.
            self.client: aioredis.Redis = aioredis.Redis.from_url(
                url, decode_responses=True, socket_timeout=socket_timeout_s, socket_connect_timeout=5.0,
                retry=Retry(NoBackoff(), 1), health_check_interval=30)
        except ValueError as exc:
            raise QueueStorageError(f"The Redis URL {self.where} is not valid: {mask_secrets(str(exc))}") from None
        self._claim = self.client.register_script(load_script("claim"))
        self._finish = self.client.register_script(load_script("finish"))
        self._requeue = self.client.register_script(load_script("requeue"))
        self._reclaim = self.client.register_script(load_script("reclaim"))
        self._release = self.client.register_script(load_script("release"))
        self.cancel_script = self.client.register_script(load_script("cancel"))
        self.ack_script = self.client.register_script(load_script("ack"))
        self.forget_script = self.client.register_script(load_script("forget"))

    async def open(self) -> None:
        """Check that Redis answers and that the job stream and its group exist; a clear error if not."""
        try:
            await self.client.ping()
            await self.ensure_group()
        except (*RETRYABLE, ResponseError) as exc:
            await self.close()
            raise unreachable_error(self.url, exc) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.keys.jobs, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def publish(self, event: JobEvent) -> None:
        await self.client.xadd(self.keys.events, {"event": event.to_json()}, maxlen=self.events_maxlen)

    async def claim(self, ticket: str, worker: str) -> Claim | None:
        row = await self._claim(args=[self.keys.prefix, ticket, worker, repr(time.time())])
        if not row:
            return None
        job_id, spec_json, attempts, smaller, failures = row
        return Claim(job_id, ticket, spec_json, int(attempts), smaller == "1", int(failures))

    async def finish(self, job_id: str, ticket: str, state: JobState, event: JobEvent, *,
                     expect: JobState = JobState.RUNNING, add_failure: bool = False) -> bool:
        """Record the job's end and its final event in one step; False when the ticket no longer holds it."""
        stored = await self._finish(args=[
            self.keys.prefix, job_id, str(expect), ticket, str(state), without_images(event).to_json(), event.reason,
            repr(time.time()), self.keep_finished_s, self.events_maxlen, int(add_failure),
            results_to_json(event.results) if event.results else ""])
        return bool(stored)

    async def requeue(self, job_id: str, ticket: str, *, failed: bool = False, smaller: bool = False,
                      refund: bool = False) -> int | None:
        """Put a held job back in line (same round); its failure count, or None when it was not held."""
        failures = await self._requeue(args=[self.keys.prefix, job_id, ticket, int(failed), int(smaller),
                                             int(refund)])
        return None if int(failures) < 0 else int(failures)

    async def release(self, ticket: str, *, rearm: bool) -> None:
        await self._release(args=[self.keys.prefix, ticket, int(rearm)])

    async def reclaim(self, dead_after_s: float, max_failures: int, *, owner: str | None = None,
                      skip: str | None = None) -> int:
        """Hand back jobs held by workers that stopped heartbeating (or, with ``owner``, by that worker's
        previous life). Returns how many jobs were requeued or set aside."""
        if owner is None:
            entries = await self.client.xpending_range(self.keys.jobs, GROUP, "-", "+", 100,
                                                       idle=int(dead_after_s * 1000))
        else:
            entries = await self.client.xpending_range(self.keys.jobs, GROUP, "-", "+", 1000, consumername=owner)
        handled = 0
        for entry in entries:
            ticket, consumer = entry["message_id"], entry["consumer"]
            if ticket == skip:
                continue
            verdict = await self._reclaim(args=[self.keys.prefix, ticket, consumer, int(owner is not None)])
            if verdict[0] != "dead":
                continue
            job_id, attempts = verdict[1], int(verdict[2])
            handled += 1
            if attempts >= max_failures:
                reason = (f"The worker stopped {attempts} times while making this portrait, so it was set aside. "
                          "Try a different photo or prompt.")
                await self.finish(job_id, ticket, JobState.POISONED,
                                  JobEvent(EventKind.FAILED, job_id, reason=reason, attempt=attempts))
                log.warning("job %s set aside: its worker %s stopped %d times", job_id, consumer, attempts)
            else:
                await self.requeue(job_id, ticket)
                log.warning("job %s handed back: worker %s stopped heartbeating (attempt %d)", job_id, consumer,
                            attempts)
        return handled

    async def prune_consumers(self, min_idle_s: float = 3600.0) -> int:
        """Forget group consumers of workers long gone (names are per process, so restarts add new ones)."""
        pruned = 0
        for consumer in await self.client.xinfo_consumers(self.keys.jobs, GROUP):
            name = consumer["name"]
            if consumer["pending"] or consumer["idle"] < min_idle_s * 1000:
                continue
            if not await self.client.exists(self.keys.worker(name)):
                pruned += await self.client.xgroup_delconsumer(self.keys.jobs, GROUP, name) == 0
        return pruned

    async def rearm_if_waiting(self) -> None:
        """Add a wake-up ticket when jobs wait but no ticket reached an idle worker (lost or trimmed)."""
        if await self.client.zcard(self.keys.waiting):
            await self.client.xadd(self.keys.jobs, {"job_id": "-"})

    async def workers(self) -> list[dict[str, Any]]:
        names = sorted(await self.client.smembers(self.keys.workers))
        if not names:
            return []
        values = await self.client.mget([self.keys.worker(n) for n in names])
        live, gone = [], []
        for name, value in zip(names, values, strict=True):
            if value is None:
                gone.append(name)
                continue
            try:
                health = json.loads(value)
            except ValueError:
                health = {"name": name, "state": "unknown"}
            live.append(health if isinstance(health, dict) else {"name": name, "state": "unknown"})
        if gone:
            await self.client.srem(self.keys.workers, *gone)
        return live

    async def running_elapsed(self) -> list[float]:
        running = await self.client.hkeys(self.keys.running)
        if not running:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in running:
                pipe.hget(self.keys.job(job_id), "started_at")
            started = await pipe.execute()
        now = time.time()
        return [now - float(s) for s in started if _is_number(s)]


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def active_entries(raw: dict[str, str]) -> Iterator[tuple[str, str, str, int]]:
    """(job id, user, guild, round) of each queued or running job; foreign entries are skipped."""
    for job_id, value in raw.items():
        try:
            user, guild, round_ = json.loads(value)
            yield job_id, str(user), str(guild), int(round_)
        except (ValueError, TypeError):
            log.warning("ignoring a malformed active-job entry %r", job_id)
