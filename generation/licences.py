"""Which licence each part of the configured stack is under, and whether a host may use it commercially.

A server owner whose community has any income (or a company) must know before starting whether closeup
as configured is theirs to run. This is the one table of those facts: `closeup doctor` prints it, and
``generation.require_commercial_licence`` refuses to start with a part that does not allow it. The
entries are the licences the model cards state for the default repositories (see README, Licences); a
model configured from another repository is "unknown" and counted as not cleared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generation.config import Config, ModelsConfig
from generation.stack import needed_models, pack_uses


@dataclass(frozen=True)
class Terms:
    licence: str
    commercial: bool
    note: str = ""  # why not, or the condition that comes with it


@dataclass(frozen=True)
class Part:
    name: str  # what it is, as a host reads it
    use: str  # what closeup uses it for
    terms: Terms


# Default repositories' weights, by the ModelsConfig key that names them.
MODEL_TERMS = {
    "base": Terms("CreativeML Open RAIL++-M", True, "use-based restrictions apply (its Attachment A)"),
    "instantid": Terms("InstantID weights: non-commercial", False,
                       "trained on insightface's antelopev2 embeddings, whose licence excludes commercial use"),
    "faceid": Terms("IP-Adapter FaceID: non-commercial research use", False, "the model card allows research only"),
    "image_encoder": Terms("MIT", True),
    "lightning": Terms("CreativeML Open RAIL++-M", True, "use-based restrictions apply"),
    "lcm": Terms("CreativeML Open RAIL++-M", True, "use-based restrictions apply"),
    "safety_checker": Terms("CreativeML OpenRAIL-M", True, "use-based restrictions apply"),
    "flux2_klein": Terms("Apache-2.0 (FLUX.2 [klein] 4B; the 9B klein and FLUX.2 [dev] are non-commercial)", True),
    "qwen_edit": Terms("Apache-2.0 (Qwen-Image-Edit-2511)", True),
}
# Models whose repositories carry their licence as a file: a configured folder without it cannot be cleared.
LICENCE_FILE_MODELS = ("flux2_klein", "qwen_edit")
OPENCV_TERMS = {
    "detector": Terms("MIT (OpenCV Zoo's YuNet, face_detection_yunet/LICENSE)", True),
    "recognizer": Terms("Apache-2.0 (OpenCV Zoo's SFace, face_recognition_sface/LICENSE)", True),
}
INSIGHTFACE_TERMS = Terms("insightface model packs: non-commercial research use", False,
                          "the packs' licence excludes commercial use")
DLIB_68_TERMS = Terms("dlib's 68-point landmark model: non-commercial", False,
                      "trained on iBUG 300-W, whose images are licensed for research only")
UNKNOWN_TERMS = Terms("unknown (not a default repository)", False, "read its model card and decide")


def stack(config: Config) -> list[Part]:
    """Every licensed part the configured stack loads: generation models, the insightface pack generation
    conditions on, and the face models the quality gate and likeness scoring use."""
    from generation.models import ROLES, model_ref

    parts = []
    defaults = ModelsConfig()
    for key in needed_models(config.generation):
        ref = model_ref(config.models, key)
        if key in LICENCE_FILE_MODELS and ref.local_path:
            terms = _terms_from_licence_file(Path(ref.local_path), MODEL_TERMS[key])
        elif ref.repo_id == getattr(defaults, key) and not ref.local_path:
            terms = MODEL_TERMS[key]
        else:
            terms = UNKNOWN_TERMS
        parts.append(Part(f"{ROLES[key]} ({ref.local_path or ref.repo_id})", "generation", terms))
    for pack, uses in pack_uses(config.faces, config.generation).items():
        if uses == ["selfie checks"] and config.faces.backend == "dlib":
            continue
        parts.append(Part(f"insightface {pack}", " and ".join(uses), INSIGHTFACE_TERMS))
    if config.faces.backend == "opencv":
        parts.append(Part("OpenCV YuNet face detector", "selfie checks and faces in outputs", OPENCV_TERMS["detector"]))
        parts.append(Part("OpenCV SFace face recogniser", "likeness scores", OPENCV_TERMS["recognizer"]))
    else:
        parts.append(Part("dlib face models (face_recognition_models)", "selfie checks and likeness scores",
                          DLIB_68_TERMS))
    return parts


def _terms_from_licence_file(folder: Path, expected: Terms) -> Terms:
    """A downloaded model folder is cleared when it holds the licence its model card names (Apache-2.0): read
    it, since a folder can hold anything. No licence file, or another licence, is not cleared."""
    files = sorted(path for pattern in ("LICENSE*", "LICENCE*") for path in folder.glob(pattern) if path.is_file())
    if not files:
        return Terms("unknown: no LICENSE file in the model folder", False,
                     f"{folder} holds no licence file; download the model with its LICENSE (closeup models pull "
                     "fetches it) so its terms can be read")
    text = " ".join(path.read_text(errors="replace")[:4000] for path in files)
    if "Apache License" in text:
        return expected
    return Terms(f"unknown: {files[0].name} is not the Apache License", False,
                 f"read {files[0]} and decide; the model card of the default repository says Apache-2.0")


def not_cleared(parts: list[Part]) -> list[Part]:
    return [part for part in parts if not part.terms.commercial]


def verdict(parts: list[Part]) -> str:
    """One line: may this stack be used commercially, and if not, because of what."""
    blocking = not_cleared(parts)
    if not blocking:
        return "commercial use: allowed (each part's conditions still apply)"
    return "commercial use: not allowed, because of " + "; ".join(
        f"{part.name} — {part.terms.licence}" for part in blocking)


def refusal(config: Config) -> str | None:
    """Why this stack may not start under generation.require_commercial_licence, or None."""
    if not config.generation.require_commercial_licence:
        return None
    blocking = not_cleared(stack(config))
    if not blocking:
        return None
    return ("generation.require_commercial_licence = true, and the configured stack is not cleared for commercial "
            "use: " + "; ".join(f"{part.name} ({part.terms.licence})" for part in blocking)
            + ". `closeup doctor` lists every part's licence.")
