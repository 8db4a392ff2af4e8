"""Framing presets, the keypoints they put on the canvas, and the IdentityNet control image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from generation import styles
from generation.pipelines.framing import (
    DEFAULT_FRAMING,
    FRAMINGS,
    KEYPOINT_COLOURS,
    draw_keypoints,
    target_keypoints,
)

CANVASES = ((1024, 1024), (832, 1216))
# A frontal face in some photo's pixels (dlib on obama.jpg, rounded): eyes, nose, mouth corners.
REFERENCE = np.array([[440.0, 240.0], [540.0, 238.0], [492.0, 300.0], [450.0, 350.0], [532.0, 349.0]])


def rotate(points: np.ndarray, degrees: float, centre: np.ndarray) -> np.ndarray:
    a = math.radians(degrees)
    matrix = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (points - centre) @ matrix.T + centre


def eye_frame(points: np.ndarray) -> np.ndarray:
    """Nose and mouth in a frame fixed to the eyes: origin at their midpoint, x along them, unit = IED."""
    axis = points[1] - points[0]
    ied = np.linalg.norm(axis)
    ux = axis / ied
    uy = np.array([-ux[1], ux[0]])
    rel = points[2:] - (points[0] + points[1]) / 2
    return np.stack([rel @ ux, rel @ uy], axis=1) / ied


@pytest.mark.parametrize("width, height", CANVASES)
@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_eyes_land_where_the_preset_says(framing: str, width: int, height: int) -> None:
    preset = FRAMINGS[framing]
    kps = target_keypoints(REFERENCE, framing, width, height)
    ied = float(np.linalg.norm(kps[1] - kps[0]))
    assert ied == pytest.approx(preset.eye_distance * width, rel=0.01)
    mid = (kps[0] + kps[1]) / 2
    assert mid[0] == pytest.approx(width / 2, abs=0.5)
    assert mid[1] == pytest.approx(preset.eye_y * height, abs=0.5)
    assert abs(kps[1, 1] - kps[0, 1]) < 1.0
    # The whole face (eyes, nose, mouth) is on the canvas for every preset.
    assert np.all((kps >= 0) & (kps < (width, height)))


def test_presets_get_smaller_from_close_up_to_full_body() -> None:
    order = ["close-up", "head-and-shoulders", "half-body", "full-body"]
    sizes = [FRAMINGS[name].eye_distance for name in order]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    assert 0.35 <= FRAMINGS["close-up"].eye_distance <= 0.45  # identity-generation.md
    heights = [FRAMINGS[name].eye_y for name in order]
    assert heights == sorted(heights, reverse=True)  # the more body, the higher the eyes
    assert DEFAULT_FRAMING == "head-and-shoulders"
    assert tuple(FRAMINGS) == styles.FRAMINGS  # the geometry covers every framing a style or user can name


@pytest.mark.parametrize("degrees", [25.0, -25.0])
def test_a_tilted_reference_comes_out_level_with_its_shape_kept(degrees: float) -> None:
    tilted = rotate(REFERENCE, degrees, REFERENCE[2])
    kps = target_keypoints(tilted, "head-and-shoulders", 832, 1216)
    assert abs(kps[1, 1] - kps[0, 1]) < 1.0
    assert kps[0, 0] < kps[1, 0]  # left eye still on the left: not flipped
    assert np.allclose(eye_frame(kps), eye_frame(REFERENCE), atol=1e-6)
    # Upright: nose and mouth below the eyes, mouth below the nose.
    assert kps[2, 1] > kps[0, 1] and kps[3, 1] > kps[2, 1] and kps[4, 1] > kps[2, 1]


def test_nose_and_mouth_keep_their_place_relative_to_the_eyes() -> None:
    # A turned head (nose well off the eye midline) with level eyes: the move is a pure scale + shift.
    turned = REFERENCE.copy()
    turned[1, 1] = turned[0, 1]
    turned[2, 0] += 25
    kps = target_keypoints(turned, "close-up", 1024, 1024)
    scale = 0.40 * 1024 / np.linalg.norm(turned[1] - turned[0])
    expected = (turned[2:] - (turned[0] + turned[1]) / 2) * scale + (kps[0] + kps[1]) / 2
    assert np.allclose(kps[2:], expected, atol=1e-6)
    assert kps[2, 0] - 512 == pytest.approx((turned[2, 0] - 490) * scale)  # the turn survives, scaled
    assert turned[2, 0] - 490 == 27


def test_unknown_framing_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="close-up") as info:
        target_keypoints(REFERENCE, "selfie", 1024, 1024)
    for name in FRAMINGS:
        assert name in str(info.value)


def test_bad_keypoints_are_refused() -> None:
    with pytest.raises(ValueError):
        target_keypoints(REFERENCE[:4], "close-up", 1024, 1024)
    same_eyes = REFERENCE.copy()
    same_eyes[1] = same_eyes[0]
    with pytest.raises(ValueError):
        target_keypoints(same_eyes, "close-up", 1024, 1024)


@pytest.mark.parametrize("width, height", CANVASES)
def test_control_image_has_each_point_in_its_colour_and_sticks_to_the_nose(width: int, height: int) -> None:
    kps = target_keypoints(REFERENCE, "head-and-shoulders", width, height)
    image = draw_keypoints(kps, width, height)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    for point, colour in zip(kps, KEYPOINT_COLOURS, strict=True):
        x, y = (round(v) for v in point)
        assert tuple(image[y, x]) == colour
    # Black background: corners and everything far from the face.
    assert not image[:10, :10].any() and not image[-10:, -10:].any()
    drawn = image.any(axis=2)
    assert 0.001 < drawn.mean() < 0.05
    # Sticks: halfway between each eye / mouth corner and the nose, that point's colour at ~60 %.
    for index in (0, 1, 3, 4):
        x, y = (round(v) for v in (kps[index] + kps[2]) / 2)
        expected = np.array(KEYPOINT_COLOURS[index]) * 0.6
        assert np.abs(image[y, x].astype(float) - expected).max() <= 2
    # Nothing drawn between the eyes above the nose line far from any stick.
    gap = ((kps[0] + kps[1]) / 2 + (0, -0.25 * np.linalg.norm(kps[1] - kps[0]))).round().astype(int)
    assert not image[gap[1], gap[0]].any()


def test_stroke_sizes_follow_the_canvas() -> None:
    big = draw_keypoints(target_keypoints(REFERENCE, "close-up", 1024, 1024), 1024, 1024)
    small = draw_keypoints(target_keypoints(REFERENCE, "close-up", 512, 512), 512, 512)
    ratio = big.astype(float).sum() / small.astype(float).sum()  # anti-aliased: count ink, not pixels
    assert ratio == pytest.approx(4.0, rel=0.15)  # every length halves: a quarter of the ink


def test_red_dot_radius_is_about_10_px_at_1024() -> None:
    kps = target_keypoints(REFERENCE, "close-up", 1024, 1024)
    image = draw_keypoints(kps, 1024, 1024)
    x, y = (round(v) for v in kps[0])
    red_row = np.all(image[y] == KEYPOINT_COLOURS[0], axis=1)
    run = red_row[x - 20:x + 21]
    assert 17 <= run.sum() <= 21
