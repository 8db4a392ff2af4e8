"""A crash (kill -9) of the process holding the embedded queue loses nothing and delivers once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_runner import FakeRunner

from generation.jobs import EventKind, JobState, new_job_id
from generation.queue.local import LocalQueue
from generation.queue.scheduler import Limits

ROOT = Path(__file__).resolve().parents[3]


def test_kill_9_mid_job_then_restart(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    ids = [new_job_id() for _ in range(4)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(Path(__file__).parent / "crash_child.py"), str(path), *ids],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()
        assert line.startswith("RUNNING " + ids[1]), child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    async def restart() -> None:
        runner = FakeRunner(steps=2)
        async with LocalQueue(path, runner, limits=Limits(per_user=10)) as queue:
            events = queue.subscribe()
            done = set()
            while len(done) < 3:
                event = await asyncio.wait_for(events.get(), 20)
                if event.kind == EventKind.DONE:
                    done.add(event.job_id)
            assert done == set(ids[1:])
            assert runner.started == ids[1:]  # the interrupted job ran again first, nothing was lost
            assert (await queue.status(ids[1])).attempts == 2
            delivered = [event.job_id for event in await queue.undelivered()]
            assert sorted(delivered) == sorted(ids)  # the quick job finished before the crash, never acked
            for job_id in delivered:
                await queue.ack(job_id)
        async with LocalQueue(path, FakeRunner()) as queue:
            assert await queue.undelivered() == []  # nothing delivered twice
            assert [(await queue.status(i)).state for i in ids] == [JobState.DONE] * 4

    asyncio.run(restart())


def test_graceful_shutdown_hands_the_running_job_back(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "q.db"
        slow = FakeRunner(steps=200, step_s=0.05)
        queue = LocalQueue(path, slow, shutdown_grace_s=0.2)
        await queue.start()
        events = queue.subscribe()
        job_id = new_job_id()
        from generation.jobs import JobSpec

        await queue.submit(JobSpec(user_id="u", guild_id="g", job_id=job_id))
        while (await asyncio.wait_for(events.get(), 10)).kind != EventKind.PROGRESS:
            pass
        await queue.close()  # grace period passes: the job is stopped and handed back
        async with LocalQueue(path, FakeRunner(steps=1)) as again:
            status = await again.status(job_id)
            assert status.state in (JobState.QUEUED, JobState.RUNNING, JobState.DONE)
            events = again.subscribe()
            if status.state != JobState.DONE:
                while (await asyncio.wait_for(events.get(), 10)).kind != EventKind.DONE:
                    pass
            final = await again.status(job_id)
            assert final.state == JobState.DONE and final.attempts == 1  # the handed-back attempt is not counted

    asyncio.run(main())
