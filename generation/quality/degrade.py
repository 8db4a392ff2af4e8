"""Synthetic degradations with known ground truth, for calibrating and testing the quality gate.

Each function takes a clean RGB photo plus the face it contains (from a face analyzer) and
returns a degraded copy. The strength is expressed in units that matter for identity (blur in
fractions of the inter-eye distance, size in pixels between the eyes), so one table row means the
same thing on every photo.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image

from generation.faces.types import Face


def _canvas_fill(rgb: np.ndarray) -> tuple[int, int, int]:
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))  # type: ignore[return-value]


def shrink_face(rgb: np.ndarray, face: Face, target_ied: float) -> np.ndarray:
    """Scale the photo so the face has ``target_ied`` px between the eyes, on a canvas of the
    original size (the "stood too far away" case, not the "thumbnail" case)."""
    factor = min(1.0, target_ied / face.inter_eye_distance)
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_AREA)
    canvas = np.empty_like(rgb)
    canvas[:] = _canvas_fill(rgb)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return canvas


def gaussian_blur(rgb: np.ndarray, face: Face, sigma_per_ied: float) -> np.ndarray:
    sigma = sigma_per_ied * face.inter_eye_distance
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma)


def motion_blur(rgb: np.ndarray, face: Face, length_per_ied: float, angle: float = 0.0) -> np.ndarray:
    length = max(3, round(length_per_ied * face.inter_eye_distance)) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    kernel /= kernel.sum()
    return cv2.filter2D(rgb, -1, kernel)


def gamma_darken(rgb: np.ndarray, face: Face, gamma: float) -> np.ndarray:
    """Darker by a power curve, plus the sensor noise a phone adds when it boosts a dark shot."""
    out = 255.0 * (rgb.astype(np.float32) / 255.0) ** gamma
    noise = np.random.default_rng(7).normal(0, 2.0, rgb.shape)
    return np.clip(out + noise, 0, 255).astype(np.uint8)


def overexpose(rgb: np.ndarray, face: Face, gain: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _face_weight(shape: tuple[int, int], face: Face, grow: float = 1.0, soft: float = 0.15) -> np.ndarray:
    """A soft elliptical weight, 1 on the face, 0 away from it."""
    height, width = shape
    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * (y1 - y0)
    rx, ry = grow * 0.6 * (x1 - x0), grow * 0.75 * (y1 - y0)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
    return np.clip((1.0 + soft - distance) / (2 * soft), 0.0, 1.0)


def backlight(rgb: np.ndarray, face: Face, strength: float) -> np.ndarray:
    """Bright window behind, face in its own shadow: surround pushed up, face pulled down.

    ``strength`` 1 ≈ a person in front of a bright window; 2 ≈ a near-silhouette.
    """
    weight = _face_weight(rgb.shape[:2], face, grow=1.25)[..., None]
    img = rgb.astype(np.float32)
    surround = np.clip(img * (1.0 + 0.9 * strength) + 60 * strength, 0, 255)
    darkened = img * (1.0 / (1.0 + 1.2 * strength))
    return np.clip(weight * darkened + (1 - weight) * surround, 0, 255).astype(np.uint8)


def side_shadow(rgb: np.ndarray, face: Face, ratio: float) -> np.ndarray:
    """The already darker side of the face darker still by ``ratio`` in linear light (so the net
    lighting ratio is at least ``ratio``), with a soft transition down the middle."""
    height, width = rgb.shape[:2]
    # Position along the eye line (so a tilted head is split down its own middle).
    axis = (face.eye_right - face.eye_left) / max(face.inter_eye_distance, 1e-6)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    along = (xs - face.eye_mid[0]) * axis[0] + (ys - face.eye_mid[1]) * axis[1]
    ramp_width = 0.15 * face.inter_eye_distance
    t = np.clip((along + ramp_width) / (2 * ramp_width), 0.0, 1.0)  # 0 image-left side, 1 right side
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2
    x0, y0, x1, y1 = (int(v) for v in face.box)
    half = max(1, int(face.eye_mid[0]) - max(0, x0))
    left_mean = rgb[max(0, y0):y1, max(0, x0):max(0, x0) + half].mean()
    right_mean = rgb[max(0, y0):y1, int(face.eye_mid[0]):max(int(face.eye_mid[0]) + 1, x1)].mean()
    if left_mean < right_mean:
        t = 1.0 - t
    gain = 1.0 + (1.0 / ratio - 1.0) * t
    out = (linear * gain[..., None]) ** (1 / 2.2) * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


def colour_cast(rgb: np.ndarray, face: Face, strength: float) -> np.ndarray:
    """RGB-LED style tint: magenta-blue light (strength 1 ≈ a gaming room)."""
    gains = np.array([1.0 + 0.1 * strength, 1.0 - 0.45 * strength, 1.0 + 0.6 * strength], np.float32)
    return np.clip(rgb.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, face: Face, quality: int) -> bytes:
    """The photo re-saved as a JPEG of ``quality`` (bytes: the file is what the gate reads)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def screenshot(rgb: np.ndarray, face: Face, quality: int, shift: tuple[int, int] = (3, 5)) -> np.ndarray:
    """A screenshot of a JPEG: its blocks kept, the file's 8×8 grid shifted by a crop (x, y)."""
    with Image.open(io.BytesIO(jpeg(rgb, face, quality))) as decoded:
        pixels = np.asarray(decoded.convert("RGB"))
    return np.ascontiguousarray(pixels[shift[1]:, shift[0]:])


