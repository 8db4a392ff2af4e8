"""Text the bot shows people: user input made harmless, progress bars, durations."""

from __future__ import annotations

import re

import discord

_ZERO_WIDTH = "\u200b"
_MENTION = re.compile(r"<(@[!&]?|#)\d+>")


def sanitize(text: str, limit: int = 200) -> str:
    """User text safe to echo: no pings (@everyone, <@id>), no markdown, no newlines, bounded length.

    Messages are also sent with ``allowed_mentions=none``; this is the second belt, so a quoted
    prompt reads as typed instead of turning into a mention or a heading.
    """
    text = " ".join(text.split())
    text = _MENTION.sub(lambda m: m.group(0).replace("<", "<" + _ZERO_WIDTH), text)
    text = text.replace("@everyone", "@" + _ZERO_WIDTH + "everyone").replace("@here", "@" + _ZERO_WIDTH + "here")
    text = discord.utils.escape_markdown(text, as_needed=False)
    if len(text) > limit:
        text = text[: limit - 1].rstrip("\\") + "…"
    return text


def progress_bar(step: int, total: int, width: int = 16) -> str:
    total = max(total, 1)
    step = min(max(step, 0), total)
    filled = round(width * step / total)
    return "▓" * filled + "░" * (width - filled) + f" {step}/{total} steps"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
