"""A tiny random Stable Diffusion safety checker, saved in the real on-disk layout (config.json,
weights, preprocessor_config.json), whose verdict a test chooses through its concept thresholds."""

from __future__ import annotations

from pathlib import Path

import torch


def build_safety_checker(folder: Path, *, flag_everything: bool) -> Path:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 100, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    model = StableDiffusionSafetyChecker(config)
    # A cosine similarity is in [-1, 1]: a threshold of -2 flags every image, +2 none.
    threshold = -2.0 if flag_everything else 2.0
    with torch.no_grad():
        model.concept_embeds_weights.fill_(threshold)
        model.special_care_embeds_weights.fill_(2.0)
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
