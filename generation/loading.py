"""Loading what generation needs from config, once: the diffusion backend and the face analyzers."""

from __future__ import annotations

from generation.config import Config
from generation.pipelines.types import EDITOR_REFERENCES
from generation.stack import conditioning_pack


def likeness_analyzer(config: Config):
    """What outputs are scored with: OpenCV's SFace when the permissive face backend is configured, else dlib
    (a different model from the ones that condition InstantID / FaceID, so scores are not flattered)."""
    if config.faces.backend == "opencv":
        from generation.faces.factory import create_analyzer

        return create_analyzer(config.faces)
    from generation.faces.dlib_backend import DlibAnalyzer

    return DlibAnalyzer()


def conditioning_analyzer(config: Config, likeness=None):
    """The face model the reference is measured with. InstantID was trained on antelopev2 embeddings, FaceID on
    buffalo_l: the pack follows the backend. An editor conditions on pixels, not on an embedding, so its
    reference is measured with the likeness model (no insightface pack, whose licence is non-commercial)."""
    if config.generation.backend == "edit":
        return likeness if likeness is not None else likeness_analyzer(config)
    from generation.faces.insightface_backend import InsightFaceAnalyzer

    pack = conditioning_pack(config.generation)
    return InsightFaceAnalyzer(root=config.faces.insightface_root, pack=pack,
                               download=config.faces.insightface_download)


def reference_crops(config: Config) -> int:
    """How many face crops build_reference cuts: the editor's references, none for the embedding backends."""
    return EDITOR_REFERENCES if config.generation.backend == "edit" else 0


def load_backend(config: Config):
    """The configured diffusion backend, loaded once."""
    from generation.logging_setup import adopt_library_loggers

    if config.generation.backend == "edit":
        from generation.pipelines.edit import EditBackend

        backend_class = EditBackend
    elif config.generation.backend == "faceid":
        from generation.pipelines.faceid import FaceIDBackend

        backend_class = FaceIDBackend
    else:
        from generation.pipelines.instantid import InstantIDBackend

        backend_class = InstantIDBackend
    adopt_library_loggers()  # diffusers and transformers attached their own handlers on import
    return backend_class.load(config.generation, config.models)
