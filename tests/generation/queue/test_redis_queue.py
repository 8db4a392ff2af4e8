"""The Redis queue and its workers against a real redis-server (started here on a free port).

Run as a script (``python test_redis_queue.py child URL PREFIX``) it is the worker process that the
kill -9 test starts and kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from fake_runner import FakeRunner
from redis_server import free_port, start_redis
from redis_server import redis_url as private_redis_url

from generation.jobs import EventKind, JobEvent, JobSpec, JobState
from generation.logging_setup import mask_secrets
from generation.queue.base import JobFailed, QueueStorageError
from generation.queue.redis import RedisQueue
from generation.queue.redis_store import Keys, RedisStore, waiting_member
from generation.queue.scheduler import EtaEstimator, Limits, QueueLimitError, Waiting, fair_order
from generation.queue.worker import Worker, run_worker

BIG = Limits(per_user=50, per_guild=100)
ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------------------- a private Redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with private_redis_url() as url:
        yield url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A fresh key space per test; cleaned afterwards (the fallback server may be a shared one)."""
    name = f"t{uuid.uuid4().hex[:10]}:"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


# ---------------------------------------------------------------------------------------- helpers


def spec(user: str = "u1", guild: str = "g1", **kw: Any) -> JobSpec:
    return JobSpec(user_id=user, guild_id=guild, **kw)


async def until(events: asyncio.Queue[JobEvent], kind: EventKind, job_id: str, timeout: float = 10) -> JobEvent:
    async def wait() -> JobEvent:
        while True:
            event = await events.get()
            if event.kind == kind and event.job_id == job_id:
                return event

    return await asyncio.wait_for(wait(), timeout)


def drain(events: asyncio.Queue[JobEvent]) -> list[JobEvent]:
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def queue_at(url: str, prefix: str, **kw: Any) -> RedisQueue:
    kw.setdefault("dead_after_s", 1.0)
    kw.setdefault("reclaim_every_s", 0.3)
    return RedisQueue(url, prefix=prefix, **kw)


def make_worker(url: str, prefix: str, runner: FakeRunner, **kw: Any) -> Worker:
    options: dict[str, Any] = {"heartbeat_s": 0.2, "dead_after_s": 1.0, "shutdown_grace_s": 1.0,
                               "handle_signals": False}
    options.update(kw)
    return Worker(options.pop("name", f"w-{uuid.uuid4().hex[:6]}"), url, runner, prefix=prefix, **options)


@contextlib.asynccontextmanager
async def working(url: str, prefix: str, runner: FakeRunner, **kw: Any) -> AsyncIterator[Worker]:
    worker = make_worker(url, prefix, runner, **kw)
    task = asyncio.create_task(worker.run())
    while worker.health()["last_heartbeat"] is None:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield worker
    finally:
        worker.stop()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, f"worker {worker.name} did not stop within 5 s"
        task.result()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------------- behaviour shared with LocalQueue


def test_job_runs_with_events_in_order_and_results(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, FakeRunner(steps=4)):
            events = queue.subscribe()
            job = spec(count=2, seed=10)
            queued = await queue.submit(job)
            assert queued.kind == EventKind.QUEUED and queued.position == 0 and queued.eta_s is not None
            done = await until(events, EventKind.DONE, job.job_id)
            assert done.results == ()  # events carry no images: the bot reads them once, then acks
            assert [r.seed for r in await queue.results(job.job_id)] == [10, 11]
            assert (await queue.status(job.job_id)).state == JobState.DONE
            assert [e.job_id for e in await queue.undelivered()] == [job.job_id]
            await queue.ack(job.job_id)
            assert await queue.undelivered() == []
            assert await queue.results(job.job_id) == ()  # delivered: Redis no longer holds them

    run(main())


def test_progress_reports_every_step_after_queued_and_started(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, FakeRunner(steps=4)):
            events = queue.subscribe()
            job = spec()
            await queue.submit(job)
            seen = []
            while True:
                event = await asyncio.wait_for(events.get(), 10)
                seen.append((event.kind, event.step))
                if event.kind == EventKind.DONE:
                    break
            assert seen[0] == (EventKind.QUEUED, None) and seen[1] == (EventKind.STARTED, None)
            assert [s for k, s in seen if k == EventKind.PROGRESS] == [1, 2, 3, 4]

    run(main())


