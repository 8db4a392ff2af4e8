"""Head pose from five landmarks, by geometry instead of a solver.

Five points and a generic head give no more than yaw, pitch and roll to a few degrees, which is
all the quality gate needs. Roll is the eye-line angle. Yaw follows from how far the nose tip sits
off the eye midpoint: a nose protruding ``k`` inter-eye distances shifts by ``k·tan(yaw)`` IEDs.
Pitch inverts the projection of the nose and mouth heights below the eye line.
"""

from __future__ import annotations

import math

import numpy as np

from generation.faces.types import HeadPose

# Nose-tip depth in front of the eye plane, in inter-eye distances (anthropometric ~0.5-0.6).
NOSE_DEPTH = 0.55
# Mouth-corner depth in front of the eye plane, in inter-eye distances.
MOUTH_DEPTH = 0.15
# Mouth-line height below the eye line in a frontal face (ArcFace template: 40.7 / 35.2 px).
MOUTH_DROP = 1.16


def _rotate(points: np.ndarray, centre: np.ndarray, degrees: float) -> np.ndarray:
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    return (points - centre) @ rot.T + centre


def _nose_mouth_ratio(pitch_deg: float, frontal_ratio: float) -> float:
    """Projected (eye→nose) / (eye→mouth) height for a head pitched by ``pitch_deg``."""
    p = math.radians(pitch_deg)
    nose_drop = frontal_ratio * MOUTH_DROP
    nose = nose_drop * math.cos(p) + NOSE_DEPTH * math.sin(p)
    mouth = MOUTH_DROP * math.cos(p) + MOUTH_DEPTH * math.sin(p)
    return nose / mouth


def estimate_pose(landmarks5: np.ndarray, frontal_ratio: float = 0.49) -> HeadPose:
    """Yaw, pitch, roll in degrees from (left eye, right eye, nose, mouth left, mouth right).

    ``frontal_ratio`` is the eye→nose / eye→mouth height of a frontal face for the backend's
    landmark definition (0.49 on the ArcFace template; dlib's nose tip sits a little lower).
    """
    pts = np.asarray(landmarks5, dtype=np.float64)
    eye_l, eye_r = pts[0], pts[1]
    dx, dy = eye_r - eye_l
    roll = math.degrees(math.atan2(dy, dx))
    eye_mid = (eye_l + eye_r) / 2.0
    upright = _rotate(pts, eye_mid, -roll)
    ied = float(np.linalg.norm(upright[1] - upright[0])) or 1e-6
    nose = upright[2]
    mouth_mid = (upright[3] + upright[4]) / 2.0
    yaw = math.degrees(math.atan2(nose[0] - eye_mid[0], NOSE_DEPTH * ied))

    mouth_height = mouth_mid[1] - eye_mid[1]
    if mouth_height <= 1e-6:
        pitch = 0.0
    else:
        ratio = (nose[1] - eye_mid[1]) / mouth_height
        # The ratio rises monotonically with pitch over ±70°; invert by bisection.
        low, high = -70.0, 70.0
        for _ in range(40):
            middle = (low + high) / 2.0
            if _nose_mouth_ratio(middle, frontal_ratio) < ratio:
                low = middle
            else:
                high = middle
        pitch = (low + high) / 2.0
    return HeadPose(yaw=round(yaw, 2), pitch=round(pitch, 2), roll=round(roll, 2))


# A generic adult head in millimetres (x right, y up, z towards the camera; nose tip at the origin),
# at the iBUG 68-point positions the cross-check uses: 27 nose bridge, 30 nose tip, 8 chin, 36/45 outer
# and 39/42 inner eye corners, 48/54 mouth corners, 51 upper lip. Average anthropometric proportions
# (eye corners ≈ 90 mm apart outside, ≈ 32 mm inside; nose tip ≈ 30 mm in front of the eyes).
HEAD_MODEL_68 = {
    27: (0.0, 38.0, -18.0),
    30: (0.0, 0.0, 0.0),
    8: (0.0, -72.0, -22.0),
    36: (-45.0, 34.0, -34.0),
    39: (-16.0, 33.0, -28.0),
    42: (16.0, 33.0, -28.0),
    45: (45.0, 34.0, -34.0),
    48: (-25.0, -30.0, -24.0),
    54: (25.0, -30.0, -24.0),
    51: (0.0, -22.0, -12.0),
}


def estimate_pose_pnp(landmarks68: np.ndarray, image_size: tuple[int, int]) -> HeadPose | None:
    """Yaw, pitch, roll from ten of the 68 landmarks and a generic head (cv2.solvePnP), the cross-check
    for the five-point estimate, whose pitch rests on two heights alone. ``image_size`` is (height,
    width); the camera is a phone's main lens (focal length ≈ the long side, centred). None when the
    solver does not converge."""
    import cv2

    height, width = image_size
    indices = sorted(HEAD_MODEL_68)
    model = np.array([HEAD_MODEL_68[i] for i in indices], dtype=np.float64)
    model[:, 1:] *= -1.0  # to the camera's axes: y down, z away from the camera
    points = np.asarray(landmarks68, dtype=np.float64)[indices]
    focal = float(max(height, width))
    camera = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    ok, rotation, _ = cv2.solvePnP(model, points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return None
    matrix, _ = cv2.Rodrigues(rotation)
    # The head's own axes seen from the camera: its forward axis gives yaw and pitch, its x axis roll.
    forward = matrix @ np.array([0.0, 0.0, -1.0])  # from the nose towards the camera, in camera axes
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))  # > 0: nose towards image right
    pitch = math.degrees(math.atan2(forward[1], math.hypot(forward[0], forward[2])))
    right = matrix @ np.array([1.0, 0.0, 0.0])
    roll = math.degrees(math.atan2(right[1], right[0]))
    return HeadPose(yaw=round(yaw, 2), pitch=round(pitch, 2), roll=round(roll, 2))
