"""A bounded soak: 2,000 portraits through the embedded queue and the bot's delivery leak nothing.

The real bot runs in a process of its own (tests/reliability/bot_child.py: embedded queue, fast fake
generator) against the local Discord emulator in this one; 50 people with saved references send
``/portrait`` in waves of 50, each wave after the one before has its results (the host's caps are
raised as well). After a warm-up of 100 jobs the bot process measures itself (resident memory from
/proc/self/status, open file descriptors from /proc/self/fd, ``asyncio.all_tasks()``, the delivery's
lanes, the store's temp files), halfway, and after the 2,000 jobs that follow. This proves that growth
stays within small bounds (memory < +60 MB; fds < +10, sockets counted once aiohttp's keep-alive pool
has drained; tasks < +10; lanes back to 0; no temp files) and that every job was delivered exactly
once with no Discord rule broken. The bot has a process of its own because the emulator keeps every
message, upload and request it ever saw: in one process its growth would hide the bot's. The figures
(jobs/s, peak memory, fds and tasks at start and end, the journal's size on disk) are printed and
recorded as test properties.

The journal on disk used to grow by each finished job's photos (~375 KB a job, 751 MB for this run);
the test at the end pins the fix: a finished job's spec keeps no photos.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import photo, run, world
from reliability_kit import child_stats, result_messages, spawn_bot, system_temp_entries

from bot.store import Store
from generation.jobs import EventKind, JobSpec, ResultImage
from generation.queue.local import LocalQueue
from generation.queue.scheduler import Limits

JOBS = 2000
WARMUP = 100
PEOPLE = 50


def _size(path: Path) -> int:
    if path.is_file():
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))  # with -wal and -shm
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sockets(stats: dict[str, Any]) -> int:
    return stats["fd_kinds"].get("socket", 0)


def _result_of(inter: Any) -> dict[str, Any] | None:
    return next((m for m in inter.followups if m.get("attachments") and not m.get("_ephemeral")), None)


def test_two_thousand_jobs_leak_no_memory_fds_tasks_or_files(
        tmp_path: Path, record_property: Callable[[str, Any], None]) -> None:
    temp_before = system_temp_entries()
    figures: dict[str, Any] = {}

    async def body() -> None:
        async with world(tmp_path) as w:
            emu = w.emu
            people = [emu.add_user(f"soak{i:02d}") for i in range(PEOPLE)]
            for person in people:
                emu.add_member(w.guild, person)
            async with Store(tmp_path / "store") as store:
                for person in people:
                    await store.add_reference(person.id, photo(), "pass", ())
            with (tmp_path / "bot.log").open("ab") as log:
                bot = spawn_bot(emu, tmp_path, log, steps=2, step_s=0.0)
                try:
                    await emu.wait_until(lambda: emu.gateway.identify_count == 1 and emu.commands(), timeout=90,
                                         what="the bot process to connect and sync its commands")
                    await emu.wait_ready(timeout=30)
                    sent = 0

                    async def wave() -> None:
                        nonlocal sent
                        inters = [await w.slash(person, "portrait", {"prompt": f"soak {sent + n}"})
                                  for n, person in enumerate(people)]
                        sent += len(inters)
                        await emu.wait_until(lambda: all(_result_of(i) for i in inters), timeout=120,
                                             what=f"the results of jobs {sent - len(inters)}..{sent - 1}")

                    async def settled() -> dict[str, Any]:
                        deadline = time.monotonic() + 30
                        while True:
                            stats = await child_stats(bot, tmp_path)
                            if stats["lanes"] == 0 or time.monotonic() > deadline:
                                return stats
                            await asyncio.sleep(0.1)

                    while sent < WARMUP:
                        await wave()
                    start = await settled()
                    began = time.monotonic()
                    while sent < WARMUP + JOBS // 2:
                        await wave()
                    middle = await child_stats(bot, tmp_path)
                    while sent < WARMUP + JOBS:
                        await wave()
                    elapsed = time.monotonic() - began
                    await asyncio.sleep(0.5)  # let the last lanes and connections wind down
                    end = await settled()
                    # Sockets come and go with aiohttp's keep-alive pool (closed after 15 s idle): measured
                    # once the pool has drained, they show whether any connection leaked.
                    idle = end
                    deadline = time.monotonic() + 30
                    while _sockets(idle) > _sockets(start) and time.monotonic() < deadline:
                        await asyncio.sleep(1.0)
                        idle = await child_stats(bot, tmp_path)
                    bot.send_signal(signal.SIGTERM)
                    assert await asyncio.to_thread(bot.wait, 30) == 0
                finally:
                    if bot.poll() is None:
                        bot.kill()
                        bot.wait(10)
            shown = result_messages(emu)
            figures.update(jobs=JOBS, seconds=round(elapsed, 1), jobs_per_s=round(JOBS / elapsed, 1),
                           peak_rss_mb=end["peak_rss_mb"], start=start, middle=middle, end=end, idle=idle,
                           journal_mb=round(_size(tmp_path / "queue.db") / 2**20, 1),
                           store_mb=round(_size(tmp_path / "store") / 2**20, 1),
                           result_messages=len(shown),
                           duplicated=sum(1 for messages in shown.values() if len(messages) > 1))
            assert len(shown) == sent == WARMUP + JOBS
            assert emu.violations == [], emu.violations[:5]

    try:
        run(body, timeout=600)
    finally:
        for leftover in tmp_path.glob("queue.db*"):  # hundreds of MB (see the xfail test below): not kept
            leftover.unlink()
    start, end, idle = figures["start"], figures["end"], figures["idle"]
    print(f"\nsoak (bot process): {figures['jobs']} jobs in {figures['seconds']} s = {figures['jobs_per_s']} jobs/s; "
          f"peak RSS {figures['peak_rss_mb']} MB; RSS {start['rss_mb']} -> {figures['middle']['rss_mb']} -> "
          f"{end['rss_mb']} MB; "
          f"fds {start['fds']} {start['fd_kinds']} -> {end['fds']} {end['fd_kinds']} "
          f"-> {idle['fds']} {idle['fd_kinds']} once idle; tasks {start['tasks']} -> {end['tasks']}; "
          f"lanes {start['lanes']} -> {end['lanes']}; temp files {end['temp_files']}; "
          f"result messages {figures['result_messages']}, duplicated {figures['duplicated']}; on disk: journal "
          f"{figures['journal_mb']} MB, store {figures['store_mb']} MB")
    for key in ("jobs", "jobs_per_s", "peak_rss_mb"):
        record_property(key, figures[key])
    for key in ("rss_mb", "fds", "tasks"):
        record_property(f"{key}_start", start[key])
        record_property(f"{key}_end", end[key])
    record_property("fds_idle", idle["fds"])
    assert end["rss_mb"] - start["rss_mb"] < 60, figures
    assert (end["fds"] - _sockets(end)) - (start["fds"] - _sockets(start)) < 10, figures  # files, pipes, eventfds
    assert idle["fds"] - start["fds"] < 10, figures  # sockets too, once the keep-alive pool has drained
    assert end["tasks"] - start["tasks"] < 10, figures
    assert end["lanes"] == 0 and end["temp_files"] == 0, figures
    assert end["delivered"] - start["delivered"] == JOBS, figures
    assert system_temp_entries() - temp_before == set()
    assert figures["duplicated"] == 0


class _OneStep:
    def run(self, spec: JobSpec, progress: Any, cancelled: Any) -> list[ResultImage]:
        progress(1, 1)
        return [ResultImage(png="", seed=1, likeness=0.8, same_person=True, face_found=True, refined=False)]


def test_finished_jobs_do_not_keep_their_photos_in_the_journal(tmp_path: Path) -> None:
    selfie = base64.b64encode(photo()).decode("ascii")

    async def body() -> None:
        async with LocalQueue(tmp_path / "queue.db", _OneStep(), limits=Limits(per_user=100)) as queue:
            events = queue.subscribe()
            jobs = [JobSpec(user_id="u", guild_id="g", references=(selfie,)) for _ in range(20)]
            for job in jobs:
                await queue.submit(job)
            finished: set[str] = set()
            while len(finished) < len(jobs):
                event = await asyncio.wait_for(events.get(), 20)
                if event.kind == EventKind.DONE:
                    finished.add(event.job_id)
                    await queue.ack(event.job_id)
        with contextlib.closing(sqlite3.connect(tmp_path / "queue.db")) as conn:
            kept = conn.execute("SELECT MAX(length(spec)) FROM jobs WHERE state = 'done'").fetchone()[0]
        assert kept < len(selfie), f"a delivered job still keeps {kept} bytes of spec (the photo is {len(selfie)})"

    run(body, timeout=60)
