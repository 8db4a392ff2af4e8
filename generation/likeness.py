"""How much a face looks like the user: comparing embeddings, combining reference photos, choosing outputs.

Raw cosine is not comparable between face models: dlib's 128-d vectors of two *different* people
score ≈ 0.82 cosine (measured on the test photos), ArcFace's ≈ 0. So every model family gets a
calibrated ``score`` in 0..1 with the same meaning everywhere: 0.5 at the model's own same-person
threshold, 0.75 at a typical pair of real photos of one person, 1.0 for the identical face.

Pure numpy: the bot process imports this too, so no torch and no discord here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from generation.faces.types import Face, FaceAnalyzer


@dataclass(frozen=True)
class Calibration:
    """One model family's same-person rule and its piecewise-linear mapping onto ``Likeness.score``.

    ``measure`` is what the published threshold is stated in: ``"l2"`` on the raw vectors (dlib)
    or ``"cosine"`` (ArcFace, whose vectors are only meaningful normalised). ``anchors`` are
    (measure value, score) pairs, increasing in the measure.
    """

    family: str  # exact model name, or a prefix ending in "-" ("arcface-" covers every insightface pack)
    measure: Literal["l2", "cosine"]
    same_person: float  # l2: distance <= this; cosine: cosine >= this
    anchors: tuple[tuple[float, float], ...]
    dims: int
    source: str

    def matches(self, model: str) -> bool:
        return model == self.family or (self.family.endswith("-") and model.startswith(self.family))

    def score(self, value: float) -> float:
        xs, ys = zip(*self.anchors, strict=True)
        return float(np.clip(np.interp(value, xs, ys), 0.0, 1.0))

    def distance_limit(self) -> float:
        """The same-person threshold as a distance on this model's natural scale (what Likeness.distance uses)."""
        if self.measure == "l2":
            return self.same_person
        return float(np.sqrt(2.0 - 2.0 * self.same_person))  # L2 between unit vectors


# The one table of thresholds. Both rows put the threshold at score 0.5 and a typical genuine pair at 0.75.
CALIBRATIONS: tuple[Calibration, ...] = (
    Calibration(
        family="dlib-resnet-128",
        measure="l2",
        same_person=0.6,
        # 0.4: real photos of one man measure 0.21-0.39 here (docs: 0.34-0.44); different people 0.76-0.87.
        anchors=((0.0, 1.0), (0.4, 0.75), (0.6, 0.5), (0.9, 0.0)),
        dims=128,
        source="dlib face_recognition_resnet_model_v1: L2 < 0.6 on raw vectors (dlib docs; face_recognition "
        "tolerance 0.6); typical genuine pair from docs/identity-generation.md and the test photos",
    ),
    Calibration(
        family="arcface-",
        measure="cosine",
        # 0.32 = DeepFace's LFW-tuned ArcFace cosine-distance threshold 0.68; just above the 0.28 "same
        # person" line quoted for buffalo_l / antelopev2, i.e. on the strict side, because wrongly
        # calling an output "you" ships a stranger while a wrong "not you" only costs a retry. Still
        # well below the 0.46 median of real same-person photos, so honest outputs pass.
        same_person=0.32,
        # Unrelated faces are near-orthogonal in ArcFace space, so cosine 0 is "nothing alike".
        anchors=((0.0, 0.0), (0.32, 0.5), (0.46, 0.75), (1.0, 1.0)),
        dims=512,
        source="ArcFace (insightface buffalo_l / antelopev2): same person cosine >= 0.32 (DeepFace threshold, "
        "insightface community 0.28); real photos of one person median 0.46 (WithAnyone paper)",
    ),
    Calibration(
        family="sface-128",
        measure="cosine",
        # OpenCV's SFace: cosine >= 0.363 is the same person (the OpenCV Zoo demo and FaceRecognizerSF docs; the
        # L2 form is <= 1.128). The typical genuine pair is put as far above the line as ArcFace's (+0.14) until
        # benchmarks/eval_likeness.py is run with the real weights.
        same_person=0.363,
        anchors=((0.0, 0.0), (0.363, 0.5), (0.5, 0.75), (1.0, 1.0)),
        dims=128,
        source="OpenCV SFace (face_recognition_sface_2021dec): same person cosine >= 0.363 (OpenCV Zoo); typical "
        "genuine pair 0.5 assumed",
    ),
)


