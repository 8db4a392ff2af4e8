"""A contact sheet: every portrait of a job side by side, labelled with its seed and likeness."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from generation.drawing import label_font
from generation.engine import Portrait

THUMB = 384
LABEL = 44
GOOD, BAD, NONE = (46, 160, 67), (215, 48, 48), (140, 140, 140)


def label(portrait: Portrait) -> tuple[str, tuple[int, int, int]]:
    if portrait.likeness is None:
        return f"seed {portrait.seed} · no face found", NONE
    verdict = "match" if portrait.likeness.same_person else "no match"
    refined = " · re-rendered" if portrait.refined else ""
    colour = GOOD if portrait.likeness.same_person else BAD
    return f"seed {portrait.seed} · likeness {portrait.likeness.score:.2f} · {verdict}{refined}", colour


def contact_sheet(portraits: Sequence[Portrait], columns: int | None = None) -> np.ndarray:
    """RGB uint8 grid of thumbnails with a caption under each."""
    if not portraits:
        raise ValueError("no portraits to lay out")
    columns = columns or min(len(portraits), 4)
    rows = math.ceil(len(portraits) / columns)
    sheet = Image.new("RGB", (columns * THUMB, rows * (THUMB + LABEL)), (32, 34, 37))
    draw = ImageDraw.Draw(sheet)
    font = label_font(15)
    for index, portrait in enumerate(portraits):
        x, y = (index % columns) * THUMB, (index // columns) * (THUMB + LABEL)
        thumb = Image.fromarray(portrait.image)
        thumb.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        text, colour = label(portrait)
        draw.rectangle([x + 8, y + THUMB + 14, x + 20, y + THUMB + 26], fill=colour)
        draw.text((x + 26, y + THUMB + 11), text, fill=(235, 235, 235), font=font)
    return np.asarray(sheet)
