"""What crosses between the engine and a diffusion backend: plain data, no torch types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# Face crops an editor backend gets per job: the best 1-3 reference photos (both editors take several images;
# more crops of one face add little and cost tokens).
EDITOR_REFERENCES = 3

# (step, total_steps); raise GenerationCancelled from it to stop at the next denoising step.
StepCallback = Callable[[int, int], None]


class GenerationCancelled(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a step callback to stop a running job between denoising steps."""


class GenerationError(RuntimeError):
    """A job that cannot run as asked (a bad reference, a model that does not fit, ...)."""


class OutOfMemory(Exception):  # noqa: N818 - a condition the queue reacts to
    """The device ran out of memory. Raised by a backend in place of torch's own error, after the
    memory the failed call held has been released; the queue retries once with one image, then fails
    the job with a clear reason (one policy, in generation.queue.base)."""


@dataclass(frozen=True, eq=False)
class IdentityEmbedding:
    """The person's face embedding in both forms the identity adapters were trained on.

    InstantID feeds the *raw* ArcFace vector (norm ≈ 20-30) to its Resampler; IP-Adapter FaceID
    feeds the unit-length ``normed_embedding``. Each backend takes the one its method prescribes.
    """

    raw: np.ndarray  # the face model's own scale
    normed: np.ndarray  # unit length, same direction for one photo
    model: str  # the face model that made it, e.g. "arcface-antelopev2" (for error messages)

    @classmethod
    def of_one_face(cls, raw: np.ndarray, model: str = "arcface") -> IdentityEmbedding:
        """Both forms from one face's raw vector (what insightface's embedding / normed_embedding are)."""
        vector = np.asarray(raw, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return cls(raw=vector, normed=vector / norm if norm > 0 else vector, model=model)


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """One batch of images that share a prompt, an identity and a framing."""

    prompt: str
    negative_prompt: str
    identity: IdentityEmbedding  # the conditioning face embedding, raw and normalised
    keypoints: np.ndarray  # (5, 2) where the face goes on the canvas: the framing control
    seeds: tuple[int, ...]  # one image per seed
    width: int = 1024
    height: int = 1024
    steps: int = 30
    guidance_scale: float = 5.0
    identity_scale: float = 0.8  # IP-Adapter weight (face tokens into the UNet)
    controlnet_scale: float = 0.8  # IdentityNet weight (face tokens + keypoints into the ControlNet)
    face_crop: np.ndarray | None = None  # aligned face crop, for backends that also look at pixels
    framing: str = "head-and-shoulders"  # the preset name (an editor puts it into words)
    references: tuple[np.ndarray, ...] = ()  # the gate's face-centred crops, best first (editors' identity input)


@dataclass(frozen=True, eq=False)
class Img2ImgRequest:
    """The face re-render pass: the same identity, re-denoised at moderate strength on a crop."""

    image: np.ndarray  # RGB uint8 crop, already upscaled to the working size
    base: GenerationRequest  # prompt, identity and scales of the job; keypoints are the crop's own
    strength: float = 0.4
    seed: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """A loaded, warm diffusion pipeline. Images come back as RGB uint8 arrays.

    Both calls raise OutOfMemory (not torch's error) when the device runs out of memory. Optional members:
    ``sampling`` (the steps and guidance its model card prescribes), ``canvas(framing, width, height)`` (the
    output size it wants for a framing), ``count_tokens`` and ``max_prompt_tokens`` (the prompt budget).
    """

    name: str
    places_face: bool  # the face lands on request.keypoints (InstantID): the re-render pass needs no detector

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> list[np.ndarray]: ...

    def redenoise(self, request: Img2ImgRequest, on_step: StepCallback | None = None) -> np.ndarray: ...
