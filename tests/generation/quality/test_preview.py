"""The annotated preview: photo on the left, a check list in the verdict's colours on the right."""

from __future__ import annotations

import numpy as np
import pytest

from generation.quality.gate import Assessment
from generation.quality.preview import PANEL_WIDTH, PREVIEW_MAX_SIDE, TIER_COLOURS, render_preview
from generation.quality.report import Tier


def colour_count(pixels: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(pixels == np.array(colour, np.uint8), axis=-1).sum())


def photo_width(assessment: Assessment) -> int:
    height, width = assessment.pixels.shape[:2]
    factor = min(1.0, PREVIEW_MAX_SIDE / max(height, width))
    return max(1, round(width * factor)) if factor < 1.0 else width


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "obama_partial_face.jpg", "camera.png"])
def test_preview_is_rgb_with_a_side_panel(assessments: dict[str, Assessment], name: str) -> None:
    assessment = assessments[name]
    preview = render_preview(assessment)
    assert preview.dtype == np.uint8
    assert preview.ndim == 3 and preview.shape[2] == 3
    height, width = assessment.pixels.shape[:2]
    shown = photo_width(assessment)
    assert preview.shape[1] == shown + PANEL_WIDTH
    assert max(preview.shape[:2]) >= min(PREVIEW_MAX_SIDE, max(height, width))
    assert preview.shape[1] > shown  # wider than the photo as shown: the panel
    panel = preview[:, shown:]
    # The verdict heading and the marks of checks with the verdict's tier use its colour.
    verdict_colour = TIER_COLOURS[assessment.report.verdict]
    assert colour_count(panel, verdict_colour) > 50
    # One mark per check: every tier present in the report shows up in the panel.
    for tier in {c.tier for c in assessment.report.checks}:
        assert colour_count(panel, TIER_COLOURS[tier]) > 50, tier


def test_face_box_is_drawn_on_the_photo_in_the_verdict_colour(assessments: dict[str, Assessment]) -> None:
    assessment = assessments["obama.jpg"]
    preview = render_preview(assessment)
    shown = photo_width(assessment)
    factor = shown / assessment.pixels.shape[1]
    colour = TIER_COLOURS[assessment.report.verdict]
    assert colour_count(assessment.pixels, colour) < 20  # the photo itself hardly has that colour
    x0, y0, x1, y1 = assessment.faces[0].box
    perimeter = 2 * (x1 - x0 + y1 - y0) * factor
    # The outline is at least 2 px wide; other drawings may cover a little of it.
    assert colour_count(preview[:, :shown], colour) > 1.5 * perimeter


def test_preview_without_a_face(assessments: dict[str, Assessment]) -> None:
    assessment = assessments["camera.png"]
    assert assessment.report.verdict == Tier.FAIL
    preview = render_preview(assessment)
    shown = photo_width(assessment)
    # The photo is pasted as it is (no box, no crop drawn on it).
    assert np.array_equal(preview[: assessment.pixels.shape[0], :shown], assessment.pixels)
    panel = preview[:, shown:]
    assert colour_count(panel, TIER_COLOURS[Tier.FAIL]) > 50
    assert colour_count(panel, TIER_COLOURS[Tier.SKIPPED]) > 50
