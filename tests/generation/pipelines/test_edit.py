"""Backend ``edit`` on a tiny random FLUX.2 [klein] in the real layout, loaded by the production code.

What the method prescribes is checked against what the model receives: the transformer's reference tokens
are the VAE encoding of the face crops given (best first, at most three; never anything else), the text
encoder reads the instruction with the framing words and the person's prompt, the canvas has the framing's
shape, and the re-render pass repaints only the face ellipse with the best crop as its reference.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fake_dists import fake_dist
from PIL import Image

from generation.config import GenerationConfig, ModelsConfig
from generation.models import ModelMissingError
from generation.pipelines.edit import (
    FRAMING_ASPECT,
    FRAMING_WORDS,
    KEEP_IDENTITY,
    RECIPES,
    EditBackend,
    edit_instruction,
    editor_canvas,
    face_mask,
)
from generation.pipelines.types import GenerationError, GenerationRequest, IdentityEmbedding, Img2ImgRequest

KEYPOINTS = np.array([[24, 28], [40, 28], [32, 36], [26, 44], [38, 44]], dtype=float)


def crops(count: int, size: int = 64) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(count)
    return tuple(rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count))


def request(**changes: Any) -> GenerationRequest:
    base = GenerationRequest(
        prompt="a studio portrait, soft light", negative_prompt="blurry",
        identity=IdentityEmbedding.of_one_face(np.ones(128)), keypoints=KEYPOINTS, seeds=(1,), width=64, height=64,
        steps=2, guidance_scale=1.0, framing="head-and-shoulders", references=crops(1))
    return dataclasses.replace(base, **changes)


class Inputs:
    """What the transformer and the text encoder are called with (forward pre-hooks: the real modules run)."""

    def __init__(self, pipe: Any) -> None:
        self.transformer: list[dict[str, Any]] = []
        self.text: list[dict[str, Any]] = []
        self.handles = [
            pipe.transformer.register_forward_pre_hook(lambda _m, _a, kw: self.transformer.append(kw),
                                                       with_kwargs=True),
            pipe.text_encoder.register_forward_pre_hook(lambda _m, _a, kw: self.text.append(kw), with_kwargs=True),
        ]

    def __enter__(self) -> Inputs:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def encoded_references(pipe: Any, images: tuple[np.ndarray, ...]) -> torch.Tensor:
    """The reference tokens the FLUX.2 method prescribes, computed here: each crop through the VAE, packed."""
    multiple = pipe.vae_scale_factor * 2
    packed = []
    for image in images:
        height, width = (image.shape[0] // multiple) * multiple, (image.shape[1] // multiple) * multiple
        tensor = pipe.image_processor.preprocess(Image.fromarray(image), height=height, width=width,
                                                 resize_mode="crop")
        with torch.no_grad():
            latents = pipe._encode_vae_image(tensor.to(pipe.vae.dtype), generator=None)
        packed.append(pipe._pack_latents(latents)[0])
    return torch.cat(packed)


def test_loads_the_real_layout_and_the_inpainter_shares_its_modules(edit_backend: EditBackend) -> None:
    from diffusers import Flux2KleinInpaintPipeline, Flux2KleinPipeline

    assert isinstance(edit_backend.pipe, Flux2KleinPipeline) and edit_backend.pipe.config.is_distilled
    assert isinstance(edit_backend.inpaint, Flux2KleinInpaintPipeline)
    assert edit_backend.inpaint.transformer is edit_backend.pipe.transformer
    assert edit_backend.inpaint.vae is edit_backend.pipe.vae
    assert edit_backend.sampling == (4, 1.0)  # the model card's 4 steps, guidance 1.0
    assert edit_backend.places_face is False


def test_the_transformer_sees_the_best_three_crops_and_nothing_else(edit_backend: EditBackend) -> None:
    given = crops(5)
    pipe = edit_backend.pipe
    with Inputs(pipe) as seen:
        edit_backend.generate(request(references=given))
    first = seen.transformer[0]
    output_tokens = (64 // (pipe.vae_scale_factor * 2)) ** 2
    expected = encoded_references(pipe, given[:3])
    references = first["hidden_states"][0, output_tokens:]
    assert references.shape == expected.shape  # three crops' tokens: not five, not the raw photo
    torch.testing.assert_close(references, expected.to(references.dtype), atol=1e-4, rtol=1e-4)
    # Each reference is its own image to the model (its own time coordinate), in the order given.
    times = first["img_ids"][0, output_tokens:, 0].unique().tolist()
    assert len(times) == 3


def test_the_text_encoder_reads_the_framing_the_prompt_and_the_keep_instruction(edit_backend: EditBackend) -> None:
    with Inputs(edit_backend.pipe) as seen:
        edit_backend.generate(request(framing="half-body", references=crops(2)))
    text = edit_backend.pipe.tokenizer.decode(seen.text[0]["input_ids"][0], skip_special_tokens=False)
    assert FRAMING_WORDS["half-body"] in text
    assert "the person in images 1 to 2 (the same person in each)" in text
    assert "a studio portrait, soft light" in text and KEEP_IDENTITY in text
    assert "enable_thinking" not in text and "<think>\n\n</think>" in text  # the chat template FLUX.2 asks for


@pytest.mark.parametrize("framing", list(FRAMING_ASPECT))
def test_each_framing_gets_its_own_canvas_shape(edit_backend: EditBackend, framing: str) -> None:
    width, height = editor_canvas(framing, 1024, 1024)
    assert width % 16 == 0 and height % 16 == 0
    assert abs(width / height - FRAMING_ASPECT[framing]) < 0.05
    assert abs(width * height / 1024**2 - 1.0) < 0.06  # the model's one megapixel, whatever the shape
    small_w, small_h = editor_canvas(framing, 64, 64)
    images = edit_backend.generate(request(framing=framing, width=small_w, height=small_h))
    assert images[0].shape == (small_h, small_w, 3) and images[0].dtype == np.uint8


def test_seeds_are_one_image_each_and_deterministic(edit_backend: EditBackend) -> None:
    first = edit_backend.generate(request(seeds=(1, 2)))
    again = edit_backend.generate(request(seeds=(1, 2)))
    assert len(first) == 2 and all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])


def test_the_re_render_repaints_the_face_ellipse_with_the_best_crop_as_reference(edit_backend: EditBackend) -> None:
    calls: list[dict[str, Any]] = []
    real = edit_backend.inpaint

    class Recording:  # records what the real inpainting pipeline is called with, then runs it
        def __call__(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return real(**kwargs)

    given = crops(3)
    crop = np.full((64, 64, 3), 128, np.uint8)
    edit_backend.inpaint = Recording()
    try:
        out = edit_backend.redenoise(Img2ImgRequest(image=crop, base=request(references=given, steps=4),
                                                    strength=0.5, seed=3))
    finally:
        edit_backend.inpaint = real
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    (call,) = calls
    assert np.array_equal(np.asarray(call["image_reference"]), given[0])  # the best crop, not a later one
    mask = np.asarray(call["mask_image"])
    assert np.array_equal(mask, face_mask(64, KEYPOINTS))
    ys, xs = np.nonzero(mask)
    centre = KEYPOINTS.mean(axis=0)
    assert abs(xs.mean() - centre[0]) < 1.5 and abs(ys.mean() - centre[1]) < 1.5  # on the face
    assert mask[0, 0] == 0 and mask[-1, -1] == 0  # the corners of the crop are kept
    assert call["strength"] == 0.5 and "reference image" in call["prompt"]


def test_an_overflowed_model_output_is_refused_not_sent_as_a_black_picture(edit_backend: EditBackend) -> None:
    # The transformer's numbers overflow (what half precision does on some GPUs): its output becomes NaN.
    handle = edit_backend.pipe.transformer.register_forward_hook(
        lambda _module, _args, output: (output[0] * float("nan"), *output[1:]))
    try:
        with pytest.raises(GenerationError, match=r"empty picture .*generation\.dtype"):
            edit_backend.generate(request())
    finally:
        handle.remove()
    assert edit_backend.generate(request())[0].dtype == np.uint8  # the backend is usable again


def test_no_reference_crop_is_a_clear_error(edit_backend: EditBackend) -> None:
    with pytest.raises(GenerationError, match="no reference face crop"):
        edit_backend.generate(request(references=()))
    with pytest.raises(GenerationError, match="at least one reference"):
        edit_instruction("x", "close-up", 0, RECIPES["flux2-klein"])


def test_a_missing_editor_folder_says_which_setting(tmp_path: Path) -> None:
    generation = GenerationConfig(offline=True, device="cpu", backend="edit")
    with pytest.raises(ModelMissingError, match=r"models\.flux2_klein_path"):
        EditBackend.load(generation, ModelsConfig(flux2_klein_path=str(tmp_path / "nowhere")))


def test_another_pipeline_in_the_editor_folder_is_refused(tiny_configs: tuple, tmp_path: Path) -> None:
    _, models = tiny_configs  # a tiny SDXL: loads fine, but is not an editor
    generation = GenerationConfig(offline=True, device="cpu", backend="edit")
    with pytest.raises(ModelMissingError, match=r"does not have the layout of 'black-forest-labs/FLUX\.2-klein-4B'"):
        EditBackend.load(generation, ModelsConfig(flux2_klein_path=models.base_path))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_qwen_without_torchvision_is_a_clear_error() -> None:
    generation = GenerationConfig(offline=True, device="cpu", backend="edit", editor="qwen-image-edit")
    series = f"0.{int(torch.__version__.split('.')[1]) + 15}"
    with pytest.raises(ModelMissingError, match=rf"needs torchvision .* torchvision {series}\.x for torch "):
        EditBackend.load(generation, ModelsConfig())


def test_qwen_with_a_torchvision_for_another_torch_is_a_clear_error(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed but built for another torch: it would fail deep inside loading ("operator torchvision::nms
    does not exist"); the backend says which series this torch takes before loading anything."""
    minor = int(torch.__version__.split(".")[1])
    site = tmp_path / "site"
    fake_dist(site, "torchvision", f"0.{minor + 16}.0", module="torchvision")
    monkeypatch.syspath_prepend(str(site))
    generation = GenerationConfig(offline=True, device="cpu", backend="edit", editor="qwen-image-edit")
    with pytest.raises(ModelMissingError, match=rf"torchvision 0\.{minor + 16}\.0 is built for another torch .*"
                                                rf"torchvision 0\.{minor + 15}\.x for torch"):
        EditBackend.load(generation, ModelsConfig())


