"""The scale-out queue: the bot side (``RedisQueue``) and the Redis layout it shares with GPU workers.

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
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from generation.jobs import (
    EventKind,
    JobEvent,
    JobFormatError,
    JobSpec,
    JobState,
    ResultImage,
    results_from_json,
    results_to_json,
    without_images,
)
from generation.queue.base import RETRIED, JobStatus, QueueStorageError
from generation.queue.scheduler import EtaEstimator, Limits, assign_round, check_counts

log = logging.getLogger(__name__)

GROUP = "workers"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "closeup:"
# Errors after which the same call can simply be tried again once Redis answers.
RETRYABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ConnectionError)
_PRIORITY_OFFSET = 10**15

_URL_SECRET = re.compile(r"([a-z][a-z0-9+.-]*://)([^:@/\s]*):([^@/\s]+)@", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(password=)[^&\s]+", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs (``redis://user:***@host``) so messages and logs can show the rest."""
    return _QUERY_SECRET.sub(r"\1***", _URL_SECRET.sub(r"\1\2:***@", text))


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

_LUA_COMMON = """
local p = ARGV[1]
local function release(ticket)
  redis.call('XACK', p .. 'jobs', 'workers', ticket)
  redis.call('XDEL', p .. 'jobs', ticket)
  redis.call('HDEL', p .. 'claims', ticket)
end
-- The job leaves the line and every count of active jobs (waiting set, active map, per-person and
-- per-server counts, running map): what finishing and forgetting a job share.
local function unlist(job, wkey, user, guild)
  if wkey then redis.call('ZREM', p .. 'waiting', wkey) end
  redis.call('HDEL', p .. 'active', job)
  if user and redis.call('HDEL', p .. 'uactive:' .. user, job) == 1 and guild then
    redis.call('HINCRBY', p .. 'gactive', guild, -1)
  end
  redis.call('HDEL', p .. 'running', job)
end
local function finish(job, expect, ticket, state, event, reason, now, ttl, maxlen, add_failure, results)
  local key = p .. 'job:' .. job
  local f = redis.call('HMGET', key, 'state', 'ticket', 'wkey', 'user_id', 'guild_id')
  if not f[1] then
    -- Forgotten (/forget) while it ran: its outcome has nowhere to go, and its ticket is of no use.
    if ticket ~= '' and redis.call('HGET', p .. 'claims', ticket) == job then release(ticket) end
    redis.call('DEL', p .. 'cancel:' .. job)
    return 0
  end
  if ticket ~= '' and f[1] == state and f[2] == ticket then return 1 end
  if f[1] ~= expect or (expect == 'running' and f[2] ~= ticket) then return 0 end
  redis.call('HSET', key, 'state', state, 'reason', reason, 'final_event', event, 'delivered', '0',
             'finished_at', now)
  -- The portraits wait here, once, until the bot's ack; the event (stream and hash) carries none.
  if results and results ~= '' then redis.call('HSET', key, 'results', results) end
  -- A finished job never runs again: drop its reference photos (base64, hundreds of KB) from memory.
  local spec = redis.call('HGET', key, 'spec')
  if spec then
    redis.call('HSET', key, 'spec', (string.gsub(spec, '"references":%b[]', '"references":[]', 1)))
  end
  if add_failure == '1' then redis.call('HINCRBY', key, 'failures', 1) end
  unlist(job, f[3], f[4], f[5])
  redis.call('SADD', p .. 'undelivered', job)
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', maxlen, '*', 'event', event)
  redis.call('EXPIRE', key, ttl)
  redis.call('DEL', p .. 'cancel:' .. job)
  if ticket ~= '' then release(ticket) end
  return 1
end
"""

# ARGV: prefix, ticket, worker, now -> {job, spec, attempts, smaller, failures} or nil
_CLAIM = _LUA_COMMON + """
local ticket, worker, now = ARGV[2], ARGV[3], ARGV[4]
local function reply(job)
  local f = redis.call('HMGET', p .. 'job:' .. job, 'spec', 'attempts', 'smaller', 'failures')
  return {job, f[1] or '', f[2] or '0', f[3] or '0', f[4] or '0'}
end
local held = redis.call('HGET', p .. 'claims', ticket)
if held then  -- the same claim, asked again after a lost reply
  local f = redis.call('HMGET', p .. 'job:' .. held, 'state', 'ticket')
  if f[1] == 'running' and f[2] == ticket then return reply(held) end
  return false
end
local pending = redis.call('XPENDING', p .. 'jobs', 'workers', ticket, ticket, 1)
if #pending == 0 or pending[1][2] ~= worker then return false end
for _ = 1, 1000 do
  local first = redis.call('ZRANGE', p .. 'waiting', 0, 0, 'WITHSCORES')
  if #first == 0 then return false end
  redis.call('ZREM', p .. 'waiting', first[1])
  local job = string.match(first[1], '^[^|]*|[^|]*|(.+)$')
  local key = job and (p .. 'job:' .. job)
  if key and redis.call('HGET', key, 'state') == 'queued' then
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'running', 'started_at', now, 'worker', worker, 'ticket', ticket)
    redis.call('HSET', p .. 'running', job, worker)
    redis.call('HSET', p .. 'claims', ticket, job)
    local round = tonumber(first[2]) or 0
    if round > (tonumber(redis.call('GET', p .. 'round')) or 0) then redis.call('SET', p .. 'round', round) end
    return reply(job)
  end
end
return false
"""

