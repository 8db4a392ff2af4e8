"""The engine end to end, with real photos standing in for generator outputs.

Random tiny models never draw a face, so the stages after the denoiser (likeness, re-render,
best-of-N, retries) are driven by a stand-in backend that returns real photos: the generator is
the edge of this component. One test also runs the real InstantID backend on tiny checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from generation.config import GenerationConfig
from generation.engine import Engine, Reference, build_reference
from generation.faces.dlib_backend import DlibAnalyzer
from generation.faces.types import Face, HeadPose
from generation.images import LoadedImage, load_image_file
from generation.jobs import PortraitJob
from generation.likeness import ReferenceSetError, combine_references
from generation.pipelines.framing import FRAMINGS
from generation.pipelines.types import GenerationError, GenerationRequest, Img2ImgRequest, OutOfMemory
from generation.prompts import PromptRejectedError
from generation.quality import degrade
from generation.styles import UnknownStyleError

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


def photo(name: str) -> LoadedImage:
    return load_image_file(FACES / name, max_side=1024)


class PhotoBackend:
    """Returns real photos, one per seed, cycling through ``outputs``; counts its calls."""

    name = "photos"

    def __init__(self, outputs: list[np.ndarray], oom_above: int | None = None, always_oom: bool = False,
                 places_face: bool = False) -> None:
        self.outputs = outputs
        self.calls: list[GenerationRequest] = []
        self.redenoised = 0
        self.redenoise_requests: list[Img2ImgRequest] = []
        self.places_face = places_face  # like InstantID: the face lands on the request's keypoints
        self.oom_above = oom_above
        self.always_oom = always_oom
        self._next = 0

    def generate(self, request: GenerationRequest, on_step=None) -> list[np.ndarray]:
        self.calls.append(request)
        if self.always_oom or (self.oom_above is not None and len(request.seeds) > self.oom_above):
            raise OutOfMemory("out of device memory while generating: CUDA out of memory")
        for step in range(1, request.steps + 1):
            if on_step:
                on_step(step, request.steps)
        images = []
        for _ in request.seeds:
            images.append(self.outputs[self._next % len(self.outputs)].copy())
            self._next += 1
        return images

    def redenoise(self, request: Img2ImgRequest, on_step=None) -> np.ndarray:
        self.redenoised += 1
        self.redenoise_requests.append(request)
        return cv2.detailEnhance(request.image)  # a real image operation standing in for img2img


def config(**changes: object) -> GenerationConfig:
    base = dict(width=512, height=512, steps=3, likeness_threshold=0.5, retry_attempts=1,
                refine_min_eye_distance=64)
    base.update(changes)
    return GenerationConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def obama_reference(analyzer: DlibAnalyzer) -> Reference:
    return build_reference([photo("obama.jpg")], analyzer, analyzer)


def test_reference_without_a_face_fails_before_generation(analyzer: DlibAnalyzer) -> None:
    backend = PhotoBackend([photo("obama2.jpg").pixels])
    with pytest.raises(ReferenceSetError) as error:
        build_reference([photo("camera.png")], analyzer, analyzer)
    assert "face" in error.value.user_message.lower()
    assert backend.calls == []


def test_reference_set_drops_someone_else(analyzer: DlibAnalyzer) -> None:
    photos = [photo("obama.jpg"), photo("obama2.jpg"), photo("obama_partial_face.jpg"), photo("biden.jpg")]
    reference = build_reference(photos, analyzer, analyzer)
    assert reference.likeness.dropped == (3,)
    assert any("photo 4" in m.lower() for m in reference.messages)


def test_best_image_first_with_scores_and_seeds(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("biden.jpg").pixels, photo("obama2.jpg").pixels])
    engine = Engine(backend, analyzer, config(retry_attempts=0))
    outcome = engine.run(PortraitJob(prompt="a portrait", count=2, seed=100), obama_reference)
    assert len(outcome.portraits) == 2
    first, second = outcome.portraits
    assert first.likeness is not None and second.likeness is not None
    assert first.likeness.score > second.likeness.score
    assert first.likeness.same_person and not second.likeness.same_person
    assert first.seed == 101 and second.seed == 100  # obama2 came out for the second seed
    assert not outcome.threshold_met and outcome.attempts == 1  # biden is not the reference's person
    request = backend.calls[0]
    assert request.seeds == (100, 101) and request.steps == 3


def test_retries_stop_at_the_bound_and_keep_the_closest(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("biden.jpg").pixels, photo("astronaut.png").pixels])
    engine = Engine(backend, analyzer, config(retry_attempts=2))
    outcome = engine.run(PortraitJob(count=1, seed=7), obama_reference)
    assert len(backend.calls) == 3 and outcome.attempts == 3
    assert [call.seeds for call in backend.calls] == [(7,), (8,), (9,)]  # new seeds every attempt
    assert not outcome.threshold_met
    assert len(outcome.portraits) == 1 and outcome.portraits[0].likeness is not None
    assert any("closest" in message for message in outcome.messages)


def test_no_face_in_output_is_reported(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("camera.png").pixels])
    outcome = Engine(backend, analyzer, config(retry_attempts=0)).run(PortraitJob(seed=1), obama_reference)
    portrait = outcome.portraits[0]
    assert not portrait.face_found and portrait.likeness is None
    assert "no face" in portrait.message.lower()


def test_small_output_face_is_rerendered(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    source = photo("obama2.jpg")
    face = analyzer.analyze(source.pixels)[0]
    small = degrade.shrink_face(source.pixels, face, 30)
    backend = PhotoBackend([small])
    outcome = Engine(backend, analyzer, config(retry_attempts=0)).run(PortraitJob(seed=3), obama_reference)
    assert backend.redenoised == 1 and outcome.portraits[0].refined
    large = PhotoBackend([source.pixels])
    outcome = Engine(large, analyzer, config(retry_attempts=0)).run(PortraitJob(seed=3), obama_reference)
    assert large.redenoised == 0 and not outcome.portraits[0].refined


def test_known_keypoints_rerender_a_turned_head_the_detector_misses(analyzer: DlibAnalyzer,
                                                                     obama_reference: Reference) -> None:
    """camera.png: a man in profile, which dlib's frontal detector does not find. A generator that
    placed the face on the keypoints is re-rendered there all the same; one that did not is not."""
    profile = photo("camera.png").pixels
    assert analyzer.analyze(profile) == []
    placing = PhotoBackend([profile], places_face=True)
    engine = Engine(placing, analyzer, config(retry_attempts=0))
    outcome = engine.run(PortraitJob(framing="full-body", seed=2), obama_reference)
    assert placing.redenoised == 1 and outcome.portraits[0].refined
    keypoints = placing.calls[0].keypoints
    changed = np.argwhere(np.any(outcome.portraits[0].image != profile, axis=2))
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
    cx, cy = keypoints.mean(axis=0)
    assert x0 <= cx <= x1 and y0 <= cy <= y1  # the re-rendered square sits on the keypoints
    # The generator sees the same face in the crop, scaled up: its keypoints are the target ones moved
    # and enlarged (no rotation), with the eyes now far enough apart to hold the identity.
    sent = placing.redenoise_requests[0].base.keypoints
    ratio = (sent - sent.mean(axis=0)) / (keypoints - keypoints.mean(axis=0))
    assert np.allclose(ratio, ratio[0, 0], rtol=1e-6) and ratio[0, 0] > 3
    assert np.linalg.norm(sent[1] - sent[0]) >= 64 > np.linalg.norm(keypoints[1] - keypoints[0])

    searching = PhotoBackend([profile], places_face=False)
    outcome = Engine(searching, analyzer, config(retry_attempts=0)).run(PortraitJob(framing="full-body", seed=2),
                                                                        obama_reference)
    assert searching.redenoised == 0 and not outcome.portraits[0].refined


def test_rerender_pass_reports_progress_and_stops_on_cancel(analyzer: DlibAnalyzer, arcface_reference: Reference,
                                                           instantid_backend) -> None:
    from generation.pipelines.types import GenerationCancelled

    unet_calls: list[int] = []
    handle = instantid_backend.pipe.unet.register_forward_pre_hook(lambda *_: unet_calls.append(1))
    seen: list[tuple[str, int, int]] = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append((stage, done, total))
        if stage == "refining" and done >= 1:
            raise GenerationCancelled

    engine = Engine(instantid_backend, analyzer, config(width=64, height=64, steps=10, retry_attempts=0,
                                                        refine_min_eye_distance=1024, refine_strength=0.5))
    try:
        with pytest.raises(GenerationCancelled):
            engine.run(PortraitJob(seed=1), arcface_reference, progress)
    finally:
        handle.remove()
    assert ("generating", 10, 10) in seen
    assert seen[-2:] == [("refining", 0, 5), ("refining", 1, 5)]
    assert len(unet_calls) == 10 + 1  # the pass stopped after its first of five steps


def test_a_stricter_server_policy_on_the_job_applies(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("obama2.jpg").pixels])
    engine = Engine(backend, analyzer, config(nsfw_policy="allow", retry_attempts=0))
    with pytest.raises(PromptRejectedError):
        engine.run(PortraitJob(prompt="nude portrait", nsfw_policy="block"), obama_reference)
    engine.run(PortraitJob(prompt="nude portrait", nsfw_policy="warn", seed=1), obama_reference)
    assert "nude" not in backend.calls[-1].prompt.lower()  # "warn" strips the words
    strict_host = Engine(backend, analyzer, config(nsfw_policy="block", retry_attempts=0))
    with pytest.raises(PromptRejectedError):  # a job can make the policy stricter, never looser
        strict_host.run(PortraitJob(prompt="nude portrait", nsfw_policy="allow"), obama_reference)


def test_out_of_memory_is_left_to_the_queue(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    """The engine does not retry: the queue owns the one policy (tests/generation/test_out_of_memory.py)."""
    hopeless = PhotoBackend([photo("obama2.jpg").pixels], always_oom=True)
    with pytest.raises(OutOfMemory):
        Engine(hopeless, analyzer, config()).run(PortraitJob(count=2, seed=5), obama_reference)
    assert [call.seeds for call in hopeless.calls] == [(5, 6)]


def test_bad_jobs_fail_before_generation(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("obama2.jpg").pixels])
    engine = Engine(backend, analyzer, config(max_images=4))
    with pytest.raises(UnknownStyleError, match="studio-headshot"):
        engine.run(PortraitJob(style="vaporwave-deluxe"), obama_reference)
    with pytest.raises(GenerationError, match="1 to 4"):
        engine.run(PortraitJob(count=9), obama_reference)
    with pytest.raises(PromptRejectedError):
        engine.run(PortraitJob(prompt="nude portrait"), obama_reference)
    with pytest.raises(ValueError, match="close-up"):
        engine.run(PortraitJob(framing="extreme-long-shot"), obama_reference)
    assert backend.calls == []


def test_identity_strength_and_style_reach_the_backend(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("obama2.jpg").pixels])
    engine = Engine(backend, analyzer, config(retry_attempts=0))
    engine.run(PortraitJob(style="anime", identity_strength=0.33, seed=1), obama_reference)
    engine.run(PortraitJob(style="anime", seed=1), obama_reference)
    strong, default = backend.calls
    assert strong.identity_scale == pytest.approx(0.33)
    assert default.identity_scale > 0.8  # stylised looks carry a higher identity weight
    assert "anime" in default.prompt.lower()


def test_fast_preset_sets_its_own_sampling(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("obama2.jpg").pixels])
    Engine(backend, analyzer, config(preset="lightning", retry_attempts=0)).run(PortraitJob(seed=1), obama_reference)
    assert backend.calls[0].steps == 4 and backend.calls[0].guidance_scale == 1.0


def test_framing_places_the_keypoints(analyzer: DlibAnalyzer, obama_reference: Reference) -> None:
    backend = PhotoBackend([photo("obama2.jpg").pixels])
    engine = Engine(backend, analyzer, config(retry_attempts=0))
    for framing, preset in FRAMINGS.items():
        engine.run(PortraitJob(framing=framing, seed=1), obama_reference)
        kps = backend.calls[-1].keypoints
        assert np.linalg.norm(kps[1] - kps[0]) == pytest.approx(preset.eye_distance * 512, rel=0.02)


@pytest.fixture(scope="module")
def arcface_reference(obama_reference: Reference) -> Reference:
    """The conditioning identity as antelopev2 gives it (512-d); likeness stays on dlib."""
    vector = np.random.default_rng(1).normal(size=512).astype(np.float32) * 20
    face = Face(box=(0, 0, 10, 10), score=1.0, landmarks5=obama_reference.keypoints, pose=HeadPose(0, 0, 0),
                embedding=vector, embedding_model="arcface-antelopev2")
    return Reference(conditioning=combine_references([face]), likeness=obama_reference.likeness,
                     keypoints=obama_reference.keypoints)


def test_tiny_instantid_backend_through_the_engine(analyzer: DlibAnalyzer, arcface_reference: Reference,
                                                    instantid_backend) -> None:
    reference = arcface_reference
    progress: list[tuple[str, int, int]] = []
    engine = Engine(instantid_backend, analyzer, config(width=64, height=64, steps=3, retry_attempts=1))
    outcome = engine.run(PortraitJob(prompt="portrait", count=2, seed=11), reference,
                         lambda stage, done, total: progress.append((stage, done, total)))
    assert [p.image.shape for p in outcome.portraits] == [(64, 64, 3)] * 2
    assert all(not p.face_found for p in outcome.portraits)  # random weights draw no face
    assert outcome.attempts == 2  # no likeness, so the one allowed retry ran
    assert ("generating", 3, 3) in progress



def test_long_prompt_is_cut_with_the_real_tokenizer_and_said(analyzer: DlibAnalyzer, arcface_reference: Reference,
                                                             instantid_backend) -> None:
    # The tiny tokenizer is byte-level: every character is a token, so 77 fill up fast.
    engine = Engine(instantid_backend, analyzer, config(width=64, height=64, steps=2, retry_attempts=0))
    long_prompt = "portrait of me " + " ".join(f"word{i}" for i in range(40))
    outcome = engine.run(PortraitJob(prompt=long_prompt, seed=1), arcface_reference)
    assert outcome.lint.truncated
    # Only the person's words are cut, never the style template (which alone nearly fills the tiny
    # byte-level tokenizer's 77): the cut went as far as it could.
    assert outcome.lint.user_prompt == "portrait"
    assert instantid_backend.count_tokens(outcome.lint.prompt) < instantid_backend.count_tokens(long_prompt)
    assert any("cut" in change.lower() or "trunc" in change.lower() for change in outcome.lint.changes)
    assert any(w.code == "too_long" for w in outcome.lint.warnings)
