"""The insightface backend, run for real through onnxruntime on tiny stand-in model packs.

See tiny_onnx.py for what the stand-ins detect: a mostly-green (e.g. white) square that covers a
stride-32 cell of the detection canvas, with a wider box when the square is also red.
"""

from __future__ import annotations

import functools
import http.server
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from tiny_onnx import ARCFACE_TEMPLATE, make_pack, recognizer_weights

from generation.faces.align import arcface_crop, similarity_matrix
from generation.faces.insightface_backend import InsightFaceAnalyzer
from generation.faces.insightface_packs import ensure_pack, find_pack_dir
from generation.faces.types import FaceAnalyzer, FaceModelMissingError, HeadPose

FULL_LADDER = ["640", "448", "320", "640+pad"]
WIDTH, HEIGHT = 1000, 700  # at det size 640 the scale is 0.64 on both axes
# A 71 px white square whose canvas image (x 250..295, y 154..199) fully covers the stride-32
# cell col 8, row 5 and at most a fifth of its neighbours, so exactly one anchor cell fires.
SQUARE = (390, 240, 461, 311)
# The white square's box: cell centre (272, 176) ± 1.25·32 canvas px, divided by 0.64.
SQUARE_BOX = (362.5, 212.5, 487.5, 337.5)


def make_analyzer(root: Path, **kwargs: object) -> InsightFaceAnalyzer:
    kwargs.setdefault("download", False)
    return InsightFaceAnalyzer(root=root, cpu_threads=1, **kwargs)  # type: ignore[arg-type]


def blank() -> np.ndarray:
    return np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)