def calibration_for(model: str) -> Calibration:
    """The table row for ``model``; ValueError for a model nobody has calibrated (its numbers would mislead)."""
    for row in CALIBRATIONS:
        if row.matches(model):
            return row
    known = ", ".join(row.family + ("*" if row.family.endswith("-") else "") for row in CALIBRATIONS)
    raise ValueError(f"no likeness calibration for embedding model {model!r} (known: {known})")


@dataclass(frozen=True)
class Likeness:
    """``score`` is the number to compare across models; cosine and distance are the model's own."""

    score: float  # 0..1, higher = more alike; 0.5 = the model's same-person threshold
    cosine: float  # of the L2-normalised vectors
    distance: float  # dlib: L2 of raw vectors; ArcFace: L2 of unit vectors
    same_person: bool
    model: str


def _vector(values: np.ndarray, what: str) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1:
        raise ValueError(f"{what} embedding must be a 1-d vector, got shape {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{what} embedding contains NaN or infinite values")
    if not np.any(vector):
        raise ValueError(f"{what} embedding is all zeros")
    return vector


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def compare(reference: np.ndarray, candidate: np.ndarray, model: str) -> Likeness:
    """Likeness of two embeddings made by the same ``model``."""
    row = calibration_for(model)
    ref, cand = _vector(reference, "reference"), _vector(candidate, "candidate")
    if ref.shape != cand.shape:
        raise ValueError(f"embedding shapes differ: reference {ref.shape}, candidate {cand.shape}")
    if ref.shape[0] != row.dims:
        raise ValueError(f"{model} embeddings have {row.dims} values, got {ref.shape[0]}")
    cosine = float(np.clip(np.dot(_unit(ref), _unit(cand)), -1.0, 1.0))
    if row.measure == "l2":
        distance = float(np.linalg.norm(ref - cand))
        same, value = distance <= row.same_person, distance
    else:
        distance = float(np.sqrt(max(0.0, 2.0 - 2.0 * cosine)))
        same, value = cosine >= row.same_person, cosine
    return Likeness(score=row.score(value), cosine=cosine, distance=distance, same_person=same, model=model)


# --------------------------------------------------------------------------- reference photos


class ReferenceSetError(ValueError):
    """The reference photos cannot make one identity; ``user_message`` says what to send instead."""

    def __init__(self, user_message: str, detail: str = "") -> None:
        super().__init__(user_message if not detail else f"{user_message} ({detail})")
        self.user_message = user_message


@dataclass(frozen=True, eq=False)
class ReferenceIdentity:
    """One person's identity from one or more photos. Indices are 0-based positions in the input.

    ``embedding`` is the unit-length mean direction, what cosine scoring wants. ``raw_mean`` keeps
    the model's raw scale (mean of raw vectors, rescaled to their mean norm): InstantID is fed raw
    ArcFace vectors, and dlib's 0.6 threshold is stated on raw vectors.
    """

    embedding: np.ndarray
    raw_mean: np.ndarray
    model: str
    used: tuple[int, ...]
    dropped: tuple[int, ...] = ()  # had a face, but someone else's
    skipped: tuple[int, ...] = ()  # no face, or no embedding
    messages: tuple[str, ...] = ()  # user-facing, one per dropped or skipped photo

    def likeness(self, embedding: np.ndarray, model: str) -> Likeness:
        """Compare a face's embedding with this identity, on the scale its model's threshold is stated in."""
        if model != self.model:
            raise ValueError(f"cannot compare a {model} embedding with a {self.model} reference")
        vector = self.raw_mean if calibration_for(model).measure == "l2" else self.embedding
        return compare(vector, embedding, model)


