"""insightface backend: SCRFD detection and ArcFace embeddings from insightface model packs.

A pack (buffalo_l, antelopev2 for InstantID) is a folder of ONNX files, run here directly through
onnxruntime so the insightface wheel (a compiler and old pins) is not needed. Files are recognised
by their input/output signatures, as insightface's model zoo does, because names differ between
packs and releases. SCRFD gives boxes and five keypoints only, so dlib's 68-point predictor is
placed on each box for the eyes-closed check.

Detection retries at smaller sizes and then on a padded copy: SCRFD at 640 misses faces that
fill the frame or touch its border, which is what close-up selfies do.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from generation.faces.align import ARCFACE_SIZE, arcface_crop, order_landmarks
from generation.faces.dlib_backend import dlib_model_dir
from generation.faces.download import exclusive, fetch
from generation.faces.pose import estimate_pose
from generation.faces.types import Face, FaceModelMissingError

log = logging.getLogger(__name__)

DEFAULT_ROOT = "~/.insightface"
DEFAULT_PACK = "buffalo_l"
DEFAULT_URL_BASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
INSTALL_HINT = "pip install 'closeup[insightface]'"

# Canvas sizes tried in order, then the padded retry at the first one.
DET_SIZES = (640, 448, 320)
PAD_FACTOR = 1.25
NMS_IOU = 0.4
EMBEDDING_WIDTH = 512
# Probed first so a standard pack stops scanning before loading its large extra models.
_LIKELY_NAMES = ("det_10g", "scrfd", "w600k", "glintr100")


# --------------------------------------------------------------------------- model packs


def _has_onnx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))


def find_pack_dir(root: str | Path, pack: str) -> Path | None:
    """The folder holding ``pack``'s .onnx files under ``<root>/models``, or None.

    Looks one level down as well: the antelopev2 archive unpacks into ``antelopev2/antelopev2/``.
    """
    base = Path(root).expanduser() / "models" / pack
    if _has_onnx(base):
        return base
    if not base.is_dir():
        return None
    nested = sorted(sub for sub in base.iterdir() if _has_onnx(sub))
    for sub in nested:
        if sub.name == pack:
            return sub
    return nested[0] if nested else None


def _missing_pack_message(root: Path, pack: str, url: str, reason: str) -> str:
    return (
        f"insightface model pack '{pack}' is missing ({reason}). Put its .onnx files in "
        f"{root / 'models' / pack} (download {url} and unzip it there)."
    )


def _safe_members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every file member with a relative path that stays inside the folder (zip-slip guard)."""
    members = []
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        path = PurePosixPath(name)
        if name.startswith("/") or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise FaceModelMissingError(f"refusing the model archive: unsafe member path {info.filename!r}")
        if not info.is_dir():
            members.append((info, path))
    return members


def _extract_zip(zip_path: Path, dest: Path) -> None:
    """Unpack into ``dest``, all or nothing, after checking every member path."""
    with zipfile.ZipFile(zip_path) as archive:
        members = _safe_members(archive)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            for info, rel in members:
                target = staging.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(staging.resolve()):
                    raise FaceModelMissingError(
                        f"refusing the model archive: unsafe member {info.filename!r}"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
            if not dest.exists():
                staging.rename(dest)
                return
            for child in staging.iterdir():
                target = dest / child.name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                child.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _download_and_extract(url: str, part: Path, pack: str, models: Path) -> None:
    fetch(url, part, f"insightface {pack}")
    _extract_zip(part, models / pack)  # reading every member checks its CRC: a damaged download fails here
    part.unlink(missing_ok=True)


def ensure_pack(root: str | Path, pack: str, download: bool, url_base: str = DEFAULT_URL_BASE) -> Path:
    """The pack's folder, downloading ``<url_base>/<pack>.zip`` into ``<root>/models/<pack>`` if allowed.

    Raises FaceModelMissingError (saying where to put the files) when it is absent and cannot be
    fetched, so a caller can fall back to another backend with a useful log line.
    """
    found = find_pack_dir(root, pack)
    if found is not None:
        return found
    root = Path(root).expanduser()
    url = f"{url_base.rstrip('/')}/{pack}.zip"
    if not download:
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, "download disabled"))
    models = root / "models"
    part = models / f".{pack}.zip.part"  # kept when a download is cut, so the next try resumes it
    try:
        models.mkdir(parents=True, exist_ok=True)
        with exclusive(root / f".{pack}.download.lock"):  # a bot and a worker sharing the folder: one downloads
            found = find_pack_dir(root, pack)
            if found is not None:
                return found
            _download_and_extract(url, part, pack, models)
    except FaceModelMissingError as exc:
        part.unlink(missing_ok=True)
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, str(exc))) from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"download failed: HTTP {exc.code} {exc.reason}"
        elif isinstance(exc, zipfile.BadZipFile):
            reason = f"download failed: the file is damaged or not a zip ({exc})"
        else:
            reason = f"download failed: {getattr(exc, 'reason', None) or exc}"
        if isinstance(exc, zipfile.BadZipFile | urllib.error.HTTPError) or not part.exists() or \
                part.stat().st_size == 0:
            part.unlink(missing_ok=True)  # nothing worth resuming
        else:
            reason += f"; {part.stat().st_size / 1e6:.0f} MB kept, the next try resumes"
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, reason)) from None
    found = find_pack_dir(root, pack)
    if found is None:
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, "the archive held no .onnx files"))
    return found


