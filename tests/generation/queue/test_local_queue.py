"""The embedded queue against a real SQLite journal, with a controllable stand-in for the GPU job."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_runner import FakeRunner

from generation.jobs import EventKind, JobEvent, JobSpec, JobState
from generation.queue.base import JobFailed, QueueStorageError
from generation.queue.local import LocalQueue
from generation.queue.scheduler import EtaEstimator, Limits, QueueLimitError

BIG = Limits(per_user=50, per_guild=100)


def spec(user: str = "u1", guild: str = "g1", **kw: object) -> JobSpec:
    return JobSpec(user_id=user, guild_id=guild, **kw)  # type: ignore[arg-type]


async def until(events: asyncio.Queue[JobEvent], kind: EventKind, job_id: str, timeout: float = 10) -> JobEvent:
    async def wait() -> JobEvent:
        while True:
            event = await events.get()
            if event.kind == kind and event.job_id == job_id:
                return event

    return await asyncio.wait_for(wait(), timeout)


def run(coro):
    return asyncio.run(coro)


def test_job_runs_with_events_and_results(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalQueue(tmp_path / "q.db", FakeRunner(steps=3)) as queue:
            events = queue.subscribe()
            job = spec(count=2, seed=10)
            queued = await queue.submit(job)
            assert queued.kind == EventKind.QUEUED and queued.position == 0 and queued.eta_s is not None
            done = await until(events, EventKind.DONE, job.job_id)
            assert done.results == ()  # events carry no images: the bot reads them once, then acks
            assert [r.seed for r in await queue.results(job.job_id)] == [10, 11]
            kinds = []
            while not events.empty():
                kinds.append(events.get_nowait().kind)
            assert (await queue.status(job.job_id)).state == JobState.DONE
            assert [e.job_id for e in await queue.undelivered()] == [job.job_id]
            await queue.ack(job.job_id)
            assert await queue.undelivered() == []
            assert await queue.results(job.job_id) == ()  # delivered: the journal no longer holds them

    run(main())


def test_progress_reports_every_step(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalQueue(tmp_path / "q.db", FakeRunner(steps=4)) as queue:
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


def test_fairness_single_job_waits_at_most_one(tmp_path: Path) -> None:
    async def main() -> None:
        runner = FakeRunner(steps=1, gate=threading.Event())
        async with LocalQueue(tmp_path / "q.db", runner, limits=BIG) as queue:
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


def test_caps_per_user_and_guild(tmp_path: Path) -> None:
    async def main() -> None:
        runner = FakeRunner(gate=threading.Event())
        async with LocalQueue(tmp_path / "q.db", runner, limits=Limits(per_user=2, per_guild=3)) as queue:
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


def test_cancel_queued_and_running(tmp_path: Path) -> None:
    async def main() -> None:
        runner = FakeRunner(steps=3, gate=threading.Event())
        async with LocalQueue(tmp_path / "q.db", runner) as queue:
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

    run(main())


def test_timeout_stops_the_job(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalQueue(tmp_path / "q.db", FakeRunner(steps=50, step_s=0.05), timeout_s=0.3) as queue:
            events = queue.subscribe()
            job = spec()
            await queue.submit(job)
            failed = await until(events, EventKind.FAILED, job.job_id)
            assert "longer than" in failed.reason
            assert (await queue.status(job.job_id)).state == JobState.FAILED

    run(main())


def test_out_of_memory_retries_once_with_one_image(tmp_path: Path) -> None:
    async def main() -> None:
        runner = FakeRunner(oom_above=1)
        async with LocalQueue(tmp_path / "q.db", runner) as queue:
            events = queue.subscribe()
            job = spec(count=3)
            await queue.submit(job)
            done = await until(events, EventKind.DONE, job.job_id)
            assert len(await queue.results(job.job_id)) == 1 and runner.counts == [3, 1]
            assert "ran out of memory making 3 images" in done.reason  # the person learns why only one
        hopeless = FakeRunner(oom_above=0)
        async with LocalQueue(tmp_path / "q2.db", hopeless) as queue:
            events = queue.subscribe()
            job = spec(count=2)
            await queue.submit(job)
            failed = await until(events, EventKind.FAILED, job.job_id)
            assert "out of memory" in failed.reason and hopeless.counts == [2, 1]

    run(main())


def test_user_errors_fail_at_once_and_bugs_are_set_aside_after_n(tmp_path: Path) -> None:
    async def main() -> None:
        refused, buggy = spec("a"), spec("b")
        runner = FakeRunner(fail_with={refused.job_id: JobFailed("No face in the reference photo."),
                                       buggy.job_id: RuntimeError("boom")})
        async with LocalQueue(tmp_path / "q.db", runner, max_failures=3) as queue:
            events = queue.subscribe()
            await queue.submit(refused)
            failed = await until(events, EventKind.FAILED, refused.job_id)
            assert failed.reason == "No face in the reference photo." and runner.started.count(refused.job_id) == 1
            await queue.submit(buggy)
            poisoned = await until(events, EventKind.FAILED, buggy.job_id)
            assert runner.started.count(buggy.job_id) == 3
            assert "boom" in poisoned.reason
            status = await queue.status(buggy.job_id)
            assert status.state == JobState.POISONED and "boom" in status.reason

    run(main())


def test_eta_follows_recent_job_times(tmp_path: Path) -> None:
    async def main() -> None:
        eta = EtaEstimator(first_guess_s=30.0)
        for _ in range(5):
            eta.record(2.0)
        runner = FakeRunner(gate=threading.Event())
        async with LocalQueue(tmp_path / "q.db", runner, eta=eta, limits=BIG) as queue:
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
            assert statuses[0].position == 2
            runner.gate.set()

    run(main())


def test_duplicate_submit_is_idempotent(tmp_path: Path) -> None:
    async def main() -> None:
        runner = FakeRunner()
        async with LocalQueue(tmp_path / "q.db", runner) as queue:
            events = queue.subscribe()
            job = spec()
            await queue.submit(job)
            await queue.submit(job)
            await until(events, EventKind.DONE, job.job_id)
            await asyncio.sleep(0.2)
            assert runner.started.count(job.job_id) == 1

    run(main())


def test_unreadable_journal_entry_is_set_aside(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "q.db"
        async with LocalQueue(path, FakeRunner()) as queue:
            pass
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO jobs (job_id, user_id, guild_id, priority, spec, state, enqueued_at) "
                         "VALUES ('bad', 'u', 'g', 0, '{\"version\": 99}', 'queued', 0)")
        async with LocalQueue(path, FakeRunner()) as queue:
            events = queue.subscribe()
            good = spec()
            await queue.submit(good)
            await until(events, EventKind.DONE, good.job_id)
            bad = await queue.status("bad")
            assert bad.state == JobState.POISONED and "version 99" in bad.reason

    run(main())


def test_locked_journal_gives_a_clear_error(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "q.db"
        async with LocalQueue(path, FakeRunner(), busy_timeout_s=0.2) as queue:
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            try:
                with pytest.raises(QueueStorageError, match="locked by another process"):
                    await queue.submit(spec())
            finally:
                other.execute("ROLLBACK")
                other.close()
            await queue.submit(spec())  # works again once the lock is gone

    run(main())


def test_full_disk_gives_a_clear_error_and_keeps_earlier_jobs(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "q.db"
        runner = FakeRunner(gate=threading.Event())
        async with LocalQueue(path, runner, limits=BIG) as queue:
            kept = spec("a")
            await queue.submit(kept)
            pages = await queue._db(lambda: queue._sql.execute("PRAGMA page_count").fetchone()[0])
            await queue._db(lambda: queue._sql.execute(f"PRAGMA max_page_count = {pages}"))
            with pytest.raises(QueueStorageError, match=r"full\. Free some space and try again; no job was lost"):
                for i in range(200):
                    await queue.submit(spec(f"x{i}", prompt="p" * 2000))
            assert (await queue.status(kept.job_id)).state in (JobState.QUEUED, JobState.RUNNING)
            runner.gate.set()

    run(main())


def test_retention_sweep_forgets_old_finished_jobs_only(tmp_path: Path) -> None:
    async def main() -> None:
        runner = FakeRunner(gate=threading.Event())
        async with LocalQueue(tmp_path / "q.db", runner, keep_finished_s=60, limits=BIG) as queue:
            events = queue.subscribe()
            old, waiting = spec("a"), spec("b")
            await queue.submit(old)
            runner.gate.set()
            await until(events, EventKind.DONE, old.job_id)
            runner.gate.clear()
            await queue.submit(waiting)
            assert await queue.sweep() == 0  # finished just now: kept
            await queue._db(lambda: queue._sql.execute("UPDATE jobs SET finished_at = finished_at - 3600"))
            assert await queue.sweep() == 1
            assert await queue.status(old.job_id) is None
            assert (await queue.status(waiting.job_id)).state in (JobState.QUEUED, JobState.RUNNING)
            runner.gate.set()

    run(main())
