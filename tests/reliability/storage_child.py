"""A child process for test_faults.py: the bot's store and the embedded queue's journal on a full disk.

    python storage_child.py DATA_DIR rlimit|tmpfs

It writes earlier rows (a reference, a job with its results, a finished queue job), then makes the disk
"full": ``rlimit`` lowers RLIMIT_FSIZE below what the next writes need (SIGXFSZ ignored, so writes fail
with EFBIG); ``tmpfs`` fills the (small, test-mounted) file system with a filler file (ENOSPC). Then it
tries a large reference photo, large results, a large job row and a large queue submission, lifts the
limit, tries the same writes again, and prints one JSON line: what each operation raised, before and
after. Checking the files (integrity, earlier rows) is the parent's job, in a process without limits.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bot.store import JobRecord, Store, StoreError  # noqa: E402
from generation.jobs import EventKind, JobSpec, ResultImage  # noqa: E402
from generation.queue.base import QueueStorageError  # noqa: E402
from generation.queue.local import LocalQueue  # noqa: E402
from generation.queue.scheduler import Limits  # noqa: E402

FILLER = "filler.bin"


class QuickRunner:
    def run(self, spec: JobSpec, progress: Any, cancelled: Any) -> list[ResultImage]:
        progress(1, 1)
        return [ResultImage(png="", seed=1, likeness=0.8, same_person=True, face_found=True, refined=False)]


def noise(size: int, fmt: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {"compress_level": 1}))
    return out.getvalue()


def job_record(job_id: str, user_id: str, spec_json: str = "{}") -> JobRecord:
    return JobRecord(job_id=job_id, user_id=user_id, guild_id="g", channel_id="c", spec_json=spec_json,
                     reference_shas=(), application_id="1", interaction_token="t", token_expires_at=0.0,
                     progress_message_id=None, state="queued", created_at=time.time(), finished_at=None)


def largest_file(folder: Path) -> int:
    return max((p.stat().st_size for p in folder.rglob("*") if p.is_file()), default=0)


def fill(folder: Path) -> int:
    """Write until the file system says no more; returns the bytes written."""
    written = 0
    block = b"\0" * 65536
    with (folder / FILLER).open("wb", buffering=0) as handle:
        try:
            while True:
                written += handle.write(block)
        except OSError:
            pass
    for size in (4096, 512, 1):  # the last few bytes too
        with (folder / FILLER).open("ab", buffering=0) as handle:
            try:
                while True:
                    written += handle.write(b"\0" * size)
            except OSError:
                pass
    return written


async def attempt(coro: Any) -> dict[str, Any]:
    try:
        await coro
    except (StoreError, QueueStorageError) as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # anything else is a crash path: the parent fails on it
        return {"raised": type(exc).__name__, "message": str(exc), "unexpected": True}
    return {"raised": None}


async def main(data: Path, mode: str) -> None:
    store = Store(data / "store")
    await store.start()
    queue = LocalQueue(data / "queue.db", QuickRunner(), limits=Limits(per_user=100, per_guild=100))
    await queue.start()
    events = queue.subscribe()

    # Earlier rows, written while there is room.
    small = noise(32, "JPEG", 1)
    await store.add_reference("earlier", small, "pass", ("kept",))
    await store.save_job(job_record("a" * 32, "earlier"))
    await store.save_results("a" * 32, [(noise(16, "PNG", 2), 7, 0.8, True, True, False)])
    before = JobSpec(user_id="earlier", guild_id="g", prompt="before the disk filled up")
    await queue.submit(before)
    while True:
        event = await asyncio.wait_for(events.get(), 20)
        if event.kind == EventKind.DONE and event.job_id == before.job_id:
            break
    await store.save_job(job_record("b" * 32, "later"))  # its results come while the disk is full

    big_photo = noise(1024, "JPEG", 3)  # about 3 MB
    big_png = noise(700, "PNG", 4)  # about 1.5 MB
    big_spec = json.dumps({"prompt": "x" * (2 * 1024 * 1024)})
    big_job = JobSpec(user_id="later", guild_id="g", prompt="large",
                      references=(base64.b64encode(big_photo).decode("ascii"),))

    def operations() -> dict[str, Any]:
        return {
            "add_reference_large_photo": store.add_reference("later", big_photo, "pass", ()),
            "save_results_large": store.save_results("b" * 32, [(big_png, 9, 0.7, True, True, False)]),
            "save_job_large_row": store.save_job(job_record("c" * 32, "later", big_spec)),
            "queue_submit_large": queue.submit(big_job),
        }

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if mode == "rlimit":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        limit = largest_file(data) + 256 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        how = f"RLIMIT_FSIZE {limit} bytes"
    else:
        how = f"tmpfs filled with {fill(data)} bytes"
    full = {name: await attempt(op) for name, op in operations().items()}
    if mode == "rlimit":
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    else:
        (data / FILLER).unlink()
    after = {name: await attempt(op) for name, op in operations().items()}
    await store.close()
    await queue.close()
    print(json.dumps({"how": how, "full": full, "after": after, "before_job": before.job_id,
                      "big_job": big_job.job_id}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
