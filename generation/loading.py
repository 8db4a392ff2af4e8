"""Loading what generation needs from config, once: the diffusion backend and the face analyzers."""

from __future__ import annotations

from generation.config import Config


def conditioning_analyzer(config: Config):
    """InstantID was trained on antelopev2 embeddings, FaceID on buffalo_l: the pack follows the backend."""
    from generation.faces.insightface_backend import InsightFaceAnalyzer

    pack = "antelopev2" if config.generation.backend == "instantid" else "buffalo_l"
    return InsightFaceAnalyzer(root=config.faces.insightface_root, pack=pack,
                               download=config.faces.insightface_download)


def load_backend(config: Config):
    """The configured diffusion backend, loaded once."""
    from generation.logging_setup import adopt_library_loggers

    if config.generation.backend == "faceid":
        from generation.pipelines.faceid import FaceIDBackend

        backend_class = FaceIDBackend
    else:
        from generation.pipelines.instantid import InstantIDBackend

        backend_class = InstantIDBackend
    adopt_library_loggers()  # diffusers and transformers attached their own handlers on import
    return backend_class.load(config.generation, config.models)
