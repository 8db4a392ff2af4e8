"""A real job through the embedded queue: tiny InstantID pipeline, tiny antelopev2 pack, real SQLite."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tiny_onnx
from PIL import Image

from generation.config import Config, FacesConfig
from generation.jobs import EventKind, JobSpec
from generation.queue.base import JobFailed
from generation.queue.engine_runner import EngineRunner
from generation.queue.local import LocalQueue


def _square_photo() -> str:
    return base64.b64encode(tiny_onnx.square_face_png()).decode()


def test_portrait_job_through_the_queue(tmp_path: Path, tiny_configs, instantid_backend) -> None:
    generation, models = tiny_configs
    tiny_onnx.make_pack(tmp_path / "insightface" / "models" / "antelopev2", pack="antelopev2")
    config = Config(faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False),
                    generation=dataclasses.replace(generation, retry_attempts=0), models=models)
    runner = EngineRunner.from_config(config, backend=instantid_backend)

    async def main() -> None:
        async with LocalQueue(tmp_path / "q.db", runner) as queue:
            events = queue.subscribe()
            good = JobSpec(user_id="u", guild_id="g", prompt="portrait", count=2, seed=3,
                           references=(_square_photo(),))
            no_face = JobSpec(user_id="v", guild_id="g", references=(base64.b64encode(
                _png(np.zeros((300, 300, 3), np.uint8))).decode(),))
            broken = JobSpec(user_id="w", guild_id="g", references=("not base64 at all!",))
            for job in (good, no_face, broken):
                await queue.submit(job)
            finals: dict[str, object] = {}
            steps = []
            while len(finals) < 3:
                event = await asyncio.wait_for(events.get(), 60)
                if event.kind == EventKind.PROGRESS and event.job_id == good.job_id:
                    steps.append(event.step)
                if event.kind in (EventKind.DONE, EventKind.FAILED):
                    finals[event.job_id] = event
            done = finals[good.job_id]
            results = await queue.results(good.job_id)
            assert done.kind == EventKind.DONE and [r.seed for r in results] == [3, 4]
            image = Image.open(io.BytesIO(base64.b64decode(results[0].png)))
            assert image.size == (64, 64)
            assert steps and generation.steps in steps  # then the re-render pass reports its own steps
            assert finals[no_face.job_id].kind == EventKind.FAILED
            assert "face" in finals[no_face.job_id].reason.lower()
            assert "damaged" in finals[broken.job_id].reason

    asyncio.run(main())


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_safety_checker_withholds_flagged_images(tmp_path: Path, tiny_configs, instantid_backend) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from safety_model import build_safety_checker

    generation, models = tiny_configs
    tiny_onnx.make_pack(tmp_path / "insightface" / "models" / "antelopev2", pack="antelopev2")

    def runner_for(flag_everything: bool) -> EngineRunner:
        folder = build_safety_checker(tmp_path / f"safety-{flag_everything}", flag_everything=flag_everything)
        config = Config(faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False),
                        generation=dataclasses.replace(generation, retry_attempts=0, safety_checker=True),
                        models=dataclasses.replace(models, safety_checker_path=str(folder)))
        return EngineRunner.from_config(config, backend=instantid_backend)

    async def one_job(runner: EngineRunner, name: str):
        async with LocalQueue(tmp_path / f"{name}.db", runner) as queue:
            events = queue.subscribe()
            job = JobSpec(user_id="u", guild_id="g", count=2, seed=1, references=(_square_photo(),))
            await queue.submit(job)
            while True:
                event = await asyncio.wait_for(events.get(), 60)
                if event.kind in (EventKind.DONE, EventKind.FAILED):
                    return event, await queue.results(job.job_id)

    withheld, _ = asyncio.run(one_job(runner_for(True), "strict"))
    assert withheld.kind == EventKind.FAILED and "safety checker" in withheld.reason
    passed, results = asyncio.run(one_job(runner_for(False), "lenient"))
    assert passed.kind == EventKind.DONE and len(results) == 2


def test_a_broken_lora_fails_each_job_clearly_and_the_worker_goes_on(
    tmp_path: Path, tiny_configs, caplog: pytest.LogCaptureFixture
) -> None:
    """The in-process worker loads on the first job; a preset LoRA that is not a LoRA fails every job with
    a plain "not ready" for the person, the host's log names the file and the setting to fix, and the
    queue keeps taking jobs."""
    from generation.queue.engine_runner import NOT_READY, LazyEngineRunner

    generation, models = tiny_configs
    tiny_onnx.make_pack(tmp_path / "insightface" / "models" / "antelopev2", pack="antelopev2")
    broken = tmp_path / "lightning"
    broken.mkdir()
    (broken / "sdxl_lightning_4step_lora.safetensors").write_bytes(b"\x00" * 64)
    config = Config(faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False),
                    generation=dataclasses.replace(generation, preset="lightning", retry_attempts=0),
                    models=dataclasses.replace(models, lightning_path=str(broken)))

    async def main() -> None:
        async with LocalQueue(tmp_path / "q.db", LazyEngineRunner(config)) as queue:
            events = queue.subscribe()
            jobs = [JobSpec(user_id=f"u{i}", guild_id="g", references=(_square_photo(),)) for i in range(2)]
            for job in jobs:
                await queue.submit(job)
            finals = {}
            while len(finals) < 2:
                event = await asyncio.wait_for(events.get(), 60)
                if event.kind in (EventKind.DONE, EventKind.FAILED):
                    finals[event.job_id] = event
            for job in jobs:
                reason = finals[job.job_id].reason
                assert finals[job.job_id].kind == EventKind.FAILED
                assert reason == NOT_READY  # no paths, settings or commands in a Discord channel

    with caplog.at_level("ERROR", logger="closeup.worker"):
        asyncio.run(main())
    host = [r.getMessage() for r in caplog.records if r.name == "closeup.worker"]
    assert host and all("SDXL-Lightning LoRA" in line and "models.lightning" in line for line in host)


def test_warm_up_loads_once_before_the_first_job_and_a_failure_waits_for_the_jobs(
    tmp_path: Path, tiny_configs, caplog: pytest.LogCaptureFixture
) -> None:
    from generation.queue.engine_runner import LazyEngineRunner

    generation, models = tiny_configs
    tiny_onnx.make_pack(tmp_path / "insightface" / "models" / "antelopev2", pack="antelopev2")
    config = Config(faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False),
                    generation=dataclasses.replace(generation, retry_attempts=0), models=models)
    runner = LazyEngineRunner(config)
    assert runner.state == "cold"
    runner.warm_up()
    assert runner.state == "ready"
    loaded = runner._runner
    runner.warm_up()
    assert runner._runner is loaded  # loaded once

    missing = LazyEngineRunner(dataclasses.replace(config, models=dataclasses.replace(
        models, base_path=str(tmp_path / "nowhere"))))
    with caplog.at_level("ERROR", logger="closeup.worker"):
        missing.warm_up()  # no exception: the host's log says why
    assert missing.state == "failed"
    assert any("nowhere" in r.getMessage() for r in caplog.records)
    with pytest.raises(JobFailed, match="isn't ready"):
        missing.run(JobSpec(user_id="u", guild_id="g"), lambda step, total: None, threading.Event())