def rotate(rgb: np.ndarray, face: Face, degrees: float) -> np.ndarray:
    """Quarter turns turn the whole photo; other angles tilt the head to a roll of ``degrees``."""
    if degrees % 90 == 0:
        return np.ascontiguousarray(np.rot90(rgb, k=int(-degrees // 90) % 4))
    centre = tuple(float(v) for v in face.eye_mid)
    matrix = cv2.getRotationMatrix2D(centre, -(degrees - face.pose.roll), 1.0)
    return cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT)


def cut_head(rgb: np.ndarray, face: Face, side: str, fraction: float) -> np.ndarray:
    """Crop the photo so ``fraction`` of the head (crown to chin, or width) lies outside it."""
    eye_mid = face.eye_mid
    t = 1.9 * face.inter_eye_distance  # eye to chin
    height, width = rgb.shape[:2]
    if side == "top":
        crown = eye_mid[1] - 0.95 * t
        y0 = int(np.clip(crown + fraction * 1.95 * t, 0, height - 2))
        return rgb[y0:]
    if side == "chin":
        chin = eye_mid[1] + t
        y1 = int(np.clip(chin - fraction * 1.95 * t, 2, height))
        return rgb[:y1]
    head_w = 2.2 * face.inter_eye_distance
    left = eye_mid[0] - head_w / 2
    x0 = int(np.clip(left + fraction * head_w, 0, width - 2))
    return rgb[:, x0:]


def eye_bars(rgb: np.ndarray, face: Face, darkness: float = 0.08) -> np.ndarray:
    """Dark lenses over both eyes (sunglasses / censor bars)."""
    out = rgb.copy()
    ied = face.inter_eye_distance
    mask = np.zeros(rgb.shape[:2], np.uint8)
    for eye in face.landmarks5[:2]:
        centre = (int(eye[0]), int(eye[1]))
        cv2.ellipse(mask, centre, (int(0.32 * ied), int(0.22 * ied)), 0, 0, 360, 1, -1)
    bridge_y = int((face.landmarks5[0][1] + face.landmarks5[1][1]) / 2)
    cv2.line(mask, (int(face.landmarks5[0][0]), bridge_y), (int(face.landmarks5[1][0]), bridge_y), 1,
             max(2, int(0.05 * ied)))
    lens = np.array([20, 22, 26], np.float32) + 255 * darkness
    out[mask.astype(bool)] = np.clip(lens, 0, 255).astype(np.uint8)
    return out


def lower_face_cover(rgb: np.ndarray, face: Face, colour: tuple[int, int, int] = (70, 110, 200)) -> np.ndarray:
    """A face mask over nose, mouth and chin (a medical mask in blue by default)."""
    out = rgb.copy()
    ied = face.inter_eye_distance
    nose = face.landmarks5[2]
    top = int(nose[1] - 0.1 * ied)
    bottom = int(face.eye_mid[1] + 2.1 * ied)
    left, right = int(face.eye_mid[0] - 1.15 * ied), int(face.eye_mid[0] + 1.15 * ied)
    cv2.rectangle(out, (left, top), (right, bottom), colour, -1)
    return out


def close_eyes(rgb: np.ndarray, face: Face) -> np.ndarray:
    """Paint eyelids shut: skin from just below each eye over the eye, a dark lash line across."""
    if face.landmarks68 is None:
        raise ValueError("closing eyes needs 68-point landmarks")
    out = rgb.copy()
    ied = face.inter_eye_distance
    for start in (36, 42):
        eye = face.landmarks68[start:start + 6]
        x0, x1 = eye[:, 0].min(), eye[:, 0].max()
        cy = eye[:, 1].mean()
        pad_x, pad_y = 0.08 * ied, 0.12 * ied
        patch_y0 = int(cy + 0.55 * ied)  # the cheek: eyelids are skin-coloured
        skin = rgb[patch_y0:patch_y0 + 6, int(x0):int(x1)].reshape(-1, 3).mean(axis=0)
        lid = np.zeros(rgb.shape[:2], np.uint8)
        cv2.ellipse(lid, (int((x0 + x1) / 2), int(cy)), (int((x1 - x0) / 2 + pad_x), int(pad_y + 0.1 * ied)),
                    0, 0, 360, 1, -1)
        out[lid.astype(bool)] = skin.astype(np.uint8)
        thickness = max(1, int(0.03 * ied))
        cv2.ellipse(out, (int((x0 + x1) / 2), int(cy + 0.02 * ied)), (int((x1 - x0) / 2), int(0.06 * ied)),
                    0, 0, 180, (40, 30, 30), thickness)
    return out


def paste_second_face(rgb: np.ndarray, face: Face, other: np.ndarray, other_face: Face,
                      area_ratio: float) -> np.ndarray:
    """Paste another person's head beside the main face at ``area_ratio`` of its box area."""
    out = rgb.copy()
    scale = math.sqrt(area_ratio) * face.width / max(other_face.width, 1.0)
    ox0, oy0, ox1, oy1 = other_face.box
    pad = 0.35
    sx0 = int(max(0, ox0 - pad * other_face.width))
    sy0 = int(max(0, oy0 - pad * other_face.height))
    sx1 = int(min(other.shape[1], ox1 + pad * other_face.width))
    sy1 = int(min(other.shape[0], oy1 + pad * other_face.height))
    head = other[sy0:sy1, sx0:sx1]
    new_w, new_h = max(8, int(head.shape[1] * scale)), max(8, int(head.shape[0] * scale))
    head = cv2.resize(head, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    # Widen the photo on the side with less room, so the second head never covers the first.
    height, width = out.shape[:2]
    fill = np.empty((height, new_w + int(0.1 * face.width), 3), np.uint8)
    fill[:] = _canvas_fill(rgb)
    on_right = width - face.box[2] >= face.box[0]
    if on_right:
        out = np.concatenate([out, fill], axis=1)
        x = int(face.box[2] + 0.1 * face.width)
    else:
        out = np.concatenate([fill, out], axis=1)
        x = 0
    height, width = out.shape[:2]
    y = int(np.clip(face.box[1], 0, max(0, height - new_h)))
    h = min(new_h, height - y)
    w = min(new_w, width - x)
    out[y:y + h, x:x + w] = head[:h, :w]
    return out


def enlarge(rgb: np.ndarray, face: Face, from_ied: float) -> np.ndarray:
    """The photo as a copy enlarged from a small one: shrunk until the face has ``from_ied`` px between
    the eyes, then scaled back to its own size (bicubic, as phones and editors do)."""
    height, width = rgb.shape[:2]
    factor = min(1.0, from_ied / face.inter_eye_distance)
    small = cv2.resize(rgb, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def beauty_filter(rgb: np.ndarray, face: Face, strength: float) -> np.ndarray:
    """Skin smoothing as beauty apps do it: an edge-preserving (bilateral) blur on the face only, so
    eyes, brows and lips keep their edges while skin loses its texture and grain."""
    ied = face.inter_eye_distance
    smoothed = cv2.bilateralFilter(rgb, d=0, sigmaColor=20.0 * strength, sigmaSpace=0.04 * ied)
    weight = _face_weight(rgb.shape[:2], face)[..., None]
    return np.clip(weight * smoothed + (1.0 - weight) * rgb, 0, 255).astype(np.uint8)


def warm_cast(rgb: np.ndarray, face: Face, strength: float) -> np.ndarray:
    """Tungsten light with the camera's white balance left on daylight: orange (strength 1 ≈ a 2700 K
    bulb, 0.5 ≈ a warm room light)."""
    gains = np.array([1.0 + 0.05 * strength, 1.0 - 0.18 * strength, 1.0 - 0.5 * strength], np.float32)
    return np.clip(rgb.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def darker_skin(rgb: np.ndarray, face: Face, reflectance: float) -> np.ndarray:
    """The face and neck as darker skin under the same light: skin reflects ``reflectance`` × the light
    it did (linear light, about 0.5 for a medium and 0.25 for a deep skin tone against a light one),
    with the slightly richer colour darker skin has; hair, clothes and background untouched.

    Scaling the stored pixels would scale their grain too, which a camera does not do: shot noise grows as
    the square root of the light while the sRGB curve's slope falls about as fast, so in code values the
    grain on darker skin is about what it was. The grain scaled away is put back (as gamma_darken does).
    """
    weight = _face_weight(rgb.shape[:2], face, grow=1.15, soft=0.2)[..., None]
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2
    grey = linear.mean(axis=2, keepdims=True)
    richer = grey + 1.15 * (linear - grey)  # a little more saturation as the skin darkens
    darker = np.clip(richer * reflectance, 0.0, 1.0) ** (1 / 2.2) * 255.0
    kept = reflectance ** (1 / 2.2)  # the fraction of the old grain the scaling left
    grain = np.random.default_rng(11).normal(0.0, 2.0 * math.sqrt(1.0 - kept**2), rgb.shape[:2])[..., None]
    return np.clip(weight * (darker + grain) + (1.0 - weight) * rgb, 0, 255).astype(np.uint8)