def test_fairness_single_job_waits_at_most_one(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = FakeRunner(steps=1, gate=threading.Event())
        async with queue_at(redis_url, prefix, limits=BIG) as queue, working(redis_url, prefix, runner):
            events = queue.subscribe()
            a_jobs = [spec("A") for _ in range(20)]
            for job in a_jobs:
                await queue.submit(job)
            b_job = spec("B")
            queued = await queue.submit(b_job)
            assert queued.position <= 1
            runner.gate.set()
            await until(events, EventKind.DONE, b_job.job_id, timeout=30)
            assert runner.started.index(b_job.job_id) <= 1

    run(main())


def test_waiting_set_orders_jobs_exactly_as_fair_order(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    rng = random.Random(7)
    jobs = [Waiting(f"j{i:03d}", "u", "g", rng.choice([-3, 0, 0, 2, 10**6]), rng.choice([1.5, 1e9, 1.7e9 + i]),
                    rng.randrange(4)) for i in range(200)]
    raw.zadd(f"{prefix}waiting", {waiting_member(j.priority, j.enqueued_at, j.job_id): j.round for j in jobs})
    members = raw.zrange(f"{prefix}waiting", 0, -1)
    assert [m.rsplit("|", 1)[1] for m in members] == [j.job_id for j in fair_order(jobs)]


def test_caps_per_user_and_guild(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = FakeRunner(gate=threading.Event())
        async with queue_at(redis_url, prefix, limits=Limits(per_user=2, per_guild=3)) as queue, \
                working(redis_url, prefix, runner):
            await queue.submit(spec("a"))
            await queue.submit(spec("a"))
            with pytest.raises(QueueLimitError, match="limit is 2"):
                await queue.submit(spec("a"))
            await queue.submit(spec("b"))
            with pytest.raises(QueueLimitError, match="server"):
                await queue.submit(spec("c"))
            await queue.submit(spec("c", guild="g2"))  # another server is not affected
            runner.gate.set()

    run(main())


def test_caps_free_up_when_jobs_finish_or_are_cancelled(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    """The per-person and per-server counts the caps read are kept by submit and finish, never recounted."""
    async def main() -> None:
        runner = FakeRunner()
        async with queue_at(redis_url, prefix, limits=Limits(per_user=1, per_guild=2)) as queue:
            events = queue.subscribe()
            first = spec("a")
            await queue.submit(first)
            with pytest.raises(QueueLimitError, match="limit is 1"):
                await queue.submit(spec("a"))
            assert await queue.cancel(first.job_id)  # queued: removed at once
            second = spec("a")
            await queue.submit(second)
            await queue.submit(spec("b"))
            with pytest.raises(QueueLimitError, match="server"):
                await queue.submit(spec("c"))
            async with working(redis_url, prefix, runner):
                finished = set()
                while len(finished) < 2:
                    event = await asyncio.wait_for(events.get(), 10)
                    if event.kind == EventKind.DONE:
                        finished.add(event.job_id)
            await queue.submit(spec("a"))  # both caps are free again
            await queue.submit(spec("c"))
            assert raw.hget(f"{prefix}gactive", "g1") == "2"
            assert raw.hlen(f"{prefix}uactive:a") == 1

    run(main())


def test_cancel_queued_and_running(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = FakeRunner(steps=3, gate=threading.Event())
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, runner):
            events = queue.subscribe()
            first, second = spec("a"), spec("b")
            await queue.submit(first)
            await queue.submit(second)
            await until(events, EventKind.STARTED, first.job_id)
            assert await queue.cancel(second.job_id, user_id="someone else") is False
            assert await queue.cancel(second.job_id, user_id="b") is True
            assert await queue.cancel(first.job_id) is True  # running: stops at its next step
            await until(events, EventKind.CANCELLED, first.job_id)
            assert (await queue.status(first.job_id)).state == JobState.CANCELLED
            assert (await queue.status(second.job_id)).state == JobState.CANCELLED
            assert second.job_id not in runner.started
            assert await queue.cancel(first.job_id) is False  # already finished
            assert await queue.cancel("no-such-job") is False

    run(main())


def test_timeout_stops_the_job(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = FakeRunner(steps=50, step_s=0.05)
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, runner, timeout_s=0.3):
            events = queue.subscribe()
            job = spec()
            await queue.submit(job)
            failed = await until(events, EventKind.FAILED, job.job_id)
            assert "longer than" in failed.reason
            assert (await queue.status(job.job_id)).state == JobState.FAILED

    run(main())


def test_out_of_memory_retries_once_with_one_image(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = FakeRunner(oom_above=1)
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, runner):
            events = queue.subscribe()
            job = spec(count=3)
            await queue.submit(job)
            done = await until(events, EventKind.DONE, job.job_id)
            assert len(await queue.results(job.job_id)) == 1 and runner.counts == [3, 1]
            assert "ran out of memory making 3 images" in done.reason  # the person learns why only one
        hopeless = FakeRunner(oom_above=0)
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, hopeless):
            events = queue.subscribe()
            job = spec(count=2)
            await queue.submit(job)
            failed = await until(events, EventKind.FAILED, job.job_id)
            assert "out of memory" in failed.reason and hopeless.counts == [2, 1]

    run(main())


def test_user_errors_fail_at_once_and_bugs_are_set_aside_after_n(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        refused, buggy = spec("a"), spec("b")
        runner = FakeRunner(fail_with={refused.job_id: JobFailed("No face in the reference photo."),
                                       buggy.job_id: RuntimeError("boom")})
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, runner, max_failures=3) as worker:
            events = queue.subscribe()
            await queue.submit(refused)
            failed = await until(events, EventKind.FAILED, refused.job_id)
            assert failed.reason == "No face in the reference photo." and runner.started.count(refused.job_id) == 1
            await queue.submit(buggy)
            poisoned = await until(events, EventKind.FAILED, buggy.job_id)
            assert runner.started.count(buggy.job_id) == 3
            assert "boom" in poisoned.reason
            status = await queue.status(buggy.job_id)
            assert status.state == JobState.POISONED and "boom" in status.reason and status.attempts == 3
            assert "boom" in worker.health()["last_error"]

    run(main())


def test_eta_follows_recent_job_times(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        eta = EtaEstimator(first_guess_s=30.0)
        for _ in range(5):
            eta.record(2.0)
        runner = FakeRunner(gate=threading.Event())
        async with queue_at(redis_url, prefix, eta=eta, limits=BIG) as queue, working(redis_url, prefix, runner):
            events = queue.subscribe()
            first = spec("a")
            await queue.submit(first)
            await until(events, EventKind.STARTED, first.job_id)
            later = [await queue.submit(spec(f"u{i}")) for i in range(3)]
            assert [e.position for e in later] == [0, 1, 2]
            etas = [e.eta_s for e in later]
            assert all(0 <= a < b for a, b in itertools.pairwise(etas))
            assert etas[2] == pytest.approx(2 * 2.0 + etas[0], abs=0.5)
            statuses = await queue.jobs_for("u2")
            assert statuses[0].position == 2 and statuses[0].eta_s == pytest.approx(etas[2], abs=0.5)
            runner.gate.set()

    run(main())


def test_duplicate_submit_is_idempotent(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = FakeRunner()
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, runner):
            events = queue.subscribe()
            job = spec()
            await queue.submit(job)
            await queue.submit(job)
            await until(events, EventKind.DONE, job.job_id)
            await queue.submit(job)  # even after it finished
            await asyncio.sleep(0.3)
            assert runner.started.count(job.job_id) == 1
            assert [e.job_id for e in await queue.undelivered()] == [job.job_id]

    run(main())


def test_malformed_and_foreign_entries_are_set_aside(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    def plant(job_id: str, spec_json: str) -> None:
        member = waiting_member(0, 1.0, job_id)
        raw.hset(f"{prefix}job:{job_id}", mapping={"spec": spec_json, "state": "queued", "user_id": "u",
                                                   "guild_id": "g", "round": 0, "enqueued_at": 1.0, "wkey": member})
        raw.zadd(f"{prefix}waiting", {member: 0})
        raw.xadd(f"{prefix}jobs", {"job_id": job_id})

    async def main() -> None:
        async with queue_at(redis_url, prefix) as queue:
            events = queue.subscribe()
            raw.xadd(f"{prefix}jobs", {"not_a_ticket": "x"})  # a stream entry without a job id
            plant("future", '{"version": 99}')
            plant("junk", "not json{")
            plant("liar", spec(job_id="someone-else").to_json())
            raw.zadd(f"{prefix}waiting", {waiting_member(0, 1.0, "ghost"): 0, "garbage": 0})  # no job behind them
            raw.xadd(f"{prefix}events", {"event": "{broken"})
            raw.xadd(f"{prefix}events", {"other": "field"})
            raw.hset(f"{prefix}active", "stray", "not json")
            async with working(redis_url, prefix, FakeRunner()) as worker:
                good = spec()
                await queue.submit(good)
                await until(events, EventKind.DONE, good.job_id)
                for _ in range(100):  # an idle worker re-arms itself to clear the left-over junk
                    if raw.zcard(f"{prefix}waiting") == 0:
                        break
                    await asyncio.sleep(0.05)
                assert raw.zcard(f"{prefix}waiting") == 0
                assert worker.health()["state"] == "idle"
            future, junk, liar = [await queue.status(i) for i in ("future", "junk", "liar")]
            assert future.state == JobState.POISONED and "version 99" in future.reason
            assert junk.state == JobState.POISONED and "not valid JSON" in junk.reason
            assert liar.state == JobState.POISONED and "does not match" in liar.reason
            assert await queue.status("ghost") is None
            assert raw.xpending(f"{prefix}jobs", "workers")["pending"] == 0  # every ticket read was acked

    run(main())


def test_finished_jobs_expire_and_purge_forgets_a_person(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    async def main() -> None:
        runner = FakeRunner(gate=threading.Event())
        async with queue_at(redis_url, prefix, keep_finished_s=3600) as queue, \
                working(redis_url, prefix, runner, keep_finished_s=3600):
            events = queue.subscribe()
            first, second = spec("p"), spec("p")
            await queue.submit(first)
            await queue.submit(second)
            await until(events, EventKind.STARTED, first.job_id)
            runner.gate.set()
            await until(events, EventKind.DONE, second.job_id)
            assert 0 < raw.ttl(f"{prefix}job:{first.job_id}") <= 3600
            assert await queue.sweep() == 0
            raw.delete(f"{prefix}job:{second.job_id}")  # what the TTL does after keep_finished_s
            assert await queue.sweep() == 1
            assert [e.job_id for e in await queue.undelivered()] == [first.job_id]
            runner.gate.clear()
            third = spec("p")
            await queue.submit(third)
            await until(events, EventKind.STARTED, third.job_id)
            assert await queue.purge("p") == 2  # the finished one and the running one: gone now
            assert await queue.status(first.job_id) is None
            assert await queue.status(third.job_id) is None  # its worker stops at the next step, storing nothing
            runner.gate.set()

    run(main())


# ---------------------------------------------------------------------------- what only a shared queue needs


def test_two_workers_never_run_the_same_job(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        one, two = FakeRunner(steps=2, step_s=0.005), FakeRunner(steps=2, step_s=0.005)
        async with queue_at(redis_url, prefix, limits=BIG) as queue, working(redis_url, prefix, one), \
                working(redis_url, prefix, two):
            events = queue.subscribe()
            jobs = [spec(f"u{i % 10}") for i in range(40)]
            for job in jobs:
                await queue.submit(job)
            done: list[str] = []
            started: list[str] = []
            while len(done) < len(jobs):
                event = await asyncio.wait_for(events.get(), 20)
                if event.kind == EventKind.DONE:
                    done.append(event.job_id)
                elif event.kind == EventKind.STARTED:
                    started.append(event.job_id)
            ran = one.started + two.started
            assert sorted(ran) == sorted(j.job_id for j in jobs)  # each job exactly once
            assert sorted(started) == sorted(ran) and sorted(done) == sorted(ran)
            assert one.started and two.started  # both took work

    run(main())


def test_workers_report_health(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = FakeRunner(gate=threading.Event())
        async with queue_at(redis_url, prefix) as queue:
            async with working(redis_url, prefix, runner, name="gpu-1") as worker:
                events = queue.subscribe()
                job = spec()
                await queue.submit(job)
                await until(events, EventKind.STARTED, job.job_id)
                assert worker.health()["state"] == "busy" and worker.health()["job"] == job.job_id
                await asyncio.sleep(0.3)  # one heartbeat
                listed = await queue.workers()
                assert [w["name"] for w in listed] == ["gpu-1"]
                assert listed[0]["state"] == "busy" and listed[0]["job"] == job.job_id
                runner.gate.set()
                await until(events, EventKind.DONE, job.job_id)
                # the DONE event is published by Redis before the worker's coroutine resumes to count it
                for _ in range(100):
                    if worker.health()["jobs_done"] == 1:
                        break
                    await asyncio.sleep(0.02)
                assert worker.health()["jobs_done"] == 1
            assert await queue.workers() == []  # signed off on a clean stop

    run(main())


def test_a_second_live_worker_with_the_same_name_is_refused(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        async with working(redis_url, prefix, FakeRunner(), name="twin"):
            with pytest.raises(QueueStorageError, match="Another worker named 'twin'"):
                await make_worker(redis_url, prefix, FakeRunner(), name="twin").run()

    run(main())


class JunkRunner(FakeRunner):
    def run(self, spec, progress, cancelled):  # type: ignore[no-untyped-def]
        super().run(spec, progress, cancelled)
        return [object()]  # not a ResultImage: a bug in the runner, not a reason to crash the worker


def test_a_runner_returning_junk_is_treated_as_a_failure(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        runner = JunkRunner()
        async with queue_at(redis_url, prefix) as queue, working(redis_url, prefix, runner, max_failures=2):
            events = queue.subscribe()
            job, after = spec("a"), spec("b")
            await queue.submit(job)
            await queue.submit(after)
            failed = await until(events, EventKind.FAILED, job.job_id)
            assert "set aside" in failed.reason and runner.started.count(job.job_id) == 2
            assert (await queue.status(job.job_id)).state == JobState.POISONED
            await until(events, EventKind.FAILED, after.job_id)  # the worker lived on

    run(main())


def test_graceful_stop_hands_the_running_job_back(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        async with queue_at(redis_url, prefix) as queue:
            events = queue.subscribe()
            job = spec()
            slow = make_worker(redis_url, prefix, FakeRunner(steps=200, step_s=0.05), shutdown_grace_s=0.2)
            task = asyncio.create_task(slow.run())
            await queue.submit(job)
            await until(events, EventKind.PROGRESS, job.job_id)
            slow.stop()  # what SIGTERM does
            await asyncio.wait_for(task, 10)
            status = await queue.status(job.job_id)
            assert status.state == JobState.QUEUED and status.attempts == 0
            async with working(redis_url, prefix, FakeRunner(steps=1)):
                await until(events, EventKind.DONE, job.job_id)
            assert (await queue.status(job.job_id)).attempts == 1  # the handed-back attempt is not counted

    run(main())


def test_sigterm_stops_a_worker_process_gracefully(redis_url: str, prefix: str, tmp_path: Path) -> None:
    config = tmp_path / "closeup.toml"
    config.write_text(f'[queue]\nbackend = "redis"\nredis_url = "{redis_url}"\nredis_prefix = "{prefix}"\n'
                      'heartbeat_s = 0.2\ndead_after_s = 1.0\n', encoding="utf-8")

    async def main() -> None:
        async with queue_at(redis_url, prefix) as queue:
            events = queue.subscribe()
            job = spec()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
            child = subprocess.Popen([sys.executable, __file__, "run_worker", str(config)], env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                await queue.submit(job)
                await until(events, EventKind.PROGRESS, job.job_id, timeout=20)
                child.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(child.wait, 15) == 0  # run_worker's clean-stop exit code
            finally:
                child.kill()
            assert "handed back" in child.stderr.read()
            status = await queue.status(job.job_id)
            assert status.state == JobState.QUEUED and status.attempts == 0
            assert await queue.workers() == []

    run(main())


def _spawn_worker(url: str, prefix: str, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.Popen([sys.executable, __file__, "child", url, prefix, name], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill_9_of_a_worker_mid_job_delivers_its_result_once(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        async with queue_at(redis_url, prefix, limits=BIG) as queue:
            events = queue.subscribe()
            first, second = spec("u"), spec("u")
            child = _spawn_worker(redis_url, prefix, "doomed")
            try:
                await queue.submit(first)
                await queue.submit(second)
                await until(events, EventKind.PROGRESS, first.job_id, timeout=20)
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait(10)
            rescuer = FakeRunner(steps=2)
            async with working(redis_url, prefix, rescuer, name="rescuer"):
                finals: list[str] = []
                while first.job_id not in finals or second.job_id not in finals:
                    event = await asyncio.wait_for(events.get(), 20)
                    if event.kind in (EventKind.DONE, EventKind.FAILED):
                        finals.append(event.job_id)
                await asyncio.sleep(0.5)  # room for any duplicate to show up
            finals += [e.job_id for e in drain(events) if e.kind in (EventKind.DONE, EventKind.FAILED)]
            assert sorted(finals) == sorted([first.job_id, second.job_id])  # one final event each
            assert sorted(rescuer.started) == sorted(finals)  # the killed job ran again, here, nothing was lost
            status = await queue.status(first.job_id)
            assert status.state == JobState.DONE and status.attempts == 2
            delivered = [e.job_id for e in await queue.undelivered()]
            assert sorted(delivered) == sorted([first.job_id, second.job_id])
            for job_id in delivered:
                await queue.ack(job_id)
        async with queue_at(redis_url, prefix) as again:  # a bot restart
            assert await again.undelivered() == []

    run(main())


def test_a_job_whose_workers_keep_dying_is_set_aside(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    async def main() -> None:
        async with queue_at(redis_url, prefix) as queue:
            events = queue.subscribe()
            job = spec()
            await queue.submit(job)
            # A worker called "ghost" takes the job (its third try) and dies without a heartbeat.
            ticket = raw.xreadgroup("workers", "ghost", {f"{prefix}jobs": ">"}, count=1)[0][1][0][0]
            store = RedisStore(redis_url, Keys(prefix))
            assert (await store.claim(ticket, "ghost")).job_id == job.job_id
            await store.close()
            raw.hset(f"{prefix}job:{job.job_id}", "attempts", 3)
            runner = FakeRunner()
            async with working(redis_url, prefix, runner, max_failures=3):
                failed = await until(events, EventKind.FAILED, job.job_id)
            assert "stopped 3 times" in failed.reason and runner.started == []
            assert (await queue.status(job.job_id)).state == JobState.POISONED
            assert raw.xpending(f"{prefix}jobs", "workers")["pending"] == 0

    run(main())


def test_connections_killed_mid_job_lose_nothing(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    async def main() -> None:
        runner = FakeRunner(steps=10, step_s=0.05)
        async with queue_at(redis_url, prefix, limits=BIG) as queue, working(redis_url, prefix, runner):
            events = queue.subscribe()
            jobs = [spec(f"u{i}") for i in range(3)]
            for job in jobs:
                await queue.submit(job)
            await until(events, EventKind.PROGRESS, jobs[0].job_id)
            for _ in range(3):
                raw.client_kill_filter(_type="normal", skipme=True)
                await asyncio.sleep(0.15)
            for job in jobs:
                await until(events, EventKind.DONE, job.job_id, timeout=20)
            assert sorted(runner.started) == sorted(j.job_id for j in jobs)

    run(main())


def test_redis_outage_mid_run_workers_and_bot_reconnect(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server on PATH to stop and restart one")
    port = free_port()
    persist = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    server = start_redis(port, *persist)
    url = f"redis://127.0.0.1:{port}/0"

    async def main() -> None:
        nonlocal server
        runner = FakeRunner(steps=12, step_s=0.1)
        async with queue_at(url, "o:", limits=BIG, dead_after_s=5.0) as queue, \
                working(url, "o:", runner, dead_after_s=5.0) as worker:
            events = queue.subscribe()
            jobs = [spec(f"u{i}") for i in range(3)]
            for job in jobs:
                await queue.submit(job)
            await until(events, EventKind.PROGRESS, jobs[0].job_id)
            server.terminate()  # Redis goes away mid-job (SIGTERM: it writes its append-only file)
            await asyncio.to_thread(server.wait, 10)
            await asyncio.sleep(1.5)
            server = await asyncio.to_thread(start_redis, port, *persist)
            done = set()
            while len(done) < len(jobs):
                event = await asyncio.wait_for(events.get(), 30)
                if event.kind == EventKind.DONE:
                    assert event.job_id not in done
                    done.add(event.job_id)
            assert done == {j.job_id for j in jobs}
            assert queue.reconnects >= 1 and worker.health()["reconnects"] >= 1
            late = spec("late")
            await queue.submit(late)  # and the queue takes new work
            await until(events, EventKind.DONE, late.job_id)
            assert sorted(e.job_id for e in await queue.undelivered()) == sorted([*done, late.job_id])

    try:
        run(main())
    finally:
        server.terminate()
        server.wait(10)


def test_unreachable_redis_gives_a_clear_error_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"

    async def main() -> None:
        with pytest.raises(QueueStorageError, match=f"127.0.0.1:{port}") as queue_error:
            await RedisQueue(url).start()
        with pytest.raises(QueueStorageError, match="Cannot reach Redis") as worker_error:
            await Worker("w", url, FakeRunner(), handle_signals=False).run()
        for error in (queue_error, worker_error):
            assert "s3cret-pw" not in str(error.value) and ":***@" in str(error.value)
        assert await run_worker(None, None, redis_url=url) == 1  # before any model is loaded

    run(main())
    assert "s3cret-pw" not in caplog.text


def test_mask_secrets_hides_passwords() -> None:
    assert mask_secrets("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_secrets("rediss://user:pw@h/0 and redis://h/1?password=pw") == \
        "rediss://user:***@h/0 and redis://h/1?password=***"
    assert mask_secrets("redis://h:6379/0") == "redis://h:6379/0"


# ---------------------------------------------------------------------------------------- the child worker process


async def _child(url: str, prefix: str, name: str) -> None:
    worker = Worker(name, url, FakeRunner(steps=100, step_s=0.1), prefix=prefix, heartbeat_s=0.2, dead_after_s=1.0,
                    shutdown_grace_s=0.3)
    await worker.run()


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    asyncio.run(_child(*sys.argv[2:5]))
elif __name__ == "__main__" and sys.argv[1:2] == ["run_worker"]:
    sys.exit(asyncio.run(run_worker(sys.argv[2], FakeRunner(steps=100, step_s=0.1), name="from-config",
                                    shutdown_grace_s=0.3)))


def test_jobs_queued_by_an_older_release_never_drive_the_counts_negative(redis_url: str, prefix: str,
                                                                          raw: redis.Redis) -> None:
    async def main() -> None:
        async with queue_at(redis_url, prefix) as queue:
            old = spec("a")
            await queue.submit(old)
            # What a job queued before the counts existed looks like: active, but in no count.
            raw.hdel(f"{prefix}uactive:a", old.job_id)
            raw.hincrby(f"{prefix}gactive", "g1", -1)
            assert await queue.cancel(old.job_id)
            assert raw.hget(f"{prefix}gactive", "g1") == "0"

    run(main())
