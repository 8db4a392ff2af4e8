"""What the diffusers backends share: step reporting, image conversion and the fast presets."""

from __future__ import annotations

from typing import Any

import numpy as np

from generation.config import GenerationConfig, ModelsConfig
from generation.models import explain_missing, hub_kwargs, model_ref
from generation.pipelines.types import StepCallback

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


