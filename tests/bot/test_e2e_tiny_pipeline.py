"""The whole chain once with real generation: Discord → bot → queue → tiny InstantID pipeline → Discord.

The diffusion models are tiny random ones in the real on-disk layout, loaded by the production
loading code; the conditioning pack is a tiny SCRFD-shaped ONNX model that "sees" white squares, so
the selfie gets one pasted in a corner while dlib still checks the real face.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent

import tiny_editors  # noqa: E402
import tiny_onnx  # noqa: E402
import tiny_sdxl  # noqa: E402
from harness import bot_config, buttons, photo, result_of, run, text_of, world  # noqa: E402

from generation.config import FacesConfig, GenerationConfig, ModelsConfig  # noqa: E402
from generation.pipelines.edit import editor_canvas  # noqa: E402
from generation.queue.engine_runner import EngineRunner  # noqa: E402

torch.set_num_threads(1)


def _selfie_with_square() -> bytes:
    with Image.open(io.BytesIO(photo())) as im:
        pixels = np.asarray(im.convert("RGB")).copy()
    pixels[20:140, 20:140] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_tiny_instantid_portrait_through_discord(tmp_path: Path) -> None:
    paths = tiny_sdxl.build_instantid(tmp_path / "models")
    tiny_onnx.make_pack(tmp_path / "insightface" / "models" / "antelopev2", pack="antelopev2")
    base = bot_config(tmp_path)
    config = dataclasses.replace(
        base,
        faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False,
                          backend="dlib"),
        generation=GenerationConfig(offline=True, width=64, height=64, steps=3, device="cpu", retry_attempts=0),
        models=ModelsConfig(base_path=str(paths["base"]), instantid_path=str(paths["identitynet"].parent)),
    )
    runner = EngineRunner.from_config(config)

    async def body() -> None:
        async with world(tmp_path, runner, config) as w:
            emu = w.emu
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(_selfie_with_square()), "count": 2,
                                                        "seed": 5})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=30)
            labels = buttons(report)
            click = await emu.click(w.alice, report, labels.get("Generate") or labels["Generate anyway"])
            result = await result_of(click, timeout=120)
            assert len(result["attachments"]) == 2
            image = Image.open(io.BytesIO(emu.file_bytes(result["attachments"][0])))
            assert image.size == (64, 64)
            assert "AI-generated" in text_of(result)
            progress_edits = result["_edits"]
            assert len(progress_edits) >= 2  # queued → progress → results
            assert emu.violations == []

    run(body, timeout=180)



def test_the_edit_backend_through_discord(tmp_path: Path) -> None:
    """Backend edit (tiny FLUX.2 [klein], loaded by the production code) from /portrait to the posted image; the
    selfie checks, the reference crop and the likeness use dlib on the real face."""
    editor = tiny_editors.build_flux2_klein(tmp_path / "klein")
    base = bot_config(tmp_path)
    config = dataclasses.replace(
        base,
        faces=FacesConfig(backend="dlib"),
        # A small working copy keeps the face crop at the editor's smallest (256 px): the tiny model's attention
        # over a megapixel reference would take minutes on a CPU.
        images=dataclasses.replace(base.images, analysis_max_side=256),
        generation=GenerationConfig(offline=True, width=64, height=64, device="cpu", retry_attempts=0,
                                    backend="edit"),
        models=ModelsConfig(flux2_klein_path=str(editor)),
    )
    runner = EngineRunner.from_config(config)
    reference_sizes: list[int] = []
    real_generate = runner.engine.backend.generate

    def generate(request, on_step=None):  # records what the real backend is given, then runs it
        reference_sizes.extend(crop.shape[0] for crop in request.references)
        return real_generate(request, on_step)

    runner.engine.backend.generate = generate

    async def body() -> None:
        async with world(tmp_path, runner, config) as w:
            emu = w.emu
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo()), "count": 1, "seed": 5,
                                                        "framing": "half-body"})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=30)
            labels = buttons(report)
            click = await emu.click(w.alice, report, labels.get("Generate") or labels["Generate anyway"])
            result = await result_of(click, timeout=120)
            assert len(result["attachments"]) == 1
            image = Image.open(io.BytesIO(emu.file_bytes(result["attachments"][0])))
            assert image.size == editor_canvas("half-body", 64, 64) == (48, 80)  # taller than the square config
            assert emu.violations == []

    run(body, timeout=180)
    assert reference_sizes == [256]  # the face crop, not the raw photo