def _photo(index: int) -> str:
    return f"photo {index + 1}"


def _medoid_group(raws: list[np.ndarray], model: str, max_distance: float | None) -> list[int]:
    """Positions that agree with the most central photo (highest summed score to the others), itself included.

    The medoid, not the mean, is the yardstick: a mean is pulled towards the very outlier it should expose.
    """
    n = len(raws)
    pairs = {(i, j): compare(raws[i], raws[j], model) for i in range(n) for j in range(n) if i != j}
    medoid = max(range(n), key=lambda i: (sum(pairs[i, j].score for j in range(n) if j != i), -i))

    def agrees(likeness: Likeness) -> bool:
        return likeness.same_person if max_distance is None else likeness.distance <= max_distance

    return [j for j in range(n) if j == medoid or agrees(pairs[medoid, j])]


def combine_references(faces: Sequence[Face | None], *, max_distance: float | None = None) -> ReferenceIdentity:
    """One identity from several photos of one person, leaving out photos of someone else.

    ``None`` stands for a photo with no face, so the photo numbers in messages stay the user's.
    Faces without an embedding are skipped likewise. A photo is dropped when its distance to the
    medoid exceeds ``max_distance`` (default: the model's same-person threshold); the kept group
    must be a strict majority, otherwise there is no telling which person the user is.
    """
    notes: list[tuple[int, str]] = []  # (photo index, message), sorted by photo at the end
    skipped: list[int] = []
    present: list[tuple[int, str, np.ndarray]] = []  # (photo index, model, raw embedding)
    for index, face in enumerate(faces):
        if face is None:
            skipped.append(index)
            notes.append((index, f"I couldn't find a face in {_photo(index)}, so I left it out."))
        elif face.embedding is None or face.embedding_model is None:
            skipped.append(index)
            notes.append((index, f"I couldn't read the face in {_photo(index)} clearly enough, so I left it out."))
        else:
            present.append((index, face.embedding_model, _vector(face.embedding, _photo(index))))
    if not present:
        raise ReferenceSetError(
            "I couldn't find a usable face in any of the photos. Please send a clear, front-facing photo of yourself.",
            f"{len(faces)} photo(s), none with an embedding",
        )
    models = sorted({model for _, model, _ in present})
    if len(models) > 1:
        raise ReferenceSetError(
            "Something went wrong reading your photos. Please try again.",
            f"embeddings come from different models: {', '.join(models)}",
        )
    model = models[0]
    calibration_for(model)  # an uncalibrated model fails here, even with a single photo
    raws = [raw for _, _, raw in present]
    if len({raw.shape for raw in raws}) > 1:
        raise ReferenceSetError(
            "Something went wrong reading your photos. Please try again.",
            f"{model} embeddings of different shapes: {sorted({raw.shape for raw in raws})}",
        )

    kept = list(range(len(present)))
    if len(present) > 1:
        kept = _medoid_group(raws, model, max_distance)
        if 2 * len(kept) <= len(present):
            raise ReferenceSetError(
                "These photos seem to show different people. Please send photos of just one person: you.",
                f"largest consistent group {len(kept)} of {len(present)}",
            )
    dropped = [present[k][0] for k in range(len(present)) if k not in kept]
    notes.extend(
        (index, f"{_photo(index).capitalize()} doesn't look like the same person as the others, so I left it out.")
        for index in dropped
    )

    chosen = np.stack([raws[k] for k in kept])
    norms = np.linalg.norm(chosen, axis=1)
    return ReferenceIdentity(
        embedding=_unit((chosen / norms[:, None]).mean(axis=0)),
        raw_mean=_unit(chosen.mean(axis=0)) * float(norms.mean()),
        model=model,
        used=tuple(present[k][0] for k in kept),
        dropped=tuple(dropped),
        skipped=tuple(skipped),
        messages=tuple(text for _, text in sorted(notes, key=lambda note: note[0])),
    )


# --------------------------------------------------------------------------- scoring outputs


