"""The quality checks: pure functions from a measured face to a CheckResult.

Each check measures one thing on the face aligned to a canonical frame (eyes level, a fixed
inter-eye distance), so a region such as "the left cheek" is the same rectangle for every photo.
Thresholds come from thresholds.THRESHOLDS; nothing here hard-codes a pass/fail value.

One file on purpose: a flat list of short, independent check functions over one shared
measurement (`Measured` and its region helpers); read side by side they show that every check measures the
same canonical face, and splitting them would scatter that shared geometry across files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from generation.faces.pose import estimate_pose_pnp
from generation.faces.types import Face
from generation.images import LoadedImage, full_resolution
from generation.quality.detail import detail_profile, skin_grain
from generation.quality.geometry import AlignedFace, align_face, face_mask, luma, srgb_to_linear
from generation.quality.jpeg import blockiness, estimate_jpeg_quality
from generation.quality.report import CheckResult, CropBox, Tier
from generation.quality.thresholds import THRESHOLDS, grade

# Canonical analysis frame: 256 px square, 64 px between the eyes, eye line at y = 100.
FRAME_SIZE, FRAME_IED, FRAME_EYE_Y = 256, 64.0, 100.0
# Blur is judged at 40 px between the eyes (face-quality.md §1.1 recipe).
BLUR_SIZE, BLUR_IED, BLUR_EYE_Y = 128, 40.0, 52.0
# Below this native inter-eye distance the face is too small to judge sharpness at all.
BLUR_MIN_NATIVE_IED = 24.0
# dlib's eye landmarks are trusted from this many pixels between the eyes (original, yaw-corrected) and
# up to this yaw; below or beyond, the eye check says nothing (small faces, thumbnails, turned heads).
EYES_MIN_IED = 40.0
EYES_MAX_YAW = 25.0
# Below this sRGB luma an 8-bit photo keeps next to no detail (about 0.7 % reflectance): "crushed". Counting
# pixels below a higher level (35 was tried) counts the ordinary shadows of a well-exposed darker face too.
SHADOW_FLOOR = 20
# The detail check reads the full-size photo when the working copy holds the face at fewer px between the eyes.
DETAIL_MIN_WORKING_IED = 64.0

ADVICE = {
    "no_face": "I couldn't find a face. Use a clear, front-facing photo of yourself in good light.",
    "many_people": "I see more than one person. Please send a photo with just you in it.",
    "other_person": "Someone else is in the picture; I'll use the biggest face. Send a photo of just you "
    "if that isn't you.",
    "send_original": "This image is small. Send the original photo file, not a screenshot or a thumbnail.",
    "move_closer": "Your face is small in the photo. Move closer (about an arm's length) or use the 1× lens, "
    "not digital zoom.",
    "step_back": "Move the camera back a bit so your whole head, some space above your hair, and your "
    "shoulders are in the picture.",
    "look_straight": "Look straight into the camera.",
    "eye_level": "Hold your phone at eye level, not above or below your face.",
    "chin_level": "Keep your chin level and look straight at the camera (if someone else takes the photo, ask them "
    "to hold it at your eye level).",
    "head_level": "Keep your head level (not tilted to one side).",
    "sunglasses": "Please take off sunglasses (normal glasses are fine if there's no glare).",
    "occlusion": "Keep hands, masks, hair and phones away from your face.",
    # The blur check cannot tell a shaken or misfocused shot from a copy enlarged from a small one: both.
    "blur": "The photo is blurry. Hold the phone still (or lean on something), tap your face to focus, "
    "wipe the lens, and use more light. If it is a copy, a screenshot or a zoomed-in crop, send the original "
    "photo from your camera roll.",
    "over_exposure": "Your face is washed out. Turn off the flash or step out of direct sunlight.",
    "under_exposure": "It's too dark. Face a window or a lamp.",
    "backlight": "There's bright light behind you. Turn around so the light is in front of you.",
    "side_shadow": "One side of your face is in shadow. Face the light directly (e.g. stand facing a window).",
    "colour_cast": "Coloured lighting changes your skin tone. Use daylight or white light.",
    "eyes_closed": "Your eyes look closed. Keep them open and look at the lens.",
    "eyes_half": "Your eyes look half closed. Open them fully and look at the lens.",
    "compression": "This photo has been compressed too much. Send the original from your camera roll.",
    "enlarged": "Your face has far less fine detail than its size promises: it looks enlarged from a much smaller "
    "picture (or badly out of focus). Send the original photo from your camera roll, not a copy or a screenshot.",
    "smoothed": "Your skin looks smoothed by a filter. Send the original, unfiltered photo from your camera roll.",
}


@dataclass(frozen=True)
class Measured:
    """Everything the checks share: the image, the chosen face, and its aligned crops."""

    image: LoadedImage
    pixels: np.ndarray  # working copy, upright (possibly rotated after a failed first detection)
    faces: tuple[Face, ...]  # largest first, in working-copy pixels
    face: Face
    aligned: AlignedFace  # FRAME_SIZE analysis frame
    mask: np.ndarray  # face skin mask in the analysis frame
    face_luma: np.ndarray  # luma of the masked pixels
    rotated: int = 0  # degrees the working copy was turned relative to the file

    @classmethod
    def build(cls, image: LoadedImage, pixels: np.ndarray, faces: list[Face], rotated: int = 0) -> Measured:
        face = faces[0]
        aligned = align_face(pixels, face, size=FRAME_SIZE, ied=FRAME_IED, eye_y=FRAME_EYE_Y)
        mask = face_mask(aligned)
        return cls(image, pixels, tuple(faces), face, aligned, mask, luma(aligned.pixels)[mask], rotated)

    @cached_property
    def full_pixels(self) -> np.ndarray | None:
        """The full-size upright pixels when the working copy was reduced (decoded once, on demand)."""
        if self.scale >= 0.999 or self.rotated:
            return None
        return full_resolution(self.image)

    def finest(self, wanted_ied: float) -> tuple[np.ndarray, Face]:
        """Pixels and face at full size when the working copy shrank the face below ``wanted_ied``."""
        if self.face.inter_eye_distance < wanted_ied:
            full = self.full_pixels
            if full is not None:
                return full, self.face.scaled(1.0 / self.scale)
        return self.pixels, self.face

    @property
    def scale(self) -> float:
        """Working pixels per original pixel (a 90° turn of the working copy keeps it)."""
        return self.image.scale

    @property
    def yaw_factor(self) -> float:
        return max(math.cos(math.radians(self.face.pose.yaw)), 0.5)

    @property
    def ied_original(self) -> float:
        """Inter-eye distance in original pixels, corrected for a turned head."""
        return self.face.inter_eye_distance / self.scale / self.yaw_factor

    @property
    def down(self) -> np.ndarray:
        """Unit vector from the eyes towards the chin, following the head's roll."""
        roll = math.radians(self.face.pose.roll)
        return np.array([-math.sin(roll), math.cos(roll)])

    @property
    def eye_to_chin(self) -> float:
        """T: eye midpoint to chin, working pixels (68-point chin, else 1.6 × eye-to-mouth)."""
        face = self.face
        mouth = (face.landmarks5[3] + face.landmarks5[4]) / 2.0
        from_mouth = 1.6 * float(np.linalg.norm(mouth - face.eye_mid))
        if face.landmarks68 is None:
            return from_mouth
        # When the chin is outside the photo, the predictor pins it to the edge: take the larger.
        return max(float(np.linalg.norm(face.landmarks68[8] - face.eye_mid)), from_mouth)


