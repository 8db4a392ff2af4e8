"""What the configured stack loads: the generation models in loading order, and which insightface pack is used
for what. `closeup doctor`, `closeup models pull`, the licence verdict and the loaders all ask here, so they
agree on one list."""

from __future__ import annotations

import re

from generation.config import FacesConfig, GenerationConfig

SELFIE_CHECKS = "selfie checks"


def needed_models(generation: GenerationConfig) -> list[str]:
    """The models the configured backend and preset load, in loading order."""
    if generation.backend == "edit":  # one pipeline folder; the SDXL presets do not apply
        from generation.models import EDITOR_MODELS

        keys = [EDITOR_MODELS[generation.editor]]
    else:
        keys = ["base", *(["instantid"] if generation.backend == "instantid" else ["faceid", "image_encoder"])]
        keys += [generation.preset] if generation.preset in ("lightning", "lcm") else []
    return keys + (["safety_checker"] if generation.safety_checker else [])


def conditioning_pack(generation: GenerationConfig) -> str | None:
    """The insightface pack the backend's face embedding comes from: InstantID was trained on antelopev2, FaceID
    on buffalo_l; an editor conditions on pixels and needs none."""
    if generation.backend == "edit":
        return None
    return "antelopev2" if generation.backend == "instantid" else "buffalo_l"


def pack_uses(faces: FacesConfig, generation: GenerationConfig) -> dict[str, list[str]]:
    """Pack name → what uses it: selfie checks (faces.insightface_pack) and generation's face embedding."""
    uses: dict[str, list[str]] = {}
    if faces.backend != "opencv":
        uses[faces.insightface_pack] = [SELFIE_CHECKS]
    conditioning = conditioning_pack(generation)
    if conditioning is not None:
        uses.setdefault(conditioning, []).append(f"{generation.backend} generation")
    return uses


def needs_torchvision(generation: GenerationConfig) -> bool:
    """Qwen-Image-Edit's Qwen2.5-VL processor is built with torchvision (transformers' video processor half)."""
    return generation.backend == "edit" and generation.editor == "qwen-image-edit"


def torchvision_for(torch_version: str) -> str | None:
    """The torchvision series built against ``torch_version`` ("0.28" for torch 2.13.x): they pair minor for
    minor, torchvision's minor being torch's + 15. Any other pairing fails at import ("operator
    torchvision::nms does not exist"). None for a version this rule does not cover."""
    found = re.match(r"(\d+)\.(\d+)", torch_version)
    if found is None or found.group(1) != "2":
        return None
    return f"0.{int(found.group(2)) + 15}"


def torchvision_fits(torch_version: str, torchvision_version: str) -> bool:
    """Whether this torchvision was built for this torch (True where the rule above does not know)."""
    series = torchvision_for(torch_version)
    return series is None or re.match(rf"{re.escape(series)}(\.|$)", torchvision_version) is not None
