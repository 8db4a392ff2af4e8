"""Out of device memory: one policy, from torch's error inside the pipeline to the person's message.

torch's own OutOfMemoryError is raised from inside the tiny InstantID pipeline — in the denoising
loop (a UNet hook) and in the re-render pass (the VAE encoder, which only img2img runs) — and the
job goes through the real engine runner and the embedded queue on real SQLite: retried once with
one image, then failed with a clear reason, never counted as a crash. The device itself is the one
edge stood in for: on this CPU machine, torch.cuda's cache calls are replaced by recorders.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sqlite3
import weakref
from pathlib import Path

import pytest
import tiny_onnx
import torch

from generation.config import Config, FacesConfig
from generation.jobs import EventKind, JobEvent, JobSpec, JobState
from generation.pipelines.diffusers_common import run_on_device
from generation.pipelines.types import OutOfMemory
from generation.queue.base import OUT_OF_MEMORY_REASON
from generation.queue.engine_runner import EngineRunner
from generation.queue.local import LocalQueue

CUDA_OOM = "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 23.65 GiB"


# --------------------------------------------------------------------------- the translation


def test_torch_oom_becomes_the_condition_after_its_memory_is_released(monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[weakref.ref] = []
    emptied: list[bool] = []  # per cache emptying: were the failed call's tensors already gone?
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(held[0]() is None))

    def denoise() -> None:
        activations = torch.ones(256, 256)  # what a failed step holds until its traceback is gone
        held.append(weakref.ref(activations))
        raise torch.OutOfMemoryError(CUDA_OOM)

    with pytest.raises(OutOfMemory, match="out of device memory while generating") as caught:
        run_on_device("cuda", "generating 4 image(s)", denoise)
    assert emptied == [True]
    assert held[0]() is None  # nothing keeps the failed call's tensors alive
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_mps_wording_is_recognised_and_other_errors_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    emptied: list[str] = []
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: emptied.append("mps"))
    def fail(error: Exception):
        def call() -> None:
            raise error

        return call

    with pytest.raises(OutOfMemory):
        run_on_device("mps", "re-rendering a face", fail(RuntimeError(
            "MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.2 GB)")))
    assert emptied == ["mps"]
    with pytest.raises(ValueError, match="not memory"):
        run_on_device("cuda", "x", fail(ValueError("not memory")))
    assert run_on_device("cpu", "nothing", lambda: 42) == 42


# --------------------------------------------------------------------------- through the queue


def square_png() -> str:
    return base64.b64encode(tiny_onnx.square_face_png()).decode()


class Injector:
    """Raises torch's OutOfMemoryError from inside the pipeline: UNet calls with more than
    ``unet_batch_above`` latents, and/or any VAE encoder call (the re-render pass)."""

    def __init__(self, backend, *, unet_batch_above: int | None = None, in_rerender: bool = False) -> None:
        self.raised: list[str] = []
        self.handles = []
        if unet_batch_above is not None:
            def on_unet(module, args, kwargs):
                sample = args[0] if args else kwargs["sample"]
                if sample.shape[0] > unet_batch_above:
                    self.raised.append(f"unet batch {sample.shape[0]}")
                    raise torch.OutOfMemoryError(CUDA_OOM)

            self.handles.append(backend.pipe.unet.register_forward_pre_hook(on_unet, with_kwargs=True))
        if in_rerender:
            def on_encode(module, args):
                self.raised.append("re-render")
                raise torch.OutOfMemoryError(CUDA_OOM)

            self.handles.append(backend.pipe.vae.encoder.register_forward_pre_hook(on_encode))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.fixture
def freed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every device-cache release, recorded on its way through to the real one."""
    from generation.pipelines import diffusers_common

    calls: list[str] = []
    real = diffusers_common.free_device_memory

    def spy(device: str) -> None:
        calls.append(device)
        real(device)

    monkeypatch.setattr(diffusers_common, "free_device_memory", spy)
    return calls


@pytest.fixture
def runner(tmp_path: Path, tiny_configs, instantid_backend) -> EngineRunner:
    generation, models = tiny_configs
    tiny_onnx.make_pack(tmp_path / "insightface" / "models" / "antelopev2", pack="antelopev2")
    generation = dataclasses.replace(generation, retry_attempts=0, steps=2, refine_min_eye_distance=1024)
    config = Config(faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False),
                    generation=generation, models=models)
    return EngineRunner.from_config(config, backend=instantid_backend)


def run_job(tmp_path: Path, runner: EngineRunner, count: int) -> tuple[JobEvent, int, tuple[str, int]]:
    job = JobSpec(user_id="u", guild_id="g", prompt="portrait", count=count, seed=3, references=(square_png(),))

    async def main() -> tuple[JobEvent, int]:
        async with LocalQueue(tmp_path / "q.db", runner) as queue:
            events = queue.subscribe()
            await queue.submit(job)
            while True:
                event = await asyncio.wait_for(events.get(), 120)
                if event.job_id == job.job_id and event.kind in (EventKind.DONE, EventKind.FAILED):
                    return event, len(await queue.results(job.job_id))

    final, images = asyncio.run(main())
    with sqlite3.connect(tmp_path / "q.db") as db:
        state, failures = db.execute("SELECT state, failures FROM jobs WHERE job_id = ?", (job.job_id,)).fetchone()
    return final, images, (state, failures)


def test_oom_in_the_denoising_loop_retries_once_with_one_image(tmp_path: Path, runner: EngineRunner,
                                                               instantid_backend, freed: list[str]) -> None:
    injector = Injector(instantid_backend, unet_batch_above=2)  # 2 images under guidance: batch 4
    try:
        final, images, (state, failures) = run_job(tmp_path, runner, count=2)
    finally:
        injector.close()
    assert injector.raised == ["unet batch 4"] and freed == ["cpu"]
    assert final.kind == EventKind.DONE and images == 1
    assert "ran out of memory making 2 images" in final.reason
    assert state == JobState.DONE and failures == 0


def test_oom_in_the_rerender_pass_fails_clearly_and_is_no_crash(tmp_path: Path, runner: EngineRunner,
                                                                instantid_backend, freed: list[str]) -> None:
    injector = Injector(instantid_backend, unet_batch_above=2, in_rerender=True)
    try:
        final, _, (state, failures) = run_job(tmp_path, runner, count=2)
    finally:
        injector.close()
    # First run: out of memory in the loop; the one retry with one image: out of memory re-rendering.
    assert injector.raised == ["unet batch 4", "re-render"] and freed == ["cpu", "cpu"]
    assert final.kind == EventKind.FAILED and final.reason == OUT_OF_MEMORY_REASON
    assert state == JobState.FAILED and failures == 0  # an outcome, not a crash: never rerun or set aside


def test_one_image_out_of_memory_fails_at_once(tmp_path: Path, runner: EngineRunner, instantid_backend) -> None:
    injector = Injector(instantid_backend, in_rerender=True)
    try:
        final, _, (state, failures) = run_job(tmp_path, runner, count=1)
    finally:
        injector.close()
    assert injector.raised == ["re-render"]
    assert final.kind == EventKind.FAILED and "out of memory" in final.reason
    assert state == JobState.FAILED and failures == 0
