"""Framing: where the face goes on the output canvas, and the keypoint image that puts it there.

InstantID's IdentityNet takes the face's position, size and roll from a 5-keypoint control image,
not from the prompt, so drawing the selfie's keypoints at the right place and scale *is* the
framing control. The pose shape (where nose and mouth sit relative to the eyes) is kept so the
identity's yaw and proportions survive; the roll is removed so the output face is upright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from generation import styles


@dataclass(frozen=True)
class FramingPreset:
    """Face size and eye position on the canvas, as fractions so one preset fits any canvas."""

    eye_distance: float  # distance between the eye centres / canvas width
    eye_y: float  # eye midpoint, from the top / canvas height
    eye_x: float = 0.5  # eye midpoint, from the left / canvas width


# Reasoning, in inter-eye distances (IED; adult pupils ≈ 63 mm apart): crown → eyes ≈ 1.85 IED,
# eyes → chin ≈ 1.85 IED, crown → waist ≈ 11 IED, standing height ≈ 27 IED (7.5 heads of ≈ 3.65 IED).
# - close-up: identity-generation.md, "eyes 35–45 % of width apart"; the face fills the frame and
#   crown/chin may be cut, so the eyes sit a little above the middle.
# - head-and-shoulders: close to the selfie crop of quality/crop.py (OFIQ template: side 5.5 IED,
#   eye line 44 %), a little tighter; on 1024² the crown keeps ≈ 5 % headroom, the chin is at 80 %.
# - half-body: crown → waist ≈ 11 IED, which fills an 832×1216 portrait canvas at 0.12.
# - full-body: the docs' rough "≈ 8 %" would make a standing person ≈ 2.2 canvas widths tall (legs
#   cut on every SDXL canvas); 0.05 fits head to feet on 832×1216 with the eyes at 12 % (on a square
#   canvas the knees are the limit). Faces this small are what the re-render pass (refine.py) is for.
FRAMINGS: dict[str, FramingPreset] = {
    "close-up": FramingPreset(eye_distance=0.40, eye_y=0.42),
    "head-and-shoulders": FramingPreset(eye_distance=0.20, eye_y=0.42),
    "half-body": FramingPreset(eye_distance=0.12, eye_y=0.25),
    "full-body": FramingPreset(eye_distance=0.05, eye_y=0.12),
}
DEFAULT_FRAMING = styles.DEFAULT_FRAMING  # the names and the default are the style table's (generation/styles.py)

# InstantID-style control image: one colour per keypoint (left eye, right eye, nose, left mouth,
# right mouth), sticks from each point to the nose. Sizes are for a 1024-px canvas, scaled with it.
KEYPOINT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
)
NOSE = 2
STICK_HALF_WIDTH_AT_1024 = 4.0  # the ellipse's minor semi-axis, as in the images IdentityNet was trained on
POINT_RADIUS_AT_1024 = 10.0
STICK_OPACITY = 0.6
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel placement of the drawn shapes
_ONE = 1 << _SHIFT


def framing_preset(framing: str) -> FramingPreset:
    """The preset called ``framing``; a ValueError names the choices (the name comes from users)."""
    try:
        return FRAMINGS[framing]
    except KeyError:
        choices = ", ".join(FRAMINGS)
        raise ValueError(f"unknown framing {framing!r}; choose one of: {choices}") from None


def _check_keypoints(kps: np.ndarray) -> np.ndarray:
    points = np.asarray(kps, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"expected 5 finite (x, y) keypoints, got an array of shape {points.shape}")
    return points


def _check_canvas(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"canvas must be at least 1×1 px, got {width}×{height}")


def target_keypoints(reference_kps: np.ndarray, framing: str, width: int, height: int) -> np.ndarray:
    """The reference face's 5 keypoints moved onto a ``width``×``height`` canvas: eyes level, the
    preset's fraction of the width apart, their midpoint where the preset puts it.

    A similarity transform (rotation, uniform scale, translation), so the face keeps its shape.
    """
    preset = framing_preset(framing)
    _check_canvas(width, height)
    points = _check_keypoints(reference_kps)
    eye_vector = points[1] - points[0]
    ied = float(np.hypot(*eye_vector))
    if ied < 1e-6:
        raise ValueError("the reference eyes coincide: cannot measure the face's size")
    angle = math.atan2(eye_vector[1], eye_vector[0])
    cos, sin = math.cos(-angle), math.sin(-angle)
    scale = preset.eye_distance * width / ied
    linear = scale * np.array([[cos, -sin], [sin, cos]])
    eye_mid = (points[0] + points[1]) / 2.0
    target_mid = np.array([preset.eye_x * width, preset.eye_y * height])
    return (points - eye_mid) @ linear.T + target_mid


def _fixed(value: float) -> int:
    return round(value * _ONE)


def draw_keypoints(kps: np.ndarray, width: int, height: int) -> np.ndarray:
    """The IdentityNet control image: H×W×3 uint8 RGB, black, with the keypoints drawn on it."""
    _check_canvas(width, height)
    points = _check_keypoints(kps)
    size = math.sqrt(width * height) / 1024.0  # geometric mean: portrait and square get similar strokes
    stick_half_width = max(0.5, STICK_HALF_WIDTH_AT_1024 * size)
    radius = max(1.0, POINT_RADIUS_AT_1024 * size)

    sticks = np.zeros((height, width, 3), np.uint8)
    for index, point in enumerate(points):
        if index == NOSE:
            continue
        delta = points[NOSE] - point
        length = float(np.hypot(*delta))
        centre = (point + points[NOSE]) / 2.0
        angle = math.degrees(math.atan2(delta[1], delta[0]))
        cv2.ellipse(sticks, (_fixed(centre[0]), _fixed(centre[1])), (_fixed(length / 2), _fixed(stick_half_width)),
                    angle, 0, 360, KEYPOINT_COLOURS[index], -1, cv2.LINE_AA, _SHIFT)
    canvas = (sticks.astype(np.float32) * STICK_OPACITY).round().astype(np.uint8)
    for index, point in enumerate(points):
        cv2.circle(canvas, (_fixed(point[0]), _fixed(point[1])), _fixed(radius), KEYPOINT_COLOURS[index], -1,
                   cv2.LINE_AA, _SHIFT)
    return canvas
