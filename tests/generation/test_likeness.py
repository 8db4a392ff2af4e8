"""Likeness scoring, reference combining and best-of-N, on real photos with the real dlib models.

Nothing is mocked. The only stand-in is the generator in the retry tests: a scripted ``produce``
that hands back fixture photos, because that is exactly the edge the loop sees.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from generation.faces.dlib_backend import EMBEDDING_MODEL, DlibAnalyzer
from generation.faces.types import Face
from generation.images import load_image_file
from generation.likeness import (
    CALIBRATIONS,
    Likeness,
    ReferenceIdentity,
    ReferenceSetError,
    ScoredImage,
    calibration_for,
    combine_references,
    compare,
    generate_until_alike,
    rank,
    score_images,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
NAMES = ("obama.jpg", "obama2.jpg", "obama_partial_face.jpg", "biden.jpg", "astronaut.png", "camera.png")
ARCFACE = "arcface-buffalo_l"


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: load_image_file(FIXTURES / name, max_side=1024).pixels for name in NAMES}


@pytest.fixture(scope="module")
def faces(analyzer: DlibAnalyzer, photos: dict[str, np.ndarray]) -> dict[str, Face | None]:
    """The largest face of each photo with its embedding; None where there is none (camera.png)."""
    found = {name: analyzer.analyze(pixels, embeddings=True) for name, pixels in photos.items()}
    return {name: (found[name][0] if found[name] else None) for name in NAMES}


@pytest.fixture(scope="module")
def reference(faces: dict[str, Face | None]) -> ReferenceIdentity:
    return combine_references([faces["obama.jpg"], faces["obama2.jpg"]])


def _embedding(face: Face | None) -> np.ndarray:
    assert face is not None and face.embedding is not None
    return face.embedding


# --------------------------------------------------------------------------- compare(): the maths


def test_identical_vectors_score_one() -> None:
    vector = np.random.default_rng(0).normal(size=512)
    likeness = compare(vector, vector * 3.0, ARCFACE)  # cosine ignores scale
    assert likeness.cosine == pytest.approx(1.0)
    assert likeness.distance == pytest.approx(0.0, abs=1e-6)
    assert likeness.score == pytest.approx(1.0)
    assert likeness.same_person and likeness.model == ARCFACE


def test_orthogonal_vectors_are_strangers() -> None:
    a, b = np.zeros(512), np.zeros(512)
    a[0], b[1] = 1.0, 1.0
    likeness = compare(a, b, "arcface-antelopev2")
    assert likeness.cosine == pytest.approx(0.0, abs=1e-9)
    assert likeness.distance == pytest.approx(np.sqrt(2.0))
    assert likeness.score == pytest.approx(0.0)
    assert not likeness.same_person


def test_dlib_distance_is_raw_l2_with_its_0_6_threshold() -> None:
    a = np.zeros(128)
    a[0] = 1.4  # dlib vectors have norms near 1.4
    near, far = a.copy(), a.copy()
    near[1], far[1] = 0.59, 0.61
    assert compare(a, near, EMBEDDING_MODEL).distance == pytest.approx(0.59)
    assert compare(a, near, EMBEDDING_MODEL).same_person
    assert not compare(a, far, EMBEDDING_MODEL).same_person


@pytest.mark.parametrize("row", CALIBRATIONS, ids=lambda row: row.family)
def test_every_model_puts_its_threshold_at_score_one_half(row) -> None:
    assert row.score(row.same_person) == pytest.approx(0.5)
    assert row.source


def test_arcface_real_photo_median_maps_to_three_quarters() -> None:
    assert calibration_for("arcface-antelopev2").score(0.46) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("reference", "candidate", "model", "words"),
    [
        (np.ones(512), np.ones(128), ARCFACE, "shapes differ"),
        (np.ones(128), np.ones(128), ARCFACE, "512"),
        (np.ones((2, 64)), np.ones((2, 64)), EMBEDDING_MODEL, "1-d"),
        (np.zeros(128), np.ones(128), EMBEDDING_MODEL, "zeros"),
        (np.full(128, np.nan), np.ones(128), EMBEDDING_MODEL, "NaN"),
        (np.ones(128), np.ones(128), "facenet-512", "no likeness calibration"),
    ],
)
def test_compare_refuses_what_it_cannot_measure(reference, candidate, model, words) -> None:
    with pytest.raises(ValueError, match=words):
        compare(reference, candidate, model)


# --------------------------------------------------------------------------- compare(): real photos


def test_same_man_scores_higher_than_other_people(faces: dict[str, Face | None]) -> None:
    obama = _embedding(faces["obama.jpg"])

    def to(name: str) -> Likeness:
        return compare(obama, _embedding(faces[name]), EMBEDDING_MODEL)

    same, biden, astronaut = to("obama2.jpg"), to("biden.jpg"), to("astronaut.png")
    assert same.score > biden.score and same.score > astronaut.score
    assert same.same_person and not biden.same_person and not astronaut.same_person
    assert same.score > 0.5 > max(biden.score, astronaut.score)
    assert to("obama_partial_face.jpg").same_person


# --------------------------------------------------------------------------- combine_references()


def test_three_photos_of_one_man_are_all_kept(faces: dict[str, Face | None]) -> None:
    identity = combine_references([faces["obama.jpg"], faces["obama2.jpg"], faces["obama_partial_face.jpg"]])
    assert identity.used == (0, 1, 2)
    assert identity.dropped == () and identity.skipped == () and identity.messages == ()
    assert identity.model == EMBEDDING_MODEL
    assert np.linalg.norm(identity.embedding) == pytest.approx(1.0)
    raw = [_embedding(faces[n]) for n in ("obama.jpg", "obama2.jpg", "obama_partial_face.jpg")]
    assert np.linalg.norm(identity.raw_mean) == pytest.approx(np.mean([np.linalg.norm(v) for v in raw]), rel=1e-5)
    assert identity.likeness(raw[0], EMBEDDING_MODEL).same_person


def test_someone_else_among_them_is_dropped_and_named(faces: dict[str, Face | None]) -> None:
    order = ["obama.jpg", "biden.jpg", "obama2.jpg", "obama_partial_face.jpg"]
    identity = combine_references([faces[name] for name in order])
    assert identity.used == (0, 2, 3)
    assert identity.dropped == (1,)
    assert identity.messages == ("Photo 2 doesn't look like the same person as the others, so I left it out.",)
    assert not identity.likeness(_embedding(faces["biden.jpg"]), EMBEDDING_MODEL).same_person


def test_two_different_people_are_refused(faces: dict[str, Face | None]) -> None:
    with pytest.raises(ReferenceSetError, match="different people") as caught:
        combine_references([faces["obama.jpg"], faces["biden.jpg"]])
    assert "one person" in caught.value.user_message


def test_three_different_people_are_refused(faces: dict[str, Face | None]) -> None:
    with pytest.raises(ReferenceSetError, match="different people"):
        combine_references([faces["obama.jpg"], faces["biden.jpg"], faces["astronaut.png"]])


def test_a_photo_without_a_face_is_skipped_with_a_message(faces: dict[str, Face | None]) -> None:
    assert faces["camera.png"] is None  # the design: callers pass None for "no face in this photo"
    identity = combine_references([faces["obama.jpg"], faces["camera.png"], faces["obama2.jpg"]])
    assert identity.used == (0, 2) and identity.skipped == (1,) and identity.dropped == ()
    assert identity.messages == ("I couldn't find a face in photo 2, so I left it out.",)


def test_messages_follow_photo_order(faces: dict[str, Face | None]) -> None:
    order = ["obama.jpg", "biden.jpg", "obama2.jpg", "camera.png", "obama_partial_face.jpg"]
    identity = combine_references([faces[name] for name in order])
    assert identity.dropped == (1,) and identity.skipped == (3,)
    assert [m.split(" ")[0:2] for m in identity.messages] == [["Photo", "2"], ["I", "couldn't"]]
    assert "photo 4" in identity.messages[1]


def test_no_usable_face_at_all_is_refused(faces: dict[str, Face | None]) -> None:
    no_embedding = dataclasses.replace(faces["obama.jpg"], embedding=None, embedding_model=None)
    with pytest.raises(ReferenceSetError, match="usable face"):
        combine_references([faces["camera.png"], no_embedding])
    with pytest.raises(ReferenceSetError):
        combine_references([])


def test_embeddings_from_different_models_are_refused(faces: dict[str, Face | None]) -> None:
    arcface = dataclasses.replace(faces["obama2.jpg"], embedding=np.ones(512, np.float32), embedding_model=ARCFACE)
    with pytest.raises(ReferenceSetError, match="different models"):
        combine_references([faces["obama.jpg"], arcface])


def test_one_photo_is_its_own_identity(faces: dict[str, Face | None]) -> None:
    raw = _embedding(faces["obama2.jpg"])
    identity = combine_references([faces["obama2.jpg"]])
    assert identity.used == (0,)
    np.testing.assert_allclose(identity.raw_mean, raw, rtol=1e-6)
    np.testing.assert_allclose(identity.embedding, raw / np.linalg.norm(raw), rtol=1e-6)
    assert identity.likeness(raw, EMBEDDING_MODEL).score == pytest.approx(1.0)


def test_max_distance_tightens_the_outlier_rule(faces: dict[str, Face | None]) -> None:
    # obama-obama2 0.38, obama-partial 0.21 here: at 0.3 only obama2 falls outside the medoid's reach.
    identity = combine_references(
        [faces["obama.jpg"], faces["obama2.jpg"], faces["obama_partial_face.jpg"]], max_distance=0.3
    )
    assert identity.used == (0, 2) and identity.dropped == (1,)


def test_reference_refuses_another_models_embedding(reference: ReferenceIdentity) -> None:
    with pytest.raises(ValueError, match="cannot compare"):
        reference.likeness(np.ones(512), ARCFACE)


# --------------------------------------------------------------------------- score_images() and rank()


def test_score_images_measures_each_output(
    analyzer: DlibAnalyzer, photos: dict[str, np.ndarray], reference: ReferenceIdentity
) -> None:
    names = ["biden.jpg", "camera.png", "obama_partial_face.jpg", "astronaut.png"]
    scored = score_images([photos[n] for n in names], analyzer, reference)
    assert [s.index for s in scored] == [0, 1, 2, 3]
    camera = scored[1]
    assert not camera.face_found and camera.likeness is None and camera.score is None
    assert "no face" in camera.message and "Image 2" in camera.message
    assert scored[2].likeness is not None and scored[2].likeness.same_person
    assert scored[0].likeness is not None and not scored[0].likeness.same_person

    ranked = rank(scored)
    assert ranked[0].index == 2  # the same man first
    assert ranked[-1].index == 1  # no face last
    ordered = [s.score for s in ranked[:-1]]
    assert ordered == sorted(ordered, reverse=True)  # type: ignore[type-var]


def test_rank_is_stable_and_puts_faceless_last() -> None:
    def scored(index: int, score: float | None) -> ScoredImage:
        likeness = None if score is None else Likeness(score, 0.0, 0.0, score >= 0.5, ARCFACE)
        return ScoredImage(index, likeness, score is not None, "")

    ranked = rank([scored(0, None), scored(1, 0.4), scored(2, 0.9), scored(3, 0.4)])
    assert [s.index for s in ranked] == [2, 1, 3, 0]
    assert rank([]) == []


# --------------------------------------------------------------------------- generate_until_alike()


class ScriptedGenerator:
    """Hands back fixture photos per attempt and counts the calls: the generator's side of the edge."""

    def __init__(self, photos: dict[str, np.ndarray], script: Sequence[Sequence[str]]) -> None:
        self.photos, self.script, self.calls = photos, script, []

    def __call__(self, attempt: int) -> list[np.ndarray]:
        self.calls.append(attempt)
        names = self.script[min(attempt, len(self.script) - 1)]
        return [self.photos[name] for name in names]


