"""What the configured stack loads: the generation models in loading order, and which insightface pack is used
for what. `closeup doctor`, `closeup models pull`, the licence verdict and the loaders all ask here, so they
agree on one list."""

from __future__ import annotations

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
