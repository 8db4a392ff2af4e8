"""Shared, session-scoped fixtures for the quality gate tests: one real dlib analyzer, the real
fixture photos decoded once, and the face found on each clean photo.

Nothing here is mocked: the photos go through the project's own safe loader and the faces come
from the bundled, offline dlib models.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.faces.dlib_backend import DlibAnalyzer
from generation.faces.types import Face
from generation.images import LoadedImage, load_image, load_image_file
from generation.quality.gate import Assessment, assess

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "faces"
MAX_SIDE = 2048  # what the bot and benchmarks/calibrate_quality.py load with
CLEAN = ("obama.jpg", "obama2.jpg", "biden.jpg", "astronaut.png")
ALL_PHOTOS = (*CLEAN, "obama_partial_face.jpg", "camera.png")


@pytest.fixture(scope="session")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


@pytest.fixture(scope="session")
def images() -> dict[str, LoadedImage]:
    return {name: load_image_file(FIXTURES / name, max_side=MAX_SIDE) for name in ALL_PHOTOS}


@pytest.fixture(scope="session")
def clean_faces(analyzer: DlibAnalyzer, images: dict[str, LoadedImage]) -> dict[str, Face]:
    """The largest face on each clean photo, in that photo's working-copy pixels."""
    faces = {}
    for name in CLEAN:
        found = analyzer.analyze(images[name].pixels)
        assert found, f"no face found on the clean photo {name}"
        faces[name] = found[0]
    return faces


@pytest.fixture(scope="session")
def assessments(analyzer: DlibAnalyzer, images: dict[str, LoadedImage]) -> dict[str, Assessment]:
    """The gate's assessment of every fixture photo as it is."""
    return {name: assess(image, analyzer) for name, image in images.items()}


@pytest.fixture(scope="session")
def assess_result(analyzer: DlibAnalyzer) -> Callable[[np.ndarray | bytes], Assessment]:
    """Assess a degraded photo the way the bot would receive it: as a file.

    Pixel arrays are saved as a lossless PNG (the degradation is the only change; stored without
    deflate, which keeps the suite fast), bytes (a JPEG from degrade.jpeg) are used as they are;
    both go through the real loader.
    """

    def run(result: np.ndarray | bytes) -> Assessment:
        if isinstance(result, bytes):
            data = result
        else:
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(result)).save(buffer, format="PNG", compress_level=0)
            data = buffer.getvalue()
        return assess(load_image(data, max_side=MAX_SIDE), analyzer)

    return run
