"""The face re-render pass, driven by real photos standing in for generator outputs.

Random test models never draw a face, so the stage after the denoiser is exercised here with real
photographs (a large face, the same photo shrunk to a small face, a faceless part of a photo) and
the real dlib analyzer. The ``redenoise`` stand-ins are real image operations (sharpen, blur,
tint) on the crop they are given, which is what the generator's img2img pass is to this code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from generation.faces.dlib_backend import DlibAnalyzer
from generation.faces.types import Face
from generation.images import load_image_file
from generation.pipelines.refine import (
    RefineSettings,
    feather_mask,
    plan_refine,
    refine_all,
    refine_face,
)
from generation.quality import degrade

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "faces"
SMALL_IED = 30  # px between the eyes: well under the 64-px threshold, still found by HOG
FAST = RefineSettings(work_size=256)


@dataclass
class StandIn:
    """A real image operation in the generator's place, which also keeps what it was given."""

    operation: Callable[[np.ndarray, float], np.ndarray]

    def __post_init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, float]] = []
        self.outputs: list[np.ndarray] = []

    def __call__(self, crop: np.ndarray, keypoints: np.ndarray, strength: float) -> np.ndarray:
        self.calls.append((crop.copy(), keypoints.copy(), strength))
        out = self.operation(crop, strength)
        self.outputs.append(out.copy())
        return out


def sharpen(crop: np.ndarray, strength: float) -> np.ndarray:
    """Unsharp mask: the re-render's extra detail, roughly."""
    blurred = cv2.GaussianBlur(crop, (0, 0), sigmaX=crop.shape[0] / 150)
    return cv2.addWeighted(crop, 1.0 + 3 * strength, blurred, -3 * strength, 0)


def blur(crop: np.ndarray, strength: float) -> np.ndarray:
    return cv2.GaussianBlur(crop, (0, 0), sigmaX=crop.shape[0] / 40)


TINT = np.array([40, -30, 35])


