"""dlib backend: bundled, offline models from the ``face_recognition_models`` package.

HOG detection runs on a copy whose long side is at most ``detect_max_side``; when it finds
nothing, it retries upsampled once, which reaches faces of ~12-16 px between the eyes. The
68-point landmarks are placed on the full working image so small faces keep their precision.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from pathlib import Path

import cv2
import numpy as np

from generation.faces.pose import estimate_pose
from generation.faces.types import Face, FaceModelMissingError

log = logging.getLogger(__name__)

EMBEDDING_MODEL = "dlib-resnet-128"
# dlib's nose tip (point 30) sits lower than the ArcFace template's; measured on frontal photos.
DLIB_FRONTAL_NOSE_RATIO = 0.56


def dlib_model_dir() -> Path:
    """Where face_recognition_models keeps its files, found without importing it.

    Importing the package pulls in ``pkg_resources``, which setuptools >= 81 no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceModelMissingError(
            "dlib face models are missing: install them with `pip install face_recognition_models`."
        )
    return Path(spec.origin).parent / "models"


def _squash(margin: float) -> float:
    """Map HOG's SVM margin into 0..1: 0.5 at dlib's default threshold (margin 0), where its false
    detections sit; clear faces have margins of 1-3 (0.95+)."""
    return 1.0 / (1.0 + math.exp(-3.0 * margin))


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners from the iBUG 68-point layout, image-left first."""
    eye_a = points68[36:42].mean(axis=0)
    eye_b = points68[42:48].mean(axis=0)
    mouth_a, mouth_b = points68[48], points68[54]
    eyes = sorted([eye_a, eye_b], key=lambda p: p[0])
    mouth = sorted([mouth_a, mouth_b], key=lambda p: p[0])
    return np.array([eyes[0], eyes[1], points68[30], mouth[0], mouth[1]], dtype=np.float64)


class DlibAnalyzer:
    """HOG detector + 68-point landmarks + optional 128-d ResNet embedding."""

    name = "dlib"

    def __init__(self, detect_max_side: int = 800, upsample_retry: bool = True) -> None:
        import dlib  # imported here so a missing wheel is reported by create_analyzer, not at import

        models = dlib_model_dir()
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self._encoder_path = models / "dlib_face_recognition_resnet_model_v1.dat"
        self._encoder = None
        self._dlib = dlib
        self.detect_max_side = detect_max_side
        self.upsample_retry = upsample_retry
        # dlib objects are not documented as thread-safe; one analysis at a time per analyzer.
        self._lock = threading.Lock()

    def _detect(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        height, width = rgb.shape[:2]
        factor = min(1.0, self.detect_max_side / max(height, width))
        small = rgb
        if factor < 1.0:
            small = cv2.resize(rgb, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._detector.run(gray, 0, 0.0)
        if not rects and self.upsample_retry:
            rects, scores, _ = self._detector.run(gray, 1, 0.0)
        out = []
        for rect, score in zip(rects, scores, strict=True):
            box = (rect.left() / factor, rect.top() / factor, rect.right() / factor, rect.bottom() / factor)
            out.append((box, _squash(score)))
        return out

    def analyze(self, rgb: np.ndarray, *, embeddings: bool = False) -> list[Face]:
        rgb = np.ascontiguousarray(rgb)
        faces: list[Face] = []
        with self._lock:
            for box, score in self._detect(rgb):
                rect = self._dlib.rectangle(*(round(v) for v in box))
                shape = self._landmarks(rgb, rect)
                points68 = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
                points5 = five_from_68(points68)
                embedding = None
                if embeddings:
                    if self._encoder is None:
                        self._encoder = self._dlib.face_recognition_model_v1(str(self._encoder_path))
                    embedding = np.asarray(self._encoder.compute_face_descriptor(rgb, shape), dtype=np.float32)
                faces.append(
                    Face(
                        box=box,
                        score=score,
                        landmarks5=points5,
                        landmarks68=points68,
                        pose=estimate_pose(points5, DLIB_FRONTAL_NOSE_RATIO),
                        embedding=embedding,
                        embedding_model=EMBEDDING_MODEL if embedding is not None else None,
                    )
                )
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
