"""Compression evidence: JPEG quality from the quantisation tables, and blockiness for files
(PNG screenshots, re-saved images) whose history the header no longer tells.

The quality estimate follows Kornblum (2008): scale the IJG Annex K tables for every quality
1-100 and pick the one closest (least squares) to the file's own tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np

# ITU T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), in natural row order.
_LUMA_BASE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)
_CHROMA_BASE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
], dtype=np.float64)

def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255)


@cache
def _candidates() -> tuple[np.ndarray, np.ndarray]:
    qualities = range(1, 101)
    luma = np.stack([_ijg_table(_LUMA_BASE, q) for q in qualities])
    chroma = np.stack([_ijg_table(_CHROMA_BASE, q) for q in qualities])
    return luma, chroma


def _as_table(values: Sequence[int]) -> np.ndarray:
    """Pillow (>= 8.3) reports tables in natural row order, the order of the Annex K tables."""
    return np.asarray(values, dtype=np.float64)


def estimate_jpeg_quality(quantization: Mapping[int, Sequence[int]] | None) -> float | None:
    """IJG-equivalent quality 1-100 of a JPEG from its quantisation tables, or None.

    Tables that match no IJG scaling (some phone encoders) still get the closest quality,
    which tracks how coarse the quantisation is, the thing that matters here.
    """
    if not quantization or 0 not in quantization or len(quantization[0]) != 64:
        return None
    luma_c, chroma_c = _candidates()
    error = np.mean((luma_c - _as_table(quantization[0])) ** 2, axis=1)
    if 1 in quantization and len(quantization[1]) == 64:
        error = error + 0.5 * np.mean((chroma_c - _as_table(quantization[1])) ** 2, axis=1)
    return float(np.argmin(error) + 1)


def _grid_steps(steps: np.ndarray) -> tuple[float, float]:
    """(mean step on the strongest of the 8 grid phases, mean step on the other seven), along axis 1."""
    phases = np.array([steps[:, k::8].mean() for k in range(8)])
    edge = int(np.argmax(phases))
    return float(phases[edge]), float(np.delete(phases, edge).mean())


def blockiness(gray: np.ndarray) -> float:
    """Ratio of mean absolute luma step across 8-pixel block boundaries to the step inside blocks.

    About 1.0 for images never JPEG-compressed (or at full quality); grows as 8×8 blocks show. The
    grid is found rather than assumed: a screenshot or a crop of a JPEG shifts it off (0, 0), so each
    axis takes the strongest of its 8 phases. Only meaningful on pixels not resampled since.
    """
    g = gray.astype(np.float32)
    if g.shape[0] < 32 or g.shape[1] < 32:
        return 1.0
    edge_x, inner_x = _grid_steps(np.abs(np.diff(g, axis=1)))
    edge_y, inner_y = _grid_steps(np.abs(np.diff(g, axis=0)).T)
    inner = (inner_x + inner_y) / 2.0
    return float((edge_x + edge_y) / 2.0 / max(inner, 1e-3))