def tint(crop: np.ndarray, strength: float) -> np.ndarray:
    """img2img drifting to a magenta cast."""
    return np.clip(crop.astype(np.int16) + TINT, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


@pytest.fixture(scope="module")
def large(analyzer: DlibAnalyzer) -> tuple[np.ndarray, Face]:
    pixels = load_image_file(FIXTURES / "obama.jpg").pixels
    faces = analyzer.analyze(pixels)
    assert len(faces) == 1 and faces[0].inter_eye_distance > 90
    return pixels, faces[0]


@pytest.fixture(scope="module")
def small(analyzer: DlibAnalyzer, large: tuple[np.ndarray, Face]) -> tuple[np.ndarray, Face]:
    """The same photo with the man standing far away: the generator's small-face failure."""
    pixels = degrade.shrink_face(*large, SMALL_IED)
    pixels.flags.writeable = False  # nothing may write into the caller's image
    faces = analyzer.analyze(pixels)
    assert len(faces) == 1
    assert faces[0].inter_eye_distance == pytest.approx(SMALL_IED, abs=3)
    return pixels, faces[0]


def outside(shape: tuple[int, ...], box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.ones(shape[:2], bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = False
    return mask


def box_pixels(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = (round(v) for v in box)
    return image[y0:y1, x0:x1]


def test_a_large_face_is_left_alone(large: tuple[np.ndarray, Face]) -> None:
    pixels, face = large
    before = pixels.copy()
    stand_in = StandIn(sharpen)
    out, report = refine_face(pixels, face, stand_in, FAST)
    assert out is pixels and np.array_equal(out, before)
    assert not report.refined and report.region is None
    assert report.eye_distance == pytest.approx(face.inter_eye_distance)
    assert "large enough" in report.reason and "64" in report.reason
    assert stand_in.calls == []
    assert plan_refine(face, pixels.shape[:2], FAST) is None


@pytest.mark.parametrize("work_size", [256, 1024])
def test_a_small_face_is_re_rendered_inside_its_region_only(
    analyzer: DlibAnalyzer, small: tuple[np.ndarray, Face], work_size: int
) -> None:
    pixels, face = small
    settings = RefineSettings(work_size=work_size)
    stand_in = StandIn(sharpen)
    out, report = refine_face(pixels, face, stand_in, settings)

    assert report.refined and report.region is not None
    assert "< 64" in report.reason and "re-rendered" in report.reason
    assert report.eye_distance == pytest.approx(face.inter_eye_distance)
    x0, y0, x1, y1 = report.region
    assert x1 - x0 == y1 - y0 and x0 >= 0 and y0 >= 0 and x1 <= pixels.shape[1] and y1 <= pixels.shape[0]
    # The whole face box, and 1.8× its side, is in the region.
    assert x0 <= face.box[0] and y0 <= face.box[1] and face.box[2] <= x1 and face.box[3] <= y1
    assert x1 - x0 == pytest.approx(1.8 * max(face.width, face.height), abs=1)

    keep = outside(pixels.shape, report.region)
    assert np.array_equal(out[keep], pixels[keep])
    face_change = np.abs(box_pixels(out, face.box).astype(int) - box_pixels(pixels, face.box)).mean()
    assert face_change > 2.0

    assert len(stand_in.calls) == 1
    crop, keypoints, strength = stand_in.calls[0]
    assert crop.shape == (work_size, work_size, 3) and crop.dtype == np.uint8
    assert strength == settings.strength
    assert np.all((keypoints >= 0) & (keypoints < work_size))
    # The keypoints are where the eyes are in the crop the generator sees: find them there afresh.
    found = analyzer.analyze(crop)
    assert len(found) == 1
    work_ied = found[0].inter_eye_distance
    assert work_ied == pytest.approx(face.inter_eye_distance * work_size / (x1 - x0), rel=0.1)
    assert np.abs(keypoints[:2] - found[0].landmarks5[:2]).max() < 0.1 * work_ied


def test_colour_drift_of_the_re_render_is_matched_back(small: tuple[np.ndarray, Face]) -> None:
    pixels, face = small
    stand_in = StandIn(tint)
    out, report = refine_face(pixels, face, stand_in, FAST)
    assert report.refined
    before = box_pixels(pixels, face.box).reshape(-1, 3).mean(axis=0)
    after = box_pixels(out, face.box).reshape(-1, 3).mean(axis=0)
    rendered = stand_in.outputs[0].reshape(-1, 3).mean(axis=0) - stand_in.calls[0][0].reshape(-1, 3).mean(axis=0)
    assert np.abs(rendered).min() > 20  # the stand-in really did tint every channel
    assert np.abs(after - before).max() < 3.0


def test_the_paste_fades_out_towards_the_region_edge(small: tuple[np.ndarray, Face]) -> None:
    pixels, face = small
    stand_in = StandIn(blur)
    out, report = refine_face(pixels, face, stand_in, FAST)
    x0, y0, x1, y1 = report.region
    side = x1 - x0
    before = pixels[y0:y1, x0:x1].astype(float)
    change = np.abs(out[y0:y1, x0:x1].astype(float) - before).mean(axis=2)
    # What the stand-in did, at region scale: the change a hard paste would have made.
    offered = cv2.resize(stand_in.outputs[0], (side, side), interpolation=cv2.INTER_AREA).astype(float)
    offered_change = np.abs(offered - before).mean(axis=2)

    ys, xs = np.mgrid[0:side, 0:side] + 0.5
    cx, cy = (face.box[0] + face.box[2]) / 2 - x0, (face.box[1] + face.box[3]) / 2 - y0
    inner = np.hypot(xs - cx, ys - cy) < 0.2 * side
    edge_distance = np.minimum.reduce([xs, ys, side - xs, side - ys])
    outer = edge_distance < 0.05 * side
    assert change[inner].mean() > 3 * change[outer].mean()
    # Relative to what was offered: (almost) all of it in the middle, (almost) none at the edge.
    assert change[inner].mean() > 0.7 * offered_change[inner].mean()
    assert change[outer].mean() < 0.1 * offered_change[outer].mean()


def test_feather_mask_is_one_on_the_head_and_zero_at_the_edges() -> None:
    mask = feather_mask(200, (100.0, 100.0), 0.12)
    assert mask[100, 100] == 1.0
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert border.max() < 0.01
    row = mask[100, 100:]
    assert np.all(np.diff(row) <= 0) and row[0] == 1.0 and row[-1] == 0.0
    ramp = np.count_nonzero((row > 0.0) & (row < 1.0))
    assert ramp == pytest.approx(0.12 * 200, abs=2)  # the soft edge is `feather` of the side wide
    hard = feather_mask(200, (100.0, 100.0), 0.0)
    assert set(np.unique(hard)) == {0.0, 1.0}


def test_a_face_at_the_image_edge_gets_a_square_region_inside_the_image(
    analyzer: DlibAnalyzer, small: tuple[np.ndarray, Face]
) -> None:
    pixels, face = small
    cut = np.ascontiguousarray(pixels[:, int(face.box[0]) - 8:])
    found = analyzer.analyze(cut)
    assert len(found) == 1
    region = plan_refine(found[0], cut.shape, FAST)
    assert region is not None
    x0, y0, x1, y1 = region.box
    assert x0 == 0 and x1 - x0 == y1 - y0 and y0 >= 0 and y1 <= cut.shape[0]
    assert np.allclose(region.work_keypoints / region.scale + (x0, y0), found[0].landmarks5)
    out, report = refine_face(cut, found[0], StandIn(sharpen), FAST)
    assert report.refined and report.region == region.box
    keep = outside(cut.shape, region.box)
    assert np.array_equal(out[keep], cut[keep])


def test_only_the_largest_of_several_faces_is_re_rendered(
    analyzer: DlibAnalyzer, small: tuple[np.ndarray, Face]
) -> None:
    pixels, face = small
    other = load_image_file(FIXTURES / "biden.jpg", max_side=1200).pixels
    other_face = analyzer.analyze(other)[0]
    group = degrade.paste_second_face(np.array(pixels), face, other, other_face, area_ratio=0.5)
    faces = analyzer.analyze(group)
    assert len(faces) == 2
    largest = max(faces, key=lambda f: f.area)
    stand_in = StandIn(sharpen)
    out, report = refine_all(group, list(reversed(faces)), stand_in, FAST)
    assert report.refined and "largest of 2" in report.reason
    assert report.eye_distance == pytest.approx(largest.inter_eye_distance)
    x0, y0, x1, y1 = report.region
    assert x0 <= largest.box[0] and largest.box[2] <= x1 and y0 <= largest.box[1] and largest.box[3] <= y1
    assert len(stand_in.calls) == 1
    keep = outside(group.shape, report.region)
    assert np.array_equal(out[keep], group[keep])


def test_an_output_without_a_face_is_returned_unchanged(
    analyzer: DlibAnalyzer, large: tuple[np.ndarray, Face]
) -> None:
    pixels, face = large
    suit = np.ascontiguousarray(pixels[int(face.box[3]) + 150:])  # below the chin: shirt, tie, jacket
    faces = analyzer.analyze(suit)
    assert faces == []
    stand_in = StandIn(sharpen)
    out, report = refine_all(suit, faces, stand_in, FAST)
    assert out is suit
    assert not report.refined and report.reason == "no face in output"
    assert report.region is None and report.eye_distance is None
    assert stand_in.calls == []


def test_a_redenoise_of_the_wrong_size_is_refused(small: tuple[np.ndarray, Face]) -> None:
    pixels, face = small

    def half_size(crop: np.ndarray, strength: float) -> np.ndarray:
        return cv2.resize(crop, (crop.shape[1] // 2, crop.shape[0] // 2), interpolation=cv2.INTER_AREA)

    with pytest.raises(ValueError, match="redenoise"):
        refine_face(pixels, face, StandIn(half_size), FAST)


@pytest.mark.parametrize(
    "kwargs", [{"expand": 0.9}, {"work_size": 8}, {"strength": 0.0}, {"strength": 1.5}, {"feather": 0.5}]
)
def test_settings_out_of_range_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RefineSettings(**kwargs)
