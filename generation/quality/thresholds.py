"""Every pass / warn / fail threshold of the quality gate, in one table, each with its source.

"calibrated" means chosen from docs/quality-calibration.md, which `benchmarks/calibrate_quality.py`
regenerates from the labelled set (real photos in tests/fixtures/faces + synthetic degradations
with known ground truth). Values are in the unit named; see face-quality.md for the literature.
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.quality.report import Tier


@dataclass(frozen=True)
class Threshold:
    warn: float | None
    fail: float | None
    higher_is_worse: bool
    unit: str
    source: str

    def grade(self, value: float) -> Tier:
        def beyond(limit: float | None) -> bool:
            if limit is None:
                return False
            return value > limit if self.higher_is_worse else value < limit

        if beyond(self.fail):
            return Tier.FAIL
        if beyond(self.warn):
            return Tier.WARN
        return Tier.PASS


THRESHOLDS: dict[str, Threshold] = {
    "single_person": Threshold(
        warn=0.10, fail=0.25, higher_is_worse=True, unit="area of 2nd largest face / largest",
        source="OFIQ SingleFacePresent (two-face conformance image = 0.33); face-quality.md §1.9",
    ),
    "second_face_score": Threshold(
        warn=None, fail=0.7, higher_is_worse=False, unit="detector score a face needs to count",
        source="face-quality.md §1.9 (require 0.6-0.8); dlib's false faces on the calibration set score ≤ 0.62",
    ),
    "resolution": Threshold(
        warn=64.0, fail=32.0, higher_is_worse=False, unit="px between eye centres, original pixels, / cos(yaw)",
        source="calibrated: dlib identity distance +0.06 at 32 px, +0.02 at 64 px; OFIQ centre 70 px",
    ),
    "image_short_side": Threshold(
        warn=512.0, fail=None, higher_is_worse=False, unit="px, short side of the original image",
        source="HeadshotPro minimum 512²; ANSI/NIST 480×600",
    ),
    "framing": Threshold(
        warn=0.0, fail=0.08, higher_is_worse=True, unit="fraction of the head (crown to chin) outside the image",
        source="calibrated on synthetic head crops; HeadshotPro 'full face visible'",
    ),
    "crop_padding": Threshold(
        warn=0.20, fail=None, higher_is_worse=True, unit="fraction of the crop side that needs padding",
        source="face-quality.md §3 step 4 proposes 10 %; calibrated: clean head-and-shoulders photos need ≤ 18 %",
    ),
    "yaw": Threshold(
        warn=15.0, fail=32.0, higher_is_worse=True, unit="degrees",
        source="face-quality.md row 8 (pass ≤ 15°, reject > 30-35°; OFIQ cos² 30° → 75)",
    ),
    "pitch": Threshold(
        warn=20.0, fail=None, higher_is_worse=True, unit="degrees (68-point solvePnP where available)",
        source="face-quality.md row 8 (pass ≤ 15-20°); never fails alone: the least reliable angle, and a "
        "near-frontal full-body photo read −32° from five points",
    ),
    "roll": Threshold(
        warn=25.0, fail=None, higher_is_worse=True, unit="degrees (always straightened in the crop)",
        source="face-quality.md row 8 (roll is fixed by rotating; warn > 25°)",
    ),
    "roll_fix": Threshold(
        warn=3.0, fail=None, higher_is_worse=True, unit="degrees above which the crop is rotated",
        source="project choice: below 3° a rotation changes nothing visible",
    ),
    "blur": Threshold(
        warn=0.47, fail=0.56, higher_is_worse=True,
        unit="Crete re-blur score on the aligned inner face at 40 px IED (0 sharp … 1 flat)",
        source="calibrated: clean 0.36-0.44; σ = 0.02·IED → 0.53 (identity +0.13); σ ≥ 0.04·IED (+0.27) fails",
    ),
    "detail_profile": Threshold(
        warn=0.40, fail=0.20, higher_is_worse=False,
        unit="lowest (detail lost by a round trip through u px between the eyes / through u/2) over its 1/f² "
        "value (1 sharp)",
        source="calibrated: good photos 0.53-0.82 (JPEG Q50 and darkened alike); enlarged from 30 px 0.19-0.33, "
        "from 20 px 0.13-0.23; a face at 32 px between the eyes already warns in the resolution check",
    ),
    "skin_grain": Threshold(
        warn=0.75, fail=None, higher_is_worse=False,
        unit="sensor grain on cheeks and forehead / grain around the head (Immerkær operator, flattest half)",
        source="calibrated: good photos 1.0-2.8 (darker skin alike); skin-only bilateral smoothing 0.41-0.71; "
        "warns only: a filtered face keeps its identity, it loses texture",
    ),
    "over_exposure": Threshold(
        warn=0.02, fail=0.08, higher_is_worse=True, unit="fraction of face pixels with luma ≥ 250",
        source="face-quality.md row 10 (OFIQ: 1 % → 50/100, 5 % → 17)",
    ),
    "crushed_shadows": Threshold(
        warn=0.07, fail=0.095, higher_is_worse=True, unit="fraction of face pixels with sRGB luma < 20",
        source="face-quality.md row 11 proposes 25 % below 35; calibrated: gamma 3 (identity +0.23-0.27) gives "
        "10.2-51 %, well-exposed darker skin (face-only transforms to 0.3 and 0.2 of the reflectance) ≤ 6.0 %",
    ),
    "face_entropy": Threshold(
        warn=5.0, fail=4.5, higher_is_worse=False, unit="bits, face luma histogram",
        source="face-quality.md row 11 (OFIQ dynamic range: good photos 5.6-7.6 bits)",
    ),
    "backlight_ratio": Threshold(
        warn=0.47, fail=0.35, higher_is_worse=False, unit="median face luma / median surround luma",
        source="face-quality.md §1.2 [proposal] (one stop darker than the surround, 0.5); calibrated: back-lit "
        "faces 0.32-0.44 at strength 1, a deep skin tone before a white suit 0.49",
    ),
    "backlight_surround_clipped": Threshold(
        warn=0.15, fail=None, higher_is_worse=True, unit="fraction of surround pixels ≥ 250",
        source="face-quality.md §1.2 [proposal]",
    ),
    "side_shadow": Threshold(
        warn=2.0, fail=4.0, higher_is_worse=True, unit="lighting ratio of the cheeks (linear light)",
        source="photography lighting-ratio convention; face-quality.md §1.3",
    ),
    "colour_cast": Threshold(
        warn=10.0, fail=None, higher_is_worse=True, unit="CIELAB distance of cheek a*,b* from the skin box",
        source="OFIQ NaturalColour (a* 5-25, b* 5-35; 10 → Q 54)",
    ),
    "colour_cast_confirmed": Threshold(
        warn=3.0, fail=None, higher_is_worse=True, unit="CIELAB distance of cheek a*,b* from the skin box, when the "
        "frame's highlights are coloured the same way",
        source="calibrated: tungsten at 2700 K moves the cheeks 6.8-23.7 out of the box (good photos 0-8.2)",
    ),
    "colour_cast_highlights": Threshold(
        warn=30.0, fail=None, higher_is_worse=True,
        unit="CIELAB chroma of the brightest unclipped tenth of the frame outside the head",
        source="calibrated: good photos 2-20 (skin-coloured highlights included); tungsten 45-55, a warm room "
        "light 24-36 (not flagged)",
    ),
    "eyes_closed": Threshold(
        warn=0.20, fail=0.15, higher_is_worse=False, unit="eye aspect ratio, mean of both eyes (68 points)",
        source="Soukupová & Čech 2016 EAR; calibrated on clean photos (smiles reach 0.22)",
    ),
    "eye_visible": Threshold(
        warn=None, fail=0.27, higher_is_worse=False,
        unit="fraction of each eye slit darker than 0.6× the slit's own 75th percentile (mean of both)",
        source="calibrated: open eyes 0.29-0.48 clean, ≥ 0.30 backlit, ≥ 0.44 darkened; painted-shut lids 0.14-0.25",
    ),
    "sunglasses": Threshold(
        warn=None, fail=0.9, higher_is_worse=False,
        unit="90th-percentile eye-region luma / cheek median (open eyes show bright sclera)",
        source="calibrated: open eyes 0.94-1.7 (clean, gamma 2-4, backlit), dark lenses 0.27-0.84",
    ),
    "sunglasses_dark": Threshold(
        warn=None, fail=0.5, higher_is_worse=False, unit="median eye-region luma / cheek median",
        source="face-quality.md §1.6 proposes 0.35; dark lenses measured 0.27-0.46, clean eyes ≥ 0.58",
    ),
    "occlusion": Threshold(
        warn=0.60, fail=None, higher_is_worse=True, unit="fraction of lower-face pixels outside the skin model",
        source="face-quality.md §1.6 proposes 40 %; calibrated: smiles (teeth, lips) reach 46 %, a mask 72 %",
    ),
    "jpeg_quality": Threshold(
        warn=50.0, fail=30.0, higher_is_worse=False, unit="IJG quality estimated from quantisation tables",
        source="face-quality.md row 18 (Kornblum 2008 estimate; identifai recommends ≥ 80)",
    ),
    "blockiness": Threshold(
        warn=1.6, fail=1.8, higher_is_worse=True,
        unit="8×8 boundary / interior gradient ratio, strongest grid phase (non-JPEG files)",
        source="Wang-Bovik-Evans 2000 idea; calibrated on PNG screenshots of JPEGs at any grid offset: "
        "q15 1.85-3.07, q30 1.46-2.12, q50 1.26-1.71, never-compressed 1.02-1.29",
    ),
}


def grade(name: str, value: float) -> Tier:
    return THRESHOLDS[name].grade(value)