needs_torchvision = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None,
    reason="the Qwen2-VL processor needs torchvision, which this machine's torch build lacks")


@pytest.fixture(scope="module")
def qwen_backend(tmp_path_factory: pytest.TempPathFactory) -> EditBackend:
    import tiny_editors

    folder = tiny_editors.build_qwen_edit(tmp_path_factory.mktemp("qwen") / "qwen")
    generation = GenerationConfig(offline=True, device="cpu", backend="edit", editor="qwen-image-edit")
    return EditBackend.load(generation, ModelsConfig(qwen_edit_path=str(folder)))


def qwen_condition_pixels(pipe: Any, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """What the Qwen-Image-Edit method gives its VL encoder, computed here: each picture at 384² area
    (a square crop: 384×384, Lanczos), through the model's own image processor."""
    resized = [Image.fromarray(image).resize((384, 384), Image.Resampling.LANCZOS) for image in images]
    return pipe.processor.image_processor(images=resized, return_tensors="pt")


def qwen_reference_tokens(pipe: Any, images: tuple[np.ndarray, ...]) -> torch.Tensor:
    """The reference tokens the method prescribes: each picture at one megapixel (1024² for a square crop)
    through the VAE, normalised by its latent mean and std, 2×2-packed, one after the other."""
    packed = []
    for image in images:
        tensor = pipe.image_processor.preprocess(Image.fromarray(image), 1024, 1024).unsqueeze(2)
        with torch.no_grad():
            latents = pipe.vae.encode(tensor.to(pipe.vae.dtype)).latent_dist.mode()
        mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)
        latents = (latents - mean) / std
        _, channels, _, height, width = latents.shape
        grid = latents.view(1, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
        packed.append(grid.reshape(1, (height // 2) * (width // 2), channels * 4)[0])
    return torch.cat(packed)


class RecordingPipe:
    """Stands where the backend calls its pipeline: records each call's arguments, then runs the real one."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.real(**kwargs)


def recorded_calls(backend: EditBackend, run: Any) -> list[dict[str, Any]]:
    real, recording = backend.pipe, RecordingPipe(backend.pipe)
    backend.pipe = recording
    try:
        run()
    finally:
        backend.pipe = real
    return recording.calls


@needs_torchvision
def test_qwen_edit_sees_the_best_three_crops_as_pictures_with_true_cfg(qwen_backend: EditBackend) -> None:
    assert qwen_backend.sampling == (40, 1.0) and qwen_backend.inpaint is None  # the card: 40 steps, true CFG
    pipe, given, images = qwen_backend.pipe, crops(5), []
    with Inputs(pipe) as seen:
        (call,) = recorded_calls(qwen_backend, lambda: images.extend(qwen_backend.generate(
            request(references=given, negative_prompt="blurry, two people", steps=2))))
    assert [image.shape for image in images] == [(64, 64, 3)]
    # The card's true CFG 4.0 with the negative prompt; no guidance_scale (its transformer has no guidance
    # embedding, and diffusers would warn on every image).
    assert call["true_cfg_scale"] == 4.0 and call["negative_prompt"] == "blurry, two people"
    assert "guidance_scale" not in call
    # True CFG: the VL encoder reads the instruction and then the negative prompt, each with the three pictures.
    prompt_call, negative_call = seen.text
    prompt = pipe.tokenizer.decode(prompt_call["input_ids"][0], skip_special_tokens=False)
    negative = pipe.tokenizer.decode(negative_call["input_ids"][0], skip_special_tokens=False)
    for text in (prompt, negative):
        assert text.count("<|vision_start|>") == 3 and "Picture 3: <|vision_start|>" in text
        assert "Picture 4" not in text
    assert "the person in Pictures 1 to 3 (the same person in each)" in prompt and KEEP_IDENTITY in prompt
    assert "blurry, two people" in negative and KEEP_IDENTITY not in negative
    expected = qwen_condition_pixels(pipe, list(given[:3]))
    torch.testing.assert_close(prompt_call["pixel_values"], expected["pixel_values"])
    assert prompt_call["image_grid_thw"].tolist() == expected["image_grid_thw"].tolist()
    # Each step, two transformer passes (with the prompt, with the negative prompt), the same picture tokens.
    assert len(seen.transformer) == 4
    cond, uncond = seen.transformer[:2]
    assert not torch.equal(cond["encoder_hidden_states"], uncond["encoder_hidden_states"])
    factor = pipe.vae_scale_factor * 2
    output_tokens = (64 // factor) ** 2
    assert cond["img_shapes"] == [[(1, 64 // factor, 64 // factor)] + [(1, 1024 // factor, 1024 // factor)] * 3]
    references = cond["hidden_states"][0, output_tokens:]
    expected_tokens = qwen_reference_tokens(pipe, given[:3])
    assert references.shape == expected_tokens.shape
    torch.testing.assert_close(references, expected_tokens.to(references.dtype), atol=1e-4, rtol=1e-4)


@needs_torchvision
def test_qwen_seeds_are_separate_calls_and_deterministic(qwen_backend: EditBackend) -> None:
    first = qwen_backend.generate(request(seeds=(1, 2), steps=2))
    again = qwen_backend.generate(request(seeds=(1, 2), steps=2))
    assert len(first) == 2 and all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])


@needs_torchvision
def test_qwen_re_render_edits_the_crop_towards_the_best_reference(qwen_backend: EditBackend) -> None:
    pipe, given = qwen_backend.pipe, crops(3)
    crop = np.random.default_rng(7).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    outs = []
    with Inputs(pipe) as seen:
        (call,) = recorded_calls(qwen_backend, lambda: outs.append(qwen_backend.redenoise(
            Img2ImgRequest(image=crop, base=request(references=given, steps=2), strength=0.5, seed=3))))
    (out,) = outs
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8  # back at the crop's size
    assert call["true_cfg_scale"] == 4.0 and "guidance_scale" not in call
    prompt_call = seen.text[0]
    text = pipe.tokenizer.decode(prompt_call["input_ids"][0], skip_special_tokens=False)
    assert text.count("<|vision_start|>") == 2
    assert "Replace the face in Picture 1 with the face of the person in Picture 2" in text
    expected = qwen_condition_pixels(pipe, [crop, given[0]])  # the crop, then the best reference only
    torch.testing.assert_close(prompt_call["pixel_values"], expected["pixel_values"])