def _region_luma(measured: Measured, cx: float, cy: float, half_w: float, half_h: float) -> np.ndarray:
    return luma(measured.aligned.region(cx, cy, half_w, half_h))


def _result(name: str, threshold: str, value: float, advice: str, detail: str) -> CheckResult:
    tier = grade(threshold, value)
    return CheckResult(name, tier, value, advice if tier in (Tier.WARN, Tier.FAIL) else "", detail)


def check_single_person(faces: tuple[Face, ...] | list[Face]) -> CheckResult:
    min_score = THRESHOLDS["second_face_score"].fail or 0.0
    others = [f for f in faces[1:] if f.score >= min_score]
    if not others:
        return CheckResult("single_person", Tier.PASS, 0.0, detail=f"{len(faces)} face(s) found")
    ratio = others[0].area / max(faces[0].area, 1e-6)
    tier = grade("single_person", ratio)
    detail = f"{1 + len(others)} faces; second largest is {ratio:.0%} of the largest by area"
    if tier == Tier.PASS:
        # Much smaller background faces are ignored: the crop takes the largest face.
        return CheckResult("single_person", Tier.FIXED, ratio, detail=detail + "; using the largest")
    advice = ADVICE["many_people"] if tier == Tier.FAIL else ADVICE["other_person"]
    return CheckResult("single_person", tier, ratio, advice, detail)


