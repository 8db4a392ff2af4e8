"""Aligning a face to a canonical frame, so every check measures the same face regions at the
same scale whatever the photo's size or the head's roll.

Alignment is a similarity transform from the two eye centres (rotation + uniform scale). When
shrinking, the face region is first resized with area averaging: a plain warp would alias and
make small, information-poor faces look sharper than they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from generation.faces.types import Face


@dataclass(frozen=True)
class AlignedFace:
    pixels: np.ndarray  # size × size × 3 uint8
    landmarks5: np.ndarray  # in the aligned frame
    landmarks68: np.ndarray | None
    ied: float  # inter-eye distance in the aligned frame
    eye_y: float
    native_ied: float  # inter-eye distance in the source image (so callers know if it was upscaled)

    @property
    def size(self) -> int:
        return self.pixels.shape[0]

    def region(self, cx: float, cy: float, half_w: float, half_h: float) -> np.ndarray:
        """Pixels of a rectangle given in IED units relative to the eye midpoint."""
        size = self.size
        mid_x = size / 2.0
        x0 = round(mid_x + (cx - half_w) * self.ied)
        x1 = round(mid_x + (cx + half_w) * self.ied)
        y0 = round(self.eye_y + (cy - half_h) * self.ied)
        y1 = round(self.eye_y + (cy + half_h) * self.ied)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(size, max(x1, x0 + 1)), min(size, max(y1, y0 + 1))
        return self.pixels[y0:y1, x0:x1]


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_face(rgb: np.ndarray, face: Face, *, size: int, ied: float, eye_y: float) -> AlignedFace:
    """Rotate and scale so the eyes are level, ``ied`` apart, centred at (size/2, eye_y)."""
    eye_l, eye_r = face.landmarks5[0], face.landmarks5[1]
    native_ied = max(face.inter_eye_distance, 1e-3)
    angle = math.degrees(math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))
    scale = ied / native_ied
    source = rgb
    offset = np.zeros(2)
    pre_scale = 1.0
    if scale < 0.9:
        # Area-average the needed neighbourhood down to the target scale first.
        reach = size / scale * 0.75
        mid = (eye_l + eye_r) / 2.0
        x0 = int(max(0, mid[0] - reach))
        y0 = int(max(0, mid[1] - reach))
        x1 = int(min(rgb.shape[1], mid[0] + reach))
        y1 = int(min(rgb.shape[0], mid[1] + reach))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            patch = rgb[y0:y1, x0:x1]
            new_w = max(1, round((x1 - x0) * scale))
            new_h = max(1, round((y1 - y0) * scale))
            source = cv2.resize(patch, (new_w, new_h), interpolation=cv2.INTER_AREA)
            offset = np.array([x0, y0], dtype=np.float64)
            pre_scale = new_w / (x1 - x0)
    # Landmarks in the (possibly pre-scaled) source.
    pts5 = (face.landmarks5 - offset) * pre_scale
    mid_src = (pts5[0] + pts5[1]) / 2.0
    residual = scale / pre_scale
    matrix = cv2.getRotationMatrix2D((float(mid_src[0]), float(mid_src[1])), angle, residual)
    matrix[0, 2] += size / 2.0 - mid_src[0]
    matrix[1, 2] += eye_y - mid_src[1]
    interpolation = cv2.INTER_LINEAR if residual < 1.5 else cv2.INTER_CUBIC
    pixels = cv2.warpAffine(source, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    lm68 = None
    if face.landmarks68 is not None:
        lm68 = _apply(matrix, (face.landmarks68 - offset) * pre_scale)
    return AlignedFace(
        pixels=pixels,
        landmarks5=_apply(matrix, pts5),
        landmarks68=lm68,
        ied=ied,
        eye_y=eye_y,
        native_ied=native_ied,
    )


def face_mask(aligned: AlignedFace) -> np.ndarray:
    """Boolean mask of the face skin area (jaw line + forehead) in the aligned frame."""
    size = aligned.size
    mask = np.zeros((size, size), dtype=np.uint8)
    if aligned.landmarks68 is not None:
        jaw = aligned.landmarks68[0:17]
        brows = aligned.landmarks68[17:27].copy()
        brows[:, 1] -= 0.35 * aligned.ied  # reach up onto the forehead
        hull = cv2.convexHull(np.concatenate([jaw, brows]).astype(np.float32)).astype(np.int32)
        cv2.fillConvexPoly(mask, hull, 1)
    else:
        centre = (int(size / 2), int(aligned.eye_y + 0.45 * aligned.ied))
        axes = (int(0.95 * aligned.ied), int(1.45 * aligned.ied))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    return mask.astype(bool)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of sRGB values (what JPEG stores), float32 0-255."""
    rgb = rgb.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB 0-255 to linear light 0-1 (lighting ratios are ratios of light, not of code values)."""
    v = np.asarray(values, dtype=np.float32) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
