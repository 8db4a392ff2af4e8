"""The quality gate end to end on real photos and on controlled degradations of them.

Degradation levels are the ones docs/quality-calibration.md shows the gate catching on these
photos (benchmarks/calibrate_quality.py applies them the same way).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from generation.faces.dlib_backend import DlibAnalyzer
from generation.faces.types import Face
from generation.images import LoadedImage
from generation.quality import degrade
from generation.quality.checks import ADVICE, Measured
from generation.quality.gate import Assessment
from generation.quality.report import CHECK_ORDER, CheckResult, QualityReport, Tier
from generation.quality.thresholds import THRESHOLDS

CLEAN = ("obama.jpg", "obama2.jpg", "biden.jpg", "astronaut.png")  # as in conftest.py
MAX_MESSAGES = 3  # what a person is told at once
FACE_CHECKS = [name for name in CHECK_ORDER if name not in ("file", "face_found")]

Images = dict[str, LoadedImage]
Faces = dict[str, Face]


def failing(assessment: Assessment) -> set[str]:
    return {c.name for c in assessment.report.checks if c.tier == Tier.FAIL}


# --- real photos as they are -------------------------------------------------------------------


@pytest.mark.parametrize("name", CLEAN)
def test_clean_original_is_never_rejected(assessments: dict[str, Assessment], name: str) -> None:
    report = assessments[name].report
    assert report.check("face_found").tier == Tier.PASS
    assert report.faces_found >= 1
    assert report.verdict != Tier.FAIL, [c for c in report.checks if c.tier == Tier.FAIL]
    assert report.crop is not None


def test_no_face_fails_once_and_skips_every_face_check(assessments: dict[str, Assessment]) -> None:
    assessment = assessments["camera.png"]  # a greyscale man in profile: dlib finds no face
    report = assessment.report
    assert report.verdict == Tier.FAIL
    assert report.faces_found == 0
    assert report.crop is None
    assert assessment.faces == ()
    assert report.check("face_found").tier == Tier.FAIL
    assert report.check("file").tier in (Tier.PASS, Tier.FIXED)
    assert {report.check(name).tier for name in FACE_CHECKS} == {Tier.SKIPPED}
    assert report.messages == [ADVICE["no_face"]]


def test_head_cut_by_the_edge_fails_framing_with_step_back_advice(assessments: dict[str, Assessment]) -> None:
    report = assessments["obama_partial_face.jpg"].report
    framing = report.check("framing")
    assert framing.tier == Tier.FAIL
    assert framing.advice == ADVICE["step_back"]
    assert "side of the head cut off" in framing.detail
    assert report.verdict == Tier.FAIL
    assert report.messages[0] == ADVICE["step_back"]


def _check_messages(report: QualityReport) -> None:
    """Messages: at most three distinct pieces of advice, failures first, then CHECK_ORDER."""
    messages = report.messages
    assert len(messages) <= MAX_MESSAGES
    assert len(set(messages)) == len(messages)
    actionable = [c for c in report.checks if c.tier in (Tier.FAIL, Tier.WARN) and c.advice]

    def rank(check: CheckResult) -> tuple[bool, int]:
        return check.tier != Tier.FAIL, CHECK_ORDER.index(check.name)

    # Each message's most important source; the sequence of sources must be strictly increasing.
    sources = [min((c for c in actionable if c.advice == m), key=rank) for m in messages]
    assert [rank(c) for c in sources] == sorted(rank(c) for c in sources)
    # Whatever was left out ranks below everything that was said.
    if sources:
        left_out = [c for c in actionable if c.advice not in messages]
        assert all(rank(c) > rank(sources[-1]) for c in left_out)
    expected = len({c.advice for c in actionable})
    assert len(messages) == min(MAX_MESSAGES, expected)


def test_many_problems_give_three_messages_failures_first(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    photo, face = images["obama.jpg"].pixels, clean_faces["obama.jpg"]
    # Blurred, very dark, chin cut off and saved at JPEG quality 15: four separate failures.
    damaged = degrade.gamma_darken(degrade.gaussian_blur(photo, face, 0.06), face, 4.0)
    damaged = degrade.cut_head(damaged, face, "chin", 0.2)
    report = assess_result(degrade.jpeg(damaged, face, 15)).report
    fails = [c for c in report.checks if c.tier == Tier.FAIL and c.advice]
    warns = [c for c in report.checks if c.tier == Tier.WARN and c.advice]
    assert {"framing", "blur", "under_exposure", "compression"} <= {c.name for c in fails}
    assert report.check("sunglasses").tier == Tier.SKIPPED  # blurred, dark eyes are not dark lenses
    assert len({c.advice for c in fails}) > MAX_MESSAGES
    _check_messages(report)
    assert len(report.messages) == MAX_MESSAGES
    assert set(report.messages) <= {c.advice for c in fails}
    # The most important failure leads; a warning never displaces a failure.
    assert report.messages[0] == ADVICE["step_back"]
    warn_only = {c.advice for c in warns} - {c.advice for c in fails}
    assert warn_only, "the photo should also have something that only warns"
    assert not warn_only & set(report.messages)


@pytest.mark.parametrize("name", [*CLEAN, "obama_partial_face.jpg", "camera.png"])
def test_messages_follow_the_ranking_on_every_photo(assessments: dict[str, Assessment], name: str) -> None:
    _check_messages(assessments[name].report)


def test_messages_deduplicate_shared_advice_and_put_failures_first() -> None:
    checks = (
        CheckResult("file", Tier.WARN, 400.0, ADVICE["send_original"]),
        CheckResult("face_found", Tier.PASS, 1.0),
        CheckResult("resolution", Tier.FAIL, 20.0, ADVICE["send_original"]),
        CheckResult("pose", Tier.WARN, 20.0, ADVICE["look_straight"]),
        CheckResult("blur", Tier.FAIL, 0.7, ADVICE["blur"]),
        CheckResult("colour_cast", Tier.WARN, 30.0, ADVICE["colour_cast"]),
        CheckResult("compression", Tier.FAIL, 10.0, ADVICE["compression"]),
    )
    report = QualityReport(Tier.FAIL, checks)
    assert report.messages == [ADVICE["send_original"], ADVICE["blur"], ADVICE["compression"]]


@pytest.mark.parametrize("name", ["obama.jpg", "obama_partial_face.jpg", "camera.png"])
def test_report_dict_is_json_and_carries_every_check(assessments: dict[str, Assessment], name: str) -> None:
    report = assessments[name].report
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == str(report.verdict)
    assert data["messages"] == report.messages
    assert [c["name"] for c in data["checks"]] == list(CHECK_ORDER)
    tiers = {str(t) for t in Tier}
    for entry, check in zip(data["checks"], report.checks, strict=True):
        assert set(entry) == {"name", "tier", "value", "advice", "detail"}
        assert entry["tier"] in tiers
        assert entry["tier"] == str(check.tier)
        assert entry["advice"] == check.advice
        assert entry["detail"] == check.detail
        assert entry["value"] is None or isinstance(entry["value"], float | int)
        if entry["tier"] == "skipped":
            assert entry["value"] is None
    assert (data["crop"] is None) == (report.crop is None)
    assert data["faces_found"] == report.faces_found
    assert data["backend"] == "dlib"


@pytest.mark.parametrize(("quarter_turns", "degrees"), [(1, 90), (3, 270)])
def test_photo_stored_sideways_is_turned_and_analysed(
    images: Images, assess_result: Callable[..., Assessment], quarter_turns: int, degrees: int
) -> None:
    upright = images["obama.jpg"].pixels
    assessment = assess_result(np.rot90(upright, k=quarter_turns))
    report = assessment.report
    assert report.check("face_found").tier == Tier.PASS
    assert assessment.rotated == degrees
    assert np.array_equal(assessment.pixels, upright)  # the working copy is the upright photo again
    assert any("turned" in note for note in report.notes)
    file_check = report.check("file")
    assert file_check.tier == Tier.FIXED
    assert "turned" in file_check.detail
    assert abs(assessment.faces[0].pose.roll) < 10
    assert report.verdict != Tier.FAIL


# --- one degradation per check -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    photo: str
    make: Callable[[np.ndarray, Face, Images, Faces], np.ndarray | bytes]
    check: str
    tier: Tier
    advice: str
    also_fail: frozenset[str] = frozenset()  # other checks the calibration shows failing too


def _second_face(ratio: float) -> Callable[[np.ndarray, Face, Images, Faces], np.ndarray]:
    def make(rgb: np.ndarray, face: Face, images: Images, faces: Faces) -> np.ndarray:
        other = images["astronaut.png"].pixels
        return degrade.paste_second_face(rgb, face, other, faces["astronaut.png"], ratio)

    return make


CASES = {
    "gaussian blur 0.06 obama": Case("obama.jpg", lambda r, f, i, fs: degrade.gaussian_blur(r, f, 0.06),
                                     "blur", Tier.FAIL, ADVICE["blur"]),
    "gaussian blur 0.06 obama2": Case("obama2.jpg", lambda r, f, i, fs: degrade.gaussian_blur(r, f, 0.06),
                                      "blur", Tier.FAIL, ADVICE["blur"]),
    "horizontal motion blur obama": Case("obama.jpg", lambda r, f, i, fs: degrade.motion_blur(r, f, 0.3, 0),
                                         "blur", Tier.FAIL, ADVICE["blur"]),
    "horizontal motion blur biden": Case("biden.jpg", lambda r, f, i, fs: degrade.motion_blur(r, f, 0.3, 0),
                                         "blur", Tier.FAIL, ADVICE["blur"]),
    "vertical motion blur obama": Case("obama.jpg", lambda r, f, i, fs: degrade.motion_blur(r, f, 0.3, 90),
                                       "blur", Tier.FAIL, ADVICE["blur"]),
    "gamma 3 obama": Case("obama.jpg", lambda r, f, i, fs: degrade.gamma_darken(r, f, 3.0),
                          "under_exposure", Tier.FAIL, ADVICE["under_exposure"]),
    "gamma 3 biden": Case("biden.jpg", lambda r, f, i, fs: degrade.gamma_darken(r, f, 3.0),
                          "under_exposure", Tier.FAIL, ADVICE["under_exposure"]),
    # A face at 2.2× gain is washed out and loses its shadow detail: the entropy test fails too.
    "overexpose 2.2 obama": Case("obama.jpg", lambda r, f, i, fs: degrade.overexpose(r, f, 2.2),
                                 "over_exposure", Tier.FAIL, ADVICE["over_exposure"],
                                 frozenset({"under_exposure"})),
    "overexpose 2.2 obama2": Case("obama2.jpg", lambda r, f, i, fs: degrade.overexpose(r, f, 2.2),
                                  "over_exposure", Tier.FAIL, ADVICE["over_exposure"],
                                  frozenset({"under_exposure"})),
    # A near-silhouette: the face itself is dark as well as darker than the window behind.
    "backlight 2 obama": Case("obama.jpg", lambda r, f, i, fs: degrade.backlight(r, f, 2.0),
                              "backlight", Tier.FAIL, ADVICE["backlight"], frozenset({"under_exposure"})),
    "backlight 2 biden": Case("biden.jpg", lambda r, f, i, fs: degrade.backlight(r, f, 2.0),
                              "backlight", Tier.FAIL, ADVICE["backlight"], frozenset({"under_exposure"})),
    "side shadow 6 obama": Case("obama.jpg", lambda r, f, i, fs: degrade.side_shadow(r, f, 6.0),
                                "side_shadow", Tier.FAIL, ADVICE["side_shadow"]),
    "side shadow 6 biden": Case("biden.jpg", lambda r, f, i, fs: degrade.side_shadow(r, f, 6.0),
                                "side_shadow", Tier.FAIL, ADVICE["side_shadow"]),
    "colour cast 1.0 obama": Case("obama.jpg", lambda r, f, i, fs: degrade.colour_cast(r, f, 1.0),
                                  "colour_cast", Tier.WARN, ADVICE["colour_cast"]),
    "colour cast 1.0 biden": Case("biden.jpg", lambda r, f, i, fs: degrade.colour_cast(r, f, 1.0),
                                  "colour_cast", Tier.WARN, ADVICE["colour_cast"]),
    # Lenses hide the eyes, so the eyes-closed check may fail with them (calibration: eyes_closed).
    "dark lenses obama": Case("obama.jpg", lambda r, f, i, fs: degrade.eye_bars(r, f),
                              "sunglasses", Tier.FAIL, ADVICE["sunglasses"], frozenset({"eyes_closed"})),
    "dark lenses astronaut": Case("astronaut.png", lambda r, f, i, fs: degrade.eye_bars(r, f),
                                  "sunglasses", Tier.FAIL, ADVICE["sunglasses"], frozenset({"eyes_closed"})),
    "eyes painted shut obama": Case("obama.jpg", lambda r, f, i, fs: degrade.close_eyes(r, f),
                                    "eyes_closed", Tier.FAIL, ADVICE["eyes_closed"]),
    # A white mask over nose, mouth and chin (the blue one hides the face from dlib altogether).
    # The white cloth also fails the eye-region contrast of the sunglasses check.
    "white mask obama": Case("obama.jpg", lambda r, f, i, fs: degrade.lower_face_cover(r, f, (235, 235, 240)),
                             "occlusion", Tier.WARN, ADVICE["occlusion"], frozenset({"sunglasses"})),
    "jpeg q15 obama": Case("obama.jpg", lambda r, f, i, fs: degrade.jpeg(r, f, 15),
                           "compression", Tier.FAIL, ADVICE["compression"]),
    "jpeg q15 biden": Case("biden.jpg", lambda r, f, i, fs: degrade.jpeg(r, f, 15),
                           "compression", Tier.FAIL, ADVICE["compression"]),
    # A screenshot (PNG) of a heavily compressed JPEG, cropped so its 8×8 grid no longer starts at (0, 0).
    "screenshot of q15, shifted grid obama": Case("obama.jpg", lambda r, f, i, fs: degrade.screenshot(r, f, 15),
                                                  "compression", Tier.FAIL, ADVICE["compression"]),
    "screenshot of q15, shifted grid biden": Case("biden.jpg", lambda r, f, i, fs: degrade.screenshot(r, f, 15),
                                                  "compression", Tier.FAIL, ADVICE["compression"]),
    "chin cut 20% obama": Case("obama.jpg", lambda r, f, i, fs: degrade.cut_head(r, f, "chin", 0.2),
                               "framing", Tier.FAIL, ADVICE["step_back"]),
    "chin cut 20% biden": Case("biden.jpg", lambda r, f, i, fs: degrade.cut_head(r, f, "chin", 0.2),
                               "framing", Tier.FAIL, ADVICE["step_back"]),
    # A copy enlarged from a thumbnail: the pixel count says 100 px between the eyes, the detail says 24.
    "enlarged from 24 px obama": Case("obama.jpg", lambda r, f, i, fs: degrade.enlarge(r, f, 24),
                                      "detail", Tier.FAIL, ADVICE["enlarged"]),
    "enlarged from 32 px obama": Case("obama.jpg", lambda r, f, i, fs: degrade.enlarge(r, f, 32),
                                      "detail", Tier.WARN, ADVICE["enlarged"]),
    # Here the blur check sees part of the loss too (a warning); the detail failure names the cause.
    "enlarged from 24 px biden": Case("biden.jpg", lambda r, f, i, fs: degrade.enlarge(r, f, 24),
                                      "detail", Tier.FAIL, ADVICE["enlarged"]),
    "beauty filter obama": Case("obama.jpg", lambda r, f, i, fs: degrade.beauty_filter(r, f, 2.0),
                                "smoothing", Tier.WARN, ADVICE["smoothed"]),
    "beauty filter obama2": Case("obama2.jpg", lambda r, f, i, fs: degrade.beauty_filter(r, f, 2.0),
                                 "smoothing", Tier.WARN, ADVICE["smoothed"]),
    # A 2700 K bulb with the white balance left on daylight: the cheeks only a little more orange than
    # some skin is, but the white shirt and the window very orange.
    "tungsten light biden": Case("biden.jpg", lambda r, f, i, fs: degrade.warm_cast(r, f, 1.0),
                                 "colour_cast", Tier.WARN, ADVICE["colour_cast"]),
    "tungsten light astronaut": Case("astronaut.png", lambda r, f, i, fs: degrade.warm_cast(r, f, 1.0),
                                     "colour_cast", Tier.WARN, ADVICE["colour_cast"]),
    "second face 50% obama": Case("obama.jpg", _second_face(0.5), "single_person", Tier.FAIL,
                                  ADVICE["many_people"]),
    "second face 50% biden": Case("biden.jpg", _second_face(0.5), "single_person", Tier.FAIL,
                                  ADVICE["many_people"]),
}


@pytest.mark.parametrize("case_id", list(CASES))
def test_degradation_is_caught_by_its_check(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment], case_id: str
) -> None:
    case = CASES[case_id]
    result = case.make(images[case.photo].pixels, clean_faces[case.photo], images, clean_faces)
    assessment = assess_result(result)
    report = assessment.report
    assert report.check("face_found").tier == Tier.PASS, "the degraded face must still be found"
    target = report.check(case.check)
    assert target.tier == case.tier, target
    assert target.advice == case.advice
    assert target.advice in report.messages or len(report.messages) == MAX_MESSAGES
    assert report.verdict in ((Tier.FAIL,) if case.tier == Tier.FAIL else (Tier.WARN, Tier.FAIL))
    # Specific: nothing else rejects the photo except what the calibration shows going with it.
    assert failing(assessment) - {case.check} <= case.also_fail


def test_face_too_far_away_in_a_full_size_photo_says_move_closer(
    images: Images, analyzer: DlibAnalyzer, assess_result: Callable[..., Assessment]
) -> None:
    photo = images["obama.jpg"].pixels
    height, width = photo.shape[:2]
    # A full-size camera frame (short side ≥ 1000 px) with the person standing far away.
    side = max(height, width, 1000)
    left = (side - width) // 2
    frame = cv2.copyMakeBorder(photo, 0, side - height, left, side - width - left, cv2.BORDER_REPLICATE)
    face = analyzer.analyze(frame)[0]
    report = assess_result(degrade.shrink_face(frame, face, 20)).report
    resolution = report.check("resolution")
    assert resolution.tier == Tier.FAIL
    assert resolution.advice == ADVICE["move_closer"]
    assert resolution.value == pytest.approx(20, abs=3)
    assert report.check("file").tier == Tier.PASS  # nothing wrong with the file itself


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg"])
def test_small_face_in_a_small_photo_says_send_the_original(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment], name: str
) -> None:
    face = clean_faces[name]
    photo = images[name].pixels
    # Both ways of getting 20 px between the eyes out of a sub-1000 px photo point at the file:
    # the face shrunk inside the frame, and a plain thumbnail of the whole photo.
    factor = 20 / face.inter_eye_distance
    thumbnail = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    for result in (degrade.shrink_face(photo, face, 20), thumbnail):
        report = assess_result(result).report
        resolution = report.check("resolution")
        assert resolution.tier == Tier.FAIL
        assert resolution.advice == ADVICE["send_original"]
        assert resolution.value == pytest.approx(20, abs=3)
    assert report.check("file").tier == Tier.WARN  # the thumbnail itself is under 512 px


def test_blur_advice_covers_shake_and_focus_alike(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    # Per-axis scores of clean faces already differ (faces have more horizontal structure), so the
    # gate does not guess "motion" vs "focus": one advice names both causes.
    for result in (degrade.gaussian_blur(images["biden.jpg"].pixels, clean_faces["biden.jpg"], 0.06),
                   degrade.motion_blur(images["biden.jpg"].pixels, clean_faces["biden.jpg"], 0.3, 90)):
        blur = assess_result(result).report.check("blur")
        assert blur.tier == Tier.FAIL
        assert blur.advice == ADVICE["blur"]
        assert "hold" in blur.advice.lower() and "focus" in blur.advice.lower()


def test_small_background_face_is_ignored(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    # At 5 % of the main face's area on these photos the pasted head is below the smallest face
    # HOG detects (an 80 px window at ≤ 800 px), so the gate sees one person (calibration: 0/0/4).
    report = assess_result(_second_face(0.05)(images["obama.jpg"].pixels, clean_faces["obama.jpg"], images,
                                              clean_faces)).report
    assert report.check("single_person").tier in (Tier.PASS, Tier.FIXED)
    assert report.verdict != Tier.FAIL


def test_detected_small_second_face_is_fixed_by_using_the_largest(
    images: Images, analyzer: DlibAnalyzer, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    # A face-filling selfie (the face ~half the frame), so a head at 5 % of its area is still
    # big enough for the detector to see.
    face = clean_faces["obama.jpg"]
    x0, y0, x1, y1 = face.box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0)
    photo = images["obama.jpg"].pixels
    selfie = photo[int(max(0, cy - half)):int(cy + half), int(max(0, cx - half)):int(cx + half)]
    selfie = cv2.resize(selfie, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
    main = analyzer.analyze(selfie)[0]
    assessment = assess_result(_second_face(0.05)(selfie, main, images, clean_faces))
    report = assessment.report
    single = report.check("single_person")
    assert report.faces_found == 2
    assert single.tier == Tier.FIXED
    assert 0 < single.value < 0.10
    assert report.verdict != Tier.FAIL
    # The report is about the big face: the crop is centred on it, not on the pasted head.
    assert report.face_index == 0
    main_box, other_box = assessment.faces[0].box, assessment.faces[1].box
    assert (main_box[2] - main_box[0]) > 2 * (other_box[2] - other_box[0])
    assert main_box[0] < report.crop.centre[0] < main_box[2]


@pytest.mark.parametrize(
    ("label", "make"),
    [
        ("jpeg q90", lambda r, f: degrade.jpeg(r, f, 90)),
        ("gaussian blur 0.01", lambda r, f: degrade.gaussian_blur(r, f, 0.01)),
        ("gamma 1.5", lambda r, f: degrade.gamma_darken(r, f, 1.5)),
        ("gain 1.2", lambda r, f: degrade.overexpose(r, f, 1.2)),
        ("side shadow 1.5", lambda r, f: degrade.side_shadow(r, f, 1.5)),
        ("tilt 10°", lambda r, f: degrade.rotate(r, f, 10)),
    ],
)
@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg"])
def test_mild_degradation_is_not_rejected(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment], name: str, label: str,
    make: Callable[[np.ndarray, Face], np.ndarray | bytes],
) -> None:
    report = assess_result(make(images[name].pixels, clean_faces[name])).report
    assert report.check("face_found").tier == Tier.PASS
    assert report.verdict != Tier.FAIL, [c for c in report.checks if c.tier == Tier.FAIL]


def test_jpeg_q90_grades_compression_from_the_tables(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    compression = assess_result(degrade.jpeg(images["obama.jpg"].pixels, clean_faces["obama.jpg"], 90)
                                ).report.check("compression")
    assert compression.tier == Tier.PASS
    assert compression.value == 90


@pytest.mark.parametrize("name", CLEAN)
def test_dark_skin_is_not_under_exposure(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment], name: str
) -> None:
    """A well-exposed dark face (median luma ~90) keeps its contrast: it must not read as 'too dark'.

    Scaling every pixel (not a gamma curve) keeps the shadows proportional, as on dark skin that
    was exposed correctly; the check counts crushed shadows, not low mean brightness.
    """
    image, face = images[name], clean_faces[name]
    median = float(np.median(Measured.build(image, image.pixels, [face]).face_luma))
    darker = np.clip(image.pixels.astype(np.float32) * (90.0 / median), 0, 255).astype(np.uint8)
    assessment = assess_result(darker)
    measured = Measured.build(assessment.image, assessment.pixels, list(assessment.faces))
    assert float(np.median(measured.face_luma)) == pytest.approx(90, abs=8)  # the premise holds
    under = assessment.report.check("under_exposure")
    assert under.tier != Tier.FAIL, under
    assert assessment.report.verdict != Tier.FAIL


# --- one cause, one piece of advice -----------------------------------------------------------

EXPLAINED = {
    # A blown-out face has lost its tonal detail too; "it's too dark" would contradict "washed out".
    "overexpose 3 obama": ("obama.jpg", lambda r, f: degrade.overexpose(r, f, 3.0), "over_exposure"),
    "overexpose 3 obama2": ("obama2.jpg", lambda r, f: degrade.overexpose(r, f, 3.0), "over_exposure"),
    # Crushed shadows with a cause the more specific advice names.
    "backlight 2 biden": ("biden.jpg", lambda r, f: degrade.backlight(r, f, 2.0), "backlight"),
    "side shadow 8 obama2": ("obama2.jpg", lambda r, f: degrade.side_shadow(r, f, 8.0), "side_shadow"),
    "side shadow 8 biden": ("biden.jpg", lambda r, f: degrade.side_shadow(r, f, 8.0), "side_shadow"),
    "dark lenses obama": ("obama.jpg", lambda r, f: degrade.eye_bars(r, f), "sunglasses"),
    # Very dark: the eye regions are dark too, but nobody is wearing sunglasses.
    "gamma 3 obama": ("obama.jpg", lambda r, f: degrade.gamma_darken(r, f, 3.0), "under_exposure"),
}


@pytest.mark.parametrize("case_id", list(EXPLAINED))
def test_a_specific_cause_silences_the_generic_advice(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment], case_id: str
) -> None:
    photo, make, cause = EXPLAINED[case_id]
    report = assess_result(make(images[photo].pixels, clean_faces[photo])).report
    assert report.check(cause).tier in (Tier.WARN, Tier.FAIL)
    assert ADVICE[cause] in report.messages
    if cause != "under_exposure":  # "too dark" never sits beside its real cause
        assert ADVICE["under_exposure"] not in report.messages
    else:
        assert ADVICE["sunglasses"] not in report.messages
    assert ADVICE["eyes_half"] not in report.messages and ADVICE["eyes_closed"] not in report.messages
    for name in {"under_exposure", "eyes_closed"} - {cause}:
        check = report.check(name)
        assert check.tier in (Tier.PASS, Tier.SKIPPED), check
        if check.value is not None and "explained by" in check.detail:
            assert cause in check.detail


def test_explain_away_keeps_what_nothing_explains() -> None:
    from generation.quality.report import explain_away

    dark = CheckResult("under_exposure", Tier.FAIL, 0.3, ADVICE["under_exposure"], "30% crushed")
    alone = explain_away([dark, CheckResult("backlight", Tier.PASS, 0.9)])
    assert alone[0] == dark  # a dark face with no other cause is told it is dark
    with_cause = explain_away([dark, CheckResult("backlight", Tier.FAIL, 0.2, ADVICE["backlight"])])
    assert with_cause[0].tier == Tier.PASS and with_cause[0].advice == ""
    assert "explained by backlight" in with_cause[0].detail and with_cause[0].value == 0.3
    weaker = explain_away([dark, CheckResult("side_shadow", Tier.WARN, 2.5, ADVICE["side_shadow"])])
    assert weaker[0] == dark  # a mere warning never silences a failure
    # A face too dark overall makes its eye regions dark: "take off your sunglasses" is the false one.
    lenses = CheckResult("sunglasses", Tier.FAIL, 0.6, ADVICE["sunglasses"])
    assert explain_away([lenses, dark])[0].tier == Tier.PASS


# --- pose: pitch is cross-checked and never fails alone ------------------------------------------


def test_a_fragile_five_point_pitch_does_not_fail_a_level_head(images: Images, clean_faces: Faces) -> None:
    import dataclasses

    from generation.faces.types import HeadPose
    from generation.quality.checks import check_pose

    face = clean_faces["obama.jpg"]
    shape = images["obama.jpg"].pixels.shape[:2]
    misread = dataclasses.replace(face, pose=HeadPose(yaw=face.pose.yaw, pitch=-32.0, roll=face.pose.roll))
    result = check_pose(misread, shape)
    assert result.tier in (Tier.PASS, Tier.FIXED), result  # the 68-point solve sees a level head
    assert "5-point estimate says -32°" in result.detail
    no_68 = dataclasses.replace(misread, landmarks68=None)
    assert check_pose(no_68, shape).tier == Tier.WARN  # without a cross-check: a warning, never a fail


def test_pitch_advice_fits_who_took_the_photo() -> None:
    import math as _math

    from generation.faces.types import Face, HeadPose
    from generation.quality.checks import check_pose

    # A head pitched 30° down: five points that say so and no 68 points to overrule them.
    points = np.array([[440.0, 300.0], [500.0, 300.0], [470.0, 345.0], [445.0, 370.0], [495.0, 370.0]])
    pitched = HeadPose(yaw=0.0, pitch=30.0, roll=0.0)
    selfie = Face(box=(400, 240, 540, 420), score=1.0, landmarks5=points, pose=pitched)
    result = check_pose(selfie, (600, 900))  # the face is 30 % of the height: the person's own phone
    assert result.tier == Tier.WARN and result.advice == ADVICE["eye_level"]
    far = check_pose(selfie, (1800, 900))  # 10 % of the height: someone else took it
    assert far.tier == Tier.WARN and far.advice == ADVICE["chin_level"]
    assert _math.isclose(far.value, 30.0)


# --- eyes: judged only where the landmarks can be trusted; a smile is not "half closed" ----------


def _narrowed(face: Face, factor: float) -> Face:
    """The same face with its 68-point eyelids pulled towards each eye's axis: a smile's narrowed lids
    as the landmark predictor reports them, while the pixels still show open eyes."""
    import dataclasses

    points = face.landmarks68.copy()
    for eye in (slice(36, 42), slice(42, 48)):
        centre_y = points[eye][[0, 3], 1].mean()
        points[eye, 1] = centre_y + (points[eye, 1] - centre_y) * factor
    return dataclasses.replace(face, landmarks68=points)


def test_narrowed_lids_on_open_looking_eyes_are_not_flagged(images: Images, clean_faces: Faces) -> None:
    from generation.quality.checks import check_eyes_closed, eye_aspect_ratio

    for name in ("obama.jpg", "biden.jpg"):
        image, face = images[name], clean_faces[name]
        smiling = _narrowed(face, 0.75)
        assert 0.15 <= eye_aspect_ratio(smiling.landmarks68) < 0.20  # in the old warn band
        result = check_eyes_closed(Measured.build(image, image.pixels, [smiling]))
        assert result.tier == Tier.PASS and result.advice == "", result
        assert "smile" in result.detail


def test_eyes_on_a_small_or_turned_face_are_not_judged(images: Images, clean_faces: Faces) -> None:
    import dataclasses

    from generation.faces.types import HeadPose
    from generation.quality.checks import check_eyes_closed

    small = images["astronaut.png"]  # 44 px between the eyes in a 512-px file... trusted
    assert check_eyes_closed(Measured.build(small, small.pixels, [clean_faces["astronaut.png"]])).tier != \
        Tier.SKIPPED
    image, face = images["obama.jpg"], clean_faces["obama.jpg"]
    shrunk = degrade.shrink_face(image.pixels, face, 30)  # a thumbnail-sized face: lids are guesses
    from generation.faces.dlib_backend import DlibAnalyzer

    tiny = DlibAnalyzer().analyze(shrunk)[0]
    thumb = dataclasses.replace(image, pixels=shrunk)
    result = check_eyes_closed(Measured.build(thumb, shrunk, [_narrowed(tiny, 0.3)]))
    assert result.tier == Tier.SKIPPED and "not trusted" in result.detail
    turned = dataclasses.replace(_narrowed(face, 0.3), pose=HeadPose(yaw=35.0, pitch=0.0, roll=0.0))
    assert check_eyes_closed(Measured.build(image, image.pixels, [turned])).tier == Tier.SKIPPED


# --- good photos: no false alarms ----------------------------------------------------------------


@pytest.mark.parametrize("name", [*CLEAN, "grace_hopper.jpg"])
def test_good_photos_never_fail_and_warn_at_most_once(analyzer: DlibAnalyzer, name: str) -> None:
    """Real, usable photos (grace_hopper.jpg is one the gate was never tuned on): 0 fails, ≤ 1 warning."""
    from generation.images import load_image_file
    from generation.quality.gate import assess

    photo = load_image_file(Path(__file__).parents[2] / "fixtures" / "faces" / name, max_side=2048)
    report = assess(photo, analyzer).report
    assert not [c for c in report.checks if c.tier == Tier.FAIL]
    assert len([c for c in report.checks if c.tier == Tier.WARN]) <= 1, [c for c in report.checks
                                                                         if c.tier == Tier.WARN]


# --- lost detail, skin tones, warm light -----------------------------------------------------------


def test_an_enlarged_copy_reads_large_but_is_told_to_send_the_original(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    """The reported false pass: a face enlarged from about 30 px reads 100+ px and passes size and blur."""
    report = assess_result(degrade.enlarge(images["obama.jpg"].pixels, clean_faces["obama.jpg"], 30)).report
    assert report.check("resolution").tier == Tier.PASS and report.check("resolution").value > 95
    assert report.check("blur").tier == Tier.PASS
    detail = report.check("detail")
    assert detail.tier in (Tier.WARN, Tier.FAIL), detail
    assert "camera roll" in detail.advice and detail.advice in report.messages
    # One cause, one piece of advice: the blurred eye slits of the copy do not add "eyes half closed".
    assert report.check("eyes_closed").tier not in (Tier.WARN, Tier.FAIL)


def test_a_detail_failure_beside_a_blur_warning_gives_one_advice(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    report = assess_result(degrade.enlarge(images["biden.jpg"].pixels, clean_faces["biden.jpg"], 24)).report
    assert report.check("detail").tier == Tier.FAIL
    assert "explained by detail" in report.check("blur").detail
    assert ADVICE["blur"] not in report.messages


@pytest.mark.parametrize("name", CLEAN)
@pytest.mark.parametrize("reflectance", [0.5, 0.3, 0.2])
def test_darker_skin_under_the_same_light_is_a_good_photo(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment], name: str, reflectance: float
) -> None:
    """Fairness, with a margin: darker skin is neither "too dark", nor "filtered", nor "back-lit"."""
    image, face = images[name], clean_faces[name]
    report = assess_result(degrade.darker_skin(image.pixels, face, reflectance)).report
    assert not [c for c in report.checks if c.tier == Tier.FAIL]
    assert len([c for c in report.checks if c.tier == Tier.WARN]) <= 1
    for name_ in ("under_exposure", "smoothing", "backlight", "colour_cast"):
        assert report.check(name_).tier not in (Tier.WARN, Tier.FAIL), report.check(name_)
    under = report.check("under_exposure")
    margin = (THRESHOLDS["crushed_shadows"].warn or 0.0) - under.value
    assert margin > 0.005, under


def test_a_warm_room_light_is_not_a_colour_cast(
    images: Images, clean_faces: Faces, assess_result: Callable[..., Assessment]
) -> None:
    for name in ("obama.jpg", "biden.jpg", "astronaut.png"):
        report = assess_result(degrade.warm_cast(images[name].pixels, clean_faces[name], 0.3)).report
        assert report.check("colour_cast").tier == Tier.PASS, (name, report.check("colour_cast"))


@pytest.mark.parametrize("reflectance", [0.5, 0.3, 0.2])
def test_grace_hopper_in_darker_skin_never_fails_and_warns_at_most_once(
    analyzer: DlibAnalyzer, assess_result: Callable[..., Assessment], reflectance: float
) -> None:
    """The photo the gate was never tuned on, dim and against black already: at 0.2 it may warn "too
    dark" (docs/quality-calibration.md says so), never more."""
    from generation.images import load_image_file

    photo = load_image_file(Path(__file__).parents[2] / "fixtures" / "faces" / "grace_hopper.jpg", max_side=2048)
    face = analyzer.analyze(photo.pixels)[0]
    report = assess_result(degrade.darker_skin(photo.pixels, face, reflectance)).report
    assert not [c for c in report.checks if c.tier == Tier.FAIL]
    assert len([c for c in report.checks if c.tier == Tier.WARN]) <= 1
    assert report.check("smoothing").tier == Tier.PASS and report.check("backlight").tier == Tier.PASS
