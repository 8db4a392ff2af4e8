"""What the queues keep of people's photos and portraits: bytes per queued job, and Redis memory and
SQLite size after many delivered jobs with realistic results.

    python benchmarks/bench_privacy.py [--jobs 1000] [--images 4] [--redis-url redis://127.0.0.1:6379/0]

Without --redis-url a private redis-server (no persistence) is started on a free port.

1. Bytes per queued job: a 12-MP JPEG selfie as the job used to carry it (the upload, base64) and as it
   carries it now (bot.imaging.job_reference: the face with room around it, ≤ 1024 px).
2. Delivered jobs: each job returns ``--images`` 1024² PNGs made from a real photo; the bench does what
   the bot does (wait for DONE, read results() once, ack()) for every job, through LocalQueue (SQLite)
   and RedisQueue + a Worker, then prints the journal's size and Redis' memory. The old design kept
   every result for keep_finished_s (7 days): once in the local journal, twice in Redis (job hash and
   events stream); its figure is that many copies of the measured results per job, times the jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from generation.config import ImagesConfig  # noqa: E402
from generation.jobs import EventKind, JobSpec, ResultImage, results_to_json  # noqa: E402
from generation.queue.base import Progress  # noqa: E402
from generation.queue.scheduler import Limits  # noqa: E402

PHOTO = ROOT / "tests" / "fixtures" / "faces" / "obama.jpg"
MB = 1024 * 1024


def selfie_12mp() -> bytes:
    """obama.jpg enlarged to 4000×3000 and saved as a phone would (JPEG q92): a realistic upload."""
    image = Image.open(PHOTO).convert("RGB")
    canvas = Image.new("RGB", (4000, 3000), (90, 96, 104))
    portrait = image.resize((2400, 3000), Image.Resampling.LANCZOS)
    canvas.paste(portrait, (800, 0))
    grain = np.random.default_rng(0).normal(0, 6, (3000, 4000, 3))  # sensor noise: phone JPEGs are 3-5 MB
    pixels = np.clip(np.asarray(canvas, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


def portrait_png(seed: int) -> bytes:
    """A 1024² PNG of a real photo, slightly different per seed (as generated portraits are)."""
    image = np.asarray(Image.open(PHOTO).convert("RGB").resize((1024, 1024), Image.Resampling.LANCZOS))
    noise = np.random.default_rng(seed).integers(-3, 4, image.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)).save(out, "PNG", compress_level=6)
    return out.getvalue()


class PortraitRunner:
    """Returns ``images`` real 1024² PNGs per job (made once; the queues copy them like any result)."""

    def __init__(self, images: int) -> None:
        self.pngs = [base64.b64encode(portrait_png(seed)).decode("ascii") for seed in range(images)]

    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]:
        progress(1, 1)
        return [ResultImage(png=png, seed=i, likeness=0.8, same_person=True, face_found=True, refined=False)
                for i, png in enumerate(self.pngs)]


async def deliver_all(queue, jobs: int, reference: str) -> float:
    """Submit ``jobs`` jobs a few at a time and deliver each as the bot does; seconds taken."""
    events = queue.subscribe()
    start = time.perf_counter()
    pending: set[str] = set()
    submitted = 0
    while submitted < jobs or pending:
        while submitted < jobs and len(pending) < 3:
            spec = JobSpec(user_id=f"user{submitted % 50}", guild_id="g", references=(reference,))
            await queue.submit(spec)
            pending.add(spec.job_id)
            submitted += 1
        event = await asyncio.wait_for(events.get(), 120)
        if event.job_id in pending and event.kind in (EventKind.DONE, EventKind.FAILED):
            results = await queue.results(event.job_id)
            assert event.kind == EventKind.DONE and results, f"job {event.job_id} came back without results"
            await queue.ack(event.job_id)
            pending.discard(event.job_id)
    queue.unsubscribe(events)
    return time.perf_counter() - start


def files_size(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


async def local_run(jobs: int, runner: PortraitRunner, reference: str) -> tuple[dict[str, int], float]:
    from generation.queue.local import LocalQueue

    folder = Path(tempfile.mkdtemp())
    try:
        async with LocalQueue(folder / "queue.db", runner, limits=Limits(per_user=100, per_guild=10_000)) as queue:
            seconds = await deliver_all(queue, jobs, reference)
            size = files_size(folder)  # while the bot runs: database, write-ahead log, shared memory
        return size, seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def redis_run(url: str, jobs: int, runner: PortraitRunner, reference: str) -> tuple[int, int, float]:
    import redis.asyncio as aioredis

    from generation.queue.redis import RedisQueue
    from generation.queue.worker import Worker

    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    client = aioredis.Redis.from_url(url)
    before = (await client.info("memory"))["used_memory"]
    queue = RedisQueue(url, prefix=prefix, limits=Limits(per_user=100, per_guild=10_000))
    worker = Worker("bench", url, runner, prefix=prefix, handle_signals=False)
    async with queue:
        task = asyncio.create_task(worker.run())
        seconds = await deliver_all(queue, jobs, reference)
        worker.stop()
        await task
    after = (await client.info("memory"))["used_memory"]
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return after - before, len(keys), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()

    from bot.imaging import job_reference
    from generation.faces.dlib_backend import DlibAnalyzer

    upload = selfie_12mp()
    analyzer = DlibAnalyzer()
    prepared = job_reference(upload, analyzer, ImagesConfig())  # warm-up: models load on first use
    times = []
    for _ in range(3):
        started = time.perf_counter()
        job_reference(upload, analyzer, ImagesConfig())
        times.append(time.perf_counter() - started)
    prepare_s = sorted(times)[1]
    old_spec = JobSpec(user_id="u", guild_id="g", references=(base64.b64encode(upload).decode(),)).to_json()
    new_spec = JobSpec(user_id="u", guild_id="g", references=(base64.b64encode(prepared).decode(),)).to_json()
    width, height = Image.open(io.BytesIO(prepared)).size
    print("bytes per queued job, one 12-MP selfie (4000×3000 JPEG q92):")
    print(f"  before (the upload, base64)           : {len(old_spec) / MB:8.2f} MB")
    print(f"  after  (job reference {width}×{height}, base64): {len(new_spec) / MB:8.2f} MB "
          f"= {len(new_spec) / len(old_spec):.3f}× (prepared in {prepare_s * 1000:.0f} ms, once per job)")

    runner = PortraitRunner(args.images)
    per_job = len(results_to_json([ResultImage(png=p, seed=0, likeness=0.8, same_person=True, face_found=True,
                                               refined=False) for p in runner.pngs]))
    reference = base64.b64encode(prepared).decode("ascii")
    print(f"\n{args.jobs} delivered jobs, {args.images} × 1024² PNG each ({per_job / MB:.1f} MB of results a job):")
    sizes, seconds = asyncio.run(local_run(args.jobs, runner, reference))
    detail = ", ".join(f"{name} {size / MB:.1f}" for name, size in sizes.items())
    print(f"  local journal on disk after delivery  : {sum(sizes.values()) / MB:8.1f} MB ({detail}; {seconds:.0f} s); "
          f"old design kept {per_job * args.jobs / MB:,.0f} MB for 7 days")

    server = None
    url = args.redis_url
    if not url:
        if shutil.which("redis-server") is None:
            print("  (no redis-server here: pass --redis-url)")
            return 0
        port = free_port()
        server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
    try:
        memory, keys, seconds = asyncio.run(redis_run(url, args.jobs, runner, reference))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    print(f"  Redis memory after delivery           : {memory / MB:8.1f} MB in {keys} keys ({seconds:.0f} s); "
          f"old design kept {2 * per_job * args.jobs / MB:,.0f} MB for 7 days (job hash + events stream)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
