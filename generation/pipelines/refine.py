"""The face re-render pass (the ADetailer / FaceDetailer pattern), image side only.

Identity conditioning loses its grip as the face gets small in the output, so a face below
``min_eye_distance`` is cut out with its head, upscaled to the generator's working size,
re-denoised with the same identity (the ``redenoise`` callable the engine passes in), and
pasted back. The paste is colour-matched and feathered so no seam shows, and it is confined to
the cut-out square: every pixel outside it stays bit-identical (checked on every call).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from generation.faces.types import Face, HeadPose

# (work_size × work_size RGB uint8 crop, 5 keypoints in crop pixels, strength) -> re-denoised crop, same size.
Redenoise = Callable[[np.ndarray, np.ndarray, float], np.ndarray]

# The detector's box can be tight or odd on small faces; the crop always spans at least this many
# inter-eye distances before ``expand`` (dlib's box is ≈ 3.3, so this only guards bad boxes).
MIN_BOX_PER_IED = 2.5
# A face box drawn around known keypoints, in inter-eye distances: brow to chin ≈ 2.3 IED for a
# frontal face (framing.py's proportions), as wide; centred on the keypoints' mean (near the nose).
KEYPOINT_BOX_PER_IED = 2.3
# Semi-axes of the paste mask, as fractions of the region's side: a little narrower than tall, like a head.
MASK_HALF_WIDTH = 0.45
MASK_HALF_HEIGHT = 0.5
# Bounds on the contrast correction, so a flat stand-in or a near-uniform face cannot blow up noise.
MIN_STD_GAIN, MAX_STD_GAIN = 0.5, 2.0


@dataclass(frozen=True)
class RefineSettings:
    """When to re-render a face and how (defaults from the practice in identity-generation.md)."""

    min_eye_distance: float = 64.0  # px; identity holds above ≈ 60-70 px between the eyes
    expand: float = 1.8  # the square crop's side, in face-box sides: the whole head, some context
    work_size: int = 1024  # the generator's native size, where its identity conditioning works best
    strength: float = 0.4  # img2img strength: enough to redraw features, not enough to change the head
    feather: float = 0.12  # width of the paste mask's soft edge, as a fraction of the crop's side

    def __post_init__(self) -> None:
        if self.min_eye_distance < 0:
            raise ValueError("min_eye_distance must be ≥ 0")
        if self.expand < 1.0:
            raise ValueError("expand must be ≥ 1 (the crop has to hold the face)")
        if self.work_size < 16:
            raise ValueError("work_size must be at least 16 px")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError("strength must be in (0, 1]")
        if not 0.0 <= self.feather < 0.5:
            raise ValueError("feather must be in [0, 0.5)")


@dataclass(frozen=True, eq=False)
class RefineRegion:
    """A square of the image to re-render, and the face in the coordinates the generator will see."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels; square and inside the image
    work_size: int
    work_keypoints: np.ndarray  # (5, 2): the face's keypoints in the work_size crop
    face_centre: tuple[float, float]  # mask centre, in region pixels
    face_box: tuple[int, int, int, int]  # face box in region pixels (clipped): where colours are compared

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def scale(self) -> float:
        """Work-crop pixels per image pixel."""
        return self.work_size / self.side


@dataclass(frozen=True)
class RefineReport:
    refined: bool
    reason: str
    region: tuple[int, int, int, int] | None  # x0, y0, x1, y1 re-rendered, if any
    eye_distance: float | None  # the face's inter-eye distance before the pass, px


def redenoise_steps(steps: int, strength: float) -> int:
    """Denoising steps an SDXL img2img call runs: the last ``strength`` share of ``steps`` (at least 1)."""
    return max(1, min(int(steps * strength), steps))


def face_at_keypoints(keypoints: np.ndarray) -> Face:
    """The face a keypoint-controlled generator (InstantID) drew at ``keypoints``, as a Face to plan with.

    No detector is asked: the keypoints are where the IdentityNet put the face, whatever its yaw, so a
    turned head is re-rendered as surely as a frontal one. Pose: the roll from the eyes; yaw and pitch
    are unknown and left at 0 (planning does not use them).
    """
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"expected 5 finite (x, y) keypoints, got an array of shape {points.shape}")
    eye_vector = points[1] - points[0]
    half = KEYPOINT_BOX_PER_IED * float(np.hypot(*eye_vector)) / 2.0
    cx, cy = points.mean(axis=0)
    roll = math.degrees(math.atan2(eye_vector[1], eye_vector[0]))
    return Face(box=(cx - half, cy - half, cx + half, cy + half), score=1.0, landmarks5=points,
                pose=HeadPose(yaw=0.0, pitch=0.0, roll=roll))


def plan_refine(
    face: Face, image_shape: tuple[int, int], settings: RefineSettings | None = None
) -> RefineRegion | None:
    """The region to re-render, or None when the face is large enough to keep its identity.

    ``image_shape`` is (height, width) (``image.shape`` works too). The square is moved, never
    cut, to stay inside the image, so the generator always gets an undistorted square.
    """
    settings = settings or RefineSettings()
    if face.inter_eye_distance >= settings.min_eye_distance:
        return None
    height, width = image_shape[:2]
    base = max(face.width, face.height, MIN_BOX_PER_IED * face.inter_eye_distance)
    side = int(min(max(round(settings.expand * base), 2), width, height))
    cx, cy = (face.box[0] + face.box[2]) / 2.0, (face.box[1] + face.box[3]) / 2.0
    x0 = int(np.clip(round(cx - side / 2.0), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2.0), 0, height - side))
    box = (x0, y0, x0 + side, y0 + side)
    fx0, fy0, fx1, fy1 = (int(np.clip(round(v - o), 0, side)) for v, o in zip(face.box, (x0, y0, x0, y0), strict=True))
    scale = settings.work_size / side
    return RefineRegion(
        box=box,
        work_size=settings.work_size,
        work_keypoints=(np.asarray(face.landmarks5, np.float64) - (x0, y0)) * scale,
        face_centre=(cx - x0, cy - y0),
        face_box=(fx0, fy0, max(fx1, fx0 + 1), max(fy1, fy0 + 1)),
    )