# --------------------------------------------------------------------------- detection helpers


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best score first."""
    x0, y0, x1, y1 = boxes.T
    areas = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best, rest = order[0], np.array(order[1:], dtype=int)
        keep.append(int(best))
        if not len(rest):
            break
        w = np.clip(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0, None)
        h = np.clip(np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = list(rest[iou <= iou_threshold])
    return keep


def decode_scrfd(
    outputs: Sequence[np.ndarray], canvas_w: int, canvas_h: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (n, 4), scores (n,), keypoints (n, 5, 2) in canvas pixels, before NMS.

    ``outputs`` are SCRFD's [scores per stride..., distances per stride..., keypoints per stride...],
    with or without a leading batch axis. Anchors per position are inferred from the row count.
    """
    fmc = len(outputs) // 3
    strides = (8, 16, 32) if fmc == 3 else (8, 16, 32, 64, 128)
    all_boxes, all_scores, all_kps = [], [], []
    for i, stride in enumerate(strides):
        scores = np.asarray(outputs[i], dtype=np.float32).reshape(-1)
        dist = np.asarray(outputs[i + fmc], dtype=np.float32).reshape(-1, 4) * stride
        kps = np.asarray(outputs[i + 2 * fmc], dtype=np.float32).reshape(-1, 5, 2) * stride
        rows, cols = canvas_h // stride, canvas_w // stride
        anchors = max(1, len(scores) // max(1, rows * cols))
        ys, xs = np.mgrid[:rows, :cols]
        centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
        centres = np.repeat(centres, anchors, axis=0)  # position-major, anchor-minor
        hit = np.nonzero(scores >= threshold)[0]
        if not len(hit):
            continue
        c = centres[hit]
        all_boxes.append(np.concatenate([c - dist[hit, :2], c + dist[hit, 2:]], axis=1))
        all_scores.append(scores[hit])
        all_kps.append(c[:, None, :] + kps[hit])
    if not all_scores:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_kps)


# --------------------------------------------------------------------------- analyzer


def _dims(shape: Sequence[Any]) -> list[int | None]:
    """ONNX dims with symbolic/unknown ones as None."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def _role(session: Any) -> str | None:
    """'detector', 'detector-no-kps', 'recognizer' or None, from a session's signature."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        return None
    shape = _dims(inputs[0].shape)
    if len(shape) != 4 or shape[1] not in (3, None):
        return None
    if len(outputs) in (9, 15):
        return "detector"
    if len(outputs) in (6, 10):
        return "detector-no-kps"
    if len(outputs) == 1 and shape[1] == 3 and shape[2] == shape[3] == ARCFACE_SIZE:
        out_shape = _dims(outputs[0].shape)
        if out_shape and out_shape[-1] == EMBEDDING_WIDTH:
            return "recognizer"
    return None


def _size_label(width: int, height: int) -> str:
    return str(width) if width == height else f"{width}x{height}"


