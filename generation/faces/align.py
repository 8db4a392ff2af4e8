"""The ArcFace face crop: five keypoints moved onto a fixed template by a similarity transform.

Every ArcFace-family model (insightface's packs, and FaceID-Plus's CLIP input, which reads the
same crop at 224 px) was trained on faces aligned this way, so it lives here, apart from any one
face backend.
"""

from __future__ import annotations

import cv2
import numpy as np

# Where ArcFace expects left eye, right eye, nose, mouth left, mouth right in its 112×112 crop.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SIZE = 112


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 least-squares similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst`` (Umeyama).

    Deterministic, unlike a robust estimator, so the same photo always yields the same embedding.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var = (src_c**2).sum() / len(src)
    scale = float((sigma * sign).sum() / var) if var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def arcface_crop(rgb: np.ndarray, landmarks5: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The ArcFace crop (112 px; FaceID-Plus reads it at 224): the five keypoints moved onto the
    template scaled to ``size``, black outside the image."""
    matrix = similarity_matrix(landmarks5, ARCFACE_TEMPLATE * (size / ARCFACE_SIZE))
    return cv2.warpAffine(rgb, matrix, (size, size), borderValue=0.0)


def order_landmarks(points: np.ndarray) -> np.ndarray:
    """Eyes and mouth corners image-left first, as Face.landmarks5 promises (detectors emit the subject's right
    first, or either)."""
    points = np.asarray(points, dtype=np.float64)
    eyes = points[np.argsort(points[:2, 0], kind="stable")]
    mouth = points[3 + np.argsort(points[3:, 0], kind="stable")]
    return np.stack([eyes[0], eyes[1], points[2], mouth[0], mouth[1]])
