"""The engine with the editor backend: what reaches the editor from real photos, and bad input.

The reference an editor sees must be the gate's face-centred crop of the best photos (largest face first,
at most three), never the raw photo; the framing must become the canvas shape; a prompt asking for several
people is rewritten; and outputs without a face are reported, not crashed on. The real tiny FLUX.2 [klein]
runs in the last tests; earlier ones drive the engine with real photos as outputs (random weights draw no
faces), the generator being the edge of this component.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generation.config import GenerationConfig
from generation.engine import Engine, build_reference
from generation.faces.dlib_backend import DlibAnalyzer
from generation.images import LoadedImage, load_image_file
from generation.jobs import PortraitJob
from generation.likeness import ReferenceSetError
from generation.pipelines.edit import EditBackend, editor_canvas
from generation.pipelines.types import GenerationRequest
from generation.quality.crop import EYE_LINE_FROM_TOP

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


def photo(name: str, max_side: int = 1024) -> LoadedImage:
    return load_image_file(FACES / name, max_side=max_side)


class EditorStandIn:
    """Takes references like the editor and returns the given real photos; records every request."""

    name = "edit"
    places_face = False
    max_prompt_tokens = 400

    def __init__(self, outputs: list[np.ndarray]) -> None:
        self.outputs = outputs
        self.calls: list[GenerationRequest] = []
        self.sampling = (4, 1.0)

    def canvas(self, framing: str, width: int, height: int) -> tuple[int, int]:
        return editor_canvas(framing, width, height)

    def generate(self, request: GenerationRequest, on_step=None) -> list[np.ndarray]:
        self.calls.append(request)
        return [self.outputs[i % len(self.outputs)].copy() for i, _ in enumerate(request.seeds)]

    def redenoise(self, request, on_step=None) -> np.ndarray:
        return request.image


def test_reference_crops_are_face_centred_largest_first_and_at_most_three(analyzer: DlibAnalyzer) -> None:
    # One photo at three resolutions and a smaller one: three crops, the most detailed face first.
    photos = [photo("obama.jpg", 400), photo("obama.jpg", 1024), photo("obama.jpg", 600), photo("obama2.jpg", 300)]
    reference = build_reference(photos, analyzer, analyzer, crops=3)
    assert len(reference.crops) == 3
    assert not any("flatter" in m for m in reference.messages)  # an editor is not conditioned on the embedding
    for crop in reference.crops:
        assert crop.shape[0] == crop.shape[1] >= 256 and crop.dtype == np.uint8
        (face,) = analyzer.analyze(crop)
        side = crop.shape[0]
        # The gate's template, measured independently on the crop: the side 5.5 inter-eye distances (more when
        # the chin needs it), the eye line 44 % from the top, the face centred across.
        assert 5.0 <= side / face.inter_eye_distance <= 7.5
        assert face.eye_mid[1] / side == pytest.approx(EYE_LINE_FROM_TOP, abs=0.05)
        assert face.eye_mid[0] / side == pytest.approx(0.5, abs=0.05)
    # The crop holds what the copy it is cut from holds (never enlarged past 1.5×): the 1024-px copy's crop is the
    # largest and comes first, then 600, then 400 (obama2 at 300 px is left out).
    sides = [c.shape[0] for c in reference.crops]
    assert sides == sorted(sides, reverse=True) and sides[0] > 1.5 * sides[1] > sides[2]


def test_the_raw_photo_never_reaches_the_editor(analyzer: DlibAnalyzer) -> None:
    selfie = photo("biden.jpg")
    reference = build_reference([selfie], analyzer, analyzer, crops=3)
    backend = EditorStandIn([selfie.pixels])
    Engine(backend, analyzer, GenerationConfig(width=512, height=512, retry_attempts=0)).run(
        PortraitJob(prompt="in a garden", framing="half-body", count=1, seed=1), reference)
    (request,) = backend.calls
    assert len(request.references) == 1 and request.references[0] is reference.crops[0]
    assert request.references[0].shape != selfie.pixels.shape
    assert (request.width, request.height) == editor_canvas("half-body", 512, 512)  # 3:4, not the square config
    assert (request.steps, request.guidance_scale) == (4, 1.0)  # the model card's, not generation.steps
    assert request.framing == "half-body"


def test_several_people_in_the_prompt_are_taken_out(analyzer: DlibAnalyzer) -> None:
    selfie = photo("obama.jpg")
    reference = build_reference([selfie], analyzer, analyzer, crops=1)
    backend = EditorStandIn([selfie.pixels])
    outcome = Engine(backend, analyzer, GenerationConfig(width=512, height=512, retry_attempts=0)).run(
        PortraitJob(prompt="with three friends at a party", count=1, seed=1), reference)
    assert "friends" not in backend.calls[0].prompt
    assert any("only one face" in m and "with three friends" in m for m in outcome.messages)
    assert [w.code for w in outcome.lint.warnings] == ["several_people"]


def test_an_output_without_a_face_is_reported_and_retried(analyzer: DlibAnalyzer) -> None:
    selfie = photo("obama.jpg")
    reference = build_reference([selfie], analyzer, analyzer, crops=1)
    blank = np.full((512, 512, 3), 90, np.uint8)
    backend = EditorStandIn([blank])
    outcome = Engine(backend, analyzer, GenerationConfig(width=512, height=512, retry_attempts=1)).run(
        PortraitJob(prompt="portrait", count=1, seed=1), reference)
    assert len(backend.calls) == 2  # retried once with new seeds
    (portrait,) = outcome.portraits
    assert portrait.likeness is None and not portrait.face_found and "no face" in portrait.message
    assert not outcome.threshold_met


def test_a_reference_without_a_face_fails_before_the_editor_runs(analyzer: DlibAnalyzer) -> None:
    with pytest.raises(ReferenceSetError, match="couldn't find a usable face"):
        build_reference([photo("camera.png")], analyzer, analyzer, crops=3)


def test_the_tiny_editor_runs_a_whole_job(edit_backend: EditBackend, analyzer: DlibAnalyzer) -> None:
    # Small photos, so the crops are the smallest the editor gets (256 px): the tiny model's attention over a
    # megapixel reference would take minutes on a CPU.
    reference = build_reference([photo("obama.jpg", 240), photo("obama2.jpg", 240)], analyzer, analyzer, crops=3)
    assert {crop.shape for crop in reference.crops} == {(256, 256, 3)}
    engine = Engine(edit_backend, analyzer, GenerationConfig(width=64, height=64, retry_attempts=0, device="cpu"))
    outcome = engine.run(PortraitJob(prompt="a portrait by a window", framing="full-body", count=2, seed=3),
                         reference)
    width, height = editor_canvas("full-body", 64, 64)
    assert [p.image.shape for p in outcome.portraits] == [(height, width, 3)] * 2
    assert all(not p.face_found for p in outcome.portraits)  # random weights draw no face: said, not crashed
