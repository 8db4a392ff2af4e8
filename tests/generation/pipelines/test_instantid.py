"""The InstantID backend on tiny random checkpoints, loaded by the production loading code.

Random weights draw no faces, so these tests assert structure: shapes, determinism per seed,
what the identity scale does, step reporting and cancellation, and the loading errors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from generation.config import GenerationConfig, ModelsConfig
from generation.models import ModelMissingError
from generation.pipelines.framing import draw_keypoints
from generation.pipelines.instantid import IdentityNet, InstantIDBackend
from generation.pipelines.types import GenerationCancelled, GenerationRequest, IdentityEmbedding, Img2ImgRequest

KEYPOINTS = np.array([[24, 28], [40, 28], [32, 36], [26, 44], [38, 44]], dtype=float)


def request(**changes: object) -> GenerationRequest:
    base = GenerationRequest(
        prompt="a studio portrait", negative_prompt="blurry",
        identity=IdentityEmbedding.of_one_face(np.random.default_rng(0).normal(size=512) * 20),
        keypoints=KEYPOINTS, seeds=(1,), width=64, height=64, steps=3, guidance_scale=5.0,
    )
    return dataclasses.replace(base, **changes)


def test_loads_real_layout_and_shares_modules(instantid_backend: InstantIDBackend) -> None:
    pipe = instantid_backend.pipe
    assert isinstance(pipe.controlnet, IdentityNet)
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert type(projection).__name__ == "IPAdapterPlusImageProjection"  # InstantID's Resampler
    assert instantid_backend.img2img.unet is pipe.unet and instantid_backend.img2img.controlnet is pipe.controlnet


def test_face_tokens_shape_and_zero_face_negative(instantid_backend: InstantIDBackend) -> None:
    positive, negative = instantid_backend.face_tokens(np.ones(512, np.float32))
    assert positive.shape == (1, 16, 64) and negative.shape == positive.shape
    assert not torch.equal(positive, negative)
    again, _ = instantid_backend.face_tokens(np.zeros(512, np.float32))
    assert torch.allclose(again, negative)


def test_batch_of_seeds_gives_one_image_each_deterministically(instantid_backend: InstantIDBackend) -> None:
    first = instantid_backend.generate(request(seeds=(1, 2, 3)))
    assert [image.shape for image in first] == [(64, 64, 3)] * 3
    assert all(image.dtype == np.uint8 for image in first)
    second = instantid_backend.generate(request(seeds=(1, 2, 3)))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[1])
    # A seed gives the same image alone as inside a batch.
    alone = instantid_backend.generate(request(seeds=(2,)))[0]
    assert np.abs(alone.astype(int) - first[1].astype(int)).max() <= 2


def test_identity_changes_the_image(instantid_backend: InstantIDBackend) -> None:
    a = instantid_backend.generate(request())[0]
    other = IdentityEmbedding.of_one_face(np.random.default_rng(5).normal(size=512) * 20)
    b = instantid_backend.generate(request(identity=other))[0]
    assert not np.array_equal(a, b)


def test_identity_scale_zero_equals_no_adapter_and_positive_differs(instantid_backend: InstantIDBackend) -> None:
    req = request(identity_scale=0.0)
    with_zero = instantid_backend.generate(req)[0]
    with_some = instantid_backend.generate(request(identity_scale=0.8))[0]
    assert not np.array_equal(with_zero, with_some)
    # The same call with the IP-Adapter attention removed from the UNet (IdentityNet kept).
    pipe = instantid_backend.pipe
    positive, negative = instantid_backend.face_tokens(req.identity.raw)
    processors = dict(pipe.unet.attn_processors)
    projection, hid_type = pipe.unet.encoder_hid_proj, pipe.unet.config.encoder_hid_dim_type
    from diffusers.models.attention_processor import AttnProcessor2_0

    try:
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.unet.encoder_hid_proj = None
        pipe.unet.register_to_config(encoder_hid_dim_type=None)
        pipe.controlnet.use_face_tokens(positive, negative)
        pipe.controlnet._guided = True
        from PIL import Image

        plain = pipe(
            prompt=req.prompt, negative_prompt=req.negative_prompt,
            image=Image.fromarray(draw_keypoints(req.keypoints, 64, 64)), width=64, height=64,
            num_inference_steps=req.steps, guidance_scale=req.guidance_scale,
            controlnet_conditioning_scale=req.controlnet_scale,
            generator=[torch.Generator().manual_seed(1)], output_type="np",
        ).images[0]
    finally:
        pipe.unet.encoder_hid_proj = projection
        pipe.unet.register_to_config(encoder_hid_dim_type=hid_type)
        pipe.unet.set_attn_processor(processors)
    plain = (np.clip(plain, 0, 1) * 255).round().astype(np.uint8)
    assert np.abs(plain.astype(int) - with_zero.astype(int)).max() <= 1


def test_keypoints_steer_the_identitynet(instantid_backend: InstantIDBackend) -> None:
    a = instantid_backend.generate(request())[0]
    b = instantid_backend.generate(request(keypoints=KEYPOINTS * 0.5))[0]
    assert not np.array_equal(a, b)
    c = instantid_backend.generate(request(controlnet_scale=0.0))[0]
    d = instantid_backend.generate(request(controlnet_scale=0.0, keypoints=KEYPOINTS * 0.5))[0]
    assert np.array_equal(c, d)  # with the IdentityNet off, keypoints no longer matter


def test_steps_reported_and_cancel_stops_at_the_next_step(instantid_backend: InstantIDBackend) -> None:
    seen: list[tuple[int, int]] = []
    instantid_backend.generate(request(steps=4), lambda step, total: seen.append((step, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]

    calls: list[int] = []

    def cancel_after_two(step: int, total: int) -> None:
        calls.append(step)
        if step == 2:
            raise GenerationCancelled

    with pytest.raises(GenerationCancelled):
        instantid_backend.generate(request(steps=6), cancel_after_two)
    assert calls == [1, 2]


def test_redenoise_keeps_size(instantid_backend: InstantIDBackend) -> None:
    crop = instantid_backend.generate(request())[0]
    out = instantid_backend.redenoise(Img2ImgRequest(image=crop, base=request(), strength=0.5, seed=4))
    assert out.shape == crop.shape and out.dtype == np.uint8


def test_missing_model_offline_names_it_and_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tiny_instantid: dict[str, Path]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    generation = GenerationConfig(offline=True, device="cpu", cache_dir=str(tmp_path / "empty-cache"))
    models = ModelsConfig(instantid_path=str(tiny_instantid["identitynet"].parent),
                          base="example-org/sdxl-not-downloaded")
    with pytest.raises(ModelMissingError) as error:
        InstantIDBackend.load(generation, models)
    message = str(error.value)
    assert "example-org/sdxl-not-downloaded" in message and "models.base_path" in message
    assert "offline" in message and str(tmp_path / "empty-cache") in message


def test_missing_local_folder_names_the_setting(tmp_path: Path) -> None:
    generation = GenerationConfig(offline=True, device="cpu")
    models = ModelsConfig(instantid_path=str(tmp_path / "nowhere"))
    with pytest.raises(ModelMissingError, match=r"models\.instantid_path"):
        InstantIDBackend.load(generation, models)


def test_missing_adapter_file_is_explained(tmp_path: Path, tiny_instantid: dict[str, Path]) -> None:
    import shutil

    folder = tmp_path / "instantid"
    shutil.copytree(tiny_instantid["identitynet"], folder / "ControlNetModel")  # no ip-adapter.bin
    generation = GenerationConfig(offline=True, device="cpu")
    models = ModelsConfig(base_path=str(tiny_instantid["base"]), instantid_path=str(folder))
    with pytest.raises(ModelMissingError, match=r"ip-adapter\.bin"):
        InstantIDBackend.load(generation, models)


def test_half_precision_load_keeps_every_module_in_one_dtype(
        tiny_configs: tuple[GenerationConfig, ModelsConfig]) -> None:
    # load_ip_adapter builds the face-token Resampler in float32; a bfloat16 job must still run.
    generation, models = tiny_configs
    backend = InstantIDBackend.load(dataclasses.replace(generation, dtype="bfloat16"), models)
    pipe = backend.pipe
    modules = [pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.controlnet]
    assert {p.dtype for module in modules for p in module.parameters()} == {torch.bfloat16}
    assert backend.img2img.vae.dtype == torch.bfloat16  # from_pipe casts to float32 unless told
    image = backend.generate(request(steps=2))[0]
    assert image.shape == (64, 64, 3)


@pytest.mark.parametrize(("preset", "scheduler", "weight_name"), [
    ("lightning", "EulerDiscreteScheduler", "sdxl_lightning_4step_lora.safetensors"),
    ("lcm", "LCMScheduler", "pytorch_lora_weights.safetensors"),
])
def test_fast_presets_fuse_their_lora_and_switch_scheduler(
        tmp_path: Path, tiny_configs: tuple[GenerationConfig, ModelsConfig], instantid_backend: InstantIDBackend,
        preset: str, scheduler: str, weight_name: str) -> None:
    import tiny_sdxl

    generation, models = tiny_configs
    lora = tiny_sdxl.build_lora(tmp_path / preset, weight_name)
    fast = InstantIDBackend.load(dataclasses.replace(generation, preset=preset),
                                 dataclasses.replace(models, **{f"{preset}_path": str(lora)}))
    assert type(fast.pipe.scheduler).__name__ == scheduler
    if preset == "lightning":
        assert fast.pipe.scheduler.config.timestep_spacing == "trailing"
    req = request(steps=2, guidance_scale=1.0)
    assert not np.array_equal(fast.generate(req)[0], instantid_backend.generate(req)[0])


def test_fast_preset_without_its_lora_offline_is_explained(
        tmp_path: Path, tiny_configs: tuple[GenerationConfig, ModelsConfig]) -> None:
    generation, models = tiny_configs
    offline = dataclasses.replace(generation, preset="lightning", cache_dir=str(tmp_path / "empty"))
    with pytest.raises(ModelMissingError, match=r"ByteDance/SDXL-Lightning.*models\.lightning_path"):
        InstantIDBackend.load(offline, models)