@pytest.fixture(scope="module")
def scorer(analyzer: DlibAnalyzer, reference: ReferenceIdentity):
    return lambda images: score_images(images, analyzer, reference)


def test_stops_as_soon_as_a_good_image_comes(photos: dict[str, np.ndarray], scorer) -> None:
    produce = ScriptedGenerator(photos, [["biden.jpg", "camera.png"], ["astronaut.png", "obama_partial_face.jpg"]])
    result = generate_until_alike(produce, scorer, wanted=1, threshold=0.6, max_attempts=5)
    assert produce.calls == [0, 1]
    assert result.attempts == 2 and result.threshold_met
    best = result.chosen[0]
    assert best.attempt == 1 and best.scored.index == 1
    assert best.image is photos["obama_partial_face.jpg"]
    assert [len(batch) for batch in result.scores] == [2, 2]


def test_gives_up_after_max_attempts_but_keeps_the_best(photos: dict[str, np.ndarray], scorer) -> None:
    produce = ScriptedGenerator(photos, [["camera.png", "biden.jpg"]])
    result = generate_until_alike(produce, scorer, wanted=2, threshold=0.6, max_attempts=3)
    assert produce.calls == [0, 1, 2]
    assert result.attempts == 3 and not result.threshold_met
    assert len(result.chosen) == 2 and len(result.images) == 2
    assert result.chosen[0].image is photos["biden.jpg"]  # a face, however unlike, before no face
    assert result.chosen[0].attempt == 0  # ties keep the earliest attempt