@dataclass(frozen=True)
class ScoredImage:
    """One generated image's likeness. ``index`` is its position in the batch that was scored."""

    index: int
    likeness: Likeness | None
    face_found: bool
    message: str

    @property
    def score(self) -> float | None:
        return None if self.likeness is None else self.likeness.score


def score_images(
    images: Sequence[np.ndarray], analyzer: FaceAnalyzer, reference: ReferenceIdentity
) -> list[ScoredImage]:
    """Likeness of the largest face in each RGB image to ``reference``, in input order."""
    results = []
    for index, image in enumerate(images):
        faces = analyzer.analyze(image, embeddings=True)
        name = f"Image {index + 1}"
        if not faces:
            results.append(ScoredImage(index, None, False, f"{name}: no face in the output."))
            continue
        face = max(faces, key=lambda f: f.area)
        if face.embedding is None or face.embedding_model is None:
            results.append(ScoredImage(index, None, True, f"{name}: found a face but could not measure its likeness."))
            continue
        likeness = reference.likeness(face.embedding, face.embedding_model)
        verdict = "looks like the same person" if likeness.same_person else "does not look like the same person"
        results.append(ScoredImage(index, likeness, True, f"{name}: likeness {likeness.score:.2f}, {verdict}."))
    return results


def _rank_key(scored: ScoredImage) -> tuple[bool, float]:
    return (scored.likeness is None, -(scored.score or 0.0))


def rank(scored: Sequence[ScoredImage]) -> list[ScoredImage]:
    """Best likeness first; images without a measurable face last. Stable, so ties keep their order."""
    return sorted(scored, key=_rank_key)


# --------------------------------------------------------------------------- best-of-N with retries


@dataclass(frozen=True, eq=False)
class Candidate:
    """A kept image with where it came from."""

    attempt: int
    image: np.ndarray
    scored: ScoredImage

    def meets(self, threshold: float) -> bool:
        return self.scored.score is not None and self.scored.score >= threshold


@dataclass(frozen=True, eq=False)
class SelectionResult:
    """The best images over all attempts, even when none was good enough (``threshold_met`` says)."""

    chosen: tuple[Candidate, ...]  # best first, at most ``wanted``
    attempts: int
    threshold_met: bool  # ``wanted`` images reached the threshold
    scores: tuple[tuple[ScoredImage, ...], ...]  # every image's score, per attempt

    @property
    def images(self) -> list[np.ndarray]:
        return [candidate.image for candidate in self.chosen]


def generate_until_alike(
    produce: Callable[[int], Sequence[np.ndarray]],
    score: Callable[[Sequence[np.ndarray]], list[ScoredImage]],
    *,
    wanted: int,
    threshold: float,
    max_attempts: int,
) -> SelectionResult:
    """Call ``produce(attempt)`` for attempt 0, 1, … until ``wanted`` images score ``threshold`` or more.

    Bounded: never more than ``max_attempts`` calls, since each one is a GPU generation. Only the
    best ``wanted`` images are held between attempts; ``threshold`` is on ``Likeness.score``.
    """
    if wanted < 1:
        raise ValueError(f"wanted must be at least 1, got {wanted}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a likeness score in 0..1, got {threshold}")
    best: list[Candidate] = []
    history: list[tuple[ScoredImage, ...]] = []
    attempts = 0
    while attempts < max_attempts:
        images = list(produce(attempts))
        scored = score(images)
        if sorted(s.index for s in scored) != list(range(len(images))):
            raise ValueError(
                f"the scorer must score each of the {len(images)} images once, got indices {[s.index for s in scored]}"
            )
        history.append(tuple(scored))
        best.extend(Candidate(attempts, images[s.index], s) for s in scored)
        best = sorted(best, key=lambda c: _rank_key(c.scored))[:wanted]
        attempts += 1
        if sum(c.meets(threshold) for c in best) >= wanted:
            break
    met = sum(c.meets(threshold) for c in best) >= wanted
    return SelectionResult(chosen=tuple(best), attempts=attempts, threshold_met=met, scores=tuple(history))
