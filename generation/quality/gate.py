"""The quality gate: image in, QualityReport out. Pure apart from running the face analyzer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generation.faces.types import Face, FaceAnalyzer
from generation.images import LoadedImage
from generation.quality import checks
from generation.quality.crop import suggest_crop
from generation.quality.report import CHECK_ORDER, CheckResult, QualityReport, Tier, explain_away, overall_verdict
from generation.quality.thresholds import THRESHOLDS

# Tried in this order when the upright image shows no face: EXIF orientation is unreliable.
_ROTATIONS = {90: 1, 180: 2, 270: 3}  # degrees clockwise → np.rot90 k (counter-clockwise turns)


@dataclass(frozen=True)
class Assessment:
    """A report plus what the preview and the crop need: the working pixels and the faces."""

    report: QualityReport
    image: LoadedImage
    pixels: np.ndarray  # the working copy the faces refer to (turned upright if it had to be)
    faces: tuple[Face, ...]
    rotated: int = 0  # degrees clockwise the working copy was turned to find a face


def _find_faces(analyzer: FaceAnalyzer, pixels: np.ndarray, embeddings: bool
                ) -> tuple[np.ndarray, list[Face], int]:
    faces = analyzer.analyze(pixels, embeddings=embeddings)
    if faces:
        return pixels, faces, 0
    for degrees, k in _ROTATIONS.items():
        turned = np.ascontiguousarray(np.rot90(pixels, k=-k))
        faces = analyzer.analyze(turned, embeddings=embeddings)
        if faces:
            return turned, faces, degrees
    return pixels, [], 0


def main_face_first(faces: list[Face]) -> list[Face]:
    """Largest confident face first; among doubtful detections, the likeliest first.

    A big but doubtful detection (a pattern in the background) must not displace the person.
    """
    floor = THRESHOLDS["second_face_score"].fail or 0.0
    confident = sorted((f for f in faces if f.score >= floor), key=lambda f: f.area, reverse=True)
    doubtful = sorted((f for f in faces if f.score < floor), key=lambda f: f.score, reverse=True)
    return confident + doubtful


def _skipped(names: list[str], reason: str) -> list[CheckResult]:
    return [CheckResult(name, Tier.SKIPPED, None, detail=reason) for name in names]


def assess(image: LoadedImage, analyzer: FaceAnalyzer, *, embeddings: bool = False) -> Assessment:
    """Run every check on ``image``; the report's first face is the largest one found."""
    pixels, faces, rotated = _find_faces(analyzer, image.pixels, embeddings)
    notes = list(image.notes)
    if rotated:
        notes.append(f"turned the photo {rotated}° to find the face")
    results: list[CheckResult] = [checks.check_file(image, tuple(notes))]
    if not faces:
        results.append(CheckResult("face_found", Tier.FAIL, 0.0, checks.ADVICE["no_face"], "no face detected"))
        results += _skipped([n for n in CHECK_ORDER if n not in ("file", "face_found")], "no face")
        report = QualityReport(overall_verdict(results), tuple(results), None, None, 0, tuple(notes),
                               analyzer.name)
        return Assessment(report, image, pixels, (), rotated)

    faces = main_face_first(faces)
    measured = checks.Measured.build(image, pixels, faces, rotated)
    crop = suggest_crop(measured)
    blur = checks.check_blur(measured)
    results += [
        CheckResult("face_found", Tier.PASS, float(len(faces)), detail=f"{len(faces)} face(s)"),
        checks.check_single_person(faces),
        checks.check_resolution(measured),
        checks.check_framing(measured, crop),
        checks.check_pose(measured.face, measured.pixels.shape[:2]),
        checks.check_sunglasses(measured, blurred=blur.tier == Tier.FAIL),
        checks.check_occlusion(measured),
        blur,
        checks.check_detail(measured, blur.tier),
        checks.check_smoothing(measured),
        checks.check_over_exposure(measured),
        checks.check_under_exposure(measured),
        checks.check_backlight(measured),
        checks.check_side_shadow(measured),
        checks.check_colour_cast(measured),
        checks.check_eyes_closed(measured, blurred=blur.tier == Tier.FAIL),
        checks.check_compression(measured),
    ]
    results = explain_away(results)
    results.sort(key=lambda r: CHECK_ORDER.index(r.name))
    report = QualityReport(overall_verdict(results), tuple(results), crop, 0, len(faces), tuple(notes),
                           analyzer.name)
    return Assessment(report, image, pixels, tuple(faces), rotated)
