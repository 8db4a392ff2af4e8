"""The suggested crop: its size rule, and what the cropped image looks like to the face detector."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from generation.faces.dlib_backend import DlibAnalyzer
from generation.faces.types import Face
from generation.images import LoadedImage, load_image_file
from generation.quality import degrade
from generation.quality.checks import Measured
from generation.quality.crop import apply_crop, crop_output_size, suggest_crop
from generation.quality.gate import Assessment, assess
from generation.quality.report import CropBox

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "faces"
# The crop's contract (face-quality.md §3): eye line 44 % from the top, at most 1024 px, at most 1.5× up.
EYE_LINE_FROM_TOP = 0.44
MAX_OUTPUT = 1024
MAX_UPSCALE = 1.5


def expected_side(face: Face, scale: float) -> float:
    """max(5.5 × IED / cos(yaw), 3.2 × eye-to-chin), in original pixels, straight from the landmarks."""
    ied = face.inter_eye_distance / max(math.cos(math.radians(face.pose.yaw)), 0.5)
    eye_to_chin = float(np.linalg.norm(face.landmarks68[8] - face.eye_mid))
    return max(5.5 * ied, 3.2 * eye_to_chin) / scale


def crop_of(assessment: Assessment) -> tuple[CropBox, np.ndarray]:
    crop = assessment.report.crop
    assert crop is not None
    return crop, apply_crop(assessment.pixels, crop, assessment.image.scale)


def with_room_above(image: LoadedImage, rows: int) -> np.ndarray:
    """The photo with ``rows`` more of its own top edge above it, so a full-size crop fits."""
    return np.pad(image.pixels, ((rows, 0), (0, 0), (0, 0)), mode="edge")


def test_side_follows_the_head_size_rule(
    images: dict[str, LoadedImage], assess_result: Callable[..., Assessment]
) -> None:
    assessment = assess_result(with_room_above(images["obama.jpg"], 300))
    crop, face = assessment.report.crop, assessment.faces[0]
    assert crop.padding == 0.0
    assert crop.side == pytest.approx(expected_side(face, assessment.image.scale), rel=0.01)
    assert crop.angle == 0.0  # roll under 3°: not worth rotating


def test_a_crop_reaching_out_of_the_photo_is_tightened_when_a_tighter_one_fits(
    assessments: dict[str, Assessment]
) -> None:
    """biden.jpg: a head rolled 13° near the photo's edge. The full square, turned with the head, would reach
    out of the photo; a tighter one (still the whole head with a margin) fits, so that one is offered and
    nothing is filled."""
    assessment = assessments["biden.jpg"]
    crop, face, scale = assessment.report.crop, assessment.faces[0], assessment.image.scale
    full = expected_side(face, scale)
    eye_to_chin = float(np.linalg.norm(face.landmarks68[8] - face.eye_mid))
    tightest = max(4.0 * face.inter_eye_distance / max(math.cos(math.radians(face.pose.yaw)), 0.5),
                   2.5 * eye_to_chin) / scale
    assert abs(crop.angle) > 10  # turned with the head
    assert crop.padding == 0.0
    assert tightest - 1e-6 <= crop.side < 0.95 * full
    xs, ys = zip(*crop.corners(), strict=True)
    height, width = assessment.pixels.shape[0] / scale, assessment.pixels.shape[1] / scale
    assert min(xs) >= -1e-6 and min(ys) >= -1e-6 and max(xs) <= width + 1e-6 and max(ys) <= height + 1e-6
    # The eyes stay where every crop puts them (the template's 44 % line, within 2 %), in the crop's frame.
    theta = math.radians(crop.angle)
    offset = face.eye_mid / scale - np.asarray(crop.centre)
    across = offset @ np.array([math.cos(theta), math.sin(theta)])
    down = offset @ np.array([-math.sin(theta), math.cos(theta)])
    assert abs(across) <= 0.02 * crop.side + 1.0
    assert abs(down / crop.side - (EYE_LINE_FROM_TOP - 0.5)) <= 0.02 + 1e-3


def test_crop_is_in_original_pixels_whatever_the_working_size(
    analyzer: DlibAnalyzer, assessments: dict[str, Assessment]
) -> None:
    full = assessments["obama.jpg"].report.crop
    small_image = load_image_file(FIXTURES / "obama.jpg", max_side=600)
    assert small_image.scale < 0.6
    small = assess(small_image, analyzer).report.crop
    assert small.side == pytest.approx(full.side, rel=0.03)
    assert small.centre[0] == pytest.approx(full.centre[0], abs=0.02 * full.side)
    assert small.centre[1] == pytest.approx(full.centre[1], abs=0.02 * full.side)


def _check_rendered(analyzer: DlibAnalyzer, out: np.ndarray) -> Face:
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3
    assert out.shape[0] == out.shape[1]
    assert out.shape[0] <= MAX_OUTPUT
    faces = analyzer.analyze(out)
    assert len(faces) == 1
    face = faces[0]
    size = out.shape[0]
    assert abs(face.pose.roll) < 3, face.pose
    assert face.eye_mid[1] / size == pytest.approx(EYE_LINE_FROM_TOP, abs=0.04)
    assert face.eye_mid[0] / size == pytest.approx(0.5, abs=0.04)
    return face


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "astronaut.png"])
def test_applied_crop_is_square_with_level_eyes_at_the_template_position(
    analyzer: DlibAnalyzer, assessments: dict[str, Assessment], name: str
) -> None:
    crop, out = crop_of(assessments[name])
    assert out.shape[0] == crop_output_size(crop)
    _check_rendered(analyzer, out)


@pytest.mark.parametrize("degrees", [20, -20])
def test_tilted_head_comes_out_level(
    analyzer: DlibAnalyzer, images: dict[str, LoadedImage], clean_faces: dict[str, Face],
    assessments: dict[str, Assessment], assess_result: Callable[..., Assessment], degrees: int,
) -> None:
    tilted = degrade.rotate(images["obama.jpg"].pixels, clean_faces["obama.jpg"], degrees)
    assessment = assess_result(tilted)
    assert assessment.faces[0].pose.roll == pytest.approx(degrees, abs=3)
    crop, out = crop_of(assessment)
    assert crop.angle == pytest.approx(degrees, abs=3)  # the crop turns with the head
    face = _check_rendered(analyzer, out)
    # Straightened, the face fills the crop as much as the crop box says it would.
    promised = assessment.faces[0].inter_eye_distance / assessment.image.scale / crop.side
    assert face.inter_eye_distance / out.shape[0] == pytest.approx(promised, rel=0.06)


def test_head_near_the_edge_is_filled_from_the_photos_edge_colours(
    analyzer: DlibAnalyzer, assessments: dict[str, Assessment]
) -> None:
    assessment = assessments["obama_partial_face.jpg"]
    crop, out = crop_of(assessment)
    assert crop.padding > 0.2  # the head is cut by the left edge: a good part of the crop is outside
    assert crop.angle == 0.0
    size = out.shape[0]
    # The part left of the photo is smooth, photo-coloured fill: no black band, no streaks (a
    # replicated border column would leave sharp steps between rows).
    outside = int(crop.padding * size)
    strip = out[:, : outside - 10].astype(np.int16)
    assert strip.mean() > 40  # photo colours, not a constant black fill
    assert np.abs(np.diff(strip, axis=0)).mean() <= 1.5  # blurred: no row-to-row streaks
    # ...and the band ends where the photo starts: the next columns vary along each row.
    photo_part = out[:, outside + 2: outside + 40].astype(np.int16)
    assert np.abs(np.diff(photo_part, axis=1)).max() > 10
    # The fill carries the photo's own edge colours outwards (no grey wedge, no mirrored copy of the face):
    # next to the seam it is the colour of the photo's first columns, row band by row band.
    seam = out[:, outside + 2: outside + 12].astype(np.float32).mean(axis=1)
    fill = out[:, max(0, outside - 14): outside - 4].astype(np.float32).mean(axis=1)
    bands = np.array_split(np.arange(size), 16)
    differences = [np.abs(seam[b].mean(axis=0) - fill[b].mean(axis=0)).max() for b in bands]
    assert np.median(differences) < 25, differences
    # The face is still there, eyes placed as in any other crop.
    _check_rendered(analyzer, out)


def test_crop_box_reports_no_padding_when_well_inside(assessments: dict[str, Assessment]) -> None:
    # The astronaut's head sits well inside a 512 px square: almost nothing to pad.
    assert assessments["astronaut.png"].report.crop.padding < 0.1
    partial, whole = assessments["obama_partial_face.jpg"], assessments["obama.jpg"]
    assert partial.report.crop.padding > whole.report.crop.padding


def test_suggest_crop_matches_the_report(assessments: dict[str, Assessment]) -> None:
    assessment = assessments["obama.jpg"]
    measured = Measured.build(assessment.image, assessment.pixels, list(assessment.faces))
    assert suggest_crop(measured) == assessment.report.crop


@pytest.mark.parametrize("side", [40.0, 241.14, 500.0, 682.6, 682.7, 1000.0, 4000.0])
def test_output_size_never_upscales_more_than_one_and_a_half(side: float) -> None:
    size = crop_output_size(CropBox(centre=(0.0, 0.0), side=side, angle=0.0, padding=0.0))
    assert size <= MAX_OUTPUT
    assert size / side <= MAX_UPSCALE  # 241.14 × 1.5 = 361.7: 362 px would be 1.501×
    # As large as those two limits allow (to the pixel).
    assert size > min(MAX_OUTPUT, MAX_UPSCALE * side) - 1


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "biden.jpg", "astronaut.png",
                                  "obama_partial_face.jpg"])
def test_output_size_on_real_crops(assessments: dict[str, Assessment], name: str) -> None:
    crop = assessments[name].report.crop
    size = crop_output_size(crop)
    assert size <= MAX_OUTPUT
    assert size / crop.side <= MAX_UPSCALE
