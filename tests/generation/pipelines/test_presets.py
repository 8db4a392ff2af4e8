"""Fast presets keep FaceID's own LoRA in effect, on tiny checkpoints through the production loading code.

The FaceID-Plus-v2 checkpoint carries a LoRA for the UNet (loaded as adapter "faceid_0"). Loading the
Lightning or LCM LoRA afterwards makes it the only active adapter, and once any adapter is fused peft
ignores the unfused ones: FaceID's LoRA must be active and fused together with the preset's. The test
recomputes the fused weight of one layer from the three files (base UNet, FaceID adapter, preset
LoRA) and compares it with the weight the pipeline runs with.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tiny_sdxl
import torch
from safetensors.torch import load_file

from generation.models import ModelFileError, ModelMissingError
from generation.pipelines.diffusers_common import LIGHTNING_FILE, active_adapters
from generation.pipelines.faceid import ADAPTER_FILE, FaceIDBackend
from generation.pipelines.instantid import InstantIDBackend
from generation.pipelines.types import GenerationRequest, IdentityEmbedding

LAYER = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
PRESETS = ("quality", "lightning", "lcm")
CROP = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("preset-loras")
    return {"lightning": tiny_sdxl.build_lora(root / "lightning", LIGHTNING_FILE, seed=3),
            "lcm": tiny_sdxl.build_lora(root / "lcm", "pytorch_lora_weights.safetensors", seed=4)}


@pytest.fixture(scope="module")
def faceid_without_lora(tmp_path_factory: pytest.TempPathFactory, tiny_faceid: dict[str, Path]) -> Path:
    """The same FaceID adapter with its LoRA's up weights zeroed: FaceID LoRA weight 0."""
    state = torch.load(tiny_faceid["adapter"], weights_only=True)
    state["ip_adapter"] = {key: torch.zeros_like(value) if "_lora.up" in key else value
                           for key, value in state["ip_adapter"].items()}
    folder = tmp_path_factory.mktemp("faceid-lora-off")
    torch.save(state, folder / ADAPTER_FILE)
    return folder


def load(faceid_configs, loras: dict[str, Path], preset: str, faceid_path: Path | None = None) -> FaceIDBackend:
    generation, models = faceid_configs
    models = dataclasses.replace(models, lightning_path=str(loras["lightning"]), lcm_path=str(loras["lcm"]),
                                 **({"faceid_path": str(faceid_path)} if faceid_path else {}))
    return FaceIDBackend.load(dataclasses.replace(generation, preset=preset), models)


def request(**changes: object) -> GenerationRequest:
    base = GenerationRequest(
        prompt="a studio portrait", negative_prompt="", seeds=(1,), width=64, height=64, steps=4, guidance_scale=1.0,
        identity=IdentityEmbedding.of_one_face(np.random.default_rng(0).normal(size=512) * 25),
        keypoints=np.zeros((5, 2)), face_crop=CROP, identity_scale=1.0,
    )
    return dataclasses.replace(base, **changes)


