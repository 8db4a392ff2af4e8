"""The dlib backend on real photos, with the bundled offline models (nothing mocked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generation.faces.dlib_backend import EMBEDDING_MODEL, DlibAnalyzer, five_from_68
from generation.faces.types import Face, FaceAnalyzer
from generation.images import LoadedImage, load_image_file
from generation.quality import degrade

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "faces"
SAME_PERSON = 0.6  # dlib's documented same-person distance for its 128-d ResNet embedding


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


@pytest.fixture(scope="module")
def photos() -> dict[str, LoadedImage]:
    names = ("obama.jpg", "obama2.jpg", "biden.jpg")
    return {name: load_image_file(FIXTURES / name, max_side=2048) for name in names}


@pytest.fixture(scope="module")
def with_embeddings(analyzer: DlibAnalyzer, photos: dict[str, LoadedImage]) -> dict[str, Face]:
    found = {name: analyzer.analyze(image.pixels, embeddings=True) for name, image in photos.items()}
    for name, faces in found.items():
        assert len(faces) == 1, name
    return {name: faces[0] for name, faces in found.items()}


def test_is_a_face_analyzer(analyzer: DlibAnalyzer) -> None:
    assert isinstance(analyzer, FaceAnalyzer)
    assert analyzer.name == "dlib"


def test_one_face_with_consistent_landmarks(analyzer: DlibAnalyzer, photos: dict[str, LoadedImage]) -> None:
    faces = analyzer.analyze(photos["obama.jpg"].pixels)
    assert len(faces) == 1
    face = faces[0]
    assert 0.0 < face.score <= 1.0
    assert face.score > 0.9  # a clear frontal face, far above the detector's threshold
    x0, y0, x1, y1 = face.box
    assert x0 < x1 and y0 < y1
    height, width = photos["obama.jpg"].pixels.shape[:2]
    assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height

    assert face.landmarks68 is not None
    assert face.landmarks68.shape == (68, 2)
    margin = 0.25 * face.width  # the jaw line and brows may reach just outside the HOG box
    assert (face.landmarks68[:, 0] >= x0 - margin).all() and (face.landmarks68[:, 0] <= x1 + margin).all()
    assert (face.landmarks68[:, 1] >= y0 - margin).all() and (face.landmarks68[:, 1] <= y1 + margin).all()
    # The eyes, nose and mouth are inside the box itself.
    inner = face.landmarks68[27:68]
    assert ((inner[:, 0] >= x0) & (inner[:, 0] <= x1) & (inner[:, 1] >= y0) & (inner[:, 1] <= y1)).all()

    assert face.landmarks5.shape == (5, 2)
    eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks5
    assert eye_l[0] < eye_r[0]
    assert mouth_l[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert np.allclose(face.landmarks5, five_from_68(face.landmarks68))
    assert abs(face.pose.yaw) < 10 and abs(face.pose.pitch) < 10 and abs(face.pose.roll) < 5


def test_embeddings_only_when_asked(analyzer: DlibAnalyzer, photos: dict[str, LoadedImage],
                                    with_embeddings: dict[str, Face]) -> None:
    plain = analyzer.analyze(photos["obama.jpg"].pixels)[0]
    assert plain.embedding is None
    assert plain.embedding_model is None
    face = with_embeddings["obama.jpg"]
    assert face.embedding is not None
    assert face.embedding.shape == (128,)
    assert face.embedding.dtype == np.float32
    assert face.embedding_model == EMBEDDING_MODEL
    # Same detection either way.
    assert np.allclose(face.landmarks68, plain.landmarks68)


def test_embedding_separates_people(with_embeddings: dict[str, Face]) -> None:
    def distance(a: str, b: str) -> float:
        return float(np.linalg.norm(with_embeddings[a].embedding - with_embeddings[b].embedding))

    assert distance("obama.jpg", "obama2.jpg") < SAME_PERSON
    assert distance("obama.jpg", "biden.jpg") > SAME_PERSON
    assert distance("obama2.jpg", "biden.jpg") > SAME_PERSON
    assert distance("obama.jpg", "obama2.jpg") < distance("obama.jpg", "biden.jpg")


def test_mirrored_photo_mirrors_the_landmarks(analyzer: DlibAnalyzer, photos: dict[str, LoadedImage]) -> None:
    pixels = photos["obama.jpg"].pixels
    face = analyzer.analyze(pixels)[0]
    mirrored = analyzer.analyze(np.ascontiguousarray(pixels[:, ::-1]))[0]
    width = pixels.shape[1]
    # "Left eye" is always the one with the smaller x, so mirroring swaps the two eyes.
    assert mirrored.landmarks5[0][0] < mirrored.landmarks5[1][0]
    assert mirrored.eye_mid[0] == pytest.approx(width - 1 - face.eye_mid[0], abs=6)
    assert mirrored.pose.yaw == pytest.approx(-face.pose.yaw, abs=4)


@pytest.mark.parametrize("shape", [(480, 640, 3), (32, 32, 3)])
def test_blank_image_has_no_face(analyzer: DlibAnalyzer, shape: tuple[int, int, int]) -> None:
    assert analyzer.analyze(np.full(shape, 128, np.uint8)) == []
    assert analyzer.analyze(np.zeros(shape, np.uint8), embeddings=True) == []


def test_tiny_face_needs_the_upsampled_retry(analyzer: DlibAnalyzer, photos: dict[str, LoadedImage]) -> None:
    pixels = photos["obama.jpg"].pixels
    face = analyzer.analyze(pixels)[0]
    tiny = degrade.shrink_face(pixels, face, 16)  # 16 px between the eyes on the same 910×1137 canvas

    found = analyzer.analyze(tiny)
    assert len(found) == 1
    assert found[0].inter_eye_distance == pytest.approx(16, abs=3)
    centre = ((found[0].box[0] + found[0].box[2]) / 2, (found[0].box[1] + found[0].box[3]) / 2)
    width = tiny.shape[1]
    assert centre[0] == pytest.approx(width / 2, abs=0.1 * width)  # where shrink_face put it

    no_retry = DlibAnalyzer(upsample_retry=False)
    assert no_retry.analyze(tiny) == []
    assert len(no_retry.analyze(pixels)) == 1  # the retry is the only difference


def test_models_load_where_pkg_resources_is_gone_and_the_package_is_never_imported() -> None:
    """face_recognition_models imports pkg_resources, which current setuptools no longer ships: the
    backend finds the model files by the package's spec instead. Proved in a fresh interpreter in which
    importing pkg_resources fails."""
    import subprocess
    import sys

    script = (
        "import sys, importlib.abc\n"
        "class Gone(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pkg_resources' or name.startswith('pkg_resources.'):\n"
        "            raise ImportError('No module named pkg_resources')\n"
        "sys.meta_path.insert(0, Gone())\n"
        "from generation.faces.dlib_backend import DlibAnalyzer\n"
        "DlibAnalyzer()\n"
        "assert 'face_recognition_models' not in sys.modules, 'the package was imported'\n"
        "assert 'pkg_resources' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
