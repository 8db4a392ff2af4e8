"""Helpers shared by the reliability tests: counting deliveries on the emulator, temp files, process
figures, a private redis-server, and starting the bot with a store or queue of the test's choosing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# What a closeup process could leave behind: the store's atomic-write temp files and anything named closeup.
TEMP_PREFIXES = ("closeup", ".tmp-")
_JOB_IN_CUSTOM_ID = re.compile(r"^closeup:(?:reroll|vary|closer|delete|cancel):([0-9a-f]{32})$")


# ---------------------------------------------------------------------------------- what Discord shows


def custom_ids(components: Iterable[dict[str, Any]] | None) -> list[str]:
    found = []
    for row in components or []:
        for item in row.get("components") or []:
            if item.get("custom_id"):
                found.append(item["custom_id"])
    return found


def job_of(components: Iterable[dict[str, Any]] | None) -> str | None:
    """The job id a message's buttons name (result buttons and the progress message's Cancel)."""
    for cid in custom_ids(components):
        match = _JOB_IN_CUSTOM_ID.match(cid)
        if match:
            return match.group(1)
    return None


def result_messages(emu: Any) -> dict[str, list[dict[str, Any]]]:
    """job id -> the live public messages showing that job's portraits (attachments + its buttons)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in list(emu.store.by_id.values()):
        if message.get("_ephemeral") or not message.get("attachments"):
            continue
        job = job_of(message.get("components"))
        if job is not None:
            found[job].append(message)
    return found


def result_sends(emu: Any) -> Counter[str]:
    """job id -> REST calls Discord accepted that carried that job's portraits (a re-send shows up here
    even when it edits the same message again)."""
    sends: Counter[str] = Counter()
    for record in list(emu.requests):
        if record.fault or not record.files or not 200 <= record.status < 300 or not isinstance(record.body, dict):
            continue
        job = job_of(record.body.get("components"))
        if job is not None and any(":reroll:" in cid for cid in custom_ids(record.body.get("components"))):
            sends[job] += 1
    return sends


def result_send_targets(emu: Any, job_id: str) -> set[str]:
    """The message ids (or "new:<channel>" for a new message) that carried this job's portraits."""
    targets = set()
    for record in list(emu.requests):
        if record.fault or not record.files or not 200 <= record.status < 300 or not isinstance(record.body, dict):
            continue
        if job_of(record.body.get("components")) == job_id:
            targets.add(record.path.rsplit("/", 1)[-1] if record.method == "PATCH" else f"new:{record.path}")
    return targets


# ---------------------------------------------------------------------------------- files and the process


def store_temp_files(data: Path) -> list[Path]:
    """Atomic-write leftovers of bot/store/files.py (``.tmp-*``) anywhere under a data folder."""
    from bot.store import TMP_PREFIX

    return sorted(p for p in data.rglob("*") if p.name.startswith(TMP_PREFIX))


def system_temp_entries() -> set[str]:
    """Closeup-ish entries in the system temp folder (the bot itself should never write there)."""
    try:
        return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(TEMP_PREFIXES)}
    except OSError:
        return set()


def _status_kb(field: str, pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def rss_mb(pid: int | str = "self") -> float:
    return _status_kb("VmRSS", pid) / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    return _status_kb("VmHWM", pid) / 1024


def open_fds(pid: int | str = "self") -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def fd_kinds(pid: int | str = "self") -> dict[str, int]:
    """Open descriptors by kind: socket, pipe, anon (eventfd, epoll, ...) and file (the rest: paths)."""
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # closed meanwhile (the listing itself, a finishing request)
            continue
        kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:", "anon_inode:")) else "file"
        kinds[{"anon_inode": "anon"}.get(kind, kind)] += 1
    return dict(sorted(kinds.items()))


# ---------------------------------------------------------------------------------- a private Redis


def redis_server() -> contextlib.AbstractContextManager[str]:
    """A throwaway redis-server (tests/redis_server.py; imported here so the bot's child process needn't)."""
    from redis_server import redis_url

    return redis_url()


# ---------------------------------------------------------------------------------- the bot


async def start_bot_with(w: Any, runner: Any, config: Any, *, store: Any = None, queue: Any = None) -> Any:
    """Like World.start_bot, with a store and/or queue built by the test (short busy timeouts)."""
    from harness import analyzer

    from bot.app import CloseupBot

    bot = CloseupBot(config, runner=runner, queue=queue, analyzer=analyzer(), connector_factory=w.emu.connector)
    if store is not None:
        bot.store = store
    w.bots.append(bot)
    task = asyncio.create_task(bot.start(w.emu.token))
    w.tasks.append(task)
    await w.emu.wait_until(lambda: bot.ready_for_jobs.is_set() or task.done(), timeout=15, what="the bot's setup")
    if task.done():
        task.result()
    await w.emu.wait_ready()
    return bot


# ---------------------------------------------------------------------------------- the bot in its own process


def spawn_bot(emu: Any, data: Path, log: Any, *, steps: int = 4, step_s: float = 0.0) -> subprocess.Popen[bytes]:
    """bot_child.py against this emulator, on ``data`` (store, journal); output goes to ``log``."""
    ca = data / "ca.pem"
    if not ca.exists():
        emu._tls.ca.cert_pem.write_to_path(str(ca))  # the emulator's throwaway CA, as benchmarks/bench_bot.py does
    return subprocess.Popen([sys.executable, str(HERE / "bot_child.py"), str(emu.port), str(ca), str(data), emu.token,
                             "--steps", str(steps), "--step-s", str(step_s)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


async def child_stats(proc: subprocess.Popen[bytes], data: Path, timeout: float = 15) -> dict[str, Any]:
    """Ask a running bot_child.py to measure itself (SIGUSR1) and return what it wrote."""
    path = data / "stats.json"
    seen = json.loads(path.read_text())["seq"] if path.exists() else 0
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            stats = json.loads(path.read_text())
            if stats["seq"] > seen:
                return stats
        if proc.poll() is not None:
            raise RuntimeError(f"the bot process exited ({proc.returncode})")
        await asyncio.sleep(0.02)
    raise TimeoutError("the bot process did not report its figures")
