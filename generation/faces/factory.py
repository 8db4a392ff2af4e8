"""Choosing a face backend from config: insightface where its models are, else bundled dlib; or OpenCV's
YuNet + SFace (the commercially clean choice) when asked for by name."""

from __future__ import annotations

import logging

from generation.config import FacesConfig
from generation.faces.types import FaceAnalyzer, FaceModelMissingError

log = logging.getLogger(__name__)


def create_analyzer(config: FacesConfig) -> FaceAnalyzer:
    """Build the configured analyzer once; ``auto`` never downloads, it uses what is on disk."""
    backend = config.backend
    if backend == "auto":
        from generation.faces.insightface_packs import find_pack_dir

        pack_dir = find_pack_dir(config.insightface_root, config.insightface_pack)
        missing = _missing_insightface_modules()
        if pack_dir is not None and not missing:
            backend = "insightface"
            log.info("faces.backend=auto: using insightface pack %s at %s", config.insightface_pack, pack_dir)
        else:
            backend = "dlib"
            why = f"{' and '.join(missing)} not installed" if pack_dir is not None else (
                f"no insightface pack '{config.insightface_pack}' under {config.insightface_root}")
            log.info("faces.backend=auto: using bundled dlib models (%s)", why)
    if backend == "insightface":
        from generation.faces.insightface_backend import InsightFaceAnalyzer

        return InsightFaceAnalyzer(
            root=config.insightface_root,
            pack=config.insightface_pack,
            download=config.insightface_download,
        )
    if backend == "opencv":
        from generation.faces.opencv_backend import OpenCVFaceAnalyzer

        return OpenCVFaceAnalyzer(root=config.opencv_root, download=config.opencv_download,
                                  detect_max_side=min(config.detect_max_side, 640))
    if backend == "dlib":
        try:
            from generation.faces.dlib_backend import DlibAnalyzer
        except ImportError as exc:  # pragma: no cover - dlib-bin is a base dependency
            raise FaceModelMissingError(f"dlib is not installed ({exc}); run `pip install dlib-bin`.") from None
        return DlibAnalyzer(detect_max_side=config.detect_max_side, upsample_retry=config.dlib_upsample_retry)
    raise FaceModelMissingError(f"faces.backend: unknown backend {backend!r}")


def _missing_insightface_modules() -> list[str]:
    """What the insightface backend would fail to import, found without importing (that takes a second)."""
    import importlib.util
    import sys

    def missing(name: str) -> bool:
        if name in sys.modules:  # imported already, or blocked (None)
            return sys.modules[name] is None
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    return [name for name in ("insightface", "onnxruntime", "skimage") if missing(name)]
