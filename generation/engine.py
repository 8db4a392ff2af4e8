"""The generation engine: reference photos + a prompt in, scored portraits out.

One job runs: prompt lint → framing keypoints → the diffusion backend → the face re-render pass
on faces that came out small → likeness of every image → best-of-N with bounded retries. The
backend and the face analyzers are passed in, loaded once by the caller, so the engine itself
is cheap to build and easy to test with any backend (real, tiny, or a test stand-in).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from generation.config import GenerationConfig
from generation.faces.align import arcface_crop
from generation.faces.types import Face, FaceAnalyzer
from generation.images import LoadedImage
from generation.jobs import PortraitJob
from generation.likeness import (
    Likeness,
    ReferenceIdentity,
    ReferenceSetError,
    combine_references,
    generate_until_alike,
    score_images,
)
from generation.pipelines.framing import target_keypoints
from generation.pipelines.refine import RefineSettings, face_at_keypoints, redenoise_steps, refine_all
from generation.pipelines.types import Backend, GenerationError, GenerationRequest, IdentityEmbedding, Img2ImgRequest
from generation.prompts import LintResult, lint_prompt, stricter_policy
from generation.quality.checks import Measured
from generation.quality.crop import reference_crop
from generation.quality.gate import main_face_first

log = logging.getLogger(__name__)

FACE_CROP_SIZE = 224  # what FaceID-Plus's CLIP image encoder reads
# (stage, done, total): stage is "generating" or "refining"; the bot turns it into a progress bar.
ProgressCallback = Callable[[str, int, int], None]
# Steps and guidance the fast presets were distilled for (SDXL-Lightning: 4 steps without CFG;
# LCM-LoRA: 4-8 steps, guidance 1-2).
PRESET_SAMPLING = {"lightning": (4, 1.0), "lcm": (6, 1.5)}


@dataclass(frozen=True, eq=False)
class Reference:
    """The person, measured once per reference set and reused by every job."""

    conditioning: ReferenceIdentity  # what the generator is fed: raw and unit-length, each backend takes its own
    likeness: ReferenceIdentity  # what outputs are scored against (preferably another face model)
    keypoints: np.ndarray  # 5 landmarks of the best photo: the pose the framing keeps
    messages: tuple[str, ...] = ()
    face_crop: np.ndarray | None = None  # the best photo's face aligned at 224 px (FaceID-Plus reads it)
    crops: tuple[np.ndarray, ...] = ()  # the gate's face-centred crops of the best photos (what editors see)


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


def reference_crops(photos: Sequence[LoadedImage], faces: Sequence[Face | None], used: Sequence[int],
                    count: int) -> tuple[np.ndarray, ...]:
    """The gate's face-centred crops of the ``count`` best photos among ``used``: the largest faces first (pixels
    between the eyes in the copy the crop is cut from, turned heads corrected), since a bigger face carries more
    of the person's identity to the editor."""
    measured = [Measured.build(photos[i], photos[i].pixels, [faces[i]]) for i in used if faces[i] is not None]
    measured.sort(key=lambda m: m.face.inter_eye_distance / m.yaw_factor, reverse=True)
    return tuple(reference_crop(m) for m in measured[:count])


def build_reference(photos: Sequence[LoadedImage], conditioning: FaceAnalyzer,
                    likeness: FaceAnalyzer | None = None, *, crops: int = 0) -> Reference:
    """Measure the person on every photo; fails (ReferenceSetError) before any GPU time is spent. ``crops``:
    how many face crops to cut for an editor backend (0 for the embedding backends)."""
    if not photos:
        raise ReferenceSetError("Send at least one photo of yourself.")
    cond_faces, notes = _main_faces(conditioning, photos)
    cond = combine_references(cond_faces)
    if likeness is None or likeness is conditioning:
        like = cond
        if not crops:  # an editor is not conditioned on this model's embedding: nothing to flatter
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
    crop = arcface_crop(photos[best].pixels, keypoints, size=FACE_CROP_SIZE)
    return Reference(conditioning=cond, likeness=like, keypoints=keypoints, messages=messages, face_crop=crop,
                     crops=reference_crops(photos, cond_faces, cond.used, crops) if crops else ())


def identity_of(reference: Reference) -> IdentityEmbedding:
    """Both forms of the conditioning embedding: InstantID takes the raw one, FaceID the unit-length one."""
    cond = reference.conditioning
    return IdentityEmbedding(raw=cond.raw_mean, normed=cond.embedding, model=cond.model)