def test_returns_the_best_across_attempts(photos: dict[str, np.ndarray], scorer) -> None:
    script = [["astronaut.png"], ["camera.png", "obama_partial_face.jpg"], ["biden.jpg"]]
    produce = ScriptedGenerator(photos, script)
    result = generate_until_alike(produce, scorer, wanted=2, threshold=0.99, max_attempts=3)
    assert produce.calls == [0, 1, 2] and not result.threshold_met
    assert (result.chosen[0].attempt, result.chosen[0].scored.index) == (1, 1)
    every = [s.score for batch in result.scores for s in batch if s.score is not None]
    assert [c.scored.score for c in result.chosen] == sorted(every, reverse=True)[:2]


def test_wanted_counts_across_attempts(photos: dict[str, np.ndarray], scorer) -> None:
    script = [["obama_partial_face.jpg", "biden.jpg"], ["camera.png"], ["obama2.jpg"], ["obama.jpg"]]
    produce = ScriptedGenerator(photos, script)
    result = generate_until_alike(produce, scorer, wanted=2, threshold=0.6, max_attempts=4)
    assert produce.calls == [0, 1, 2] and result.threshold_met
    assert sorted(c.attempt for c in result.chosen) == [0, 2]


def test_max_attempts_one_calls_once(photos: dict[str, np.ndarray], scorer) -> None:
    produce = ScriptedGenerator(photos, [["camera.png"]])
    result = generate_until_alike(produce, scorer, wanted=1, threshold=0.5, max_attempts=1)
    assert produce.calls == [0] and not result.threshold_met
    assert not result.chosen[0].scored.face_found  # even a faceless image is handed back, flagged


@pytest.mark.parametrize(
    ("wanted", "threshold", "max_attempts", "words"),
    [(0, 0.5, 3, "wanted"), (1, 0.5, 0, "max_attempts"), (1, 1.5, 3, "threshold")],
)
def test_bad_arguments_fail_before_any_generation(wanted, threshold, max_attempts, words) -> None:
    calls: list[int] = []

    def produce(attempt: int) -> list[np.ndarray]:
        calls.append(attempt)
        return []

    with pytest.raises(ValueError, match=words):
        generate_until_alike(produce, lambda images: [], wanted=wanted, threshold=threshold, max_attempts=max_attempts)
    assert calls == []


def test_a_scorer_that_loses_images_is_refused(photos: dict[str, np.ndarray]) -> None:
    produce = ScriptedGenerator(photos, [["obama.jpg", "biden.jpg"]])
    with pytest.raises(ValueError, match="each of the 2 images"):
        generate_until_alike(produce, lambda images: [], wanted=1, threshold=0.5, max_attempts=2)


def test_module_stays_light() -> None:
    code = "import sys, generation.likeness; print(sorted({'torch', 'discord'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
