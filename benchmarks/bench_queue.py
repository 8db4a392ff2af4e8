"""Job queue figures: start overhead, throughput, event-loop lag, memory with 10,000 jobs.

    python benchmarks/bench_queue.py [--jobs 300] [--redis redis://127.0.0.1:6379/15]

- enqueue → worker start (ms, p50/p99) and no-op throughput (jobs/s), local and Redis;
- the bot-side event loop's lag (p99) while a CPU-heavy job runs in the embedded worker thread,
  for a tiny diffusers generation (torch releases the GIL in its kernels) and for a pure-Python
  loop (the worst case: it holds the GIL between switch intervals), against an idle baseline;
- memory with 10,000 queued jobs: the process's RSS growth and Redis's used_memory growth.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "testkit"))

from generation.jobs import EventKind, JobSpec, ResultImage  # noqa: E402
from generation.queue.local import LocalQueue  # noqa: E402
from generation.queue.scheduler import Limits  # noqa: E402

UNLIMITED = Limits(per_user=1_000_000, per_guild=1_000_000, total=1_000_000)


class NoOp:
    def run(self, spec: JobSpec, progress, cancelled) -> list[ResultImage]:
        return []


class PythonHeavy:
    """Pure-Python arithmetic for ``seconds``: holds the GIL except at switch intervals."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, spec: JobSpec, progress, cancelled) -> list[ResultImage]:
        end = time.perf_counter() + self.seconds
        x = 0
        while time.perf_counter() < end:
            for i in range(10_000):
                x += i * i
        return []


class TinyDiffusers:
    """A tiny SDXL + IdentityNet generation, repeated for ``seconds`` (torch on the CPU)."""

    def __init__(self, seconds: float) -> None:
        import numpy as np
        import tiny_sdxl
        import torch

        from generation.config import GenerationConfig, ModelsConfig
        from generation.pipelines.instantid import InstantIDBackend
        from generation.pipelines.types import GenerationRequest, IdentityEmbedding

        torch.set_num_threads(1)
        root = Path(tempfile.mkdtemp())
        paths = tiny_sdxl.build_instantid(root)
        self.backend = InstantIDBackend.load(
            GenerationConfig(offline=True, device="cpu", width=64, height=64),
            ModelsConfig(base_path=str(paths["base"]), instantid_path=str(paths["identitynet"].parent)))
        self.request = GenerationRequest(
            prompt="portrait", negative_prompt="", identity=IdentityEmbedding.of_one_face(np.ones(512)), seeds=(1,),
            width=64, height=64, steps=4, keypoints=np.array([[24, 28], [40, 28], [32, 36], [26, 44], [38, 44]], float))
        self.seconds = seconds

    def run(self, spec: JobSpec, progress, cancelled) -> list[ResultImage]:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            self.backend.generate(self.request, progress)
        return []


class RedisWithWorker:
    """The Redis queue plus one worker in this process (the bot and a GPU machine, side by side)."""

    def __init__(self, url: str, runner, prefix: str) -> None:
        from generation.queue.redis import RedisQueue
        from generation.queue.worker import Worker

        self.queue = RedisQueue(url, prefix=prefix, limits=UNLIMITED)
        self.worker = Worker("bench", url, runner, prefix=prefix, timeout_s=3600, handle_signals=False)
        self.task: asyncio.Task | None = None

    async def __aenter__(self):
        await self.queue.start()
        self.task = asyncio.create_task(self.worker.run())
        return self.queue

    async def __aexit__(self, *exc: object) -> None:
        self.worker.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 60)
        await self.queue.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def start_overhead_and_throughput(make_queue, jobs: int) -> tuple[list[float], float]:
    async with make_queue(NoOp()) as queue:
        events = queue.subscribe()
        submitted: dict[str, float] = {}
        started: list[float] = []
        t0 = time.perf_counter()
        for _ in range(jobs):
            spec = JobSpec(user_id="u", guild_id="g")
            submitted[spec.job_id] = time.perf_counter()
            await queue.submit(spec)
            # one at a time for the overhead figure: wait for this job to start before the next
            while True:
                event = await events.get()
                if event.kind == EventKind.STARTED and event.job_id == spec.job_id:
                    started.append((time.perf_counter() - submitted[spec.job_id]) * 1000)
                    break
        # throughput: a burst of jobs, time until all are done
        burst = [JobSpec(user_id=f"u{i % 50}", guild_id="g") for i in range(jobs)]
        t0 = time.perf_counter()
        for spec in burst:
            await queue.submit(spec)
        remaining = {spec.job_id for spec in burst}
        while remaining:
            event = await events.get()
            if event.kind == EventKind.DONE:
                remaining.discard(event.job_id)
        throughput = jobs / (time.perf_counter() - t0)
    return started, throughput


