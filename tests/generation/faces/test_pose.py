"""Head pose from five landmarks, on synthetic point sets with a known answer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from generation.faces.pose import estimate_pose

# The ArcFace 112×112 alignment template: left eye, right eye, nose tip, left and right mouth corner.
ARCFACE = np.array([
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
])
IED = float(np.linalg.norm(ARCFACE[1] - ARCFACE[0]))


def rotated(points: np.ndarray, degrees: float) -> np.ndarray:
    """Turned by ``degrees`` clockwise on screen (image y points down) about the eye midpoint."""
    centre = (points[0] + points[1]) / 2
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    return (points - centre) @ np.array([[c, -s], [s, c]]).T + centre


def with_nose(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    points = ARCFACE.copy()
    points[2] += (dx, dy)
    return points


def test_frontal_template_is_straight() -> None:
    pose = estimate_pose(ARCFACE)
    assert abs(pose.yaw) < 3
    assert abs(pose.pitch) < 3
    assert abs(pose.roll) < 3


@pytest.mark.parametrize("degrees", [20.0, -20.0, 45.0])
def test_rotation_in_the_image_plane_is_roll_only(degrees: float) -> None:
    frontal = estimate_pose(ARCFACE)
    pose = estimate_pose(rotated(ARCFACE, degrees))
    assert pose.roll == pytest.approx(frontal.roll + degrees, abs=1)
    assert pose.yaw == pytest.approx(frontal.yaw, abs=1)
    assert pose.pitch == pytest.approx(frontal.pitch, abs=1)


def test_scale_and_translation_change_nothing() -> None:
    frontal = estimate_pose(ARCFACE)
    moved = estimate_pose(ARCFACE * 7.5 + (300.0, -40.0))
    assert moved.yaw == pytest.approx(frontal.yaw, abs=0.1)
    assert moved.pitch == pytest.approx(frontal.pitch, abs=0.1)
    assert moved.roll == pytest.approx(frontal.roll, abs=0.1)


def test_nose_towards_image_right_is_positive_yaw_growing_with_the_shift() -> None:
    shifts = [0.05, 0.1, 0.2, 0.3, 0.4]
    yaws = [estimate_pose(with_nose(dx=s * IED)).yaw for s in shifts]
    assert all(y > 0 for y in yaws)
    assert yaws == sorted(yaws) and len(set(yaws)) == len(yaws)
    # Left is the mirror image.
    right, left = estimate_pose(with_nose(dx=0.2 * IED)), estimate_pose(with_nose(dx=-0.2 * IED))
    assert left.yaw == pytest.approx(-right.yaw, abs=1)


def test_yaw_survives_roll() -> None:
    """A turned head that is also tilted: the yaw is read along the eye line, not the image x axis."""
    turned = with_nose(dx=0.2 * IED)
    assert estimate_pose(rotated(turned, 30)).yaw == pytest.approx(estimate_pose(turned).yaw, abs=1)


def test_nose_lower_is_positive_pitch_growing_with_the_drop() -> None:
    drops = [0.05, 0.1, 0.2, 0.3]
    pitches = [estimate_pose(with_nose(dy=d * IED)).pitch for d in drops]
    assert all(p > 0 for p in pitches)
    assert pitches == sorted(pitches) and len(set(pitches)) == len(pitches)
    assert estimate_pose(with_nose(dy=-0.2 * IED)).pitch < 0


def test_nose_shift_along_x_leaves_pitch_and_roll() -> None:
    frontal = estimate_pose(ARCFACE)
    pose = estimate_pose(with_nose(dx=0.2 * IED))
    assert pose.roll == pytest.approx(frontal.roll, abs=0.01)
    assert pose.pitch == pytest.approx(frontal.pitch, abs=1)


def test_frontal_ratio_sets_the_neutral_nose_height() -> None:
    # A backend whose nose point sits lower on a frontal face (dlib: 0.56 of the eye→mouth height)
    # reads its own frontal face as level, and the ArcFace template as pitched up.
    dlib_like = ARCFACE.copy()
    eye_y = (ARCFACE[0, 1] + ARCFACE[1, 1]) / 2
    mouth_y = (ARCFACE[3, 1] + ARCFACE[4, 1]) / 2
    dlib_like[2, 1] = eye_y + 0.56 * (mouth_y - eye_y)
    assert abs(estimate_pose(dlib_like, frontal_ratio=0.56).pitch) < 1
    assert estimate_pose(ARCFACE, frontal_ratio=0.56).pitch < -3


def test_degenerate_points_do_not_crash() -> None:
    flat = ARCFACE.copy()
    flat[:2, 1] = 50.0
    flat[3:, 1] = 50.0  # mouth on the (level) eye line: no height to measure pitch from
    pose = estimate_pose(flat)
    assert pose.pitch == 0.0
    assert pose.roll == 0.0
    upside_down = estimate_pose(ARCFACE * (1, -1))  # mouth above the eyes
    assert upside_down.pitch == 0.0
    assert all(math.isfinite(v) for v in (pose.yaw, pose.pitch, pose.roll))


# --- the 68-point cross-check ----------------------------------------------------------------------


def _projected(yaw: float, pitch: float, size: tuple[int, int] = (1200, 900), distance: float = 600.0):
    """The generic head turned by (yaw, pitch) — yaw > 0 nose to image right, pitch > 0 head down — and
    photographed by the camera estimate_pose_pnp assumes; the rotation is built here, independently."""
    import cv2

    from generation.faces.pose import HEAD_MODEL_68

    height, width = size
    indices = sorted(HEAD_MODEL_68)
    # Head axes: x right, y up, z towards the camera; camera axes: x right, y down, z forward.
    model = np.array([HEAD_MODEL_68[i] for i in indices], dtype=float) * np.array([1.0, -1.0, -1.0])
    y, p = math.radians(yaw), math.radians(pitch)
    turn = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    nod = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rotation, _ = cv2.Rodrigues(nod @ turn)
    focal = float(max(height, width))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=float)
    points, _ = cv2.projectPoints(model, rotation, np.array([0.0, 0.0, distance]), camera, None)
    out = np.zeros((68, 2))
    out[indices] = points.reshape(-1, 2)
    return out


@pytest.mark.parametrize(("yaw", "pitch"), [(0, 0), (20, 0), (-25, 0), (0, 15), (0, -20), (15, -10)])
def test_pnp_recovers_a_known_head_pose(yaw: float, pitch: float) -> None:
    from generation.faces.pose import estimate_pose_pnp

    pose = estimate_pose_pnp(_projected(yaw, pitch), (1200, 900))
    assert pose is not None
    assert pose.yaw == pytest.approx(yaw, abs=1.0) and pose.pitch == pytest.approx(pitch, abs=1.0)


def test_pnp_agrees_with_the_five_points_on_yaw_and_calls_a_level_head_level() -> None:
    """obama2.jpg: a half-body photo looking at the camera, which the five points call pitched −17°."""
    from generation.faces.dlib_backend import DlibAnalyzer
    from generation.faces.pose import estimate_pose_pnp
    from generation.images import load_image_file

    photo = load_image_file(Path(__file__).parents[2] / "fixtures" / "faces" / "obama2.jpg", max_side=2048)
    face = DlibAnalyzer().analyze(photo.pixels)[0]
    pnp = estimate_pose_pnp(face.landmarks68, photo.pixels.shape[:2])
    assert pnp is not None
    assert math.copysign(1, pnp.yaw) == math.copysign(1, face.pose.yaw) and abs(pnp.yaw) > 10
    assert abs(face.pose.pitch) > 12 and abs(pnp.pitch) < 8
