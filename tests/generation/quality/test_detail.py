"""The lost-detail measurements on inputs whose answer is known without them.

A random field with a 1/f² power spectrum is what the detail profile's "natural" ratio assumes, so a
sharp one must score about 1 and the same field enlarged from a small copy must collapse; the grain
ratio must see noise taken off the skin boxes only, and nothing when the whole frame loses it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from generation.faces.types import Face, HeadPose
from generation.quality.detail import PROFILE_MAX_FRACTION, detail_profile, skin_grain
from generation.quality.thresholds import THRESHOLDS

SIZE = 720


def power_law_field(size: int, seed: int = 3) -> np.ndarray:
    """Grey RGB image whose power spectrum falls as 1/f² (amplitude 1/f), scaled to 30-220."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius
    spectrum[0, 0] = 0.0
    field = np.real(np.fft.ifft2(spectrum))
    field = (field - field.min()) / (field.max() - field.min()) * 190 + 30
    return np.repeat(field[..., None], 3, axis=2).astype(np.uint8)


def face_at(ied: float, centre: tuple[float, float] = (SIZE / 2, SIZE / 2 - 60)) -> Face:
    """A level, frontal face with its eyes ``ied`` apart (68 points where the checks look for them)."""
    cx, cy = centre
    eyes = np.array([[cx - ied / 2, cy], [cx + ied / 2, cy]])
    five = np.vstack([eyes, [[cx, cy + 0.6 * ied], [cx - 0.4 * ied, cy + ied], [cx + 0.4 * ied, cy + ied]]])
    points = np.zeros((68, 2))
    points[:] = (cx, cy + 0.5 * ied)
    points[[1, 2, 3]] = (cx - 0.9 * ied, cy + 0.6 * ied)
    points[[13, 14, 15]] = (cx + 0.9 * ied, cy + 0.6 * ied)
    points[31], points[35] = (cx - 0.2 * ied, cy + 0.7 * ied), (cx + 0.2 * ied, cy + 0.7 * ied)
    points[48], points[54] = five[3], five[4]
    points[19], points[24] = (cx - 0.5 * ied, cy - 0.3 * ied), (cx + 0.5 * ied, cy - 0.3 * ied)
    box = (cx - 1.1 * ied, cy - 0.9 * ied, cx + 1.1 * ied, cy + 1.6 * ied)
    return Face(box=box, score=1.0, landmarks5=five, pose=HeadPose(0.0, 0.0, 0.0), landmarks68=points)


def enlarged(rgb: np.ndarray, factor: float) -> np.ndarray:
    small = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, rgb.shape[1::-1], interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("ied", [48.0, 64.0, 100.0, 128.0, 200.0])
def test_a_natural_spectrum_scores_about_one_at_any_face_size(ied: float) -> None:
    profile = detail_profile(power_law_field(SIZE), face_at(ied))
    assert profile is not None
    assert 0.7 < profile.score < 1.7, profile  # the 1/f² premise holds to within the round trip's own filter
    assert profile.measured_ied == min(ied, 128.0)


@pytest.mark.parametrize(("from_ied", "tier"), [(20.0, "fail"), (30.0, "warn")])
def test_the_same_field_enlarged_from_a_small_copy_collapses(from_ied: float, tier: str) -> None:
    ied = 110.0
    profile = detail_profile(enlarged(power_law_field(SIZE), from_ied / ied), face_at(ied))
    assert profile is not None
    threshold = THRESHOLDS["detail_profile"]
    limit = threshold.fail if tier == "fail" else threshold.warn
    assert profile.score < limit, profile
    # The scale where the detail runs out is at or above the copy's own size, never far below it.
    assert profile.at_ied >= 0.7 * from_ied


def test_too_small_a_face_is_not_judged() -> None:
    assert detail_profile(power_law_field(SIZE), face_at(30.0)) is None
    profile = detail_profile(power_law_field(SIZE), face_at(48.0))
    assert profile is not None and profile.at_ied <= PROFILE_MAX_FRACTION * 48.0


def noisy_grey(seed: int = 5, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(128 + rng.normal(0, sigma, (SIZE, SIZE, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)


def test_grain_is_even_over_a_plain_noisy_frame() -> None:
    grain = skin_grain(noisy_grey(), face_at(110.0))
    assert grain is not None
    assert 0.85 < grain.ratio < 1.15, grain


def test_grain_taken_off_the_skin_only_is_seen() -> None:
    rgb = noisy_grey()
    face = face_at(110.0)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    rgb[y0:y1, x0:x1] = cv2.GaussianBlur(rgb[y0:y1, x0:x1], (0, 0), 2.0)  # smoothed face, grainy rest
    grain = skin_grain(rgb, face)
    assert grain is not None
    assert grain.ratio < (THRESHOLDS["skin_grain"].warn or 0.0), grain


def test_a_frame_without_grain_is_not_judged() -> None:
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8)
    assert skin_grain(flat, face_at(110.0)) is None
    no_points = Face(box=(0, 0, 10, 10), score=1.0, landmarks5=face_at(110.0).landmarks5, pose=HeadPose(0, 0, 0))
    assert skin_grain(noisy_grey(), no_points) is None