# ARGV: prefix, job, expect, ticket, state, event, reason, now, ttl, maxlen, add_failure, results
# -> 1 stored / 0 not
_FINISH = _LUA_COMMON + """
return finish(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
"""

# ARGV: prefix, job, ticket, failed, smaller, refund -> failures, or -1 when the ticket no longer holds the job
_REQUEUE = _LUA_COMMON + """
local job, ticket = ARGV[2], ARGV[3]
local key = p .. 'job:' .. job
local f = redis.call('HMGET', key, 'state', 'ticket', 'round', 'wkey')
if f[1] ~= 'running' or f[2] ~= ticket then return -1 end
redis.call('HSET', key, 'state', 'queued', 'started_at', '', 'worker', '', 'ticket', '')
local failures = redis.call('HINCRBY', key, 'failures', tonumber(ARGV[4]))
if ARGV[5] == '1' then redis.call('HSET', key, 'smaller', '1') end
if ARGV[6] == '1' then redis.call('HINCRBY', key, 'attempts', -1) end
redis.call('ZADD', p .. 'waiting', tonumber(f[3]) or 0, f[4] or ('0|0|' .. job))
redis.call('HDEL', p .. 'running', job)
release(ticket)
redis.call('XADD', p .. 'jobs', '*', 'job_id', job)
return failures
"""

# ARGV: prefix, ticket, owner, force -> {'gone'} | {'alive'} | {'released'} | {'dead', job, attempts}
_RECLAIM = _LUA_COMMON + """
local ticket, owner = ARGV[2], ARGV[3]
local pending = redis.call('XPENDING', p .. 'jobs', 'workers', ticket, ticket, 1)
if #pending == 0 or pending[1][2] ~= owner then return {'gone'} end
if ARGV[4] ~= '1' and redis.call('EXISTS', p .. 'worker:' .. owner) == 1 then return {'alive'} end
local job = redis.call('HGET', p .. 'claims', ticket)
if job then
  local f = redis.call('HMGET', p .. 'job:' .. job, 'state', 'ticket', 'attempts')
  if f[1] == 'running' and f[2] == ticket then return {'dead', job, f[3] or '0'} end
end
release(ticket)
if redis.call('ZCARD', p .. 'waiting') > 0 then redis.call('XADD', p .. 'jobs', '*', 'job_id', '-') end
return {'released'}
"""

# ARGV: prefix, ticket, rearm -> a ticket read but not used: ack it, and hand the wake-up on if asked
_RELEASE = _LUA_COMMON + """
release(ARGV[2])
if ARGV[3] == '1' and redis.call('ZCARD', p .. 'waiting') > 0 then
  redis.call('XADD', p .. 'jobs', '*', 'job_id', '-')
end
return 1
"""

# ARGV: prefix, job, user, event, now, ttl, maxlen, flag_ttl -> 'removed' (was queued) | 'stopping' (was running)
# | 'no' (unknown, someone else's, or already finished)
_CANCEL = _LUA_COMMON + """
local job = ARGV[2]
local f = redis.call('HMGET', p .. 'job:' .. job, 'state', 'user_id')
if not f[1] or (ARGV[3] ~= '' and f[2] ~= ARGV[3]) then return 'no' end
if f[1] == 'queued' then
  finish(job, 'queued', '', 'cancelled', ARGV[4], 'Cancelled.', ARGV[5], ARGV[6], ARGV[7], '0', '')
  return 'removed'
end
if f[1] == 'running' then
  redis.call('SET', p .. 'cancel:' .. job, '1', 'EX', ARGV[8])
  return 'stopping'
end
return 'no'
"""

