"""What the bot counts for Prometheus: jobs, likeness, photo checks, Discord errors, commands, loop lag.

Each ``Metrics`` owns its registry rather than using prometheus_client's global one, so several bots
in one process (tests, a restart within a test) never collide over metric names.

Labels only ever carry values from small fixed sets (outcomes, check names, HTTP statuses, Discord
error codes, command names). Never a user, guild, channel or job id, a token or a prompt: those are
personal data, and unbounded label values would also grow the exposition without limit.

Job timings come from the queue's own events (``JobEvent.at``), so with Redis they are the workers'
clock for started/final and the submitting bot's for queued; negative spans from clock skew count as 0.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.components import DRAFT_ACTIONS, PREFIX, RESULT_ACTIONS
from generation.jobs import EventKind, JobEvent, ResultImage

if TYPE_CHECKING:
    from bot.imaging import PhotoCheck

MAX_TRACKED_JOBS = 10_000  # active jobs remembered for timings; a final event we never see must not leak
FINAL = {EventKind.DONE: "done", EventKind.FAILED: "failed", EventKind.CANCELLED: "cancelled"}
LIKENESS_BUCKETS = tuple(round(i / 10, 1) for i in range(11))  # 0.0, 0.1, ... 1.0
WAIT_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600, 900)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BUTTONS = frozenset({*RESULT_ACTIONS, *DRAFT_ACTIONS, "cancel", "forget"})
_CHECK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass
class _Job:
    queued_at: float | None = None
    started_at: float | None = None  # of the last attempt; None when its started event was not seen
    running: bool = False


class Metrics:
    """The bot's metrics; the ``observe_*`` methods are the hooks the bot calls."""

    def __init__(self, *, max_tracked_jobs: int = MAX_TRACKED_JOBS) -> None:
        self.registry = CollectorRegistry()
        self.started = time.monotonic()
        self._max_jobs = max_tracked_jobs
        self._jobs: OrderedDict[str, _Job] = OrderedDict()  # active jobs, oldest first
        self._finished: OrderedDict[str, None] = OrderedDict()  # recent finals, so a repeated one counts once
        r = self.registry
        self.queue_depth = Gauge("closeup_queue_depth", "Jobs waiting to start (from the queue's events).",
                                 registry=r)
        self.queue_depth.set_function(lambda: sum(1 for job in self._jobs.values() if not job.running))
        self.running = Gauge("closeup_jobs_running", "Jobs a worker is running (from the queue's events).",
                             registry=r)
        self.running.set_function(lambda: sum(1 for job in self._jobs.values() if job.running))
        self.queue_wait = Histogram("closeup_queue_wait_seconds", "Time from queued to first started.",
                                    buckets=WAIT_BUCKETS, registry=r)
        self.job_duration = Histogram("closeup_job_duration_seconds",
                                      "Time from (last) started to the final event of jobs that ran.",
                                      ["outcome"], buckets=DURATION_BUCKETS, registry=r)
        self.jobs_finished = Counter("closeup_jobs_finished_total",
                                     "Final job events, including jobs cancelled before they started.",
                                     ["outcome"], registry=r)
        self.gpu_seconds = Counter("closeup_gpu_seconds_total",
                                   "Worker time: started to final, summed over jobs that ran.", registry=r)
        self.likeness = Histogram("closeup_likeness_score", "Likeness (0-1) of each result image with a face.",
                                  buckets=LIKENESS_BUCKETS, registry=r)
        self.results = Counter("closeup_results_total", "Result images returned by finished jobs.", registry=r)
        self.photo_checks = Counter("closeup_photo_checks_total", "Photos quality-checked, by verdict.",
                                    ["verdict"], registry=r)
        self.quality_failures = Counter("closeup_quality_failures_total",
                                        "Quality checks that failed a photo, by check.", ["check"], registry=r)
        self.discord_errors = Counter("closeup_discord_api_errors_total",
                                      "Discord REST responses with status >= 400, retried ones (429, 5xx) included.",
                                      ["status"], registry=r)
        self.discord_error_codes = Counter("closeup_discord_api_error_codes_total",
                                           "Discord errors the bot handled, by status and Discord JSON error code.",
                                           ["status", "code"], registry=r)
        self.commands = Counter("closeup_commands_total", "Slash commands, context menus and button presses.",
                                ["command"], registry=r)
        self.command_errors = Counter("closeup_command_errors_total",
                                      "Slash commands that failed with an error the bot did not expect.",
                                      ["command"], registry=r)
        self.deliveries = Counter("closeup_deliveries_total",
                                  "Job messages (progress and results) written, by the path that worked.",
                                  ["path"], registry=r)
        self.loop_lag = Histogram("closeup_event_loop_lag_seconds",
                                  "How late the event loop woke a periodic probe (blocking work shows here).",
                                  buckets=LAG_BUCKETS, registry=r)

    # ------------------------------------------------------------------ jobs

    def observe_event(self, event: JobEvent) -> None:
        """Account one queue event: queue depth, wait, duration, worker time, likeness."""
        job_id, kind = event.job_id, event.kind
        if kind == EventKind.QUEUED:
            job = self._track(job_id)
            if job is not None and job.queued_at is None:
                job.queued_at = event.at
        elif kind in (EventKind.STARTED, EventKind.PROGRESS):
            job = self._track(job_id)
            if job is None:
                return
            if kind == EventKind.STARTED:
                if job.started_at is None and job.queued_at is not None:
                    self.queue_wait.observe(max(0.0, event.at - job.queued_at))
                job.started_at = event.at  # a retried job's time counts from its last attempt
            job.running = True  # progress of a job started before this bot did: running, timing unknown
        elif kind in FINAL:
            self._final(event, FINAL[kind])

    def _track(self, job_id: str) -> _Job | None:
        if job_id in self._finished:
            return None  # a late progress event of a finished job
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _Job()
            while len(self._jobs) > self._max_jobs:
                self._jobs.popitem(last=False)
        return job

    def _final(self, event: JobEvent, outcome: str) -> None:
        if event.job_id in self._finished:
            return
        self._finished[event.job_id] = None
        while len(self._finished) > self._max_jobs:
            self._finished.popitem(last=False)
        self.jobs_finished.labels(outcome=outcome).inc()
        job = self._jobs.pop(event.job_id, None)
        if job is not None and job.started_at is not None:
            ran = max(0.0, event.at - job.started_at)
            self.job_duration.labels(outcome=outcome).observe(ran)
            self.gpu_seconds.inc(ran)

    def observe_results(self, results: Sequence[ResultImage]) -> None:
        """A finished job's portraits, counted once, when the bot reads them (events carry none)."""
        for result in results:
            self.results.inc()
            if result.likeness is not None and math.isfinite(result.likeness):
                self.likeness.observe(min(1.0, max(0.0, result.likeness)))

    # ------------------------------------------------------------------ the Discord side

    def observe_check(self, check: PhotoCheck) -> None:
        """One checked photo: its verdict, and each check that failed it (the name only, never the detail)."""
        self.photo_checks.labels(verdict=_bounded(check.verdict, {"pass", "warn", "fail"})).inc()
        for name, tier, _detail in check.checks:
            if tier == "fail":
                self.quality_failures.labels(check=name if _CHECK_NAME.match(name) else "other").inc()

    def observe_discord_status(self, status: int) -> None:
        """A Discord response >= 400 (called from the HTTP trace, before discord.py retries or raises)."""
        self.discord_errors.labels(status=str(int(status))).inc()

    def observe_discord_error(self, status: int | None, code: int | None) -> None:
        """A ``discord.HTTPException`` the bot caught: why it failed, in Discord's own error code."""
        self.discord_error_codes.labels(status=str(int(status or 0)), code=str(int(code)) if code else "").inc()

    def observe_command(self, name: str) -> None:
        self.commands.labels(command=name).inc()

    def observe_command_error(self, name: str) -> None:
        self.command_errors.labels(command=name).inc()

    def observe_interaction(self, interaction: discord.Interaction[Any]) -> None:
        name = command_label(interaction)
        if name is not None:
            self.observe_command(name)

    def observe_delivery(self, path: str) -> None:
        self.deliveries.labels(path=_bounded(path, {"webhook", "channel", "dm"})).inc()

    def trace_config(self) -> aiohttp.TraceConfig:
        """For ``discord.Client(http_trace=...)``: sees every response of discord.py's session, each retry too.

        Only the status: reading the body (where Discord's error code is) here would race discord.py's own read."""
        trace = aiohttp.TraceConfig()

        async def on_request_end(_session: aiohttp.ClientSession, _context: Any,
                                 params: aiohttp.TraceRequestEndParams) -> None:
            if params.response.status >= 400:
                self.observe_discord_status(params.response.status)

        trace.on_request_end.append(on_request_end)
        return trace

    # ------------------------------------------------------------------ process

    async def watch_event_loop(self, interval_s: float = 0.5) -> None:
        """Forever: sleep, and record how much later than asked the loop woke us."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(interval_s)
            self.loop_lag.observe(max(0.0, loop.time() - before - interval_s))

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of everything above."""
        return generate_latest(self.registry)


def command_label(interaction: discord.Interaction[Any]) -> str | None:
    """The command's name ("reference set", "Use as reference") or "button:<action>"; None for anything else.

    Only names the bot registered or actions it defined, so no label value comes from a person."""
    if interaction.type == discord.InteractionType.application_command:
        command = interaction.command
        return command.qualified_name if command is not None else "unknown"
    if interaction.type == discord.InteractionType.component:
        parts = str((interaction.data or {}).get("custom_id", "")).split(":")
        if len(parts) >= 2 and parts[0] == PREFIX and parts[1] in BUTTONS:
            return f"button:{parts[1]}"
    return None


def _bounded(value: str, known: set[str]) -> str:
    return value if value in known else "other"
