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
MAX_OUTPUT = 1024
MAX_UPSCALE = 1.5


def suggest_crop(m: Measured) -> CropBox:
    """The crop in original-image pixels, with how much of it falls outside the image."""
    ied = m.face.inter_eye_distance / m.yaw_factor
    side = max(SIDE_PER_IED * ied, SIDE_PER_EYE_TO_CHIN * m.eye_to_chin)
    centre = m.face.eye_mid + m.down * (0.5 - EYE_LINE_FROM_TOP) * side
    roll = m.face.pose.roll
    angle = roll if abs(roll) > (THRESHOLDS["roll_fix"].warn or 0.0) else 0.0
    scale = m.scale
    crop = CropBox(centre=(float(centre[0] / scale), float(centre[1] / scale)), side=float(side / scale),
                   angle=float(angle), padding=0.0)
    width, height = m.pixels.shape[1] / scale, m.pixels.shape[0] / scale
    xs, ys = zip(*crop.corners(), strict=True)
    overshoot = max(0.0, -min(xs), -min(ys), max(xs) - width, max(ys) - height)
    return CropBox(crop.centre, crop.side, crop.angle, padding=overshoot / crop.side)


def crop_output_size(crop: CropBox) -> int:
    """1024 px, or less when that would upscale the face more than 1.5× (rounded down, so never more)."""
    return max(1, int(min(MAX_OUTPUT, math.floor(crop.side * MAX_UPSCALE))))


def apply_crop(pixels: np.ndarray, crop: CropBox, pixel_scale: float, out_size: int | None = None) -> np.ndarray:
    """Cut ``crop`` out of ``pixels`` (an image at ``pixel_scale`` × original size), eyes level.

    Pixels outside the image are filled with a blurred mirror of the photo; large reductions
    area-average first so the crop is not aliased.
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
    # Outside the photo: a heavily blurred mirror of it, so the pad reads as out-of-focus
    # background instead of streaks, and the photo's own pixels stay untouched.
    inside = cv2.warpAffine(np.ones(source.shape[:2], np.float32), matrix, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=out_size / 10)
    alpha = np.maximum(inside, cv2.GaussianBlur(inside, (0, 0), sigmaX=out_size / 100))[..., None]
    return (alpha * out + (1.0 - alpha) * blurred).round().astype(np.uint8)
