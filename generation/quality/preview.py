"""The annotated preview the bot attaches to its reply: what was found and what to fix, at a glance.

Face box, landmarks and the suggested crop are drawn on the photo; a side panel lists every check
with a coloured mark (green pass, blue fixed, amber warn, red fail, grey not measured) and what it
measured, then the advice to follow: a person must see why "Head pose: fail", not only that it failed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from generation.drawing import label_font
from generation.quality.gate import Assessment
from generation.quality.report import CheckResult, Tier

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
    "blur": "Sharpness", "detail": "Fine detail", "smoothing": "Filter", "over_exposure": "Washed out",
    "under_exposure": "Too dark", "backlight": "Backlight",
    "side_shadow": "Side shadow", "colour_cast": "Colour cast", "eyes_closed": "Eyes open",
    "compression": "Compression",
}


# What each check measured, in a few characters (ASCII: the bitmap fallback font has nothing else).
SHORT_VALUES = {
    "file": lambda v: f"{v:.0f} px",
    "single_person": lambda v: f"2nd face {v:.0%}",
    "resolution": lambda v: f"{v:.0f} px eyes",
    "framing": lambda v: f"{v:.0%} cut",
    "pose": lambda v: f"{v:.0f} deg",
    "sunglasses": lambda v: f"{v:.2f}",
    "occlusion": lambda v: f"{v:.0%}",
    "blur": lambda v: f"{v:.2f}",
    "detail": lambda v: f"{v:.2f}",
    "smoothing": lambda v: f"grain x{v:.2f}",
    "over_exposure": lambda v: f"{v:.0%} clipped",
    "under_exposure": lambda v: f"{v:.0%} black",
    "backlight": lambda v: f"x{v:.2f}",
    "side_shadow": lambda v: f"{v:.1f}:1",
    "colour_cast": lambda v: f"{v:.0f} off",
    "eyes_closed": lambda v: f"EAR {v:.2f}",
    "compression": lambda v: f"Q{v:.0f}" if v > 3 else f"{v:.2f}",
}


def short_value(check: CheckResult) -> str:
    """The measured value as the panel shows it, or "" where there is none."""
    if check.value is None or check.tier == Tier.SKIPPED or check.name not in SHORT_VALUES:
        return ""
    return SHORT_VALUES[check.name](float(check.value))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
          width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def render_preview(assessment: Assessment) -> np.ndarray:
    """RGB uint8 image: the annotated photo on the left, the check list on the right."""
    pixels = assessment.pixels
    height, width = pixels.shape[:2]
    factor = min(1.0, PREVIEW_MAX_SIDE / max(height, width))
    photo = Image.fromarray(pixels)
    if factor < 1.0:
        photo = photo.resize((max(1, round(width * factor)), max(1, round(height * factor))),
                             Image.Resampling.BILINEAR)
    small = label_font(14)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    advice = [_wrap(measure, f"{number}. {message}", small, PANEL_WIDTH - 36)
              for number, message in enumerate(assessment.report.messages, start=1)]
    panel_h = 48 + 22 * len(assessment.report.checks) + sum(18 * len(lines) + 4 for lines in advice) + 8
    canvas_h = max(photo.height, panel_h)
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

    big = label_font(18)
    x = photo.width + 12
    draw.text((x, 10), f"Verdict: {report.verdict.value.upper()}", fill=TIER_COLOURS[report.verdict], font=big)
    y = 40
    for check in report.checks:
        colour = TIER_COLOURS[check.tier]
        draw.ellipse([x, y + 3, x + 11, y + 14], fill=colour)
        label = f"{LABELS.get(check.name, check.name)}: {check.tier.value}"
        draw.text((x + 18, y), label, fill=(235, 235, 235), font=small)
        value = short_value(check)
        if value:
            draw.text((x + 18 + draw.textlength(label, font=small) + 8, y), value, fill=(160, 160, 160), font=small)
        y += 22
    y += 8
    for lines in advice:  # the advice, numbered and wrapped; continuation lines indented under the number
        for index, text in enumerate(lines):
            draw.text((x + (0 if index == 0 else 14), y), text, fill=(250, 250, 250), font=small)
            y += 18
        y += 4
    return np.asarray(canvas)