def check_resolution(m: Measured) -> CheckResult:
    ied = m.ied_original
    width, height = m.image.original_size
    tier = grade("resolution", ied)
    face_fraction = m.face.height / m.pixels.shape[0]
    small_file = min(width, height) < 1000 or face_fraction >= 0.2
    advice = ADVICE["send_original"] if small_file else ADVICE["move_closer"]
    detail = (f"{ied:.0f} px between the eyes in a {width}×{height} image "
              f"(face is {face_fraction:.0%} of the height)")
    return CheckResult("resolution", tier, ied, advice if tier != Tier.PASS else "", detail)


def check_file(image: LoadedImage, notes: tuple[str, ...]) -> CheckResult:
    short = float(min(image.original_size))
    tier = grade("image_short_side", short)
    detail = f"{image.format}, {image.original_size[0]}×{image.original_size[1]}, {image.file_bytes} bytes"
    if tier == Tier.PASS and notes:
        return CheckResult("file", Tier.FIXED, short, detail=detail + "; " + "; ".join(notes))
    return CheckResult("file", tier, short, ADVICE["send_original"] if tier != Tier.PASS else "", detail)


def head_extent(m: Measured) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Crown point, chin point, head height and half width, in working pixels."""
    t = m.eye_to_chin
    chin = m.face.eye_mid + m.down * t
    # Eyes sit about half-way between the top of the skull and the chin.
    crown = m.face.eye_mid - m.down * 0.95 * t
    half_width = 1.1 * m.face.inter_eye_distance / m.yaw_factor
    return crown, chin, 1.95 * t, half_width


def check_framing(m: Measured, crop: CropBox) -> CheckResult:
    height, width = m.pixels.shape[:2]
    crown, chin, head_height, half_width = head_extent(m)
    box = m.face.box
    left = min(box[0], m.face.eye_mid[0] - half_width)
    right = max(box[2], m.face.eye_mid[0] + half_width)
    cut_vertical = max(0.0, -min(crown[1], chin[1]), max(crown[1], chin[1]) - height) / head_height
    cut_horizontal = max(0.0, -left, right - width) / max(right - left, 1e-6)
    cut = max(cut_vertical, cut_horizontal)
    tier = grade("framing", cut)
    padding_tier = grade("crop_padding", crop.padding)
    if tier == Tier.PASS and padding_tier != Tier.PASS:
        tier = padding_tier
    parts = []
    if chin[1] > height:
        parts.append("chin cut off")
    if crown[1] < 0:
        parts.append("top of the head cut off")
    if cut_horizontal > 0:
        parts.append("side of the head cut off")
    detail = (", ".join(parts) or "whole head in frame") + f"; crop needs {crop.padding:.0%} padding"
    return CheckResult("framing", tier, cut, ADVICE["step_back"] if tier != Tier.PASS else "", detail)


def pitch_estimates(face: Face, image_shape: tuple[int, int]) -> tuple[float, float | None]:
    """(five-point pitch, 68-point solvePnP pitch or None): the second rests on ten points, chin and
    nose bridge included, where the first rests on two heights and is fragile."""
    pnp = estimate_pose_pnp(face.landmarks68, image_shape) if face.landmarks68 is not None else None
    return face.pose.pitch, None if pnp is None else pnp.pitch


def check_pose(face: Face, image_shape: tuple[int, int]) -> CheckResult:
    """Yaw and roll from the five points (as calibrated); pitch from the 68-point solve where there is
    one. Pitch alone never fails the photo: its estimate is the least reliable of the three, and a
    head slightly down or up costs little likeness; it warns, with advice that fits who took the photo."""
    pose = face.pose
    five, pnp = pitch_estimates(face, image_shape)
    pitch = pnp if pnp is not None else five
    yaw_tier, roll_tier = grade("yaw", abs(pose.yaw)), grade("roll", abs(pose.roll))
    pitch_tier = grade("pitch", abs(pitch))  # the table has no fail tier for pitch
    detail = f"yaw {pose.yaw:+.0f}°, pitch {pitch:+.0f}°, roll {pose.roll:+.0f}°"
    if pnp is not None:
        detail += f" (pitch from the 68 points; the 5-point estimate says {five:+.0f}°)"
    # A face small in a tall frame is a photo someone else took: "hold your phone" would not fit.
    pitch_advice = "chin_level" if face.height < 0.25 * image_shape[0] else "eye_level"
    ranked = [(yaw_tier, abs(pose.yaw), "look_straight"), (pitch_tier, abs(pitch), pitch_advice),
              (roll_tier, abs(pose.roll), "head_level")]
    for tier in (Tier.FAIL, Tier.WARN):
        for t, value, advice in ranked:
            if t == tier:
                return CheckResult("pose", tier, value, ADVICE[advice], detail)
    worst = max(abs(pose.yaw), abs(pitch))
    if abs(pose.roll) > (THRESHOLDS["roll_fix"].warn or 0.0):
        return CheckResult("pose", Tier.FIXED, worst, detail=detail + "; the crop straightens the tilt")
    return CheckResult("pose", Tier.PASS, worst, detail=detail)


def _crete_blur(gray: np.ndarray) -> tuple[float, float]:
    """Crete et al. (2007) no-reference blur per axis: how little a further blur changes the image.

    Returns (horizontal, vertical) in 0 (sharp) … 1 (nothing left to lose).
    """
    g = gray.astype(np.float32)
    scores = []
    for axis in (1, 0):
        kernel = (9, 1) if axis == 1 else (1, 9)
        blurred = cv2.blur(g, kernel, borderType=cv2.BORDER_REFLECT)
        d_sharp = np.abs(np.diff(g, axis=axis))
        d_blur = np.abs(np.diff(blurred, axis=axis))
        lost = np.maximum(0.0, d_sharp - d_blur)
        total = float(d_sharp[2:-2, 2:-2].sum())
        scores.append(1.0 if total <= 1e-6 else (total - float(lost[2:-2, 2:-2].sum())) / total)
    return scores[0], scores[1]


def check_blur(m: Measured) -> CheckResult:
    native = m.face.inter_eye_distance
    if native < BLUR_MIN_NATIVE_IED:
        return CheckResult("blur", Tier.SKIPPED, None,
                           detail=f"face too small to judge sharpness ({native:.0f} px between the eyes)")
    # Where the working copy shrank this face below the canonical scale, judge it at full size rather
    # than blame the photo for our own downscale.
    source, face = m.finest(BLUR_IED)
    native = face.inter_eye_distance
    small = align_face(source, face, size=BLUR_SIZE, ied=BLUR_IED, eye_y=BLUR_EYE_Y)
    inner = cv2.cvtColor(small.region(0.0, 0.55, 0.9, 0.75), cv2.COLOR_RGB2GRAY)
    horizontal, vertical = _crete_blur(inner)
    value = max(horizontal, vertical)
    tier = grade("blur", value)
    # Clean faces already differ by ~0.12 between axes, so shake and defocus are not told apart.
    advice = ADVICE["blur"]
    detail = f"re-blur score {value:.2f} (horizontal {horizontal:.2f}, vertical {vertical:.2f})"
    if native < BLUR_IED:
        detail += f"; face upscaled from {native:.0f} px between the eyes"
    return CheckResult("blur", tier, value, advice if tier != Tier.PASS else "", detail)


def check_detail(m: Measured, blur: Tier = Tier.PASS) -> CheckResult:
    """Fine detail the pixel count promises but the face lacks, as in a copy enlarged from a small
    picture: fails when as little is left as in a face too small to use. The blur check sees the worst of
    the same loss at 40 px between the eyes: when it fails, this says nothing; when it warns, only a
    failure here adds anything (and then names the likelier cause)."""
    if blur == Tier.FAIL:
        return CheckResult("detail", Tier.SKIPPED, None, detail="the blur check explains the lost detail")
    source, face = m.finest(DETAIL_MIN_WORKING_IED)
    profile = detail_profile(source, face)
    if profile is None:
        return CheckResult("detail", Tier.SKIPPED, None, detail="face too small to compare scales")
    tier = grade("detail_profile", profile.score)
    if blur == Tier.WARN and tier == Tier.WARN:
        tier = Tier.PASS
    detail = (f"fine detail {profile.score:.2f} of a sharp face's (lowest at {profile.at_ied} px between the eyes, "
              f"measured at {profile.measured_ied:.0f})")
    return CheckResult("detail", tier, profile.score, ADVICE["enlarged"] if tier != Tier.PASS else "", detail)


def check_smoothing(m: Measured) -> CheckResult:
    """Skin smoothed by a filter: the camera's grain gone from the cheeks and forehead but not from the
    rest of the photo. Warns only: a filtered face keeps its identity and loses its texture."""
    grain = skin_grain(m.pixels, m.face)
    if grain is None:
        return CheckResult("smoothing", Tier.SKIPPED, None, detail="no grain to compare (or no 68-point landmarks)")
    return _result("smoothing", "skin_grain", grain.ratio, ADVICE["smoothed"],
                   f"skin grain {grain.ratio:.2f} of the surroundings' ({grain.skin:.2f} vs {grain.surround:.2f})")


def check_over_exposure(m: Measured) -> CheckResult:
    clipped = float(np.mean(m.face_luma >= 250)) if m.face_luma.size else 0.0
    return _result("over_exposure", "over_exposure", clipped, ADVICE["over_exposure"],
                   f"{clipped:.1%} of face pixels clipped")


def _entropy(values: np.ndarray) -> float:
    hist = np.bincount(np.clip(values, 0, 255).astype(np.int32), minlength=256).astype(np.float64)
    p = hist[hist > 0] / max(hist.sum(), 1.0)
    return float(-(p * np.log2(p)).sum())


def _halves_crushed(m: Measured) -> tuple[float, float]:
    """Crushed fraction of the better-lit and of the darker half of the face (left or right in the aligned
    frame)."""
    size = m.aligned.size
    gray = luma(m.aligned.pixels)
    halves = []
    for columns in (slice(0, size // 2), slice(size // 2, size)):
        values = gray[:, columns][m.mask[:, columns]]
        if values.size:
            halves.append(float(np.mean(values < SHADOW_FLOOR)))
    return (min(halves), max(halves)) if halves else (0.0, 0.0)


def check_under_exposure(m: Measured) -> CheckResult:
    """A face too dark overall. Darkness on one side only is a side light, which side_shadow judges:
    when the better-lit half is not crushed, this check stays silent rather than say "too dark"."""
    crushed = float(np.mean(m.face_luma < SHADOW_FLOOR)) if m.face_luma.size else 0.0
    entropy = _entropy(m.face_luma)
    tiers = [grade("crushed_shadows", crushed), grade("face_entropy", entropy)]
    tier = Tier.FAIL if Tier.FAIL in tiers else Tier.WARN if Tier.WARN in tiers else Tier.PASS
    detail = f"{crushed:.1%} of face pixels crushed to black; face entropy {entropy:.2f} bits"
    lit_half, dark_half = _halves_crushed(m)
    one_sided = dark_half >= 3.0 * lit_half + 0.02  # a uniformly dark face is crushed on both sides
    if tier != Tier.PASS and one_sided and grade("crushed_shadows", lit_half) == Tier.PASS and \
            grade("face_entropy", entropy) == Tier.PASS:
        tier = Tier.PASS
        detail += f"; the lit half only {lit_half:.1%}: dark on one side, not too dark"
    return CheckResult("under_exposure", tier, crushed, ADVICE["under_exposure"] if tier != Tier.PASS else "",
                       detail)


def _surround_luma(m: Measured) -> np.ndarray:
    """Luma of an annulus 0.5-1.5 face widths around the face box (every 2nd pixel: it's a median)."""
    height, width = m.pixels.shape[:2]
    x0, y0, x1, y1 = m.face.box
    fw = max(x1 - x0, 1.0)
    outer = [int(max(0, x0 - 1.5 * fw)), int(max(0, y0 - 1.5 * fw)),
             int(min(width, x1 + 1.5 * fw)), int(min(height, y1 + 1.5 * fw))]
    region = m.pixels[outer[1]:outer[3]:2, outer[0]:outer[2]:2]
    ys, xs = np.mgrid[outer[1]:outer[3]:2, outer[0]:outer[2]:2]
    inner = (xs >= x0 - 0.5 * fw) & (xs <= x1 + 0.5 * fw) & (ys >= y0 - 0.5 * fw) & (ys <= y1 + 0.5 * fw)
    return luma(region)[~inner]


def check_backlight(m: Measured) -> CheckResult:
    surround = _surround_luma(m)
    if surround.size < 100 or m.face_luma.size == 0:
        return CheckResult("backlight", Tier.SKIPPED, None, detail="face fills the photo; no surround to compare")
    face_median = float(np.median(m.face_luma))
    surround_median = float(np.median(surround))
    clipped = float(np.mean(surround >= 250))
    ratio = face_median / max(surround_median, 1.0)
    bright_behind = clipped > (THRESHOLDS["backlight_surround_clipped"].warn or 0.0) or surround_median > 170
    tier = grade("backlight_ratio", ratio) if bright_behind else Tier.PASS
    if tier == Tier.PASS and face_median < 70 and surround_median > 170:
        tier = Tier.WARN
    detail = (f"face median {face_median:.0f} vs surround {surround_median:.0f} (ratio {ratio:.2f}); "
              f"{clipped:.0%} of the surround clipped")
    return CheckResult("backlight", tier, ratio, ADVICE["backlight"] if tier != Tier.PASS else "", detail)


def _lighting_ratio(a: np.ndarray, b: np.ndarray) -> float:
    la = float(np.median(srgb_to_linear(a))) + 1e-3
    lb = float(np.median(srgb_to_linear(b))) + 1e-3
    return max(la, lb) / min(la, lb)


def check_side_shadow(m: Measured) -> CheckResult:
    # OFIQ cheek zones: 0.3·IED squares starting at each eye centre, half way down to the mouth.
    cheek_l = _region_luma(m, -0.35, 0.58, 0.15, 0.15)
    cheek_r = _region_luma(m, 0.35, 0.58, 0.15, 0.15)
    brow_l = _region_luma(m, -0.3, -0.45, 0.15, 0.12)
    brow_r = _region_luma(m, 0.3, -0.45, 0.15, 0.12)
    cheeks = _lighting_ratio(cheek_l, cheek_r)
    forehead = _lighting_ratio(brow_l, brow_r)
    # A fringe or glasses can darken one patch; a real side light darkens both pairs.
    ratio = min(cheeks, forehead)
    return _result("side_shadow", "side_shadow", ratio, ADVICE["side_shadow"],
                   f"lighting ratio cheeks {cheeks:.1f}:1, forehead {forehead:.1f}:1")


def _highlight_chroma(m: Measured) -> np.ndarray | None:
    """Mean CIELAB (a*, b*) of the brightest unclipped tenth of the frame outside the head: in a photo
    with a neutral white balance these are whites and greys, so their colour is the light's."""
    height, width = m.pixels.shape[:2]
    x0, y0, x1, y1 = m.face.box
    pad_x, pad_y = 0.5 * (x1 - x0), 0.5 * (y1 - y0)
    step = max(1, int(math.sqrt(height * width / 40_000)))  # about 40,000 samples: a mean needs no more
    xs, ys = np.arange(0, width, step), np.arange(0, height, step)
    outside = ((xs < x0 - pad_x) | (xs > x1 + pad_x))[None, :] | ((ys < y0 - pad_y) | (ys > y1 + pad_y))[:, None]
    pixels = m.pixels[::step, ::step][outside]
    if pixels.shape[0] < 500:
        return None
    lab = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    lightness = lab[:, 0]
    bright = (lightness >= np.percentile(lightness, 90)) & (lightness < 97.0)
    if int(bright.sum()) < 50:
        return None
    return lab[bright, 1:].mean(axis=0)


def check_colour_cast(m: Measured) -> CheckResult:
    """Cheek colour outside the natural skin box (OFIQ). A smaller offset counts too when the frame's own
    highlights carry a strong colour the same way: the light is coloured, not the skin (a tungsten bulb
    turns the skin only a little more orange than some skin is, and the white wall very orange)."""
    cheeks = np.concatenate([
        m.aligned.region(-0.35, 0.58, 0.15, 0.15).reshape(-1, 3),
        m.aligned.region(0.35, 0.58, 0.15, 0.15).reshape(-1, 3),
    ]).astype(np.float32) / 255.0
    lab = cv2.cvtColor(cheeks.reshape(-1, 1, 3), cv2.COLOR_RGB2Lab).reshape(-1, 3)
    a, b = float(lab[:, 1].mean()), float(lab[:, 2].mean())
    offset = np.array([min(0.0, a - 5) + max(0.0, a - 25), min(0.0, b - 5) + max(0.0, b - 35)])
    distance = float(np.hypot(*offset))
    detail = f"cheek colour a* {a:.1f}, b* {b:.1f} (natural skin: a* 5-25, b* 5-35)"
    tier = grade("colour_cast", distance)
    highlights = _highlight_chroma(m)
    if highlights is not None:
        chroma = float(np.hypot(*highlights))
        detail += f"; highlights a* {highlights[0]:.1f}, b* {highlights[1]:.1f}"
        same_way = float(np.dot(offset, highlights)) > 0.0
        if tier == Tier.PASS and same_way and grade("colour_cast_highlights", chroma) != Tier.PASS and \
                grade("colour_cast_confirmed", distance) != Tier.PASS:
            tier = Tier.WARN
            detail += ": the light itself is coloured"
    return CheckResult("colour_cast", tier, distance, ADVICE["colour_cast"] if tier != Tier.PASS else "", detail)


def eye_aspect_ratio(points68: np.ndarray) -> float:
    def ear(eye: np.ndarray) -> float:
        vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        return float(vertical / (2.0 * max(np.linalg.norm(eye[0] - eye[3]), 1e-6)))

    return (ear(points68[36:42]) + ear(points68[42:48])) / 2.0


def check_eyes_closed(m: Measured, blurred: bool = False) -> CheckResult:
    """Eye aspect ratio from 68 landmarks, backed by how much of the eye slit looks like eye.

    Judged only where the landmarks can be trusted: enough pixels between the eyes and a head turned
    little; elsewhere it says nothing. The two cues must agree before it speaks: the landmark
    predictor has a strong prior towards open eyes, so a slit showing only lid skin is what flags a
    closed eye (warn; fail with a low ratio too), while a low ratio on eyes that look open is what a
    smile does (narrowed lids, cheeks pushed up) and stays silent unless it is as low as a blink.
    (The appearance cue is skipped on faces too dark or too blurred: blur smears the iris into the lid.)
    """
    face = m.face
    if face.landmarks68 is None:
        return CheckResult("eyes_closed", Tier.SKIPPED, None, detail="needs 68-point landmarks")
    native = m.ied_original
    if native < EYES_MIN_IED or abs(face.pose.yaw) > EYES_MAX_YAW:
        return CheckResult("eyes_closed", Tier.SKIPPED, None,
                           detail=f"eye landmarks not trusted here ({native:.0f} px between the eyes, "
                           f"yaw {face.pose.yaw:+.0f}°)")
    value = eye_aspect_ratio(face.landmarks68)
    ear_tier = grade("eyes_closed", value)
    detail = f"eye aspect ratio {value:.3f}"
    blink = ear_tier == Tier.FAIL
    if blurred or _too_dark_to_judge(_cheek_luma(m)):
        tier = Tier.WARN if blink else Tier.PASS
        detail += "; eye slits not compared (too dark or blurred)"
    else:
        visible = _eye_visible(m)
        detail += f"; {visible:.0%} of the eye slits look open"
        if grade("eye_visible", visible) == Tier.FAIL:
            tier = Tier.FAIL if ear_tier != Tier.PASS else Tier.WARN
        else:
            tier = Tier.WARN if blink else Tier.PASS
            if ear_tier == Tier.WARN:
                detail += " (narrowed lids, as in a smile: not flagged)"
    advice = ADVICE["eyes_closed"] if tier == Tier.FAIL else ADVICE["eyes_half"] if tier == Tier.WARN else ""
    return CheckResult("eyes_closed", tier, value, advice, detail)


def _cheek_luma(m: Measured) -> np.ndarray:
    return np.concatenate([_region_luma(m, side * 0.35, 0.58, 0.15, 0.15).ravel() for side in (-1, 1)])


def _too_dark_to_judge(cheeks: np.ndarray) -> bool:
    """Eye-region cues compare eyes with cheeks; on crushed skin that comparison means nothing."""
    return float(np.mean(cheeks < SHADOW_FLOOR)) > (THRESHOLDS["crushed_shadows"].fail or 1.0)


def check_sunglasses(m: Measured, blurred: bool = False) -> CheckResult:
    """Dark lenses: the eye boxes have no bright part (no sclera, no catch-light) and are dark overall.

    Eye boxes are 0.5 × 0.3 IED around each eye centre (face-quality.md §1.6). Open eyes always
    show sclera brighter than the cheeks, even in dim light, so the 90th percentile is the cue; a blur
    the blur check fails smears that sclera into the lids, so then it says nothing.
    """
    if blurred:
        return CheckResult("sunglasses", Tier.SKIPPED, None, detail="too blurred to judge the eyes")
    cheeks = _cheek_luma(m)
    if _too_dark_to_judge(cheeks):
        return CheckResult("sunglasses", Tier.SKIPPED, None, detail="face too dark to judge the eyes")
    cheek_median = max(float(np.median(cheeks)), 1.0)
    eyes = np.concatenate([_region_luma(m, side * 0.5, 0.0, 0.25, 0.15).ravel() for side in (-1, 1)])
    brightest = float(np.percentile(eyes, 90)) / cheek_median
    overall = float(np.median(eyes)) / cheek_median
    dark = overall < (THRESHOLDS["sunglasses_dark"].fail or 0.0)
    tier = grade("sunglasses", brightest) if dark else Tier.PASS
    detail = f"eye regions: brightest {brightest:.2f}, median {overall:.2f} of the cheek brightness"
    return CheckResult("sunglasses", tier, brightest, ADVICE["sunglasses"] if tier != Tier.PASS else "", detail)


def _eye_visible(m: Measured) -> float:
    """Fraction of the eye slits much darker than their own bright part: iris, pupil and lashes.

    An open eye always shows a dark iris against sclera or lid; a shut lid is nearly uniform skin
    with one thin lash line. Relative to the slit's own 75th percentile, so exposure cancels out.
    """
    slits = [_region_luma(m, side * 0.5, 0.0, 0.22, 0.10).ravel() for side in (-1, 1)]
    return float(np.mean([np.mean(s < 0.6 * np.percentile(s, 75)) for s in slits]))


def check_occlusion(m: Measured) -> CheckResult:
    """Lower face (nose, mouth, chin) against a skin-colour model fitted on the cheeks and forehead."""

    def crcb(pixels: np.ndarray) -> np.ndarray:
        ycc = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2YCrCb).reshape(-1, 3).astype(np.float32)
        return ycc[:, 1:]

    skin = np.concatenate([
        crcb(m.aligned.region(-0.35, 0.58, 0.15, 0.15)),
        crcb(m.aligned.region(0.35, 0.58, 0.15, 0.15)),
        crcb(m.aligned.region(0.0, -0.45, 0.35, 0.12)),
    ])
    mean = np.median(skin, axis=0)
    spread = np.maximum(np.percentile(np.abs(skin - mean), 90, axis=0), 4.0)
    lower = crcb(m.aligned.region(0.0, 1.25, 0.45, 0.45))
    outside = float(np.mean(np.any(np.abs(lower - mean) > 2.0 * spread, axis=1)))
    return _result("occlusion", "occlusion", outside, ADVICE["occlusion"],
                   f"{outside:.0%} of the lower face differs from the skin colour")


def check_compression(m: Measured) -> CheckResult:
    image = m.image
    bpp = image.file_bytes * 8 / max(1, image.original_size[0] * image.original_size[1])
    if image.format == "JPEG":
        quality = estimate_jpeg_quality(image.jpeg_quantization)
        if quality is not None:
            return _result("compression", "jpeg_quality", quality, ADVICE["compression"],
                           f"JPEG quality ≈ {quality:.0f}, {bpp:.2f} bits per pixel")
    if image.scale < 0.999:
        return CheckResult("compression", Tier.SKIPPED, None, detail=f"{image.format}, {bpp:.2f} bits per pixel")
    x0, y0, x1, y1 = (int(v) for v in m.face.box)
    x0, y0 = max(0, x0) // 8 * 8, max(0, y0) // 8 * 8  # stay on the 8×8 grid the file was coded on
    region = m.pixels[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    value = blockiness(luma(region))
    return _result("compression", "blockiness", value, ADVICE["compression"],
                   f"{image.format}; 8×8 blockiness {value:.2f}, {bpp:.2f} bits per pixel")
