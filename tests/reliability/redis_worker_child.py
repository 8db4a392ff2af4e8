"""A Redis queue worker process for the kill -9 test in test_faults.py.

    python redis_worker_child.py REDIS_URL PREFIX NAME

A fake runner takes about 0.2 s per job (4 steps of 50 ms); heartbeats every 0.1 s and a short
dead_after_s, so the jobs of a killed worker are handed back within about a second.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from generation.jobs import JobSpec, ResultImage
from generation.queue.base import Progress
from generation.queue.worker import Worker

HEARTBEAT_S = 0.1
DEAD_AFTER_S = 0.6
MAX_FAILURES = 10  # five kills must not set a job aside


class TwoTenthsRunner:
    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]:
        for step in range(1, 5):
            time.sleep(0.05)
            progress(step, 4)
        return [ResultImage(png="", seed=(spec.seed or 0) + i, likeness=0.8, same_person=True, face_found=True,
                            refined=False) for i in range(spec.count)]


async def main(url: str, prefix: str, name: str) -> None:
    worker = Worker(name, url, TwoTenthsRunner(), prefix=prefix, heartbeat_s=HEARTBEAT_S, dead_after_s=DEAD_AFTER_S,
                    max_failures=MAX_FAILURES, shutdown_grace_s=0.5)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
