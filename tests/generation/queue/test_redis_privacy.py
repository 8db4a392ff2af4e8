"""/forget and retention against a real redis-server: afterwards no key, value or stream entry under the
queue's prefix holds the person's id, a byte of their reference photos or of their portraits."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from redis_server import redis_url as private_redis_url

from generation.jobs import EventKind, JobSpec, JobState, ResultImage
from generation.queue.base import Progress
from generation.queue.redis import RedisQueue
from generation.queue.scheduler import Limits
from generation.queue.worker import Worker

ALICE, BOB = "111111111111111111", "222222222222222222"


def noise_png(seed: int, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class PortraitRunner:
    """Real PNG bytes per seed; jobs wait at ``gate`` (when cleared) so one can be running on cue."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started: list[str] = []

    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]:
        self.started.append(spec.job_id)
        while not self.gate.wait(0.02):
            progress(0, 2)  # a cancel gets through while waiting
        progress(2, 2)
        seed = spec.seed or 0
        return [ResultImage(png=base64.b64encode(noise_png(seed + i)).decode(), seed=seed + i, likeness=0.8,
                            same_person=True, face_found=True, refined=False) for i in range(spec.count)]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with private_redis_url() as found:
        yield found


def dump(client: redis.Redis, prefix: str) -> bytes:
    """Every key name and every value under ``prefix``, whatever the type, as one byte string."""
    parts: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            parts += [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"zset":
            parts += list(client.zrange(key, 0, -1))
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind == b"stream":
            for entry_id, fields in client.xrange(key):
                parts += [entry_id, *(b for pair in fields.items() for b in pair)]
    return b"\n".join(parts)


def needles(user: str, photo: bytes, seeds: list[int]) -> dict[str, bytes]:
    found = {"user id": user.encode()}
    encoded = base64.b64encode(photo)
    found["reference (base64)"] = encoded[len(encoded) // 2:len(encoded) // 2 + 32]
    for seed in seeds:
        png = base64.b64encode(noise_png(seed))
        found[f"portrait {seed} (base64)"] = png[len(png) // 2:len(png) // 2 + 32]
    return found


def found_in(blob: bytes, wanted: dict[str, bytes]) -> list[str]:
    return [name for name, needle in wanted.items() if needle in blob]


def test_purge_and_expiry_leave_nothing_in_redis(url: str) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(url)
    runner = PortraitRunner()
    alice_photo, bob_photo = noise_png(9001, 64), noise_png(9002, 64)  # stand-ins for re-encoded references

    def job(user: str, seed: int, photo: bytes) -> JobSpec:
        return JobSpec(user_id=user, guild_id="g", seed=seed, count=2,
                       references=(base64.b64encode(photo).decode(),))

    async def main() -> None:
        queue = RedisQueue(url, prefix=prefix, limits=Limits(per_user=10, per_guild=50), dead_after_s=1.0,
                           reclaim_every_s=0.3, keep_finished_s=3)
        worker = Worker("w", url, runner, prefix=prefix, heartbeat_s=0.2, dead_after_s=1.0, shutdown_grace_s=1.0,
                        handle_signals=False, keep_finished_s=3)
        async with queue:
            task = asyncio.create_task(worker.run())
            events = queue.subscribe()

            async def finished(job_id: str) -> None:
                while True:
                    event = await asyncio.wait_for(events.get(), 10)
                    if event.job_id == job_id and event.kind == EventKind.DONE:
                        return

            bobs = job(BOB, 500, bob_photo)
            await queue.submit(bobs)
            await finished(bobs.job_id)
            delivered, undelivered = job(ALICE, 100, alice_photo), job(ALICE, 200, alice_photo)
            for spec in (delivered, undelivered):
                await queue.submit(spec)
                await finished(spec.job_id)
            assert len(await queue.results(delivered.job_id)) == 2
            await queue.ack(delivered.job_id)
            portraits = {k: v for k, v in needles(ALICE, alice_photo, [100, 101]).items() if k.startswith("portrait")}
            assert found_in(dump(client, prefix), portraits) == []  # delivered: Redis keeps no image of it
            runner.gate.clear()
            running, queued = job(ALICE, 300, alice_photo), job(ALICE, 400, alice_photo)
            await queue.submit(running)
            await queue.submit(queued)
            while running.job_id not in runner.started:
                await asyncio.sleep(0.02)

            alice = needles(ALICE, alice_photo, [100, 101, 200, 201])
            assert found_in(dump(client, prefix), alice), "the test must see Alice's data before the purge"
            await queue.purge(ALICE)
            assert found_in(dump(client, prefix), alice) == []
            runner.gate.set()  # the running job ends after the purge: its portraits must not land
            await asyncio.sleep(1.0)
            alice |= needles(ALICE, alice_photo, [300, 301])
            assert found_in(dump(client, prefix), alice) == []
            assert await queue.jobs_for(ALICE) == []
            assert (await queue.status(running.job_id)) is None

            # Bob's finished job was never delivered: its results expire with the job (keep_finished_s).
            bob = needles(BOB, bob_photo, [500, 501])
            assert found_in(dump(client, prefix), bob)
            await asyncio.sleep(3.5)
            await queue.sweep()
            assert found_in(dump(client, prefix), bob) == []
            # The counts caps rely on came back to zero: Alice can queue again up to her cap.
            again = job(ALICE, 700, alice_photo)
            await queue.submit(again)
            await finished(again.job_id)
            worker.stop()
            await asyncio.wait_for(task, 5)
            assert (await queue.status(again.job_id)).state == JobState.DONE

    try:
        asyncio.run(main())
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
