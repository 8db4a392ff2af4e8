"""bot.imaging on real photos, the hostile-image corpus and real encoders; the face analyzer is real dlib."""

from __future__ import annotations

import ast
import importlib.util
import io
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from bot.imaging import PREVIEW_MAX_SIDE, PhotoCheck, check_photo, fit_images, make_example_framing_png
from generation.config import ImagesConfig
from generation.faces.dlib_backend import DlibAnalyzer
from generation.images import ImageError
from generation.quality.checks import ADVICE

TESTS = Path(__file__).resolve().parents[1]
FACES = TESTS / "fixtures" / "faces"
ROOT = TESTS.parent

# The corpus deliberately contains damaged EXIF blocks; Pillow warns and the loader carries on.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")


def _hostile_module() -> ModuleType:
    """tests/generation/hostile_images.py, shared with that package's tests whichever way it was imported."""
    if "hostile_images" in sys.modules:
        return sys.modules["hostile_images"]
    spec = importlib.util.spec_from_file_location("hostile_images", TESTS / "generation" / "hostile_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_images"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


hostile = _hostile_module()
CASES = hostile.build_corpus()


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


def _decode(data: bytes, fmt: str) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=[fmt])
    image.load()
    return image


@cache
def _noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """Incompressible pixels: the PNG is about 3 bytes a pixel, the worst case for fitting."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- check_photo


def test_check_photo_on_a_real_portrait(analyzer: DlibAnalyzer) -> None:
    data = (FACES / "obama.jpg").read_bytes()
    result = check_photo(data, analyzer, ImagesConfig())
    assert isinstance(result, PhotoCheck)
    assert result.verdict in ("pass", "warn")
    assert result.faces_found == 1
    assert result.photo == data
    assert len(result.messages) <= 3
    preview = _decode(result.preview_png, "PNG")
    assert max(preview.size) <= PREVIEW_MAX_SIDE
    assert result.crop_jpeg is not None
    crop = _decode(result.crop_jpeg, "JPEG")
    assert crop.width == crop.height  # the suggested crop is square
    names = [name for name, _, _ in result.checks]
    assert names[:2] == ["file", "face_found"]
    assert ("face_found", "pass") in {(name, tier) for name, tier, _ in result.checks}


def test_check_photo_reports_what_the_loader_corrected(analyzer: DlibAnalyzer) -> None:
    upright = Image.open(FACES / "obama.jpg").convert("RGB").reduce(2)
    # Stored turned a quarter to the left; EXIF orientation 6 says "turn 90° clockwise to view".
    data = hostile.jpeg_with_orientation(upright.transpose(Image.Transpose.ROTATE_90), 6)
    result = check_photo(data, analyzer, ImagesConfig())
    assert result.faces_found == 1
    assert any("EXIF" in note for note in result.notes)


def test_check_photo_without_a_face_fails_with_advice(analyzer: DlibAnalyzer) -> None:
    ramp = np.linspace(30, 220, 480, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (360, 1))] * 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    result = check_photo(buffer.getvalue(), analyzer, ImagesConfig())
    assert result.verdict == "fail"
    assert result.faces_found == 0
    assert result.messages[0] == ADVICE["no_face"]
    assert result.crop_jpeg is None
    assert max(_decode(result.preview_png, "PNG").size) <= PREVIEW_MAX_SIDE


def _config_for(load_kwargs: dict[str, object]) -> ImagesConfig:
    names = {"max_side": "analysis_max_side"}
    return ImagesConfig(**{names.get(key, key): value for key, value in load_kwargs.items()})


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_files_give_a_report_or_an_image_error(case, analyzer: DlibAnalyzer) -> None:
    if case.skip_reason:
        pytest.skip(case.skip_reason)
    try:
        result = check_photo(case.data, analyzer, _config_for(case.load_kwargs))
    except ImageError as exc:  # anything else fails the test with its traceback
        assert case.error is not None, f"{case.name} should load, got {exc.code}: {exc}"
        assert type(exc) is case.error
        assert exc.user_message
        return
    assert case.error is None, f"{case.name} should be refused with {case.error.code}"
    assert result.verdict in ("pass", "warn", "fail")
    assert _decode(result.preview_png, "PNG").size


# --------------------------------------------------------------------------- fit_images


def test_fit_images_keeps_a_png_that_fits() -> None:
    png = _small_png()
    [fitted] = fit_images([png], per_file_limit=1024 * 1024)
    assert fitted.data == png
    assert (fitted.filename, fitted.content_type, fitted.reencoded) == ("portrait-1.png", "image/png", False)


def test_fit_images_reencodes_a_big_png_as_jpeg() -> None:
    png = _noise_png(1200, 800)
    limit = 1024 * 1024
    assert len(png) > 2 * limit
    [fitted] = fit_images([png], per_file_limit=limit, stem="look")
    assert (fitted.filename, fitted.content_type, fitted.reencoded) == ("look-1.jpg", "image/jpeg", True)
    assert len(fitted.data) <= limit
    assert _decode(fitted.data, "JPEG").size == (1200, 800)  # quality alone was enough


def test_fit_images_downscales_when_quality_is_not_enough() -> None:
    limit = 200 * 1024
    [fitted] = fit_images([_noise_png(1200, 800)], per_file_limit=limit)
    assert fitted.reencoded and len(fitted.data) <= limit
    width, height = _decode(fitted.data, "JPEG").size
    assert width < 1200
    assert width / height == pytest.approx(1.5, abs=0.01)


def test_fit_images_shares_the_total_between_files() -> None:
    small = _small_png()
    pngs = [_noise_png(800, 600, seed) for seed in (1, 2)] + [small, _noise_png(800, 600, 3)]
    total = 2 * 1024 * 1024
    fitted = fit_images(pngs, per_file_limit=8 * 1024 * 1024, total_limit=total)
    assert sum(len(f.data) for f in fitted) <= total
    assert [f.filename for f in fitted] == ["portrait-1.jpg", "portrait-2.jpg", "portrait-3.png", "portrait-4.jpg"]
    assert fitted[2].data == small  # the small one stays lossless
    for f in fitted:
        assert _decode(f.data, "PNG" if f.filename.endswith(".png") else "JPEG").size


def test_fit_images_refuses_absurd_limits() -> None:
    with pytest.raises(ValueError, match="too small"):
        fit_images([_small_png()], per_file_limit=4 * 1024)
    with pytest.raises(ValueError, match="too small"):
        fit_images([_small_png()] * 4, per_file_limit=1024 * 1024, total_limit=20 * 1024)
    assert fit_images([], per_file_limit=1024 * 1024) == []


# --------------------------------------------------------------------------- /help art and boundaries


def test_example_framing_is_a_deterministic_png() -> None:
    first, second = make_example_framing_png(), make_example_framing_png()
    assert first == second
    image = _decode(first, "PNG")
    assert image.size == (640, 320)
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    for colour in ((46, 160, 67), (215, 48, 48)):  # the GOOD and BAD frames are drawn
        assert (np.abs(pixels - colour).sum(axis=1) < 10).sum() > 500


def test_bot_modules_stay_light() -> None:
    """No GPU stack even transitively (through generation/), and no Discord objects in these helpers."""
    code = ("import sys, bot.imaging, bot.downloads; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ("imaging.py", "downloads.py"):
        tree = ast.parse((ROOT / "bot" / name).read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] == "discord"}, name
