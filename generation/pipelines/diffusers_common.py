"""What the diffusers backends share: step reporting, image conversion and the fast presets."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from generation.config import GenerationConfig, ModelsConfig
from generation.models import explain_missing, hub_kwargs, model_ref
from generation.pipelines.types import StepCallback

log = logging.getLogger(__name__)

LIGHTNING_FILE = "sdxl_lightning_4step_lora.safetensors"


def step_callback(on_step: StepCallback | None, total: int) -> Any:
    """A diffusers callback_on_step_end that reports (step, total) and lets on_step cancel."""

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step + 1, total)
        return tensors

    return callback


def to_uint8(image: np.ndarray) -> np.ndarray:
    """diffusers' float 0-1 output as the RGB uint8 arrays everything else uses."""
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def finish_loading(pipe: Any, generation: GenerationConfig, models: ModelsConfig, device: str, dtype: Any,
                   name: str) -> None:
    """The steps every backend takes after loading: device and dtype, quiet progress, fast preset, compile."""
    import torch

    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    apply_preset(pipe, generation, models)
    if generation.compile and device == "cuda":
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=False)
    log.info("%s backend ready on %s (%s), preset %s", name, device, str(dtype).removeprefix("torch."),
             generation.preset)


def settle(pipe: Any, img2img_class: Any, device: str, dtype: Any, **components: Any) -> Any:
    """The img2img twin of ``pipe`` for the re-render pass, sharing every module (no second copy).

    from_pipe casts to float32 unless told the dtype, and load_ip_adapter builds the face-token
    projection and IP attention layers in float32: so cast the UNet as a whole, last.
    """
    img2img = img2img_class.from_pipe(pipe, dtype=dtype, **components)
    img2img.set_progress_bar_config(disable=True)
    pipe.unet.to(device, dtype)
    pipe.unet.encoder_hid_proj.eval()
    return img2img


def is_guided(pipe: Any, guidance_scale: float) -> bool:
    """Whether the pipeline will run classifier-free guidance (and so double its batch)."""
    return guidance_scale > 1.0 and pipe.unet.config.time_cond_proj_dim is None


def apply_preset(pipe: Any, generation: GenerationConfig, models: ModelsConfig) -> None:
    """Fast presets: a distilled LoRA fused into the UNet plus the scheduler it was trained for."""
    from diffusers import EulerDiscreteScheduler, LCMScheduler

    if generation.preset == "quality":
        return
    ref = model_ref(models, generation.preset)
    weight = LIGHTNING_FILE if generation.preset == "lightning" else None
    with explain_missing(ref, generation, weight or "LoRA"):
        kwargs = hub_kwargs(ref, generation)
        if weight:
            kwargs["weight_name"] = weight
        pipe.load_lora_weights(ref.source, adapter_name=generation.preset, **kwargs)
    pipe.fuse_lora(adapter_names=[generation.preset])
    if generation.preset == "lightning":
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    else:
        pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)


