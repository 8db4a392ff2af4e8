"""The permissively licensed face backend: OpenCV's own YuNet detector and SFace recogniser.

Both run inside OpenCV (``cv2.FaceDetectorYN``, ``cv2.FaceRecognizerSF``), a base dependency, so the bot-only
install can use them and no onnxruntime is needed. The ONNX files come from the OpenCV Zoo and are downloaded
on first use into ``faces.opencv_root`` (YuNet: MIT; SFace: Apache-2.0, per each model's LICENSE file in the
zoo). This is the face stack of the commercially clean configuration: no insightface pack, no dlib 68-point
model (trained on iBUG 300-W, research only). Without 68 points the checks that need them (eyes closed, the
chin for pitch) are skipped, as with any five-point backend.

YuNet was trained on faces of about 10-300 px, so it looks at a copy whose long side is ``detect_max_side``
and, when that finds nothing (a face filling a close-up), at a half-size copy.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from generation.faces.align import arcface_crop, order_landmarks
from generation.faces.download import exclusive, fetch
from generation.faces.pose import estimate_pose
from generation.faces.types import Face, FaceModelMissingError

log = logging.getLogger(__name__)

ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"


@dataclass(frozen=True)
class ZooModel:
    file: str
    url: str
    licence: str
    min_bytes: int  # smaller than this is an error page or a Git LFS pointer, not the model


DETECTOR = ZooModel("face_detection_yunet_2023mar.onnx",
                    f"{ZOO}/face_detection_yunet/face_detection_yunet_2023mar.onnx", "MIT", 100_000)
RECOGNIZER = ZooModel("face_recognition_sface_2021dec.onnx",
                      f"{ZOO}/face_recognition_sface/face_recognition_sface_2021dec.onnx", "Apache-2.0", 1_000_000)
EMBEDDING_MODEL = "sface-128"
SCORE_THRESHOLD = 0.6  # YuNet's own demo uses 0.9 for video; selfies are one face, so lower finds harder ones
NMS_THRESHOLD = 0.3
SMALLER_RETRY = 0.5  # the second look, for faces too large for the detector at the first size


def ensure_model(root: str | Path, model: ZooModel, download: bool) -> Path:
    """The model's file under ``root``, downloaded first when missing and allowed (resumable, one process)."""
    folder = Path(root).expanduser()
    path = folder / model.file
    if path.is_file() and path.stat().st_size >= model.min_bytes:
        return path
    where = f"download {model.url} into {folder}"
    if not download:
        raise FaceModelMissingError(f"{model.file} is not in {folder} and downloads are off "
                                    f"(faces.opencv_download = false): {where}.")
    part = folder / f".{model.file}.part"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with exclusive(folder / f".{model.file}.lock"):
            if not (path.is_file() and path.stat().st_size >= model.min_bytes):
                fetch(model.url, part, model.file)
                if part.stat().st_size < model.min_bytes:
                    part.unlink(missing_ok=True)
                    raise FaceModelMissingError(f"the download of {model.file} is only a few bytes (an error page "
                                                f"or a Git LFS pointer, not the model); {where} by hand.")
                part.replace(path)
    except FaceModelMissingError:
        raise
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
            str(getattr(exc, "reason", None) or exc)
        kept = f"; {part.stat().st_size / 1e6:.1f} MB kept, the next try resumes" if part.exists() else ""
        raise FaceModelMissingError(f"could not download {model.file} ({reason}{kept}): {where}.") from None
    return path


def _last_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


class OpenCVFaceAnalyzer:
    """YuNet boxes and five keypoints, optional SFace 128-d embedding."""

    name = "opencv"
    embedding_model = EMBEDDING_MODEL

    def __init__(self, root: str | Path = "~/.closeup/opencv-models", download: bool = True,
                 detect_max_side: int = 640, score_threshold: float = SCORE_THRESHOLD) -> None:
        self.detect_max_side = detect_max_side
        # OpenCV's DNN engine warns once per model that it ignores the preferred target: not the host's concern.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        detector_path = ensure_model(root, DETECTOR, download)
        self._root, self._download = root, download
        try:
            self._detector = cv2.FaceDetectorYN.create(str(detector_path), "", (320, 320), score_threshold,
                                                       NMS_THRESHOLD, 50)
        except cv2.error as exc:
            raise FaceModelMissingError(f"{detector_path} is not a YuNet face detector OpenCV can load "
                                        f"({_last_line(exc)}); delete it to download it again.") from None
        self._recognizer: cv2.FaceRecognizerSF | None = None
        self._lock = threading.Lock()

    @property
    def recognizer(self) -> cv2.FaceRecognizerSF:
        """SFace, loaded (and downloaded) when the first embedding is asked for: the selfie checks never need it."""
        if self._recognizer is None:
            path = ensure_model(self._root, RECOGNIZER, self._download)
            try:
                self._recognizer = cv2.FaceRecognizerSF.create(str(path), "")
            except cv2.error as exc:
                raise FaceModelMissingError(f"{path} is not an SFace recogniser OpenCV can load "
                                            f"({_last_line(exc)}); delete it to download it again.") from None
        return self._recognizer

    def _detect_at(self, rgb: np.ndarray, scale: float) -> np.ndarray:
        """YuNet rows (x, y, w, h, 5 × (x, y), score) in ``rgb``'s pixels, from a copy ``scale`` times its size."""
        height, width = rgb.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        self._detector.setInputSize(size)
        _, rows = self._detector.detect(_bgr(small))
        if rows is None or not len(rows):
            return np.zeros((0, 15), np.float32)
        rows = rows.astype(np.float64)
        rows[:, :14] /= scale
        return rows

    def _detect(self, rgb: np.ndarray) -> np.ndarray:
        scale = min(1.0, self.detect_max_side / max(rgb.shape[:2]))
        rows = self._detect_at(rgb, scale)
        if not len(rows) and max(rgb.shape[:2]) * scale * SMALLER_RETRY >= 64:
            rows = self._detect_at(rgb, scale * SMALLER_RETRY)
        return rows

    def embed(self, rgb: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """SFace's 128-d vector of the face at ``landmarks5``: the ArcFace-template crop (the alignment SFace was
        trained on) in the BGR order ``feature()`` expects (it swaps to RGB itself)."""
        crop = arcface_crop(rgb, landmarks5)
        return np.asarray(self.recognizer.feature(_bgr(crop)), dtype=np.float32).reshape(-1)

    def analyze(self, rgb: np.ndarray, *, embeddings: bool = False) -> list[Face]:
        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        faces = []
        with self._lock:
            for row in self._detect(rgb):
                landmarks = order_landmarks(row[4:14].reshape(5, 2))
                x, y, w, h = row[:4]
                vector = self.embed(rgb, landmarks) if embeddings else None
                faces.append(Face(box=(x, y, x + w, y + h), score=float(row[14]), landmarks5=landmarks,
                                  pose=estimate_pose(landmarks), embedding=vector,
                                  embedding_model=EMBEDDING_MODEL if vector is not None else None))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
