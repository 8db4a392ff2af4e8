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
