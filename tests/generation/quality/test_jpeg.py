"""JPEG quality from the quantisation tables, and 8×8 blockiness for files without tables."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from generation.images import load_image
from generation.quality.geometry import luma
from generation.quality.jpeg import blockiness, estimate_jpeg_quality


def smooth_image(height: int = 256, width: int = 320) -> np.ndarray:
    """Gentle colour ramps and a slow wave: no edges, nothing aligned to an 8-pixel grid."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([40 + 150 * xs / width, 60 + 120 * ys / height,
                    100 + 60 * np.sin(xs / 37.0) * np.cos(ys / 29.0)], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def as_jpeg(rgb: np.ndarray, quality: int, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("quality", range(5, 101, 5))
def test_pillow_quality_is_recovered_exactly(quality: int) -> None:
    loaded = load_image(as_jpeg(smooth_image(64, 64), quality))
    assert loaded.jpeg_quantization is not None
    assert estimate_jpeg_quality(loaded.jpeg_quantization) == quality


@pytest.mark.parametrize("quality", [15, 60, 90])
def test_greyscale_jpeg_with_one_table(quality: int) -> None:
    grey = np.asarray(Image.fromarray(smooth_image(64, 64)).convert("L"))
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=quality)
    tables = Image.open(io.BytesIO(buffer.getvalue())).quantization
    assert set(tables) == {0}
    assert estimate_jpeg_quality(tables) == quality


@pytest.mark.parametrize("tables", [None, {}, {1: tuple(range(64))}, {0: (1, 2, 3)}])
def test_no_usable_tables_gives_none(tables: dict[int, tuple[int, ...]] | None) -> None:
    assert estimate_jpeg_quality(tables) is None


def test_png_has_no_tables() -> None:
    buffer = io.BytesIO()
    Image.fromarray(smooth_image(64, 64)).save(buffer, format="PNG")
    loaded = load_image(buffer.getvalue())
    assert estimate_jpeg_quality(loaded.jpeg_quantization) is None


def test_coarser_tables_give_lower_quality() -> None:
    estimates = [estimate_jpeg_quality(load_image(as_jpeg(smooth_image(64, 64), q)).jpeg_quantization)
                 for q in (90, 70, 40, 10)]
    assert estimates == sorted(estimates, reverse=True)


def decoded_luma(data: bytes) -> np.ndarray:
    return luma(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_smooth_uncompressed_image_is_not_blocky() -> None:
    assert blockiness(luma(smooth_image())) == pytest.approx(1.0, abs=0.1)


def test_blockiness_grows_as_the_blocks_show() -> None:
    rgb = smooth_image()
    scores = {q: blockiness(decoded_luma(as_jpeg(rgb, q))) for q in (95, 50, 10)}
    assert scores[95] < scores[50] < scores[10]
    assert scores[10] > 2 * scores[95]
    assert scores[10] > 2.5  # the table's fail limit for files without quantisation tables


def test_blockiness_follows_the_8x8_grid() -> None:
    """Shifting the same compressed image off the grid hides the block edges from the measure."""
    gray = decoded_luma(as_jpeg(smooth_image(), 10))
    assert blockiness(gray[4:, 4:]) < blockiness(gray)


def test_blockiness_of_a_tiny_patch_is_neutral() -> None:
    assert blockiness(np.zeros((16, 16), np.float32)) == 1.0


def test_blockiness_finds_a_shifted_grid() -> None:
    """A JPEG's blocks cropped off their (0, 0) grid — a screenshot — read the same as on the grid."""
    rng = np.random.default_rng(3)
    smooth = cv2.GaussianBlur(rng.normal(128, 40, (256, 256)).astype(np.float32), (0, 0), 6)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=10)
    blocky = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L")).astype(np.float32)
    aligned = blockiness(blocky)
    assert aligned > 1.6
    for dx, dy in ((3, 5), (1, 0), (0, 7), (6, 2)):
        assert blockiness(blocky[dy:, dx:]) > 0.8 * aligned
    assert blockiness(np.clip(smooth, 0, 255)) < 1.3  # never compressed, whatever the phase
