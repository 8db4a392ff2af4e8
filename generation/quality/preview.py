"""The annotated preview the bot attaches to its reply: what was found and what to fix, at a glance.

Face box, landmarks and the suggested crop are drawn on the photo; a side panel lists every check
with a coloured mark (green pass, blue fixed, amber warn, red fail, grey not measured).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from generation.quality.gate import Assessment
from generation.quality.report import Tier

PREVIEW_MAX_SIDE = 800
PANEL_WIDTH = 300
TIER_COLOURS = {
    Tier.PASS: (46, 160, 67),
    Tier.FIXED: (56, 132, 224),
    Tier.WARN: (230, 160, 20),
    Tier.FAIL: (215, 48, 48),
    Tier.SKIPPED: (140, 140, 140),
}
LABELS = {
    "file": "File", "face_found": "Face found", "single_person": "One person", "resolution": "Face size",
    "framing": "Framing", "pose": "Head pose", "sunglasses": "Sunglasses", "occlusion": "Face covered",
    "blur": "Sharpness", "over_exposure": "Washed out", "under_exposure": "Too dark", "backlight": "Backlight",
    "side_shadow": "Side shadow", "colour_cast": "Colour cast", "eyes_closed": "Eyes open",
    "compression": "Compression",
}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def render_preview(assessment: Assessment) -> np.ndarray:
    """RGB uint8 image: the annotated photo on the left, the check list on the right."""
    pixels = assessment.pixels
    height, width = pixels.shape[:2]
    factor = min(1.0, PREVIEW_MAX_SIDE / max(height, width))
    photo = Image.fromarray(pixels)
    if factor < 1.0:
        photo = photo.resize((max(1, round(width * factor)), max(1, round(height * factor))),
                             Image.Resampling.BILINEAR)
    canvas_h = max(photo.height, 24 + 22 * (len(assessment.report.checks) + 2))
    canvas = Image.new("RGB", (photo.width + PANEL_WIDTH, canvas_h), (32, 34, 37))
    canvas.paste(photo, (0, 0))
    draw = ImageDraw.Draw(canvas)
    report = assessment.report
    line = max(2, round(max(photo.size) / 300))

    for index, face in enumerate(assessment.faces):
        colour = TIER_COLOURS[report.verdict] if index == 0 else (170, 170, 170)
        x0, y0, x1, y1 = (v * factor for v in face.box)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=line)
        if index == 0:
            if face.landmarks68 is not None:
                for x, y in face.landmarks68 * factor:
                    draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(255, 255, 255))
            for x, y in face.landmarks5 * factor:
                r = line + 1
                draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 220, 255))

    if report.crop is not None:
        # The crop is in original pixels; the working copy is image.scale of that, then factor.
        k = assessment.image.scale * factor
        corners = [(x * k, y * k) for x, y in report.crop.corners()]
        draw.line([*corners, corners[0]], fill=(0, 200, 255), width=line)

    big, small = _font(18), _font(14)
    x = photo.width + 12
    draw.text((x, 10), f"Verdict: {report.verdict.value.upper()}", fill=TIER_COLOURS[report.verdict], font=big)
    y = 40
    for check in report.checks:
        colour = TIER_COLOURS[check.tier]
        draw.ellipse([x, y + 3, x + 11, y + 14], fill=colour)
        draw.text((x + 18, y), f"{LABELS.get(check.name, check.name)}: {check.tier.value}", fill=(235, 235, 235),
                  font=small)
        y += 22
    return np.asarray(canvas)