def feather_mask(side: int, centre: tuple[float, float], feather: float) -> np.ndarray:
    """Paste weights for a ``side``² region: 1 over the head, easing to 0 before any region edge the
    ellipse reaches, so the seam is spread over ``feather`` × side pixels instead of being a line."""
    half_w, half_h = MASK_HALF_WIDTH * side, MASK_HALF_HEIGHT * side
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    distance = np.sqrt(((xs - centre[0]) / half_w) ** 2 + ((ys - centre[1]) / half_h) ** 2)
    if feather <= 0.0:
        return (distance < 1.0).astype(np.float32)
    ramp = feather * side / min(half_w, half_h)  # the soft edge, in units of the normalised radius
    t = np.clip((1.0 - distance) / ramp, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep: no visible ring where the ramp starts


def match_colour(rendered: np.ndarray, original: np.ndarray, area: tuple[int, int, int, int]) -> np.ndarray:
    """``rendered`` with its Lab mean and spread over ``area`` moved to ``original``'s.

    img2img drifts in tone and white balance; the pasted face must match the body it sits on.
    """
    x0, y0, x1, y1 = area
    new = cv2.cvtColor(rendered.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    old = cv2.cvtColor(original.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    new_area = new[y0:y1, x0:x1].reshape(-1, 3)
    old_area = old[y0:y1, x0:x1].reshape(-1, 3)
    gain = np.clip(old_area.std(axis=0) / np.maximum(new_area.std(axis=0), 1e-3), MIN_STD_GAIN, MAX_STD_GAIN)
    lab = (new - new_area.mean(axis=0)) * gain + old_area.mean(axis=0)
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0, 0, 255).round().astype(np.uint8)


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels.copy()
    # Area averaging when shrinking (no aliasing); cubic when enlarging (no blockiness).
    interpolation = cv2.INTER_CUBIC if size > pixels.shape[0] else cv2.INTER_AREA
    return cv2.resize(pixels, (size, size), interpolation=interpolation)


def _unchanged_outside(before: np.ndarray, after: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = box
    return (
        np.array_equal(before[:y0], after[:y0])
        and np.array_equal(before[y1:], after[y1:])
        and np.array_equal(before[y0:y1, :x0], after[y0:y1, :x0])
        and np.array_equal(before[y0:y1, x1:], after[y0:y1, x1:])
    )


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}")


def refine_face(
    image: np.ndarray, face: Face, redenoise: Redenoise, settings: RefineSettings | None = None
) -> tuple[np.ndarray, RefineReport]:
    """Re-render ``face`` when it is small; otherwise return ``image`` itself, untouched.

    A refined result is a new array that differs from ``image`` only inside ``report.region``.
    """
    settings = settings or RefineSettings()
    _check_image(image)
    ied = face.inter_eye_distance
    limit = f"{settings.min_eye_distance:g}"
    region = plan_refine(face, image.shape[:2], settings)
    if region is None:
        return image, RefineReport(False, f"face {ied:.0f} px between the eyes ≥ {limit}: large enough", None, ied)

    x0, y0, x1, y1 = region.box
    original = image[y0:y1, x0:x1]
    work = _resize(original, settings.work_size)
    rendered = redenoise(work, region.work_keypoints.copy(), settings.strength)
    rendered = np.asarray(rendered)
    if rendered.shape != work.shape or rendered.dtype != np.uint8:
        raise ValueError(f"redenoise must return a {work.shape} uint8 crop, got {rendered.dtype} {rendered.shape}")
    matched = match_colour(_resize(rendered, region.side), original, region.face_box)
    alpha = feather_mask(region.side, region.face_centre, settings.feather)[..., None]
    blended = alpha * matched.astype(np.float32) + (1.0 - alpha) * original.astype(np.float32)

    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(blended.round(), 0, 255).astype(np.uint8)
    if not _unchanged_outside(image, out, region.box):  # not `assert`: must hold under python -O too
        raise AssertionError(f"the re-render pass changed pixels outside its region {region.box}")
    reason = f"face {ied:.0f} px between the eyes < {limit}: re-rendered"
    return out, RefineReport(True, reason, region.box, ied)


def refine_all(
    image: np.ndarray, faces: Sequence[Face], redenoise: Redenoise, settings: RefineSettings | None = None
) -> tuple[np.ndarray, RefineReport]:
    """Refine the largest face only: the identity conditioning is for one person, so re-rendering
    bystanders with it would give them the user's face."""
    if not faces:
        _check_image(image)
        return image, RefineReport(False, "no face in output", None, None)
    face = max(faces, key=lambda f: f.area)
    out, report = refine_face(image, face, redenoise, settings)
    if len(faces) > 1:
        reason = f"{report.reason} (largest of {len(faces)} faces; the others left as generated)"
        report = replace(report, reason=reason)
    return out, report