def lora_pair(state: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
    """up @ down of one layer from a diffusers- or peft-style LoRA state dict."""
    keys = [k for k in state if layer in k]
    down = next(state[k] for k in keys if "lora.down" in k or "lora_A" in k)
    up = next(state[k] for k in keys if "lora.up" in k or "lora_B" in k)
    return up.float() @ down.float()


@pytest.mark.parametrize("preset", PRESETS)
def test_faceid_lora_stays_in_effect(preset: str, faceid_configs, tiny_faceid: dict[str, Path],
                                     loras: dict[str, Path]) -> None:
    backend = load(faceid_configs, loras, preset)
    expected = ["faceid_0"] if preset == "quality" else sorted(["faceid_0", preset])
    assert active_adapters(backend.pipe) == expected

    # The weight the UNet runs with, recomputed from the files: base + FaceID LoRA (+ preset LoRA).
    from diffusers import UNet2DConditionModel

    base = dict(UNet2DConditionModel.from_pretrained(tiny_faceid["base"], subfolder="unet").named_parameters())
    weight = base[f"{LAYER}.weight"].detach().clone()
    processors = list(backend.pipe.unet.attn_processors)
    key = processors.index(LAYER.removesuffix(".to_q") + ".processor")
    adapter = torch.load(tiny_faceid["adapter"], weights_only=True)["ip_adapter"]
    faceid_delta = adapter[f"{key}.to_q_lora.up.weight"] @ adapter[f"{key}.to_q_lora.down.weight"]
    layer = backend.pipe.unet.get_submodule(LAYER)
    if preset == "quality":  # unfused: the LoRA runs beside the weight
        assert torch.equal(layer.base_layer.weight, weight)
        x = torch.randn(3, weight.shape[1])
        with torch.no_grad():
            torch.testing.assert_close(layer(x), x @ (weight + faceid_delta).T, atol=1e-5, rtol=1e-4)
    else:
        preset_file = next(loras[preset].glob("*.safetensors"))
        preset_delta = lora_pair(load_file(preset_file), LAYER)  # alpha = rank in the tiny LoRA: scale 1
        torch.testing.assert_close(layer.base_layer.weight.detach(), weight + faceid_delta + preset_delta,
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", PRESETS)
def test_faceid_lora_and_ip_adapter_both_change_the_output(preset: str, faceid_configs, loras: dict[str, Path],
                                                           faceid_without_lora: Path) -> None:
    with_lora = load(faceid_configs, loras, preset)
    without_lora = load(faceid_configs, loras, preset, faceid_path=faceid_without_lora)
    image = with_lora.generate(request())[0]
    assert not np.array_equal(image, without_lora.generate(request())[0])  # FaceID LoRA weight 1 vs 0
    assert not np.array_equal(image, with_lora.generate(request(identity_scale=0.0))[0])  # IP-Adapter 1 vs 0


def test_instantid_with_a_preset_runs_only_the_preset_lora(tiny_configs, loras: dict[str, Path]) -> None:
    generation, models = tiny_configs
    backend = InstantIDBackend.load(dataclasses.replace(generation, preset="lightning"),
                                    dataclasses.replace(models, lightning_path=str(loras["lightning"])))
    assert active_adapters(backend.pipe) == ["lightning"]


def test_a_lora_that_does_not_load_is_a_clear_error(tmp_path: Path, faceid_configs, loras: dict[str, Path]) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / LIGHTNING_FILE).write_bytes(b"this is not a safetensors file" * 10)
    with pytest.raises(ModelMissingError, match=r"SDXL-Lightning LoRA.*models\.lightning"):
        load(faceid_configs, {**loras, "lightning": garbage}, "lightning")

    # A real LoRA for another model: keys that match no layer of this UNet.
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    save_file({"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 999),
               "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": torch.zeros(999, 4)},
              foreign / LIGHTNING_FILE)
    with pytest.raises(ModelFileError, match=r"models\.lightning"):
        load(faceid_configs, {**loras, "lightning": foreign}, "lightning")


def test_an_adapter_file_of_the_wrong_layout_is_a_clear_error(tmp_path: Path, faceid_configs, loras,
                                                              tiny_instantid: dict[str, Path]) -> None:
    # InstantID's adapter under FaceID's file name: a Resampler where a FaceID projection belongs.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / ADAPTER_FILE).write_bytes(tiny_instantid["adapter"].read_bytes())
    with pytest.raises(ModelFileError, match=r"ip-adapter-faceid-plusv2_sdxl\.bin.*models\.faceid"):
        load(faceid_configs, loras, "quality", faceid_path=wrong)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / ADAPTER_FILE).write_bytes(tiny_instantid["adapter"].read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"models\.faceid"):
        load(faceid_configs, loras, "quality", faceid_path=damaged)


def test_loading_casts_without_a_warning_per_component(tiny_configs, caplog: pytest.LogCaptureFixture) -> None:
    """diffusers' "modules that should be kept in float32: []" warning, eight lines a start for an empty list,
    is not in the log; every component ends in the one dtype."""
    from generation.pipelines.instantid import InstantIDBackend

    with caplog.at_level("WARNING"):
        backend = InstantIDBackend.load(*tiny_configs)
    assert not [r for r in caplog.records if "kept in float32" in r.getMessage()]
    dtypes = {p.dtype for component in backend.pipe.components.values() if hasattr(component, "parameters")
              for p in component.parameters()}
    assert len(dtypes) == 1
