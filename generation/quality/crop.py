"""The suggested crop: a square, roll-corrected, face-centred window the generator gets.

Side 5.5 × inter-eye distance (never less than 3.2 × eye-to-chin), eye line 44 % from the top:
this matches the OFIQ 616 template and ANSI/NIST head proportions (face-quality.md §3).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from generation.quality.checks import Measured
from generation.quality.report import CropBox
from generation.quality.thresholds import THRESHOLDS

SIDE_PER_IED = 5.5
SIDE_PER_EYE_TO_CHIN = 3.2
EYE_LINE_FROM_TOP = 0.44
# When that square reaches out of the photo (a tilted head near an edge), a tighter one that still holds
# the whole head with a margin is better than filling the corners: down to these proportions, with the
# face moved by at most this fraction of the side (the eye line stays within 2 % of its place).
TIGHT_SIDE_PER_IED = 4.0
TIGHT_SIDE_PER_EYE_TO_CHIN = 2.5
MAX_SHIFT = 0.02
# Corners outside the photo are filled at this resolution (px square), then scaled up and softened.
FILL_RESOLUTION = 96
MAX_OUTPUT = 1024
MAX_UPSCALE = 1.5
# A reference crop for an editor: the editors refuse images under 64 px and see little of a face under 256.
REFERENCE_MIN_SIDE = 256


def _overshoot(crop: CropBox, width: float, height: float) -> float:
    xs, ys = zip(*crop.corners(), strict=True)
    return max(0.0, -min(xs), -min(ys), max(xs) - width, max(ys) - height)


def _tighter_inside(crop: CropBox, eyes: np.ndarray, min_side: float, width: float, height: float
                    ) -> CropBox | None:
    """The largest square between ``min_side`` and the crop's own side that lies wholly inside the photo,
    placed on ``eyes`` as every crop is, then moved at most MAX_SHIFT of its side along its own axes;
    None if there is none."""
    theta = math.radians(crop.angle)
    across, down = np.array([math.cos(theta), math.sin(theta)]), np.array([-math.sin(theta), math.cos(theta)])
    shifts = sorted(((u, v) for u in np.linspace(-MAX_SHIFT, MAX_SHIFT, 9) for v in np.linspace(-MAX_SHIFT,
                     MAX_SHIFT, 9)), key=lambda uv: uv[0] ** 2 + uv[1] ** 2)
    for side in np.linspace(crop.side, min_side, 12):
        for u, v in shifts:
            centre = eyes + side * ((0.5 - EYE_LINE_FROM_TOP + v) * down + u * across)
            candidate = CropBox((float(centre[0]), float(centre[1])), float(side), crop.angle, 0.0)
            if _overshoot(candidate, width, height) == 0.0:
                return candidate
    return None


def suggest_crop(m: Measured) -> CropBox:
    """The crop in original-image pixels, with how much of it falls outside the image (a tighter square
    when that one would reach outside and a tighter one fits)."""
    ied = m.face.inter_eye_distance / m.yaw_factor
    side = max(SIDE_PER_IED * ied, SIDE_PER_EYE_TO_CHIN * m.eye_to_chin)
    centre = m.face.eye_mid + m.down * (0.5 - EYE_LINE_FROM_TOP) * side
    roll = m.face.pose.roll
    angle = roll if abs(roll) > (THRESHOLDS["roll_fix"].warn or 0.0) else 0.0
    scale = m.scale
    crop = CropBox(centre=(float(centre[0] / scale), float(centre[1] / scale)), side=float(side / scale),
                   angle=float(angle), padding=0.0)
    width, height = m.pixels.shape[1] / scale, m.pixels.shape[0] / scale
    overshoot = _overshoot(crop, width, height)
    if overshoot == 0.0:
        return crop
    min_side = max(TIGHT_SIDE_PER_IED * ied, TIGHT_SIDE_PER_EYE_TO_CHIN * m.eye_to_chin) / scale
    tighter = _tighter_inside(crop, m.face.eye_mid / scale, min(min_side, crop.side), width, height)
    if tighter is not None:
        return tighter
    return CropBox(crop.centre, crop.side, crop.angle, padding=overshoot / crop.side)


def crop_output_size(crop: CropBox) -> int:
    """1024 px, or less when that would upscale the face more than 1.5× (rounded down, so never more)."""
    return max(1, int(min(MAX_OUTPUT, math.floor(crop.side * MAX_UPSCALE))))


def apply_crop(pixels: np.ndarray, crop: CropBox, pixel_scale: float, out_size: int | None = None) -> np.ndarray:
    """Cut ``crop`` out of ``pixels`` (an image at ``pixel_scale`` × original size), eyes level.

    Pixels outside the image are filled with the photo's edge colours carried outwards and softened;
    large reductions area-average first so the crop is not aliased.
    """
    out_size = out_size or crop_output_size(crop)
    side = crop.side * pixel_scale
    cx, cy = crop.centre[0] * pixel_scale, crop.centre[1] * pixel_scale
    factor = out_size / side
    source = pixels
    if factor < 0.9:
        reach = side * 0.75
        x0, y0 = int(max(0, cx - reach)), int(max(0, cy - reach))
        x1, y1 = int(min(pixels.shape[1], cx + reach)), int(min(pixels.shape[0], cy + reach))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            new_w, new_h = max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor))
            source = cv2.resize(pixels[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA)
            pre = new_w / (x1 - x0)
            cx, cy, factor = (cx - x0) * pre, (cy - y0) * pre, factor / pre
    matrix = cv2.getRotationMatrix2D((cx, cy), crop.angle, factor)
    matrix[0, 2] += out_size / 2.0 - cx
    matrix[1, 2] += out_size / 2.0 - cy
    flags = cv2.INTER_CUBIC if factor > 1.2 else cv2.INTER_LINEAR
    size = (out_size, out_size)
    out = cv2.warpAffine(source, matrix, size, flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    if crop.padding <= 0.0:
        return out
    # Outside the photo: the colours at the photo's edge carried outwards (inpainted at low resolution,
    # then softened like an out-of-focus background) and blended in over a soft edge. Not a mirror: a
    # mirror of a photo cut near the face repeats the face. The photo's own pixels stay untouched.
    inside = cv2.warpAffine(np.ones(source.shape[:2], np.float32), matrix, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    low = FILL_RESOLUTION
    small = cv2.resize(out, (low, low), interpolation=cv2.INTER_AREA)
    hole = (cv2.resize(inside, (low, low), interpolation=cv2.INTER_AREA) < 0.99).astype(np.uint8)
    filled = cv2.inpaint(small, hole, 3, cv2.INPAINT_TELEA)
    fill = cv2.GaussianBlur(cv2.resize(filled, size, interpolation=cv2.INTER_CUBIC), (0, 0), sigmaX=out_size / 80)
    alpha = np.maximum(inside, cv2.GaussianBlur(inside, (0, 0), sigmaX=out_size / 100))[..., None]
    return (alpha * out + (1.0 - alpha) * fill).round().astype(np.uint8)


def reference_crop(m: Measured) -> np.ndarray:
    """The face-centred square an editor gets as its reference: the crop the gate suggests to the person,
    cut from the working copy, REFERENCE_MIN_SIDE to 1024 px."""
    crop = suggest_crop(m)
    # No bigger than the working copy holds (1.5× at most): enlarging adds pixels, not detail, and every
    # reference pixel costs the editor attention.
    held = math.floor(crop.side * m.scale * MAX_UPSCALE)
    return apply_crop(m.pixels, crop, m.scale, max(REFERENCE_MIN_SIDE, min(crop_output_size(crop), held)))
