"""The OpenCV face backend (YuNet + SFace) through OpenCV's own FaceDetectorYN and FaceRecognizerSF, on tiny
ONNX files in the real signatures, and its first-use download from a local HTTP server."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import tiny_opencv_onnx

from generation.config import FacesConfig
from generation.faces.align import arcface_crop
from generation.faces.factory import create_analyzer
from generation.faces.opencv_backend import DETECTOR, EMBEDDING_MODEL, RECOGNIZER, OpenCVFaceAnalyzer, ZooModel
from generation.faces.types import FaceModelMissingError
from generation.likeness import calibration_for


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_opencv_onnx.build_models(tmp_path_factory.mktemp("opencv-models"))


@pytest.fixture()
def small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny files are smaller than the real ones' sanity floor."""
    import generation.faces.opencv_backend as backend

    monkeypatch.setattr(backend, "DETECTOR", ZooModel(DETECTOR.file, DETECTOR.url, DETECTOR.licence, 100))
    monkeypatch.setattr(backend, "RECOGNIZER", ZooModel(RECOGNIZER.file, RECOGNIZER.url, RECOGNIZER.licence, 100))


def square_photo(width: int, height: int, x: int, y: int, side: int) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[y:y + side, x:x + side] = 255
    return image


def test_a_face_in_a_large_photo_is_found_where_it_is(models: Path, small_files: None) -> None:
    analyzer = OpenCVFaceAnalyzer(models, download=False, detect_max_side=640)
    # 1280 px wide: the detector sees a half-size copy, where the 64-px square is one 32-px cell (row 2, col 4).
    (face,) = analyzer.analyze(square_photo(1280, 960, 256, 128, 64))
    cell = 64  # one detector cell, in this photo's pixels
    centre = np.array([256 + cell / 2, 128 + cell / 2])
    box = np.array(face.box)
    np.testing.assert_allclose((box[:2] + box[2:]) / 2, centre, atol=1)
    assert box[2] - box[0] == pytest.approx(tiny_opencv_onnx.BOX_CELLS * cell, abs=1)
    # YuNet emits the right eye first; Face.landmarks5 is image-left first, each point inside the square.
    assert face.landmarks5[0, 0] < face.landmarks5[1, 0] and face.landmarks5[3, 0] < face.landmarks5[4, 0]
    expected = tiny_opencv_onnx.ARCFACE_TEMPLATE / 112.0 * cell + (256, 128)
    np.testing.assert_allclose(face.landmarks5, expected, atol=1.0)
    assert face.score > 0.9 and face.embedding is None and face.landmarks68 is None


def test_nothing_found_is_an_empty_list(models: Path, small_files: None) -> None:
    assert OpenCVFaceAnalyzer(models, download=False).analyze(np.zeros((480, 640, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="RGB uint8"):
        OpenCVFaceAnalyzer(models, download=False).analyze(np.zeros((10, 10), np.uint8))


def test_the_embedding_is_sface_on_the_arcface_crop_in_rgb(models: Path, small_files: None) -> None:
    rng = np.random.default_rng(0)
    photo = square_photo(1280, 960, 256, 128, 64)
    photo[128:192, 256:320] = rng.integers(200, 256, (64, 64, 3), dtype=np.uint8)  # still bright, now coloured
    analyzer = OpenCVFaceAnalyzer(models, download=False)
    (face,) = analyzer.analyze(photo, embeddings=True)
    assert face.embedding_model == EMBEDDING_MODEL and face.embedding.shape == (128,)
    # What the method prescribes, computed here: the ArcFace-template crop, RGB, raw 0-255, through the model.
    crop = arcface_crop(photo, face.landmarks5).astype(np.float32).transpose(2, 0, 1)
    pooled = crop.reshape(3, 14, 8, 14, 8).mean(axis=(2, 4)).reshape(-1)
    expected = pooled @ tiny_opencv_onnx.recognizer_matrix()
    np.testing.assert_allclose(face.embedding, expected, rtol=1e-3, atol=1e-2)
    swapped = crop[::-1].reshape(3, 14, 8, 14, 8).mean(axis=(2, 4)).reshape(-1) @ tiny_opencv_onnx.recognizer_matrix()
    assert not np.allclose(face.embedding, swapped, rtol=1e-3, atol=1e-2)  # channel order matters, and is right
    assert calibration_for(EMBEDDING_MODEL).same_person == pytest.approx(0.363)


def test_the_factory_builds_it_by_name(models: Path, small_files: None) -> None:
    analyzer = create_analyzer(FacesConfig(backend="opencv", opencv_root=str(models), opencv_download=False))
    assert isinstance(analyzer, OpenCVFaceAnalyzer) and analyzer.name == "opencv"


def test_missing_files_with_downloads_off_say_where_to_put_them(tmp_path: Path) -> None:
    missing = r"face_detection_yunet_2023mar\.onnx is not in .*downloads are off"
    with pytest.raises(FaceModelMissingError, match=missing):
        OpenCVFaceAnalyzer(tmp_path, download=False)


def test_a_file_opencv_cannot_load_is_refused_with_advice(tmp_path: Path, small_files: None) -> None:
    (tmp_path / DETECTOR.file).write_bytes(b"not an onnx model" * 20)
    with pytest.raises(FaceModelMissingError, match=r"not a YuNet face detector.*delete it"):
        OpenCVFaceAnalyzer(tmp_path, download=False)


class _Files(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_first_use_downloads_both_files_and_a_404_is_a_clear_error(models: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import generation.faces.opencv_backend as backend

    monkeypatch.setenv("no_proxy", "*")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Files.files = {DETECTOR.file: (models / DETECTOR.file).read_bytes(),
                    RECOGNIZER.file: (models / RECOGNIZER.file).read_bytes()}
    monkeypatch.setattr(backend, "DETECTOR", ZooModel(DETECTOR.file, f"{base}/{DETECTOR.file}", "MIT", 100))
    monkeypatch.setattr(backend, "RECOGNIZER", ZooModel(RECOGNIZER.file, f"{base}/{RECOGNIZER.file}", "Apache", 100))
    try:
        analyzer = OpenCVFaceAnalyzer(tmp_path / "root", download=True)
        assert (tmp_path / "root" / DETECTOR.file).is_file()
        assert not (tmp_path / "root" / RECOGNIZER.file).exists()  # fetched only when an embedding is asked for
        (face,) = analyzer.analyze(square_photo(1280, 960, 256, 128, 64), embeddings=True)
        assert face.embedding is not None and (tmp_path / "root" / RECOGNIZER.file).is_file()
        assert not list((tmp_path / "root").glob(".*.part"))

        _Files.files = {}
        with pytest.raises(FaceModelMissingError, match="HTTP 404"):
            OpenCVFaceAnalyzer(tmp_path / "other", download=True)
    finally:
        server.shutdown()
