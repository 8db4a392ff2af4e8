"""`closeup queue ls|cancel`: the host's view of the queue, beside a queue that is running (real SQLite
journal, real Redis)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fake_runner import FakeRunner
from redis_server import redis_url as private_redis_url

from generation.cli import main
from generation.jobs import EventKind, JobSpec
from generation.queue.local import LocalQueue
from generation.queue.redis import RedisQueue
from generation.queue.scheduler import Limits


@pytest.fixture
def redis_url() -> Iterator[str]:
    with private_redis_url() as url:
        yield url


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The command in a thread of its own (it runs its own event loop), while the test's loop goes on."""
    box: dict[str, int] = {}
    thread = threading.Thread(target=lambda: box.setdefault("code", main(argv)))
    thread.start()
    thread.join(60)
    out, err = capsys.readouterr()
    return box["code"], out, err


def test_ls_lists_the_embedded_queue_while_the_bot_runs_it_and_cancel_points_to_discord(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "queue.db"
    monkeypatch.setenv("CLOSEUP_QUEUE__PATH", str(journal))
    gate = threading.Event()

    async def scenario() -> None:
        async with LocalQueue(journal, FakeRunner(gate=gate), limits=Limits(per_user=5, per_guild=10)) as queue:
            events = queue.subscribe()
            first, second = JobSpec(user_id="u1", guild_id="g1"), JobSpec(user_id="u2", guild_id="g1")
            await queue.submit(first)
            await queue.submit(second)
            while (await asyncio.wait_for(events.get(), 10)).kind != EventKind.STARTED:
                pass
            code, out, _ = await asyncio.to_thread(_cli, ["queue", "ls"], capsys)
            assert code == 0
            rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
            assert rows[first.job_id][1] == "running" and rows[second.job_id][1:3] == ["queued", "1"]
            code, out, _ = await asyncio.to_thread(_cli, ["queue", "ls", "--json"], capsys)
            assert {job["job_id"] for job in json.loads(out)} == {first.job_id, second.job_id}
            code, _, err = await asyncio.to_thread(_cli, ["queue", "cancel", second.job_id], capsys)
            assert code == 1 and "/settings queue" in err
            gate.set()

    asyncio.run(scenario())


def test_cancel_on_redis_reaches_the_bots_queue_as_an_event(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSEUP_QUEUE__BACKEND", "redis")
    monkeypatch.setenv("CLOSEUP_QUEUE__REDIS_URL", redis_url)
    monkeypatch.setenv("CLOSEUP_QUEUE__REDIS_PREFIX", "cli:")

    async def scenario() -> None:
        async with RedisQueue(redis_url, prefix="cli:", limits=Limits(per_user=5, per_guild=10)) as bots_queue:
            events = bots_queue.subscribe()
            job = JobSpec(user_id="u1", guild_id="g1")
            await bots_queue.submit(job)  # no worker: it waits
            code, out, _ = await asyncio.to_thread(_cli, ["queue", "ls"], capsys)
            assert code == 0 and job.job_id in out and "queued" in out
            code, out, _ = await asyncio.to_thread(_cli, ["queue", "cancel", job.job_id], capsys)
            assert code == 0 and "cancelled" in out
            while True:  # the bot's queue hears it, so the person's message can say so
                event = await asyncio.wait_for(events.get(), 10)
                if event.kind == EventKind.CANCELLED and event.job_id == job.job_id:
                    break
            code, _, err = await asyncio.to_thread(_cli, ["queue", "cancel", job.job_id], capsys)
            assert code == 1 and "not queued or running" in err

    asyncio.run(scenario())


def test_ls_without_a_journal_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSEUP_QUEUE__PATH", str(tmp_path / "none.db"))
    assert main(["queue", "ls"]) == 1
    assert "no job journal" in capsys.readouterr().err


def test_a_set_aside_job_is_listed_with_why_and_retried_by_the_host(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that crashed its worker until it was set aside; the fault fixed, the host queues it again: the
    bot's queue hears QUEUED with the RETRIED reason, a worker runs it, it finishes with results."""
    from generation.queue.base import RETRIED
    from generation.queue.worker import Worker

    monkeypatch.setenv("CLOSEUP_QUEUE__BACKEND", "redis")
    monkeypatch.setenv("CLOSEUP_QUEUE__REDIS_URL", redis_url)
    monkeypatch.setenv("CLOSEUP_QUEUE__REDIS_PREFIX", "retry:")
    job = JobSpec(user_id="u1", guild_id="g1", count=2, seed=5)
    runner = FakeRunner(fail_with={job.job_id: RuntimeError("boom: a bug in the worker")})

    async def until(events: asyncio.Queue, kind: EventKind) -> object:
        while True:
            event = await asyncio.wait_for(events.get(), 20)
            if event.kind == kind and event.job_id == job.job_id:
                return event

    async def scenario() -> None:
        worker = Worker("w1", redis_url, runner, prefix="retry:", heartbeat_s=0.2, dead_after_s=1.0,
                        max_failures=1, shutdown_grace_s=1.0)
        async with RedisQueue(redis_url, prefix="retry:", limits=Limits(per_user=5, per_guild=10)) as queue:
            events = queue.subscribe()
            task = asyncio.create_task(worker.run())
            try:
                await queue.submit(job)
                failed = await until(events, EventKind.FAILED)
                assert "set aside" in failed.reason
                code, out, _ = await asyncio.to_thread(_cli, ["queue", "ls"], capsys)
                assert job.job_id not in out  # not active
                code, out, _ = await asyncio.to_thread(_cli, ["queue", "ls", "--all"], capsys)
                assert job.job_id in out and "poisoned" in out and "boom" in out
                runner.fail_with.clear()  # the host fixed the fault
                code, _, err = await asyncio.to_thread(_cli, ["queue", "retry", job.job_id], capsys)
                assert code == 1 and "not reported its failure yet" in err  # the bot has not taken it yet
                await queue.ack(job.job_id)  # as the bot does once the person was told
                code, out, _ = await asyncio.to_thread(_cli, ["queue", "retry", job.job_id], capsys)
                assert code == 0 and "queued" in out
                queued = await until(events, EventKind.QUEUED)
                assert queued.reason == RETRIED
                await until(events, EventKind.DONE)
                assert [r.seed for r in await queue.results(job.job_id)] == [5, 6]
                code, _, err = await asyncio.to_thread(_cli, ["queue", "retry", job.job_id], capsys)
                assert code == 1 and "not a failed or set-aside job" in err  # done jobs are not retried
            finally:
                worker.stop()
                await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
