"""The font for text drawn onto images (the check preview, contact sheets, the bot's help pictures).

One place, so every picture closeup draws uses the same lettering and the same fallback.
"""

from __future__ import annotations

from functools import cache

from PIL import ImageFont


@cache
def label_font(size: int, bold: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu when the system has it (crisp), else Pillow's bundled font; never a download."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
    except OSError:
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow without FreeType: fixed-size bitmap font
            return ImageFont.load_default()