async def loop_lag(make_queue, runner, seconds: float) -> list[float]:
    async with make_queue(runner) as queue:
        events = queue.subscribe()
        spec = JobSpec(user_id="u", guild_id="g")
        await queue.submit(spec)
        while (await events.get()).kind != EventKind.STARTED:
            pass
        lags = await _ticks(seconds)
    return lags


def rss_mb() -> float:
    with Path("/proc/self/status").open() as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


async def memory_10k(make_queue, redis_client=None) -> tuple[float, float | None, tuple[float, float, float]]:
    """Memory with 10,000 queued jobs, and what a submit costs (ms) for the first and the last thousand,
    and all 10,000 (s): the baseline for "submit does not grow with the queue"."""
    gate = threading.Event()
    if isinstance(redis_client, str):  # a URL: the client must belong to this event loop
        import redis.asyncio

        redis_client = redis.asyncio.from_url(redis_client, decode_responses=True)

    class Blocked:
        def run(self, spec, progress, cancelled):
            gate.wait(120)
            return []

    before = rss_mb()
    redis_before = (await redis_client.info("memory"))["used_memory"] if redis_client else None
    async with make_queue(Blocked()) as queue:
        marks = [time.perf_counter()]
        for i in range(10_000):
            await queue.submit(JobSpec(user_id=f"u{i % 500}", guild_id=f"g{i % 20}", prompt="a studio portrait"))
            if i in (999, 8_999, 9_999):
                marks.append(time.perf_counter())
        submits = ((marks[1] - marks[0]), (marks[3] - marks[2]), marks[3] - marks[0])  # ms each per 1,000; total s
        grown = rss_mb() - before
        redis_grown = None
        if redis_client:
            redis_grown = ((await redis_client.info("memory"))["used_memory"] - redis_before) / 2**20
        gate.set()
        for status in await queue.jobs_for("u0"):
            await queue.cancel(status.job_id)
    if redis_client is not None:
        async for key in redis_client.scan_iter(match="bench*"):
            await redis_client.delete(key)
        await redis_client.aclose()
    return grown, redis_grown, submits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--lag-seconds", type=float, default=5.0)
    parser.add_argument("--redis", default=os.environ.get("CLOSEUP_BENCH_REDIS", ""),
                        help="Redis URL for the Redis figures (use a spare database: keys are written)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    counter = iter(range(1_000_000))

    def local(runner):
        return LocalQueue(tmp / f"bench-{next(counter)}.db", runner, limits=UNLIMITED, timeout_s=3600)

    backends = [("local", local)]
    if args.redis:

        def redis_queue(runner):
            return RedisWithWorker(args.redis, runner, f"bench{next(counter)}:")

        backends.append(("redis", redis_queue))

    for name, make in backends:
        started, throughput = asyncio.run(start_overhead_and_throughput(make, args.jobs))
        print(f"{name:6} enqueue→start p50 {pct(started, 50):6.2f} ms  p99 {pct(started, 99):6.2f} ms   "
              f"no-op throughput {throughput:7.0f} jobs/s")

    idle = asyncio.run(loop_lag(local, NoOp(), 0.0)) or [0.0]
    lags = {
        "idle (no job)": idle + asyncio.run(_ticks(args.lag_seconds)),
        "tiny diffusers job": asyncio.run(loop_lag(local, TinyDiffusers(args.lag_seconds + 5), args.lag_seconds)),
        "pure-Python job": asyncio.run(loop_lag(local, PythonHeavy(args.lag_seconds + 5), args.lag_seconds)),
    }
    print(f"event-loop lag while the embedded worker runs (10 ms ticks, {args.lag_seconds:.0f} s, "
          f"switch interval {sys.getswitchinterval() * 1000:.0f} ms):")
    for label, values in lags.items():
        print(f"  {label:20} p50 {pct(values, 50):6.2f} ms  p99 {pct(values, 99):6.2f} ms  max {max(values):6.2f} ms")

    grown, redis_grown, submits = asyncio.run(memory_10k(local))
    print(f"memory with 10,000 queued jobs (local): process RSS +{grown:.1f} MB (journal on disk)")
    print(f"  submit: first 1,000 {submits[0]:.2f} ms each, last 1,000 {submits[1]:.2f} ms each, "
          f"10,000 in {submits[2]:.1f} s")
    if args.redis:
        name, make = backends[1]
        grown, redis_grown, submits = asyncio.run(memory_10k(make, args.redis))
        print(f"memory with 10,000 queued jobs (redis): process RSS +{grown:.1f} MB, Redis +{redis_grown:.1f} MB")
        print(f"  submit: first 1,000 {submits[0]:.2f} ms each, last 1,000 {submits[1]:.2f} ms each, "
              f"10,000 in {submits[2]:.1f} s")
    return 0


async def _ticks(seconds: float) -> list[float]:
    """How late each 10 ms sleep wakes up (ms), for ``seconds``: the event loop's lag."""
    lags = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(max(0.0, (time.perf_counter() - before - 0.01) * 1000))
    return lags


if __name__ == "__main__":
    sys.exit(main())
