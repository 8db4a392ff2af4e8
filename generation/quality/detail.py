"""Lost fine detail behind a normal pixel count: faces enlarged from a small picture, and skin smoothed
by a beauty filter. Neither shows in the pixel count, and the blur check (which judges at 40 px between
the eyes) misses both, yet the generator learns the face from exactly the detail they removed.

Two measurements, each relative to the photo itself so exposure and skin tone cancel out:

- **Detail profile** (enlarging): how much finer detail the face has at each scale, compared with what a
  sharp face has. A round trip through a smaller size removes exactly the detail finer than that size;
  for a natural image (power spectrum ∝ 1/f²) the detail lost by a round trip through ``u`` px between
  the eyes, relative to one through ``u/2``, is (1/u − 1/M) / (2/u − 1/M) at measuring scale ``M``. A face
  enlarged from ``u0`` px has almost nothing to lose below ``u0``, so its ratio collapses there. The
  score is the lowest ratio over the scales measured, as a fraction of the natural one (1 ≈ sharp).
- **Skin noise** (smoothing): every camera leaves the same fine grain over the whole frame; a beauty
  filter removes it from the skin and leaves it everywhere else. The score is the grain on the cheeks
  and forehead divided by the grain around the head (Immerkær's noise operator on the flattest half of
  each region, so edges and pores don't count as grain).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from generation.faces.types import Face
from generation.quality.geometry import align_face, luma

# Detail is measured with the face at most this many px between the eyes (finer scales cost time and
# are lost by the generator's own 1024 px crop anyway) ...
MEASURE_MAX_IED = 128.0
# ... on scales from 16 px between the eyes up to three quarters of the measuring scale.
PROFILE_SCALES = (16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96)
PROFILE_MAX_FRACTION = 0.75
# Below this many px between the eyes there are too few scales to tell enlarging from a small face.
MIN_IED = 40.0
# Immerkær (1996): a 3×3 operator that cancels any local plane, leaving the sensor's grain.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_MIN_NOISE_PIXELS = 400


@dataclass(frozen=True)
class DetailProfile:
    score: float  # lowest measured / natural ratio over the scales (≈ 1 sharp, ≈ 0.2 enlarged from tiny)
    at_ied: int  # the scale, px between the eyes, where the detail runs out most
    measured_ied: float  # the scale the face was measured at


def detail_profile(rgb: np.ndarray, face: Face) -> DetailProfile | None:
    """The detail profile of ``face`` in ``rgb``, or None when the face is too small to tell."""
    native = face.inter_eye_distance
    if native < MIN_IED:
        return None
    ied = min(native, MEASURE_MAX_IED)
    size, eye_y = int(2.2 * ied), 0.45 * ied
    gray = luma(align_face(rgb, face, size=size, ied=ied, eye_y=eye_y).pixels)
    # The inner face: brows to chin, cheek to cheek (no hair or background, which may be out of focus).
    rows = slice(round(eye_y - 0.2 * ied), round(eye_y + 1.3 * ied))
    cols = slice(round(size / 2 - 0.9 * ied), round(size / 2 + 0.9 * ied))

    def lost(scale: float) -> float:
        side = max(1, round(size * scale / ied))
        small = cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA)
        back = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        return float(np.mean((gray - back)[rows, cols] ** 2))

    ratios = []
    for scale in PROFILE_SCALES:
        if scale > PROFILE_MAX_FRACTION * ied:
            break
        natural = (1 / scale - 1 / ied) / (2 / scale - 1 / ied)
        ratios.append((lost(scale) / max(lost(scale / 2), 1e-9) / natural, scale))
    if not ratios:
        return None
    score, at = min(ratios)
    return DetailProfile(float(score), int(at), float(ied))


def _grain(gradient: np.ndarray, response: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean grain over the flattest half of ``mask`` (the top fifth trimmed: stray edges)."""
    count = int(mask.sum())
    if count < _MIN_NOISE_PIXELS:
        return None
    slopes = gradient[mask]
    flat = response[mask][slopes <= np.partition(slopes, count // 2)[count // 2]]
    keep = max(1, int(0.8 * flat.size))
    return float(np.partition(flat, keep - 1)[:keep].mean())


@dataclass(frozen=True)
class SkinGrain:
    ratio: float  # grain on the skin / grain around the head (≈ 1-3 natural, < 0.7 filtered)
    skin: float
    surround: float


def skin_grain(rgb: np.ndarray, face: Face) -> SkinGrain | None:
    """Grain on cheeks and forehead against grain around the head, or None where either is too small
    to measure (a face filling the frame, no 68-point landmarks)."""
    points = face.landmarks68
    if points is None:
        return None
    ied = face.inter_eye_distance
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = face.box
    bw, bh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Only the neighbourhood of the head is read (a 12-MP frame would cost more than every other check).
    top, bottom = int(max(0, cy - 1.4 * bh)), int(min(height, cy + 1.4 * bh))
    left, right = int(max(0, cx - 1.4 * bw)), int(min(width, cx + 1.4 * bw))
    if bottom - top < 8 or right - left < 8:
        return None
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[top:bottom, left:right]).astype(np.float32), cv2.COLOR_RGB2GRAY)
    response = np.abs(cv2.filter2D(gray, -1, _NOISE_KERNEL))
    skin = np.zeros(gray.shape, bool)
    half = int(0.18 * ied)
    forehead = (points[19] + points[24]) / 2 - (0.0, 0.35 * ied)
    for centre in (points[[1, 2, 3, 31, 48]].mean(axis=0), points[[15, 14, 13, 35, 54]].mean(axis=0), forehead):
        x, y = int(centre[0]) - left, int(centre[1]) - top
        skin[max(0, y - half):max(0, y + half), max(0, x - half):max(0, x + half)] = True
    # (Shot noise grows as the square root of the light and the sRGB curve's slope falls about as fast,
    # so in code values a camera's grain is nearly the same on dark and light skin.)
    smooth = cv2.GaussianBlur(gray, (0, 0), 1.0)
    gradient = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=1), cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=1))
    surround = np.ones(gray.shape, bool)
    surround[max(0, int(cy - 0.9 * bh) - top):max(0, int(cy + 1.2 * bh) - top),
             max(0, int(cx - 0.8 * bw) - left):max(0, int(cx + 0.8 * bw) - left)] = False
    on_skin, around = _grain(gradient, response, skin), _grain(gradient, response, surround)
    if on_skin is None or around is None or around < 0.3:
        return None  # no measurable grain anywhere: a render, or a photo denoised as a whole
    return SkinGrain(on_skin / around, on_skin, around)