def _probe_order(path: Path) -> tuple[int, str]:
    likely = any(path.stem.lower().startswith(prefix) for prefix in _LIKELY_NAMES)
    return (0 if likely else 1, path.name)


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
        try:
            import onnxruntime
        except ImportError:
            raise FaceModelMissingError(
                f"the insightface backend needs onnxruntime: {INSTALL_HINT}"
            ) from None
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
        self._detector, self._recognizer = self._load(onnxruntime, options)
        self._det_input = self._detector.get_inputs()[0].name
        det_shape = _dims(self._detector.get_inputs()[0].shape)
        # A model exported at a fixed size only runs at that size: one attempt plus the padded one.
        self._fixed_size = (det_shape[3], det_shape[2]) if det_shape[2] and det_shape[3] else None

        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(
            str(dlib_model_dir() / "shape_predictor_68_face_landmarks.dat")
        )
        self._lock = threading.Lock()

    def _load(self, onnxruntime: Any, options: Any) -> tuple[Any, Any | None]:
        detector = recognizer = None
        no_kps: list[str] = []
        for path in sorted(self.folder.glob("*.onnx"), key=_probe_order):
            try:
                session = onnxruntime.InferenceSession(
                    str(path), sess_options=options, providers=self._providers
                )
            except Exception as exc:  # corrupt or unsupported file: skip it, report if nothing usable
                log.warning("insightface: cannot load %s: %s", path, exc)
                continue
            role = _role(session)
            log.debug("insightface: %s -> %s", path.name, role or "ignored")
            if role == "detector" and detector is None:
                detector = session
            elif role == "recognizer" and recognizer is None:
                recognizer = session
            elif role == "detector-no-kps":
                no_kps.append(path.name)
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

    def _detect_once(self, rgb: np.ndarray, canvas_w: int, canvas_h: int) -> tuple[np.ndarray, ...]:
        height, width = rgb.shape[:2]
        scale = min(canvas_w / width, canvas_h / height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas = np.zeros((canvas_h, canvas_w, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self._detector.run(None, {self._det_input: np.ascontiguousarray(blob)})
        boxes, scores, kps = decode_scrfd(outputs, canvas_w, canvas_h, self.det_threshold)
        keep = nms(boxes, scores)
        factor = np.array([new_w / width, new_h / height], dtype=np.float32)
        boxes = boxes[keep] / np.tile(factor, 2)
        return boxes, scores[keep], kps[keep] / factor

    def _detect(self, rgb: np.ndarray) -> tuple[np.ndarray, ...]:
        """Try the size ladder, then a padded copy; records each try in ``last_attempts``."""
        sizes = [self._fixed_size] if self._fixed_size else [(s, s) for s in DET_SIZES]
        self.last_attempts = []
        for canvas_w, canvas_h in sizes:
            self.last_attempts.append(_size_label(canvas_w, canvas_h))
            boxes, scores, kps = self._detect_once(rgb, canvas_w, canvas_h)
            log.debug("insightface: %d face(s) at det size %s", len(scores), self.last_attempts[-1])
            if len(scores):
                return boxes, scores, kps
        height, width = rgb.shape[:2]
        pad_x = round(width * (PAD_FACTOR - 1) / 2)
        pad_y = round(height * (PAD_FACTOR - 1) / 2)
        padded = cv2.copyMakeBorder(rgb, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        canvas_w, canvas_h = sizes[0]
        self.last_attempts.append(_size_label(canvas_w, canvas_h) + "+pad")
        boxes, scores, kps = self._detect_once(padded, canvas_w, canvas_h)
        log.debug("insightface: %d face(s) at det size %s", len(scores), self.last_attempts[-1])
        shift = np.array([pad_x, pad_y], dtype=np.float32)
        return boxes - np.tile(shift, 2), scores, kps - shift

    # ------------------------------------------------------------------ landmarks and embeddings

    def _landmarks68(self, rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
        rect = self._dlib.rectangle(*(round(float(v)) for v in box))
        shape = self._shape_predictor(rgb, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def _embed(self, rgb: np.ndarray, landmarks: list[np.ndarray]) -> list[np.ndarray]:
        if self._recognizer is None:
            raise FaceModelMissingError(
                f"no ArcFace recognizer in {self.folder}: put the {self.pack} pack's recognizer there "
                "(w600k_r50.onnx from buffalo_l.zip or glintr100.onnx from antelopev2.zip)."
            )
        crops = np.stack([arcface_crop(rgb, points) for points in landmarks]).astype(np.float32)
        blob = np.ascontiguousarray(((crops - 127.5) / 127.5).transpose(0, 3, 1, 2))
        rec_input = self._recognizer.get_inputs()[0]
        if _dims(rec_input.shape)[0] is None:
            out = self._recognizer.run(None, {rec_input.name: blob})[0]
        else:  # batch axis fixed (usually 1): one crop per run
            out = np.concatenate(
                [self._recognizer.run(None, {rec_input.name: blob[i : i + 1]})[0] for i in range(len(blob))]
            )
        # Raw, not L2-normalised: InstantID conditions on the unnormalised vector.
        return [np.asarray(row, dtype=np.float32).reshape(-1) for row in out]

    def analyze(self, rgb: np.ndarray, *, embeddings: bool = False) -> list[Face]:
        """Faces largest first; ``embeddings`` adds the raw ArcFace vector to each."""
        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        with self._lock:
            boxes, scores, kps = self._detect(rgb)
            points5 = [order_landmarks(points) for points in kps]
            vectors: list[np.ndarray | None] = [None] * len(points5)
            if embeddings and points5:
                vectors = list(self._embed(rgb, points5))
            faces = [
                Face(
                    box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                    score=float(score),
                    landmarks5=points,
                    pose=estimate_pose(points),
                    landmarks68=self._landmarks68(rgb, box),
                    embedding=vector,
                    embedding_model=self.embedding_model if vector is not None else None,
                )
                for box, score, points, vector in zip(boxes, scores, points5, vectors, strict=True)
            ]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
