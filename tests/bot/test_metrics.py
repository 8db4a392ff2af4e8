"""Metrics and health: the Metrics class on its own, then /metrics and /healthz of a real bot in the emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import pytest
from aiohttp import web
from fake_generator import FastGenerator
from harness import bot_config, buttons, photo, run, world
from prometheus_client.parser import text_string_to_metric_families

from bot.imaging import PhotoCheck
from bot.metrics import Metrics, command_label
from generation.config import MetricsConfig
from generation.jobs import EventKind, JobEvent, ResultImage

JOB_A, JOB_B, JOB_C = "a" * 32, "b" * 32, "c" * 32


def result(likeness: float | None) -> ResultImage:
    return ResultImage(png="", seed=1, likeness=likeness, same_person=None, face_found=likeness is not None,
                       refined=False)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


# --------------------------------------------------------------------------- jobs


def test_a_finished_job_gives_wait_duration_gpu_time_and_likeness() -> None:
    m = Metrics()
    m.observe_event(JobEvent(EventKind.QUEUED, JOB_A, at=100.0, position=0))
    m.observe_event(JobEvent(EventKind.STARTED, JOB_A, at=103.0, attempt=1))
    m.observe_event(JobEvent(EventKind.PROGRESS, JOB_A, at=105.0, step=1, total=2))
    m.observe_event(JobEvent(EventKind.DONE, JOB_A, at=110.0))  # events carry no images
    m.observe_results((result(0.81), result(0.45), result(None)))  # read once from the queue on delivery
    assert value(m, "closeup_queue_wait_seconds_count") == 1
    assert value(m, "closeup_queue_wait_seconds_sum") == pytest.approx(3.0)
    assert value(m, "closeup_job_duration_seconds_count", outcome="done") == 1
    assert value(m, "closeup_job_duration_seconds_sum", outcome="done") == pytest.approx(7.0)
    assert value(m, "closeup_gpu_seconds_total") == pytest.approx(7.0)
    assert value(m, "closeup_results_total") == 3
    assert value(m, "closeup_likeness_score_count") == 2  # the image without a face has no likeness
    assert value(m, "closeup_likeness_score_sum") == pytest.approx(1.26)
    assert value(m, "closeup_likeness_score_bucket", le="0.5") == 1
    assert value(m, "closeup_likeness_score_bucket", le="0.9") == 2
    assert value(m, "closeup_jobs_finished_total", outcome="done") == 1
    assert value(m, "closeup_queue_depth") == 0 and value(m, "closeup_jobs_running") == 0


def test_failed_and_cancelled_jobs() -> None:
    m = Metrics()
    m.observe_event(JobEvent(EventKind.QUEUED, JOB_A, at=200.0))
    m.observe_event(JobEvent(EventKind.STARTED, JOB_A, at=200.5))
    m.observe_event(JobEvent(EventKind.FAILED, JOB_A, at=205.5, reason="no face"))
    m.observe_event(JobEvent(EventKind.QUEUED, JOB_B, at=300.0))
    m.observe_event(JobEvent(EventKind.CANCELLED, JOB_B, at=301.0))  # before it started: no worker time
    m.observe_event(JobEvent(EventKind.QUEUED, JOB_C, at=400.0))
    m.observe_event(JobEvent(EventKind.STARTED, JOB_C, at=401.0))
    m.observe_event(JobEvent(EventKind.CANCELLED, JOB_C, at=403.0))
    assert value(m, "closeup_job_duration_seconds_count", outcome="failed") == 1
    assert value(m, "closeup_job_duration_seconds_sum", outcome="failed") == pytest.approx(5.0)
    assert value(m, "closeup_job_duration_seconds_count", outcome="cancelled") == 1
    assert value(m, "closeup_job_duration_seconds_sum", outcome="cancelled") == pytest.approx(2.0)
    assert value(m, "closeup_jobs_finished_total", outcome="cancelled") == 2
    assert value(m, "closeup_gpu_seconds_total") == pytest.approx(7.0)
    assert value(m, "closeup_queue_wait_seconds_count") == 2
    assert value(m, "closeup_results_total") == 0


def test_queue_depth_and_running_follow_the_events() -> None:
    m = Metrics()
    for job in (JOB_A, JOB_B, JOB_C):
        m.observe_event(JobEvent(EventKind.QUEUED, job))
    assert value(m, "closeup_queue_depth") == 3
    m.observe_event(JobEvent(EventKind.STARTED, JOB_A))
    assert (value(m, "closeup_queue_depth"), value(m, "closeup_jobs_running")) == (2, 1)
    # A job that started before this bot did shows up as running, without timings.
    m.observe_event(JobEvent(EventKind.PROGRESS, "d" * 32, step=1, total=4))
    assert value(m, "closeup_jobs_running") == 2
    m.observe_event(JobEvent(EventKind.DONE, "d" * 32))
    assert value(m, "closeup_job_duration_seconds_count", outcome="done") == 0
    assert value(m, "closeup_jobs_finished_total", outcome="done") == 1
    m.observe_event(JobEvent(EventKind.DONE, JOB_A))
    assert (value(m, "closeup_queue_depth"), value(m, "closeup_jobs_running")) == (2, 0)


def test_a_repeated_final_event_counts_once_and_late_progress_is_ignored() -> None:
    m = Metrics()
    m.observe_event(JobEvent(EventKind.STARTED, JOB_A, at=1.0))
    done = JobEvent(EventKind.DONE, JOB_A, at=2.0)
    m.observe_event(done)
    m.observe_event(done)  # e.g. replayed as undelivered
    m.observe_event(JobEvent(EventKind.PROGRESS, JOB_A, step=4, total=4))
    assert value(m, "closeup_job_duration_seconds_count", outcome="done") == 1
    assert value(m, "closeup_jobs_running") == 0


def test_clock_skew_never_gives_negative_times() -> None:
    m = Metrics()
    m.observe_event(JobEvent(EventKind.QUEUED, JOB_A, at=100.0))
    m.observe_event(JobEvent(EventKind.STARTED, JOB_A, at=99.0))  # a worker whose clock is behind
    m.observe_event(JobEvent(EventKind.DONE, JOB_A, at=98.0))
    assert value(m, "closeup_queue_wait_seconds_sum") == 0
    assert value(m, "closeup_gpu_seconds_total") == 0


def test_tracked_jobs_are_bounded() -> None:
    m = Metrics(max_tracked_jobs=3)
    for i in range(10):
        m.observe_event(JobEvent(EventKind.QUEUED, f"{i:032x}"))
    assert value(m, "closeup_queue_depth") == 3


# --------------------------------------------------------------------------- the Discord side


def photo_check(verdict: str, checks: tuple[tuple[str, str, str], ...]) -> PhotoCheck:
    return PhotoCheck(verdict=verdict, messages=(), notes=(), faces_found=0, preview_png=b"", crop_jpeg=None,
                      photo=b"", checks=checks)


def test_photo_checks_count_verdicts_and_failed_checks_only() -> None:
    m = Metrics()
    m.observe_check(photo_check("fail", (("face_found", "fail", "no face detected"), ("blur", "warn", "var 12"),
                                         ("resolution", "fail", "eyes 9 px apart"), ("Weird Name!", "fail", "x"))))
    m.observe_check(photo_check("pass", (("face_found", "pass", "1 face(s)"),)))
    assert value(m, "closeup_photo_checks_total", verdict="fail") == 1
    assert value(m, "closeup_photo_checks_total", verdict="pass") == 1
    assert value(m, "closeup_quality_failures_total", check="face_found") == 1
    assert value(m, "closeup_quality_failures_total", check="resolution") == 1
    assert value(m, "closeup_quality_failures_total", check="other") == 1
    assert value(m, "closeup_quality_failures_total", check="blur") == 0
    assert "eyes 9 px" not in m.render().decode()


def test_discord_errors_commands_and_deliveries() -> None:
    m = Metrics()
    m.observe_discord_status(429)
    m.observe_discord_error(404, 10008)
    m.observe_discord_error(500, 0)
    m.observe_command("portrait")
    m.observe_delivery("webhook")
    m.observe_delivery("pigeon")
    assert value(m, "closeup_discord_api_errors_total", status="429") == 1
    assert value(m, "closeup_discord_api_error_codes_total", status="404", code="10008") == 1
    assert value(m, "closeup_discord_api_error_codes_total", status="500", code="") == 1
    assert value(m, "closeup_commands_total", command="portrait") == 1
    assert value(m, "closeup_deliveries_total", path="webhook") == 1
    assert value(m, "closeup_deliveries_total", path="other") == 1


def test_command_labels_never_carry_ids() -> None:
    slash = SimpleNamespace(type=discord.InteractionType.application_command, data={},
                            command=SimpleNamespace(qualified_name="reference set"))
    assert command_label(slash) == "reference set"  # type: ignore[arg-type]
    unknown = SimpleNamespace(type=discord.InteractionType.application_command, data={}, command=None)
    assert command_label(unknown) == "unknown"  # type: ignore[arg-type]

    def click(custom_id: str) -> Any:
        return SimpleNamespace(type=discord.InteractionType.component, data={"custom_id": custom_id})

    assert command_label(click(f"closeup:gen:{JOB_A}")) == "button:gen"
    assert command_label(click("closeup:forget:yes:123456789012345678")) == "button:forget"
    assert command_label(click(f"closeup:hack:{JOB_A}")) is None
    assert command_label(click("someone-else:gen")) is None
    assert command_label(SimpleNamespace(type=discord.InteractionType.ping, data={})) is None  # type: ignore[arg-type]


def test_the_http_trace_counts_every_error_response() -> None:
    """discord.py retries 429 and 5xx inside one call; each answer must still be counted."""
    m = Metrics()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["status"]))

    async def body() -> None:
        app = web.Application()
        app.router.add_get("/{status}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession(trace_configs=[m.trace_config()]) as session:
                for status in (200, 204, 429, 429, 500, 404):
                    async with session.get(f"http://127.0.0.1:{port}/{status}") as resp:
                        await resp.read()
        finally:
            await runner.cleanup()

    run(body, timeout=10)
    assert value(m, "closeup_discord_api_errors_total", status="429") == 2
    assert value(m, "closeup_discord_api_errors_total", status="500") == 1
    assert value(m, "closeup_discord_api_errors_total", status="404") == 1
    assert value(m, "closeup_discord_api_errors_total", status="200") == 0


def test_event_loop_lag_is_measured() -> None:
    m = Metrics()

    async def body() -> None:
        probe = asyncio.create_task(m.watch_event_loop(interval_s=0.02))
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # a blocking call on the loop, the thing the probe is for
        await asyncio.sleep(0.05)
        probe.cancel()

    run(body, timeout=5)
    assert value(m, "closeup_event_loop_lag_seconds_count") >= 2
    assert value(m, "closeup_event_loop_lag_seconds_sum") >= 0.1


def test_exposition_has_no_ids() -> None:
    m = Metrics()
    m.observe_event(JobEvent(EventKind.QUEUED, JOB_A, reason="a prompt about Alice"))
    m.observe_event(JobEvent(EventKind.FAILED, JOB_A, reason="a prompt about Alice"))
    text = m.render().decode()
    assert JOB_A not in text and "Alice" not in text
    assert "closeup_jobs_finished_total" in text


# --------------------------------------------------------------------------- end to end

PROMPT = "an astronaut on the moon"


def test_metrics_and_health_of_a_running_bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = FastGenerator(steps=4, step_s=0.05)
    config = dataclasses.replace(bot_config(tmp_path), metrics=MetricsConfig(port=0))

    async def body() -> None:
        async with world(tmp_path, generator, config) as w, aiohttp.ClientSession() as http:
            emu = w.emu
            assert w.bot.web_server is not None and w.bot.web_server.port > 0
            base = f"http://127.0.0.1:{w.bot.web_server.port}"
            # discord.py calls itself ready a moment after the last GUILD_CREATE; until then health is "down".
            await emu.wait_until(w.bot.is_ready, timeout=10, what="discord.py to be ready")
            async with http.get(f"{base}/healthz") as resp:
                health = await resp.json()
                assert resp.status == 200, health
            assert health["status"] == "ok" and health["discord"] and health["queue"] and health["store"]
            assert health["uptime_s"] >= 0

            emu.faults.server_error(n=1, status=500, route_contains="/webhooks/")
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo()), "prompt": PROMPT,
                                                        "count": 2})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            click = await emu.click(w.alice, report, buttons(report)["Generate"])
            await click.wait_message(lambda m: len(m.get("attachments") or []) == 2, timeout=20)

            async with http.get(f"{base}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
            found = samples(text)
            assert sample(found, "closeup_job_duration_seconds_count", outcome="done") == 1
            assert sample(found, "closeup_queue_wait_seconds_count") == 1
            assert sample(found, "closeup_likeness_score_count") == 2
            assert sample(found, "closeup_results_total") == 2
            assert sample(found, "closeup_gpu_seconds_total") > 0
            assert sample(found, "closeup_photo_checks_total", verdict="pass") == 1
            assert sample(found, "closeup_commands_total", command="portrait") == 1
            assert sample(found, "closeup_commands_total", command="button:gen") == 1
            assert sample(found, "closeup_deliveries_total", path="webhook") >= 1
            injected = [f for f in emu.faults.injected if f.status == 500]
            assert injected and sample(found, "closeup_discord_api_errors_total", status="500") >= len(injected)
            assert sample(found, "closeup_queue_depth") == 0 and sample(found, "closeup_jobs_running") == 0
            job_id = generator.seen[0].job_id
            for secret in (w.alice.id, w.guild.id, w.channel.id, job_id, emu.token, PROMPT):
                assert str(secret) not in text
            assert emu.violations == [], emu.violations

            async def stuck() -> dict[str, int]:
                await asyncio.sleep(60)
                return {}

            monkeypatch.setattr(w.bot.store, "counts", stuck)
            started = time.monotonic()
            async with http.get(f"{base}/healthz") as resp:
                health = await resp.json()
                assert resp.status == 503
            assert time.monotonic() - started < 5
            assert (health["status"], health["store"], health["queue"], health["discord"]) == (
                "degraded", False, True, True)
            monkeypatch.undo()

            await w.stop_bot()
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(f"{base}/healthz"):
                    pass

    run(body, timeout=90)
