"""insightface backend: SCRFD detection and ArcFace embeddings through the insightface package.

The pack's ONNX files are loaded by ``insightface.model_zoo.get_model``, which recognises each one by its
signature (names differ between packs and releases), and run by the package's ``SCRFD.detect`` and
``ArcFaceONNX.get_feat`` on crops cut by ``insightface.utils.face_align.norm_crop``. What closeup adds:

* retries at smaller detector sizes and then on a padded copy: SCRFD at 640 misses faces that fill the
  frame or touch its border, which is what close-up selfies do (the package's multi-size ``detect``
  runs every size on every photo; this stops at the first size that finds a face);
* keypoints in a fixed order (eyes and mouth corners image-left first) before alignment, and dlib's
  68-point predictor on each box for the eyes-closed check (SCRFD gives five points only);
* one lock around each photo, and clear errors naming the file or the package that is missing.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from generation.faces.align import order_landmarks
from generation.faces.dlib_backend import dlib_model_dir
from generation.faces.insightface_packs import DEFAULT_PACK, DEFAULT_ROOT, DEFAULT_URL_BASE, ensure_pack
from generation.faces.pose import estimate_pose
from generation.faces.types import Face, FaceModelMissingError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'closeup[insightface]'"

# Canvas sizes tried in order, then the padded retry at the first one.
DET_SIZES = (640, 448, 320)
PAD_FACTOR = 1.25
EMBEDDING_WIDTH = 512
# Probed first so a standard pack stops scanning before loading its large extra models.
_LIKELY_NAMES = ("det_10g", "scrfd", "w600k", "glintr100")


def import_insightface() -> tuple[Any, Any, Any, Any, Any]:
    """(onnxruntime, get_model, SCRFD, ArcFaceONNX, norm_crop), or a FaceModelMissingError saying what to
    install: the package, or one of its own imports (onnxruntime, scikit-image) when that is what failed."""
    try:
        import onnxruntime
        from insightface.model_zoo import get_model
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX
        from insightface.model_zoo.scrfd import SCRFD
        from insightface.utils.face_align import norm_crop
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        what = "the insightface package" if missing.startswith("insightface") or not missing else \
            f"the insightface package's dependency '{missing}'"
        raise FaceModelMissingError(f"the insightface backend needs {what}: {INSTALL_HINT}") from None
    # scikit-image 0.26 deprecated the call norm_crop makes; the result is the same, the warning is noise.
    warnings.filterwarnings("ignore", message=r"`estimate` is deprecated", category=FutureWarning,
                            module=r"insightface\.utils\.face_align")
    return onnxruntime, get_model, SCRFD, ArcFaceONNX, norm_crop


def _size_label(width: int, height: int) -> str:
    return str(width) if width == height else f"{width}x{height}"


def _probe_order(path: Path) -> tuple[int, str]:
    likely = any(path.stem.lower().startswith(prefix) for prefix in _LIKELY_NAMES)
    return (0 if likely else 1, path.name)


def _embedding_width(recognizer: Any) -> int | None:
    width = recognizer.output_shape[-1] if recognizer.output_shape else None
    return width if isinstance(width, int) else None


class InsightFaceAnalyzer:
    """SCRFD boxes + five keypoints, dlib 68 landmarks, optional raw 512-d ArcFace embedding."""

    name = "insightface"

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        pack: str = DEFAULT_PACK,
        download: bool = True,
        det_threshold: float = 0.5,
        providers: Sequence[str] | None = None,
        *,
        url_base: str = DEFAULT_URL_BASE,
        cpu_threads: int = 1,
    ) -> None:
        onnxruntime, get_model, scrfd_class, arcface_class, self._norm_crop = import_insightface()
        import dlib  # a base dependency; imported here like the dlib backend does

        self.pack = pack
        self.det_threshold = det_threshold
        self.embedding_model = f"arcface-{pack}"
        self.last_attempts: list[str] = []
        self.folder = ensure_pack(root, pack, download, url_base)

        self._providers = list(providers) if providers else ["CPUExecutionProvider"]
        options = onnxruntime.SessionOptions()
        if all(p == "CPUExecutionProvider" for p in self._providers):
            # One request at a time per analyzer; more threads only fight the bot's other work.
            options.intra_op_num_threads = cpu_threads
            options.inter_op_num_threads = 1
        self._detector, self._recognizer = self._load(get_model, scrfd_class, arcface_class, options)
        fixed = self._detector.static_input_size
        # A model exported at a fixed size only runs at that size: one attempt plus the padded one.
        self._sizes = [tuple(fixed)] if fixed else [(s, s) for s in DET_SIZES]

        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(
            str(dlib_model_dir() / "shape_predictor_68_face_landmarks.dat")
        )
        self._lock = threading.Lock()

    def _load(self, get_model: Any, scrfd_class: type, arcface_class: type, options: Any) -> tuple[Any, Any]:
        detector = recognizer = None
        no_kps: list[str] = []
        for path in sorted(self.folder.glob("*.onnx"), key=_probe_order):
            try:
                # One session for every detector size (the default builds one per size, each a copy).
                model = get_model(str(path), providers=self._providers, sess_options=options,
                                  static_shape_sessions=False)
            except Exception as exc:  # corrupt or unsupported file: skip it, report if nothing usable
                log.warning("insightface: cannot load %s: %s", path, exc)
                continue
            log.debug("insightface: %s -> %s", path.name, type(model).__name__ if model else "ignored")
            if isinstance(model, scrfd_class) and detector is None:
                if model.use_kps:
                    detector = model
                else:
                    no_kps.append(path.name)
            elif isinstance(model, arcface_class) and recognizer is None:
                if _embedding_width(model) == EMBEDDING_WIDTH:
                    recognizer = model
                else:
                    log.warning("insightface: %s gives %s-d embeddings, not %d; ignored", path.name,
                                _embedding_width(model), EMBEDDING_WIDTH)
            if detector is not None and recognizer is not None:
                break
        if detector is None:
            extra = (
                f" ({', '.join(no_kps)} has no keypoint outputs, which alignment and pose need)"
                if no_kps
                else ""
            )
            raise FaceModelMissingError(
                f"no usable SCRFD face detector in {self.folder}{extra}: put the {self.pack} pack's detector "
                "with 5 keypoints there (det_10g.onnx from buffalo_l.zip or scrfd_10g_bnkps.onnx from "
                "antelopev2.zip)."
            )
        if recognizer is None:
            log.warning("insightface: no ArcFace recognizer in %s; embeddings unavailable", self.folder)
        return detector, recognizer

    # ------------------------------------------------------------------ detection

    def _detect_once(self, bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        found, keypoints = self._detector.detect(bgr, input_size=size, det_thresh=self.det_threshold)
        return found, keypoints

    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes with scores (n, 5) and keypoints (n, 5, 2): the size ladder, then a padded copy; each try
        is recorded in ``last_attempts``."""
        self.last_attempts = []
        for size in self._sizes:
            self.last_attempts.append(_size_label(*size))
            found, keypoints = self._detect_once(bgr, size)
            log.debug("insightface: %d face(s) at det size %s", len(found), self.last_attempts[-1])
            if len(found):
                return found, keypoints
        height, width = bgr.shape[:2]
        pad_x = round(width * (PAD_FACTOR - 1) / 2)
        pad_y = round(height * (PAD_FACTOR - 1) / 2)
        padded = cv2.copyMakeBorder(bgr, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self.last_attempts.append(_size_label(*self._sizes[0]) + "+pad")
        found, keypoints = self._detect_once(padded, self._sizes[0])
        log.debug("insightface: %d face(s) at det size %s", len(found), self.last_attempts[-1])
        shift = np.array([pad_x, pad_y], dtype=np.float32)
        found = found.copy()
        found[:, :4] -= np.tile(shift, 2)
        return found, keypoints - shift

    # ------------------------------------------------------------------ landmarks and embeddings

    def _landmarks68(self, rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
        rect = self._dlib.rectangle(*(round(float(v)) for v in box))
        shape = self._shape_predictor(rgb, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def _embed(self, bgr: np.ndarray, keypoints: list[np.ndarray]) -> list[np.ndarray]:
        if self._recognizer is None:
            raise FaceModelMissingError(
                f"no ArcFace recognizer in {self.folder}: put the {self.pack} pack's recognizer there "
                "(w600k_r50.onnx from buffalo_l.zip or glintr100.onnx from antelopev2.zip)."
            )
        size = self._recognizer.input_size[0]
        crops = [self._norm_crop(bgr, landmark=points.astype(np.float32), image_size=size) for points in keypoints]
        if isinstance(self._recognizer.input_shape[0], int):  # batch axis fixed (usually 1): one crop per run
            out = np.concatenate([self._recognizer.get_feat([crop]) for crop in crops])
        else:
            out = self._recognizer.get_feat(crops)
        # Raw, not L2-normalised: InstantID conditions on the unnormalised vector.
        return [np.asarray(row, dtype=np.float32).reshape(-1) for row in out]

    def analyze(self, rgb: np.ndarray, *, embeddings: bool = False) -> list[Face]:
        """Faces largest first; ``embeddings`` adds the raw ArcFace vector to each."""
        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # insightface's models read BGR, as cv2.imread gives
        with self._lock:
            found, keypoints = self._detect(bgr)
            points5 = [order_landmarks(points) for points in keypoints]
            vectors: list[np.ndarray | None] = [None] * len(points5)
            if embeddings and points5:
                vectors = list(self._embed(bgr, points5))
            faces = [
                Face(
                    box=tuple(float(v) for v in row[:4]),  # type: ignore[arg-type]
                    score=float(row[4]),
                    landmarks5=points,
                    pose=estimate_pose(points),
                    landmarks68=self._landmarks68(rgb, row[:4]),
                    embedding=vector,
                    embedding_model=self.embedding_model if vector is not None else None,
                )
                for row, points, vector in zip(found, points5, vectors, strict=True)
            ]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
