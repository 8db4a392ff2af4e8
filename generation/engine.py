"""The generation engine: reference photos + a prompt in, scored portraits out.

One job runs: prompt lint → framing keypoints → the diffusion backend → the face re-render pass
on faces that came out small → likeness of every image → best-of-N with bounded retries. The
backend and the face analyzers are passed in, loaded once by the caller, so the engine itself
is cheap to build and easy to test with any backend (real, tiny, or a test stand-in).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from generation.config import GenerationConfig
from generation.faces.insightface_backend import align_face
from generation.faces.types import Face, FaceAnalyzer
from generation.images import LoadedImage
from generation.likeness import (
    Likeness,
    ReferenceIdentity,
    ReferenceSetError,
    combine_references,
    generate_until_alike,
    score_images,
)
from generation.pipelines.framing import target_keypoints
from generation.pipelines.refine import RefineSettings, refine_all
from generation.pipelines.types import Backend, GenerationError, GenerationRequest, Img2ImgRequest
from generation.prompts import LintResult, lint_prompt
from generation.quality.gate import main_face_first

log = logging.getLogger(__name__)

FACE_CROP_SIZE = 224  # what FaceID-Plus's CLIP image encoder reads
# (stage, done, total): stage is "generating" or "refining"; the bot turns it into a progress bar.
ProgressCallback = Callable[[str, int, int], None]
# Steps and guidance the fast presets were distilled for (SDXL-Lightning: 4 steps without CFG;
# LCM-LoRA: 4-8 steps, guidance 1-2).
PRESET_SAMPLING = {"lightning": (4, 1.0), "lcm": (6, 1.5)}


@dataclass(frozen=True)
class PortraitJob:
    """What a person asked for. Plain data: the queue serialises it."""

    prompt: str = ""
    style: str = "studio-headshot"
    framing: str | None = None  # None: the style's default, or what the prompt linter suggests
    count: int = 1
    seed: int | None = None  # None: a random base seed; image i gets seed + i
    identity_strength: float | None = None  # overrides the style's IP-Adapter weight


@dataclass(frozen=True, eq=False)
class Reference:
    """The person, measured once per reference set and reused by every job."""

    conditioning: ReferenceIdentity  # what the generator is fed (raw antelopev2 mean for InstantID)
    likeness: ReferenceIdentity  # what outputs are scored against (preferably another face model)
    keypoints: np.ndarray  # 5 landmarks of the best photo: the pose the framing keeps
    messages: tuple[str, ...] = ()
    face_crop: np.ndarray | None = None  # the best photo's face aligned at 224 px (FaceID-Plus reads it)


@dataclass(frozen=True, eq=False)
class Portrait:
    image: np.ndarray
    seed: int
    likeness: Likeness | None
    face_found: bool
    refined: bool
    message: str


@dataclass(frozen=True, eq=False)
class JobOutcome:
    portraits: tuple[Portrait, ...]  # best likeness first
    lint: LintResult
    attempts: int
    threshold_met: bool
    messages: tuple[str, ...]


def _main_faces(analyzer: FaceAnalyzer, photos: Sequence[LoadedImage]) -> tuple[list[Face | None], list[str]]:
    faces: list[Face | None] = []
    notes: list[str] = []
    for number, photo in enumerate(photos, start=1):
        found = main_face_first(analyzer.analyze(photo.pixels, embeddings=True))
        if len(found) > 1:
            notes.append(f"Photo {number} shows {len(found)} faces; I used the largest.")
        faces.append(found[0] if found else None)
    return faces, notes


def build_reference(photos: Sequence[LoadedImage], conditioning: FaceAnalyzer,
                    likeness: FaceAnalyzer | None = None) -> Reference:
    """Measure the person on every photo; fails (ReferenceSetError) before any GPU time is spent."""
    if not photos:
        raise ReferenceSetError("Send at least one photo of yourself.")
    cond_faces, notes = _main_faces(conditioning, photos)
    cond = combine_references(cond_faces)
    if likeness is None or likeness is conditioning:
        like = cond
        notes.append("Likeness is measured with the same face model that conditions the generator, "
                     "which can flatter the scores.")
    else:
        like_faces, _ = _main_faces(likeness, photos)
        try:
            like = combine_references(like_faces)
        except ReferenceSetError as exc:
            # The scoring model may miss a face the conditioning model found; score with that one.
            like = cond
            notes.append(f"Likeness falls back to the generator's own face model ({exc.user_message})")
    best = next(i for i in cond.used)
    keypoints = np.asarray(cond_faces[best].landmarks5, dtype=np.float64)  # type: ignore[union-attr]
    messages = tuple(dict.fromkeys([*notes, *cond.messages, *like.messages]))
    crop = align_face(photos[best].pixels, keypoints, size=FACE_CROP_SIZE)
    return Reference(conditioning=cond, likeness=like, keypoints=keypoints, messages=messages, face_crop=crop)


OUT_OF_MEMORY = ("The GPU ran out of memory even for one image. Try a smaller size or the fast preset, "
                 "or ask the server owner to free the GPU.")


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Engine:
    def __init__(self, backend: Backend, likeness_analyzer: FaceAnalyzer, config: GenerationConfig) -> None:
        self.backend = backend
        self.analyzer = likeness_analyzer
        self.config = config

    def _sampling(self, guidance: float) -> tuple[int, float]:
        return PRESET_SAMPLING.get(self.config.preset, (self.config.steps, guidance))

    def request_for(
        self, job: PortraitJob, reference: Reference, lint: LintResult, base_seed: int
    ) -> GenerationRequest:
        steps, guidance = self._sampling(lint.guidance_scale)
        width, height = self.config.width, self.config.height
        return GenerationRequest(
            prompt=lint.prompt,
            negative_prompt=lint.negative_prompt,
            identity=reference.conditioning.raw_mean,
            keypoints=target_keypoints(reference.keypoints, lint.framing, width, height),
            seeds=tuple(base_seed + i for i in range(job.count)),
            width=width,
            height=height,
            steps=steps,
            guidance_scale=guidance,
            identity_scale=job.identity_strength if job.identity_strength is not None else lint.identity_scale,
            controlnet_scale=lint.controlnet_scale,
            face_crop=reference.face_crop,
        )

    def _generate(self, request: GenerationRequest, progress: ProgressCallback | None) -> list[np.ndarray]:
        """Run the backend; on device out-of-memory retry once one image at a time, then fail clearly."""
        def on_step(step: int, total: int) -> None:
            if progress is not None:
                progress("generating", step, total)

        def attempt(req: GenerationRequest) -> list[np.ndarray]:
            try:
                return self.backend.generate(req, on_step)
            except Exception as exc:
                if _is_out_of_memory(exc) and len(req.seeds) == 1:
                    raise GenerationError(OUT_OF_MEMORY) from exc
                raise

        try:
            return attempt(request)
        except Exception as exc:
            if not _is_out_of_memory(exc) or isinstance(exc, GenerationError):
                raise
            log.warning("out of memory with %d images; retrying one at a time", len(request.seeds))
        return [image for seed in request.seeds for image in attempt(dataclasses.replace(request, seeds=(seed,)))]

    def _refine(self, image: np.ndarray, request: GenerationRequest, seed: int,
                progress: ProgressCallback | None) -> tuple[np.ndarray, bool]:
        if self.config.refine_min_eye_distance <= 0:
            return image, False
        settings = RefineSettings(min_eye_distance=float(self.config.refine_min_eye_distance),
                                  work_size=min(1024, max(self.config.width, self.config.height)),
                                  strength=self.config.refine_strength)

        def redenoise(crop: np.ndarray, keypoints: np.ndarray, strength: float) -> np.ndarray:
            if progress is not None:
                progress("refining", 0, 1)
            base = dataclasses.replace(request, keypoints=keypoints, seeds=(seed,))
            return self.backend.redenoise(Img2ImgRequest(image=crop, base=base, strength=strength, seed=seed))

        faces = self.analyzer.analyze(image)
        refined, report = refine_all(image, faces, redenoise, settings)
        log.debug("refine seed %d: %s", seed, report.reason)
        return refined, report.refined

    def run(self, job: PortraitJob, reference: Reference, progress: ProgressCallback | None = None) -> JobOutcome:
        if not 1 <= job.count <= self.config.max_images:
            raise GenerationError(f"Ask for 1 to {self.config.max_images} images (got {job.count}).")
        lint = lint_prompt(job.prompt, style=job.style, framing=job.framing, nsfw_policy=self.config.nsfw_policy,
                           count_tokens=getattr(self.backend, "count_tokens", None))
        base_seed = job.seed if job.seed is not None else random.SystemRandom().randrange(2**31 - 1)
        refined_seeds: set[int] = set()

        def produce(attempt: int) -> list[np.ndarray]:
            request = self.request_for(job, reference, lint, base_seed + attempt * job.count)
            images = self._generate(request, progress)
            out = []
            for seed, image in zip(request.seeds, images, strict=True):
                image, was_refined = self._refine(image, request, seed, progress)
                if was_refined:
                    refined_seeds.add(seed)
                out.append(image)
            return out

        def score(images: Sequence[np.ndarray]) -> list:
            return score_images(images, self.analyzer, reference.likeness)

        selection = generate_until_alike(
            produce, score, wanted=job.count, threshold=self.config.likeness_threshold,
            max_attempts=1 + self.config.retry_attempts,
        )
        portraits = []
        for candidate in selection.chosen:
            seed = base_seed + candidate.attempt * job.count + candidate.scored.index
            portraits.append(Portrait(
                image=candidate.image, seed=seed, likeness=candidate.scored.likeness,
                face_found=candidate.scored.face_found, refined=seed in refined_seeds,
                message=candidate.scored.message,
            ))
        messages = list(reference.messages) + [w.message for w in lint.warnings]
        if not selection.threshold_met:
            messages.append(f"After {selection.attempts} attempt(s) not every image reached the likeness target "
                            f"({self.config.likeness_threshold:.2f}); these are the closest.")
        return JobOutcome(tuple(portraits), lint, selection.attempts, selection.threshold_met, tuple(messages))
