"""Run a LocalQueue until killed: one quick job finishes (never acknowledged), then a slow one runs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_runner import FakeRunner

from generation.jobs import EventKind, JobSpec
from generation.queue.local import LocalQueue
from generation.queue.scheduler import Limits


class SlowUnlessQuick(FakeRunner):
    def run(self, spec, progress, cancelled):
        self.step_s = 0.0 if spec.prompt == "quick" else 0.2
        return super().run(spec, progress, cancelled)


async def main(path: str, ids: list[str]) -> None:
    queue = LocalQueue(path, SlowUnlessQuick(steps=100), limits=Limits(per_user=10))
    await queue.start()
    events = queue.subscribe()
    for n, job_id in enumerate(ids):
        await queue.submit(JobSpec(user_id="u", guild_id="g", job_id=job_id, prompt="quick" if n == 0 else "slow"))
    while True:
        event = await events.get()
        if event.kind == EventKind.PROGRESS and event.job_id == ids[1]:
            print("RUNNING", event.job_id, flush=True)
            await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