# ARGV: prefix, job, flag_ttl -- /forget for one job, whatever its state: gone now, counts kept true. A running
# one is told to stop; its worker's finish then finds nothing and releases its ticket (see finish()).
_FORGET = _LUA_COMMON + """
local job = ARGV[2]
local key = p .. 'job:' .. job
local f = redis.call('HMGET', key, 'state', 'wkey', 'user_id', 'guild_id')
if f[1] then
  unlist(job, f[2], f[3], f[4])
  if f[1] == 'running' then redis.call('SET', p .. 'cancel:' .. job, '1', 'EX', ARGV[3]) end
  redis.call('DEL', key)
end
redis.call('SREM', p .. 'undelivered', job)
return f[1] and 1 or 0
"""

# ARGV: prefix, job -- the bot has the portraits: Redis keeps how the job ended, not them
_ACK = _LUA_COMMON + """
local key = p .. 'job:' .. ARGV[2]
redis.call('SREM', p .. 'undelivered', ARGV[2])
if redis.call('EXISTS', key) == 1 then
  redis.call('HSET', key, 'delivered', '1')
  redis.call('HDEL', key, 'results')
end
return 1
"""


# ---------------------------------------------------------------------------------------- shared store


def _unreachable(url: str, exc: BaseException) -> QueueStorageError:
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
        raise _unreachable(url, exc) from None
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
        self._claim = self.client.register_script(_CLAIM)
        self._finish = self.client.register_script(_FINISH)
        self._requeue = self.client.register_script(_REQUEUE)
        self._reclaim = self.client.register_script(_RECLAIM)
        self._release = self.client.register_script(_RELEASE)
        self.cancel_script = self.client.register_script(_CANCEL)
        self.ack_script = self.client.register_script(_ACK)
        self.forget_script = self.client.register_script(_FORGET)

    async def open(self) -> None:
        """Check that Redis answers and that the job stream and its group exist; a clear error if not."""
        try:
            await self.client.ping()
            await self.ensure_group()
        except (*RETRYABLE, ResponseError) as exc:
            await self.close()
            raise _unreachable(self.url, exc) from None

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


def _active_entries(raw: dict[str, str]) -> Iterator[tuple[str, str, str, int]]:
    """(job id, user, guild, round) of each queued or running job; foreign entries are skipped."""
    for job_id, value in raw.items():
        try:
            user, guild, round_ = json.loads(value)
            yield job_id, str(user), str(guild), int(round_)
        except (ValueError, TypeError):
            log.warning("ignoring a malformed active-job entry %r", job_id)


# ---------------------------------------------------------------------------------------- the bot side


class RedisQueue:
    """The bot's view of the shared queue: same API and meaning as LocalQueue, jobs run on ``Worker``s.

    Use ``async with RedisQueue(url)`` or start()/close(). Events of every worker reach ``events()`` and
    ``subscribe()``; finished results wait in Redis until ``ack`` so a bot restart loses none.
    """

    def __init__(self, redis_url: str = DEFAULT_URL, *, prefix: str = DEFAULT_PREFIX, limits: Limits | None = None,
                 max_failures: int = 3, eta: EtaEstimator | None = None, dead_after_s: float = 10.0,
                 reclaim_every_s: float = 5.0, keep_finished_s: float = 7 * 86400, events_maxlen: int = 10_000,
                 cancel_flag_ttl_s: int = 3600) -> None:
        self.keys = Keys(prefix)
        self.limits = limits or Limits()
        self.max_failures = max_failures
        self.eta = eta or EtaEstimator()
        self.dead_after_s = dead_after_s
        self.reclaim_every_s = reclaim_every_s
        self.cancel_flag_ttl_s = cancel_flag_ttl_s
        self.reconnects = 0  # outages of the event reader that ended; for health checks and tests
        self._store = RedisStore(redis_url, self.keys, keep_finished_s=keep_finished_s, events_maxlen=events_maxlen)
        self._subscribers: set[asyncio.Queue[JobEvent]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._last_id = "0-0"
        self._started_at: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> RedisQueue:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (QueueStorageError naming the URL, password hidden, if Redis is not there) and listen."""
        await self._store.open()
        try:
            last = await self._store.client.xrevrange(self.keys.events, count=1)
        except (*RETRYABLE, ResponseError) as exc:
            await self._store.close()
            raise _unreachable(self._store.url, exc) from None
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
            ids = [job_id for job_id, _, _, _ in _active_entries(active)]
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
            ids = [job_id for job_id, user, _, _ in _active_entries(active) if user == user_id]
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
            ids |= {job_id for job_id, user, _, _ in _active_entries(active) if user == user_id}
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
                _prompt(row.get("spec", ""))))
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
        for queue in list(self._subscribers):
            queue.put_nowait(event)

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


def _prompt(spec_json: str) -> str:
    try:
        return JobSpec.from_json(spec_json).prompt
    except JobFormatError:
        return ""