def with_square(
    img: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = colour
    return img


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def inside(point: np.ndarray, box: tuple[float, ...]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("insightface")
    make_pack(root / "models" / "buffalo_l")
    return root


@pytest.fixture(scope="module")
def analyzer(pack_root: Path) -> InsightFaceAnalyzer:
    return make_analyzer(pack_root)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib must reach the loopback server directly, whatever proxy the environment names."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve(tmp_path: Path, no_proxy: None) -> Iterator[tuple[Path, str]]:
    """A folder served over http://127.0.0.1 (loopback only); yields (folder, url_base)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def zip_folder(
    folder: Path, zip_path: Path, *, prefix: str = "", extra: dict[str, bytes] | None = None
) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, prefix + path.name)
        for name, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return zip_path


# --------------------------------------------------------------------------- pack discovery


def test_find_pack_dir_direct_nested_missing_and_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_pack_dir(tmp_path, "buffalo_l") is None
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    assert find_pack_dir(tmp_path, "buffalo_l") is None  # an empty folder is no pack

    direct = make_pack(tmp_path / "models" / "buffalo_l")
    assert find_pack_dir(tmp_path, "buffalo_l") == direct

    nested = make_pack(tmp_path / "models" / "antelopev2" / "antelopev2", pack="antelopev2")
    assert find_pack_dir(str(tmp_path), "antelopev2") == nested

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_pack = make_pack(tmp_path / "home" / ".insightface" / "models" / "buffalo_l")
    assert find_pack_dir("~/.insightface", "buffalo_l") == home_pack


@pytest.mark.parametrize("shuffled", [False, True], ids=["real-names", "shuffled-names"])
def test_models_are_recognised_by_signature_not_name(tmp_path: Path, shuffled: bool) -> None:
    make_pack(tmp_path / "models" / "buffalo_l", shuffled_names=shuffled)
    found = make_analyzer(tmp_path)
    faces = found.analyze(with_square(blank(), SQUARE), embeddings=True)
    assert len(faces) == 1
    assert faces[0].embedding is not None and faces[0].embedding.shape == (512,)


def test_nested_antelopev2_pack(tmp_path: Path) -> None:
    folder = make_pack(tmp_path / "models" / "antelopev2" / "antelopev2", pack="antelopev2", batched=False)
    found = make_analyzer(tmp_path, pack="antelopev2")
    assert found.folder == folder
    faces = found.analyze(with_square(blank(), SQUARE), embeddings=True)
    assert len(faces) == 1
    assert faces[0].embedding_model == "arcface-antelopev2"


def test_pack_without_detector_is_a_clear_error(tmp_path: Path) -> None:
    folder = make_pack(tmp_path / "models" / "buffalo_l", with_detector=False)
    with pytest.raises(FaceModelMissingError) as caught:
        make_analyzer(tmp_path)
    message = str(caught.value)
    assert str(folder) in message and "det_10g.onnx" in message and "buffalo_l" in message


def test_detector_without_keypoints_is_a_clear_error(tmp_path: Path) -> None:
    make_pack(tmp_path / "models" / "buffalo_l", detector_kps=False)
    with pytest.raises(FaceModelMissingError, match="no keypoint outputs"):
        make_analyzer(tmp_path)


def test_missing_onnxruntime_names_the_extra(pack_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(FaceModelMissingError, match=r"pip install 'closeup\[insightface\]'"):
        make_analyzer(pack_root)


def test_module_imports_without_onnxruntime_or_insightface() -> None:
    code = (
        "import sys; sys.modules['onnxruntime'] = sys.modules['insightface'] = None; "
        "import generation.faces.insightface_backend as m; print(m.InsightFaceAnalyzer.name)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "insightface"


def test_models_load_through_the_insightface_package(analyzer: InsightFaceAnalyzer) -> None:
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    assert type(analyzer._detector) is SCRFD and analyzer._detector.use_kps
    assert type(analyzer._recognizer) is ArcFaceONNX
    # One onnxruntime session serves every detector size (the package's default would build one per size).
    assert not analyzer._detector.static_shape_sessions
    analyzer.analyze(blank())
    assert set(analyzer._detector.resolution_sessions.values()) == {analyzer._detector.session}
    for model in (analyzer._detector, analyzer._recognizer):
        options = model.session.get_session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1


def test_embedding_matches_the_packages_own_recognition_call(analyzer: InsightFaceAnalyzer) -> None:
    """insightface's documented path (ArcFaceONNX.get on a BGR photo and the face's keypoints) gives the
    same vector: the colour order and the keypoint order reach the model as the package expects."""
    from insightface.app.common import Face as InsightFace

    img = with_square(blank(), SQUARE, colour=(255, 200, 60))  # not grey: a swapped channel order shows
    face = analyzer.analyze(img, embeddings=True)[0]
    theirs = InsightFace(bbox=np.array(face.box), kps=face.landmarks5.astype(np.float32))
    expected = analyzer._recognizer.get(np.ascontiguousarray(img[:, :, ::-1]), theirs)
    np.testing.assert_allclose(face.embedding, expected, rtol=1e-5, atol=1e-5)
    swapped = analyzer._recognizer.get(img, InsightFace(bbox=np.array(face.box), kps=face.landmarks5))
    assert not np.allclose(face.embedding, swapped, atol=1e-3)


# --------------------------------------------------------------------------- detection


def test_is_a_face_analyzer(analyzer: InsightFaceAnalyzer) -> None:
    assert isinstance(analyzer, FaceAnalyzer)
    assert analyzer.name == "insightface"


def test_blank_image_tries_every_size(analyzer: InsightFaceAnalyzer) -> None:
    assert analyzer.analyze(blank()) == []
    assert analyzer.last_attempts == FULL_LADDER


def test_square_is_found_in_original_image_coordinates(analyzer: InsightFaceAnalyzer) -> None:
    faces = analyzer.analyze(with_square(blank(), SQUARE))
    assert analyzer.last_attempts == ["640"]
    assert len(faces) == 1  # two anchors fire on the cell; NMS keeps one
    face = faces[0]
    assert face.box == pytest.approx(SQUARE_BOX, abs=0.5)
    assert iou(face.box, SQUARE) > 0.3 and inside(np.array([425.5, 275.5]), face.box)
    assert face.score > 0.99
    assert all(inside(p, face.box) for p in face.landmarks5)
    # The stand-in emits right eye / right mouth corner first; Face.landmarks5 is image-left first.
    assert face.landmarks5[0, 0] < face.landmarks5[1, 0] and face.landmarks5[3, 0] < face.landmarks5[4, 0]
    assert isinstance(face.pose, HeadPose)
    assert abs(face.pose.yaw) < 3 and abs(face.pose.pitch) < 5 and abs(face.pose.roll) < 1
    assert face.embedding is None and face.embedding_model is None


def test_faces_come_largest_first(analyzer: InsightFaceAnalyzer) -> None:
    img = with_square(blank(), (791, 391, 859, 459), colour=(0, 255, 0))  # no red: 1.5-cell box
    img = with_square(img, SQUARE)  # white: 2.5-cell box
    faces = analyzer.analyze(img)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].box == pytest.approx(SQUARE_BOX, abs=0.5)
    assert inside(np.array([825.0, 425.0]), faces[1].box)


def test_retries_at_448_when_640_finds_nothing(analyzer: InsightFaceAnalyzer) -> None:
    # Straddles stride-32 cells at 640 (no cell covered enough) but fills one at 448.
    faces = analyzer.analyze(with_square(blank(), (0, 221, 64, 285)))
    assert analyzer.last_attempts == ["640", "448"]
    assert len(faces) == 1 and inside(np.array([32.0, 253.0]), faces[0].box)


def test_padded_retry_maps_back_to_original_coordinates(analyzer: InsightFaceAnalyzer) -> None:
    # Found only once the image is padded by 1.25× (which shifts and shrinks it on the canvas).
    faces = analyzer.analyze(with_square(blank(), (63, 300, 123, 360)))
    assert analyzer.last_attempts == FULL_LADDER
    assert len(faces) == 1
    face = faces[0]
    assert inside(np.array([93.0, 330.0]), face.box)
    centre = ((face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2)
    assert centre == pytest.approx((93.75, 318.25), abs=1.0)  # cell centre / 0.512 − pad (125, 88)
    assert all(inside(p, face.box) for p in face.landmarks5)


def test_fixed_size_detector_tries_its_size_then_pads(tmp_path: Path) -> None:
    make_pack(tmp_path / "models" / "buffalo_l", fixed_det_size=640, batched=False)
    fixed = make_analyzer(tmp_path)
    assert fixed.analyze(blank()) == []
    assert fixed.last_attempts == ["640", "640+pad"]
    faces = fixed.analyze(with_square(blank(), SQUARE))
    assert len(faces) == 1 and faces[0].box == pytest.approx(SQUARE_BOX, abs=0.5)


def test_rejects_non_rgb_input(analyzer: InsightFaceAnalyzer) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        analyzer.analyze(np.zeros((10, 10), dtype=np.uint8))


# --------------------------------------------------------------------------- landmarks, embeddings


def test_landmarks68_are_placed_on_each_box(analyzer: InsightFaceAnalyzer) -> None:
    face = analyzer.analyze(with_square(blank(), SQUARE))[0]
    assert face.landmarks68 is not None
    assert face.landmarks68.shape == (68, 2)
    assert np.isfinite(face.landmarks68).all()
    centre = face.landmarks68.mean(axis=0)
    assert inside(centre, face.box)


def test_similarity_matrix_recovers_a_similarity() -> None:
    angle, scale, shift = np.radians(17.0), 2.3, np.array([140.0, -35.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_TEMPLATE @ rot.T + shift
    matrix = similarity_matrix(points, ARCFACE_TEMPLATE)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-9)


def test_embeddings_raw_deterministic_and_only_when_asked(analyzer: InsightFaceAnalyzer) -> None:
    img = with_square(blank(), SQUARE)
    face = analyzer.analyze(img, embeddings=True)[0]
    again = analyzer.analyze(img, embeddings=True)[0]
    assert analyzer.analyze(img)[0].embedding is None

    emb = face.embedding
    assert emb is not None and emb.shape == (512,) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    assert face.embedding_model == "arcface-buffalo_l"
    np.testing.assert_array_equal(emb, again.embedding)

    # The keypoints are an exact similarity of the template, so alignment puts them on it.
    matrix = similarity_matrix(face.landmarks5, ARCFACE_TEMPLATE)
    mapped = face.landmarks5 @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-3)
    # Recompute the stand-in recognizer by hand: RGB, (x − 127.5) / 127.5, 8×8 pooling, matmul.
    crop = arcface_crop(img, face.landmarks5).astype(np.float32)
    assert crop.shape == (112, 112, 3) and crop[40:100, 30:80].min() == 255  # the white cell fills it
    pooled = ((crop - 127.5) / 127.5).transpose(2, 0, 1).reshape(3, 14, 8, 14, 8).mean(axis=(2, 4))
    np.testing.assert_allclose(emb, pooled.reshape(-1) @ recognizer_weights(), rtol=1e-4, atol=1e-4)
    assert abs(float(np.linalg.norm(emb)) - 1.0) > 0.05  # raw, not L2-normalised


def test_embeddings_without_recognizer(tmp_path: Path) -> None:
    make_pack(tmp_path / "models" / "buffalo_l", with_recognizer=False)
    detect_only = make_analyzer(tmp_path)
    img = with_square(blank(), SQUARE)
    assert len(detect_only.analyze(img)) == 1
    with pytest.raises(FaceModelMissingError, match=r"w600k_r50\.onnx"):
        detect_only.analyze(img, embeddings=True)


# --------------------------------------------------------------------------- ensure_pack / download


def test_ensure_pack_without_download_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(FaceModelMissingError) as caught:
        ensure_pack(tmp_path, "antelopev2", download=False)
    message = str(caught.value)
    assert "antelopev2" in message
    assert str(tmp_path / "models" / "antelopev2") in message
    assert "https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip" in message
    assert not (tmp_path / "models").exists()


def test_ensure_pack_returns_an_existing_pack_without_downloading(tmp_path: Path) -> None:
    folder = make_pack(tmp_path / "models" / "buffalo_l")
    assert ensure_pack(tmp_path, "buffalo_l", download=True, url_base="http://127.0.0.1:9") == folder


def test_ensure_pack_downloads_a_nested_zip(tmp_path: Path, serve: tuple[Path, str]) -> None:
    served, url_base = serve
    # antelopev2.zip really holds an antelopev2/ folder, so it unpacks one level too deep.
    source = make_pack(tmp_path / "build", pack="antelopev2")
    zip_folder(source, served / "antelopev2.zip", prefix="antelopev2/")
    root = tmp_path / "root"

    folder = ensure_pack(root, "antelopev2", download=True, url_base=url_base)
    assert folder == root / "models" / "antelopev2" / "antelopev2"
    assert (folder / "scrfd_10g_bnkps.onnx").is_file()
    assert [p.name for p in (root / "models").iterdir()] == ["antelopev2"]  # no temp files left

    found = make_analyzer(root, pack="antelopev2", download=True, url_base=url_base)
    faces = found.analyze(with_square(blank(), SQUARE), embeddings=True)
    assert len(faces) == 1 and faces[0].embedding is not None


def test_analyzer_downloads_on_first_use(tmp_path: Path, serve: tuple[Path, str]) -> None:
    served, url_base = serve
    zip_folder(make_pack(tmp_path / "build"), served / "buffalo_l.zip")  # buffalo_l.zip is flat
    root = tmp_path / "root"
    found = make_analyzer(root, download=True, url_base=url_base)
    assert found.folder == root / "models" / "buffalo_l"
    assert len(found.analyze(with_square(blank(), SQUARE))) == 1


@pytest.mark.parametrize("evil", ["../evil.onnx", "antelopev2/../../evil.onnx", "ABSOLUTE"])
def test_zip_slip_is_refused(tmp_path: Path, serve: tuple[Path, str], evil: str) -> None:
    served, url_base = serve
    outside = tmp_path / "outside" / "evil.onnx"
    name = outside.as_posix() if evil == "ABSOLUTE" else evil
    source = make_pack(tmp_path / "build", pack="antelopev2")
    zip_folder(source, served / "antelopev2.zip", prefix="antelopev2/", extra={name: b"not a model"})
    root = tmp_path / "root"

    with pytest.raises(FaceModelMissingError, match="unsafe member") as caught:
        ensure_pack(root, "antelopev2", download=True, url_base=url_base)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not outside.exists()
    assert not (root / "evil.onnx").exists() and not (root / "models" / "evil.onnx").exists()
    assert not list(tmp_path.rglob("evil.onnx"))
    assert list((root / "models").iterdir()) == []  # nothing extracted, temp zip removed


def test_download_failure_is_a_clean_error(tmp_path: Path, no_proxy: None) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url_base = f"http://127.0.0.1:{port}"
    with pytest.raises(FaceModelMissingError) as caught:
        ensure_pack(tmp_path, "buffalo_l", download=True, url_base=url_base)
    error = caught.value
    message = str(error)
    assert "download failed" in message and f"{url_base}/buffalo_l.zip" in message
    assert str(tmp_path / "models" / "buffalo_l") in message
    assert "Traceback" not in message
    assert error.__cause__ is None and error.__suppress_context__
    assert list((tmp_path / "models").iterdir()) == []


def test_download_of_a_missing_file_is_a_clean_error(tmp_path: Path, serve: tuple[Path, str]) -> None:
    _, url_base = serve
    with pytest.raises(FaceModelMissingError, match="download failed: HTTP 404"):
        ensure_pack(tmp_path / "root", "buffalo_l", download=True, url_base=url_base)


def test_download_of_a_corrupt_zip_is_a_clean_error(tmp_path: Path, serve: tuple[Path, str]) -> None:
    served, url_base = serve
    (served / "buffalo_l.zip").write_bytes(b"this is not a zip")
    with pytest.raises(FaceModelMissingError, match="download failed"):
        ensure_pack(tmp_path / "root", "buffalo_l", download=True, url_base=url_base)
    assert list((tmp_path / "root" / "models").iterdir()) == []


class _CuttingHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file with HTTP Range; the first full request is cut short, as a flaky network does."""

    payload = b""
    cut_once = True
    ranges: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        ranged = self.headers.get("Range", "")
        type(self).ranges.append(ranged)
        start = int(ranged.removeprefix("bytes=").rstrip("-")) if ranged else 0
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_once and not start:
            type(self).cut_once = False
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_cut_download_resumes_with_progress_and_a_damaged_one_is_refused(
    tmp_path: Path, no_proxy: None, caplog: pytest.LogCaptureFixture
) -> None:
    archive = zip_folder(make_pack(tmp_path / "build"), tmp_path / "buffalo_l.zip")
    _CuttingHandler.payload = archive.read_bytes()
    _CuttingHandler.ranges = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CuttingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url_base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with caplog.at_level("INFO", logger="generation.faces"):
            folder = ensure_pack(tmp_path / "root", "buffalo_l", download=True, url_base=url_base)
        assert (folder / "w600k_r50.onnx").is_file() or list(folder.glob("*.onnx"))
        third = len(_CuttingHandler.payload) // 3
        assert _CuttingHandler.ranges == ["", f"bytes={third}-"]  # the second request asked for the rest
        assert any("resuming" in r.getMessage() for r in caplog.records)
        assert any("(100%)" in r.getMessage() for r in caplog.records)  # progress, to the end
        assert not list((tmp_path / "root" / "models").glob(".*.part"))

        # A download whose bytes are damaged: the zip's own CRCs catch it, nothing is unpacked or kept.
        damaged = bytearray(_CuttingHandler.payload)
        damaged[len(damaged) // 2] ^= 0xFF
        _CuttingHandler.payload, _CuttingHandler.cut_once = bytes(damaged), False
        with pytest.raises(FaceModelMissingError, match=r"damaged|CRC|Bad"):
            ensure_pack(tmp_path / "other", "buffalo_l", download=True, url_base=url_base)
        assert list((tmp_path / "other" / "models").iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()
