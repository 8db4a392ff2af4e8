"""FLUX.2 [klein] 4B and Qwen-Image-Edit-2511 at their real sizes, with random weights, nothing downloaded.

The architecture numbers are those of the public config files (transformer/, text_encoder/, vae/ of
black-forest-labs/FLUX.2-klein-4B and Qwen/Qwen-Image-Edit-2511), so a timing or a memory peak measured on
these pipelines is that of the real weights. The tokenizers are testkit's offline byte-level stand-ins: a
prompt becomes more tokens than with the real BPE, but both pipelines pad or cut the text to the same fixed
length, so the denoising work is the same.

Built on ``device="meta"`` they allocate nothing, which is how the tests check the parameter counts against
the published model sizes.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "testkit"))

import tiny_editors  # noqa: E402

# black-forest-labs/FLUX.2-klein-4B: transformer/config.json and text_encoder/config.json (Qwen3-4B).
KLEIN_TRANSFORMER = dict(
    patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=7680, timestep_guidance_channels=256, mlp_ratio=3.0, axes_dims_rope=(32, 32, 32, 32),
    rope_theta=2000, guidance_embeds=False)
KLEIN_TEXT = dict(
    vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rope_theta=1000000.0,
    tie_word_embeddings=True)
# Qwen/Qwen-Image-Edit-2511: transformer/config.json and text_encoder/config.json (Qwen2.5-VL-7B-Instruct).
QWEN_TRANSFORMER = dict(
    patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=3584, axes_dims_rope=(16, 56, 56), zero_cond_t=True)
QWEN_TEXT = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, max_position_embeddings=128000, rope_theta=1000000.0,
    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
QWEN_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    in_channels=3)

# Published sizes, billions of parameters (model cards): what the meta-device check compares with.
PUBLISHED_BILLIONS = {"klein.transformer": 3.9, "klein.text_encoder": 4.0, "qwen.transformer": 20.4,
                      "qwen.text_encoder": 8.3}


@contextlib.contextmanager
def building(dtype: torch.dtype, device: str) -> Iterator[None]:
    """Create modules directly in the target precision and place: no full-precision copy at the peak."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def klein_parts(dtype: torch.dtype, device: str) -> dict[str, Any]:
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = tiny_editors.qwen_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")
    torch.manual_seed(0)
    with building(dtype, device):
        parts = dict(
            transformer=Flux2Transformer2DModel(**KLEIN_TRANSFORMER),
            text_encoder=Qwen3ForCausalLM(Qwen3Config(**KLEIN_TEXT)),
            vae=AutoencoderKLFlux2(),  # the defaults are FLUX.2's VAE (32 latent channels, 2×2 patches)
        )
    parts["tokenizer"] = tokenizer
    parts["scheduler"] = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096)
    return parts


def qwen_parts(dtype: torch.dtype, device: str) -> dict[str, Any]:
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_editors.qwen_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer", tiny_editors.VISION_TOKENS)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tiny_editors.VISION_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=QWEN_TEXT, vision_config=QWEN_VISION, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    torch.manual_seed(0)
    with building(dtype, device):
        parts = dict(
            transformer=QwenImageTransformer2DModel(**QWEN_TRANSFORMER),
            text_encoder=Qwen2_5_VLForConditionalGeneration(config),
            vae=AutoencoderKLQwenImage(),  # the defaults are Qwen-Image's VAE
        )
    parts["tokenizer"] = tokenizer
    parts["scheduler"] = FlowMatchEulerDiscreteScheduler(
        shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
        max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")
    return parts


def klein_pipeline(dtype: torch.dtype, device: str):
    from diffusers import Flux2KleinPipeline

    return Flux2KleinPipeline(**klein_parts(dtype, device), is_distilled=True)


def qwen_pipeline(dtype: torch.dtype, device: str):
    """Needs torchvision, as the real one does (the Qwen2-VL processor's video half)."""
    from diffusers import QwenImageEditPlusPipeline
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    parts = qwen_parts(dtype, device)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=parts["tokenizer"],
                                 video_processor=Qwen2VLVideoProcessor())
    return QwenImageEditPlusPipeline(processor=processor, **parts)


# Each editor closeup runs (generation.models.EDITOR_MODELS), as (its parts, its pipeline); a test keeps the two
# lists the same.
EDITORS = {"flux2-klein": (klein_parts, klein_pipeline), "qwen-image-edit": (qwen_parts, qwen_pipeline)}


def billions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9


def weight_gib(editor: str, dtype: torch.dtype) -> float:
    """The weights' size in ``dtype``, counted on the meta device (nothing allocated)."""
    parts = EDITORS[editor][0](dtype, "meta")
    count = sum(billions(m) for m in parts.values() if isinstance(m, torch.nn.Module)) * 1e9
    return count * torch.finfo(dtype).bits / 8 / 2**30


def free_gib(device: str) -> float:
    """Memory a build on ``device`` can use: free GPU memory, or MemAvailable for the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info()[0] / 2**30
    with Path("/proc/meminfo").open() as meminfo:
        return next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable")) / 2**20


def check_fits(editor: str, dtype: torch.dtype, device: str) -> None:
    """Refuse before building what cannot fit (the kernel's out-of-memory killer would end the whole run)."""
    needed, free = weight_gib(editor, dtype) * 1.15, free_gib(device)  # + activations and the VAE's work
    if needed > free:
        raise MemoryError(f"{editor} needs about {needed:.0f} GiB for its weights and activations; "
                          f"{free:.0f} GiB is free on {device}")