class Engine:
    """Runs one job on a loaded backend. Out of device memory is not handled here: the backend raises
    OutOfMemory and the queue applies the one policy (retry once with one image, then fail clearly)."""

    def __init__(self, backend: Backend, likeness_analyzer: FaceAnalyzer, config: GenerationConfig) -> None:
        self.backend = backend
        self.analyzer = likeness_analyzer
        self.config = config

    def _sampling(self, guidance: float) -> tuple[int, float]:
        prescribed = getattr(self.backend, "sampling", None)  # an editor's model card, not the SDXL presets
        if prescribed is not None:
            return prescribed
        return PRESET_SAMPLING.get(self.config.preset, (self.config.steps, guidance))

    def _canvas(self, framing: str) -> tuple[int, int]:
        canvas = getattr(self.backend, "canvas", None)
        if canvas is None:
            return self.config.width, self.config.height
        return canvas(framing, self.config.width, self.config.height)

    def request_for(
        self, job: PortraitJob, reference: Reference, lint: LintResult, base_seed: int
    ) -> GenerationRequest:
        steps, guidance = self._sampling(lint.guidance_scale)
        width, height = self._canvas(lint.framing)
        return GenerationRequest(
            prompt=lint.prompt,
            negative_prompt=lint.negative_prompt,
            identity=identity_of(reference),
            keypoints=target_keypoints(reference.keypoints, lint.framing, width, height),
            seeds=tuple(base_seed + i for i in range(job.count)),
            width=width,
            height=height,
            steps=steps,
            guidance_scale=guidance,
            identity_scale=job.identity_strength if job.identity_strength is not None else lint.identity_scale,
            controlnet_scale=lint.controlnet_scale,
            face_crop=reference.face_crop,
            framing=lint.framing,
            references=reference.crops,
        )

    def _generate(self, request: GenerationRequest, progress: ProgressCallback | None) -> list[np.ndarray]:
        def on_step(step: int, total: int) -> None:
            if progress is not None:
                progress("generating", step, total)

        return self.backend.generate(request, on_step)

    def _faces_to_refine(self, image: np.ndarray, request: GenerationRequest) -> list[Face]:
        """Where the face is in a generated image. A backend that places the face on the request's
        keypoints (InstantID's IdentityNet) put it there, turned head or not; only the others are
        searched with the analyzer, whose frontal detector misses turned heads."""
        if self.backend.places_face:
            return [face_at_keypoints(request.keypoints)]
        return self.analyzer.analyze(image)

    def refine(self, image: np.ndarray, request: GenerationRequest, seed: int,
               progress: ProgressCallback | None = None) -> tuple[np.ndarray, bool]:
        """The small-face re-render pass on one generated image: (image, whether a face was re-rendered)."""
        if self.config.refine_min_eye_distance <= 0:
            return image, False
        settings = RefineSettings(min_eye_distance=float(self.config.refine_min_eye_distance),
                                  work_size=min(1024, max(self.config.width, self.config.height)),
                                  strength=self.config.refine_strength)
        # img2img runs the last `strength` share of the steps: keep at least one (4-step presets).
        steps = max(request.steps, math.ceil(1.0 / settings.strength))

        def on_step(step: int, total: int) -> None:  # progress, and the way a cancel reaches this pass
            if progress is not None:
                progress("refining", step, total)

        def redenoise(crop: np.ndarray, keypoints: np.ndarray, strength: float) -> np.ndarray:
            on_step(0, redenoise_steps(steps, strength))
            base = dataclasses.replace(request, keypoints=keypoints, seeds=(seed,), steps=steps)
            return self.backend.redenoise(Img2ImgRequest(image=crop, base=base, strength=strength, seed=seed),
                                          on_step)

        refined, report = refine_all(image, self._faces_to_refine(image, request), redenoise, settings)
        log.debug("refine seed %d: %s", seed, report.reason)
        return refined, report.refined

    def lint(self, job: PortraitJob) -> LintResult:
        """The job's prompt, styled and checked within the backend's token budget."""
        policy = stricter_policy(self.config.nsfw_policy, job.nsfw_policy)
        return lint_prompt(job.prompt, style=job.style, framing=job.framing, nsfw_policy=policy,
                           max_tokens=getattr(self.backend, "max_prompt_tokens", 77),
                           count_tokens=getattr(self.backend, "count_tokens", None))

    def run(self, job: PortraitJob, reference: Reference, progress: ProgressCallback | None = None) -> JobOutcome:
        if not 1 <= job.count <= self.config.max_images:
            raise GenerationError(f"Ask for 1 to {self.config.max_images} images (got {job.count}).")
        lint = self.lint(job)
        base_seed = job.seed if job.seed is not None else random.SystemRandom().randrange(2**31 - 1)
        refined_seeds: set[int] = set()

        def produce(attempt: int) -> list[np.ndarray]:
            request = self.request_for(job, reference, lint, base_seed + attempt * job.count)
            images = self._generate(request, progress)
            out = []
            for seed, image in zip(request.seeds, images, strict=True):
                image, was_refined = self.refine(image, request, seed, progress)
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
