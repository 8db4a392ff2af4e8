"""The optional output safety checker: every generated image is screened before anyone sees it.

Uses the Stable Diffusion safety checker (a CLIP vision model compared against concept embeddings),
loaded once through ``from_pretrained`` from the Hugging Face id in ``models.safety_checker`` or a
local folder. Flagged images are withheld, never blurred and sent. It is off by default
(``generation.safety_checker``): it adds ~1.2 GB of weights and some false positives, and the
prompt policy already refuses explicit requests; hosts of public servers should turn it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from generation.config import GenerationConfig, ModelsConfig
from generation.models import explain_missing, hub_kwargs, model_ref, pick_device


class SafetyChecker:
    def __init__(self, model: Any, processor: Any, device: str) -> None:
        self.model = model
        self.processor = processor
        self.device = device

    @classmethod
    def load(cls, generation: GenerationConfig, models: ModelsConfig) -> SafetyChecker:
        """Raises ModelMissingError (what to download, where to put it) when the weights are absent."""
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        ref = model_ref(models, "safety_checker")
        kwargs = hub_kwargs(ref, generation)
        with explain_missing(ref, generation):
            model = StableDiffusionSafetyChecker.from_pretrained(ref.source, **kwargs)
            processor = CLIPImageProcessor.from_pretrained(ref.source, **kwargs)
        # The checker is small next to SDXL and runs once per image: float32 keeps its thresholds exact.
        device = pick_device(generation.device)
        model.to(device).eval()
        return cls(model, processor, device)

    def flagged(self, images: Sequence[np.ndarray]) -> list[bool]:
        """One verdict per RGB uint8 image: True means withhold it."""
        if not images:
            return []
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        placeholders = [np.zeros((1, 1, 3), np.float32) for _ in images]  # the checker blacks these out, not ours
        with torch.no_grad():
            _, verdicts = self.model(clip_input=inputs.pixel_values, images=placeholders)
        return [bool(v) for v in verdicts]
