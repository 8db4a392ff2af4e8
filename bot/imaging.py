"""The bot's CPU-bound image work: checking a selfie, fitting results into Discord's limits, /help art.

Everything here blocks (decoding, face detection, encoding), so the bot calls it through a
worker thread (``asyncio.to_thread``), never on the event loop. Nothing here knows about
Discord objects: inputs and outputs are bytes, so it is testable without a gateway.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from generation.config import ImagesConfig
from generation.drawing import label_font
from generation.faces.types import FaceAnalyzer
from generation.images import encode_jpeg, encode_png, load_image
from generation.quality.crop import apply_crop
from generation.quality.gate import assess
from generation.quality.preview import render_preview

PREVIEW_MAX_SIDE = 768  # keeps the reply light; Discord shows embeds at about this size anyway
MIN_FILE_LIMIT = 8 * 1024  # below this not even a thumbnail fits: the caller's limits are wrong
DEFAULT_TOTAL_LIMIT = 25 * 1024 * 1024
JPEG_QUALITIES = (92, 85, 75, 60)
DOWNSCALE_STEP = 0.75
DOWNSCALE_QUALITY = 85
_MIN_SIDE = 16


@dataclass(frozen=True)
class PhotoCheck:
    """What the bot needs to answer a checked selfie, already encoded for upload."""

    verdict: str  # "pass" | "warn" | "fail"
    messages: tuple[str, ...]  # at most 3 pieces of advice, most important first
    notes: tuple[str, ...]  # what was corrected on loading (EXIF rotation, transparency, ...)
    faces_found: int
    preview_png: bytes  # annotated preview, long side <= PREVIEW_MAX_SIDE
    crop_jpeg: bytes | None  # the suggested face-centred crop; None when no face was found
    photo: bytes  # the original file, kept as the reference exactly as uploaded
    checks: tuple[tuple[str, str, str], ...]  # (check name, tier, detail) for a compact summary


def _downscale(pixels: np.ndarray, max_side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    if max(height, width) <= max_side:
        return pixels
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def check_photo(data: bytes, analyzer: FaceAnalyzer, images: ImagesConfig, *, embeddings: bool = False
                ) -> PhotoCheck:
    """Run the quality gate on uploaded bytes.

    Broken or hostile files raise :class:`generation.images.ImageError` unchanged: its
    ``user_message`` is already written for the person who sent the file.
    """
    image = load_image(data, **images.load_options())
    assessment = assess(image, analyzer, embeddings=embeddings)
    report = assessment.report
    preview = encode_png(_downscale(render_preview(assessment), PREVIEW_MAX_SIDE))
    crop_jpeg = None
    if report.crop is not None:
        # The crop is in original pixels of assessment.pixels (turned upright if the gate had to).
        crop_jpeg = encode_jpeg(apply_crop(assessment.pixels, report.crop, image.scale))
    return PhotoCheck(
        verdict=report.verdict.value,
        messages=tuple(report.messages),
        notes=tuple(report.notes),
        faces_found=report.faces_found,
        preview_png=preview,
        crop_jpeg=crop_jpeg,
        photo=data,
        checks=tuple((c.name, c.tier.value, c.detail) for c in report.checks),
    )


JOB_REFERENCE_MAX_SIDE = 1024  # what a queued job carries of a photo, at most
JOB_REFERENCE_PER_IED = 8.0  # the square kept around the face, in inter-eye distances: head, hair, shoulders
JOB_REFERENCE_QUALITY = 92


def job_reference(data: bytes, analyzer: FaceAnalyzer, images: ImagesConfig) -> bytes:
    """What a queued job carries of a checked photo: the face with room around it, re-encoded as a JPEG of
    at most 1024 px — never the upload itself (up to 25 MB, with its EXIF and everything else in frame).

    The crop keeps the face large (a selfie's eyes stay ≥ 120 px apart), which is all the engine reads: the
    identity embedding, the aligned face crop and the keypoints' shape. A photo without a face (it would
    not pass the check) is only downscaled.
    """
    image = load_image(data, **images.load_options())
    pixels = image.pixels
    faces = analyzer.analyze(pixels)
    if faces:
        face = max(faces, key=lambda f: f.area)
        height, width = pixels.shape[:2]
        side = JOB_REFERENCE_PER_IED * max(face.inter_eye_distance, 1.0)
        side = max(side, 1.6 * max(face.width, face.height))
        crop_w, crop_h = int(min(side, width)), int(min(side, height))
        cx, cy = face.eye_mid
        x0 = int(np.clip(round(cx - crop_w / 2), 0, width - crop_w))
        y0 = int(np.clip(round(cy - crop_h / 2), 0, height - crop_h))
        pixels = pixels[y0:y0 + crop_h, x0:x0 + crop_w]
    return encode_jpeg(_downscale(np.ascontiguousarray(pixels), JOB_REFERENCE_MAX_SIDE), JOB_REFERENCE_QUALITY)


@dataclass(frozen=True)
class FittedImage:
    """One file ready to attach: the original PNG when it fits, else a JPEG that does."""

    data: bytes
    filename: str
    content_type: str
    reencoded: bool


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def _as_rgb(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # JPEG has no alpha: flatten onto white, as Discord's light theme would show it.
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _fit_one(png: bytes, limit: int) -> tuple[bytes, bool]:
    """(bytes, reencoded): the PNG itself, a JPEG at falling quality, then smaller JPEGs."""
    if len(png) <= limit:
        return png, False
    image = _as_rgb(png)
    for quality in JPEG_QUALITIES:
        data = _jpeg(image, quality)
        if len(data) <= limit:
            return data, True
    width, height = image.size
    factor = 1.0
    while True:
        factor *= DOWNSCALE_STEP
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        # Always from the full-size image, so repeated steps do not compound resampling blur.
        data = _jpeg(image.resize(size, Image.Resampling.LANCZOS), DOWNSCALE_QUALITY)
        if len(data) <= limit:
            return data, True
        if max(size) <= _MIN_SIDE:  # unreachable with limit >= MIN_FILE_LIMIT; never loop forever
            raise ValueError(f"cannot fit an image into {limit} bytes")


def fit_images(pngs: Sequence[bytes], *, per_file_limit: int, total_limit: int = DEFAULT_TOTAL_LIMIT,
               stem: str = "portrait") -> list[FittedImage]:
    """Make generated PNGs fit Discord's per-file and per-message upload limits, in order.

    Each file gets an equal share of ``total_limit`` (capped at ``per_file_limit``); files are
    handled smallest first and a file that needs less than its share leaves the rest to the
    files after it, so small PNGs stay lossless while big ones are re-encoded. Filenames are
    ``{stem}-1.png``, ``{stem}-2.jpg``, ... (1-based, in the input order).
    """
    if not pngs:
        return []
    if min(per_file_limit, total_limit // len(pngs)) < MIN_FILE_LIMIT:
        raise ValueError(
            f"upload limits too small: {per_file_limit} bytes per file, {total_limit} bytes for {len(pngs)} files"
        )
    fitted: dict[int, FittedImage] = {}
    budget = total_limit
    order = sorted(range(len(pngs)), key=lambda i: len(pngs[i]))
    for done, index in enumerate(order):
        share = min(per_file_limit, budget // (len(pngs) - done))
        data, reencoded = _fit_one(pngs[index], share)
        budget -= len(data)
        suffix, content_type = (".jpg", "image/jpeg") if reencoded else (".png", "image/png")
        fitted[index] = FittedImage(data, f"{stem}-{index + 1}{suffix}", content_type, reencoded)
    return [fitted[i] for i in range(len(pngs))]


# --------------------------------------------------------------------------- /help illustration

_GOOD = (46, 160, 67)
_BAD = (215, 48, 48)
_SKIN = (224, 172, 138)
_HAIR = (70, 48, 36)
_SHIRT = (70, 110, 160)


def _person(draw: ImageDraw.ImageDraw, cx: float, top: float, face_h: float, skin: tuple[int, int, int],
            hair: tuple[int, int, int], shirt: tuple[int, int, int], features: bool) -> None:
    """A simple head-and-shoulders figure whose face is ``face_h`` tall, its crown at ``top``."""
    face_w = face_h * 0.74
    chin = top + face_h
    draw.ellipse([cx - face_w * 1.45, chin + face_h * 0.12, cx + face_w * 1.45, chin + face_h * 1.6], fill=shirt)
    draw.rectangle([cx - face_w * 0.2, chin - face_h * 0.1, cx + face_w * 0.2, chin + face_h * 0.25], fill=skin)
    draw.ellipse([cx - face_w * 0.55, top - face_h * 0.06, cx + face_w * 0.55, top + face_h * 0.5], fill=hair)
    draw.ellipse([cx - face_w / 2, top, cx + face_w / 2, chin], fill=skin)
    if not features:
        return
    eye_y, eye_dx, r = top + face_h * 0.45, face_w * 0.2, max(1.5, face_h * 0.035)
    for ex in (cx - eye_dx, cx + eye_dx):
        draw.ellipse([ex - r * 1.8, eye_y - r, ex + r * 1.8, eye_y + r], fill=(250, 250, 250))
        draw.ellipse([ex - r, eye_y - r, ex + r, eye_y + r], fill=(60, 40, 30))
    mouth_y = top + face_h * 0.75
    draw.arc([cx - face_w * 0.18, mouth_y - face_h * 0.06, cx + face_w * 0.18, mouth_y + face_h * 0.06],
             start=20, end=160, fill=(150, 70, 70), width=max(1, round(face_h * 0.02)))


def _tick(draw: ImageDraw.ImageDraw, x: float, y: float, size: float, good: bool) -> None:
    """✓ or ✗ drawn as strokes, so the mark does not depend on the font having the glyph."""
    width = max(2, round(size / 5))
    if good:
        draw.line([(x, y + size * 0.55), (x + size * 0.38, y + size * 0.9), (x + size, y + size * 0.1)],
                  fill=_GOOD, width=width, joint="curve")
    else:
        draw.line([(x, y), (x + size, y + size)], fill=_BAD, width=width)
        draw.line([(x, y + size), (x + size, y)], fill=_BAD, width=width)


def _caption(draw: ImageDraw.ImageDraw, left: int, width: int, top: int, title: str, detail: str,
             good: bool) -> None:
    colour = _GOOD if good else _BAD
    title_font, detail_font = label_font(22, bold=True), label_font(15)
    title_w = draw.textlength(title, font=title_font)
    mark = 20
    x = left + (width - (title_w + 8 + mark)) / 2
    draw.text((x, top), title, fill=colour, font=title_font)
    _tick(draw, x + title_w + 8, top + 3, mark, good)
    detail_w = draw.textlength(detail, font=detail_font)
    draw.text((left + (width - detail_w) / 2, top + 30), detail, fill=(235, 235, 235), font=detail_font)


def make_example_framing_png(width: int = 640, height: int = 320) -> bytes:
    """Side-by-side sketch for /help: a face that fills the frame vs a small, backlit one.

    Drawn, not photographed, so it carries no one's likeness and needs no asset file;
    identical bytes on every call (no randomness, no timestamps in the PNG).
    """
    panel_w, photo_h = width // 2, height - 72
    canvas = Image.new("RGB", (width, height), (32, 34, 37))
    frame_w, frame_h = panel_w - 12, photo_h - 8

    # GOOD: even, soft light; the face takes most of the frame's height.
    good = Image.new("RGB", (frame_w, frame_h), (196, 206, 214))
    _person(ImageDraw.Draw(good), frame_w / 2, frame_h * 0.12, frame_h * 0.62, _SKIN, _HAIR, _SHIRT, True)

    # BAD: a bright window behind a small, far-away, underexposed figure.
    bad = Image.new("RGB", (frame_w, frame_h), (120, 110, 100))
    draw = ImageDraw.Draw(bad)
    window = (36, 18, frame_w - 36, frame_h - 40)
    for step in range(4, 0, -1):  # a halo around the window: the light spills over the wall
        draw.rectangle([window[0] - 5 * step, window[1] - 5 * step, window[2] + 5 * step, window[3] + 5 * step],
                       fill=(120 + 30 * (4 - step), 112 + 30 * (4 - step), 102 + 28 * (4 - step)))
    draw.rectangle(window, fill=(255, 252, 235))
    draw.rectangle([0, frame_h - 40, frame_w, frame_h], fill=(90, 82, 74))  # the floor, in shade
    small_h = frame_h * 0.12
    _person(draw, frame_w / 2 + 18, frame_h - 40 - small_h * 1.6, small_h, (72, 56, 48), (34, 26, 22),
            (40, 44, 54), False)

    draw = ImageDraw.Draw(canvas)
    for left, frame, good_side, title, detail in (
        (0, good, True, "GOOD", "face fills the frame, even light"),
        (panel_w, bad, False, "BAD", "too small, backlit"),
    ):
        canvas.paste(frame, (left + 6, 8))
        draw.rectangle([left + 6, 8, left + 6 + frame_w - 1, 8 + frame_h - 1], outline=_GOOD if good_side else _BAD,
                       width=3)
        _caption(draw, left, panel_w, photo_h + 10, title, detail, good_side)

    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()

