"""The annotated preview: photo on the left, a check list in the verdict's colours on the right."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from generation.quality.gate import Assessment
from generation.quality.preview import PANEL_WIDTH, PREVIEW_MAX_SIDE, TIER_COLOURS, render_preview, short_value
from generation.quality.report import CheckResult, Tier


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


ADVICE_TEXT = (250, 250, 250)  # preview.py draws the advice in this colour, values in VALUE_TEXT
VALUE_TEXT = (160, 160, 160)


def test_every_measured_check_shows_its_value(assessments: dict[str, Assessment]) -> None:
    for assessment in assessments.values():
        for check in assessment.report.checks:
            shown = short_value(check)
            if check.value is None or check.tier == Tier.SKIPPED:
                assert shown == ""
            elif check.name != "face_found":
                assert shown and any(ch.isdigit() for ch in shown), check


def test_values_are_the_measurements_in_their_units() -> None:
    assert short_value(CheckResult("resolution", Tier.WARN, 43.8)) == "44 px eyes"
    assert short_value(CheckResult("pose", Tier.FAIL, 33.4)) == "33 deg"
    assert short_value(CheckResult("side_shadow", Tier.FAIL, 6.44)) == "6.4:1"
    assert short_value(CheckResult("compression", Tier.FAIL, 15.0)) == "Q15"
    assert short_value(CheckResult("compression", Tier.FAIL, 2.43)) == "2.43"  # blockiness of a PNG
    assert short_value(CheckResult("pose", Tier.SKIPPED, None)) == ""


def test_the_advice_is_on_the_preview_and_fits_it(assessments: dict[str, Assessment]) -> None:
    with_advice = assessments["obama_partial_face.jpg"]
    assert with_advice.report.messages
    preview = render_preview(with_advice)
    panel = preview[:, photo_width(with_advice):]
    assert colour_count(panel, VALUE_TEXT) > 50  # the measured values
    rows = np.nonzero(np.all(panel == np.array(ADVICE_TEXT, np.uint8), axis=-1).any(axis=1))[0]
    assert rows.size > 0
    # Below the check list, and not cut off at the bottom.
    assert rows.min() > 40 + 22 * len(with_advice.report.checks) - 10
    assert rows.max() < preview.shape[0] - 2
    # One message or three, every wrapped line is inside the panel's width.
    columns = np.nonzero(np.all(panel == np.array(ADVICE_TEXT, np.uint8), axis=-1).any(axis=0))[0]
    assert columns.max() < PANEL_WIDTH - 4


def test_a_small_photo_with_three_messages_gets_a_taller_panel(assessments: dict[str, Assessment]) -> None:
    small = assessments["astronaut.png"]  # 512 px tall
    long_advice = [CheckResult(name, Tier.FAIL, 1.0, text) for name, text in
                   (("framing", "Move the camera back a bit so your whole head is in the picture. " * 3),
                    ("blur", "Hold the phone still and tap your face to focus. " * 3),
                    ("compression", "Send the original photo from your camera roll. " * 3))]
    report = dataclasses.replace(small.report, checks=tuple(long_advice) + small.report.checks[3:])
    assert len(report.messages) == 3
    preview = render_preview(dataclasses.replace(small, report=report))
    assert preview.shape[0] > small.pixels.shape[0]
    panel = preview[:, photo_width(small):]
    rows = np.nonzero(np.all(panel == np.array(ADVICE_TEXT, np.uint8), axis=-1).any(axis=1))[0]
    assert rows.max() < preview.shape[0] - 2


def test_a_photo_with_nothing_to_fix_shows_no_advice(assessments: dict[str, Assessment]) -> None:
    calm = assessments["obama.jpg"]
    assert not calm.report.messages
    panel = render_preview(calm)[:, photo_width(calm):]
    assert colour_count(panel, ADVICE_TEXT) == 0
