"""How things look in Discord: embeds and message text for reports, progress, results and the queue.

Pure functions from data to discord.py objects, so they are easy to test and never touch the network.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import discord

from bot.imaging import PhotoCheck
from bot.text import duration, progress_bar, sanitize
from generation.jobs import EventKind, JobEvent
from generation.prompts import PromptWarning

COLOURS = {"pass": discord.Colour.green(), "warn": discord.Colour.gold(), "fail": discord.Colour.red()}
VERDICT_TITLES = {"pass": "✅ Great photo", "warn": "⚠️ Usable, could be better", "fail": "❌ This photo won't work"}
AI_LABEL = "AI-generated image"
PREVIEW_NAME = "preview.png"


def upload_file(data: bytes, filename: str) -> discord.File:
    """Bytes as a file to upload with a message."""
    return discord.File(io.BytesIO(data), filename=filename)


def consent_notice(retention_days: float) -> str:
    """Shown once, the first time someone uses the bot."""
    days = f"{retention_days:g} day{'s' if retention_days != 1 else ''}"
    return ("Only use photos of **yourself**, or of someone who agreed to it. Every portrait is AI-generated and "
            f"labelled as such. Your photos and portraits are kept for {days} after their last use, or until you "
            "run `/forget`.")


def report_embed(check: PhotoCheck, warnings: Sequence[PromptWarning] = (), *, saved: str = "",
                 notice: str = "") -> discord.Embed:
    """The quality report: verdict, at most three pieces of advice, the annotated preview."""
    embed = discord.Embed(title=VERDICT_TITLES.get(check.verdict, check.verdict), colour=COLOURS.get(check.verdict))
    if notice:
        embed.add_field(name="Before you start", value=notice, inline=False)
    if check.messages:
        embed.description = "\n".join(f"• {message}" for message in check.messages[:3])
    else:
        embed.description = "Face is large, sharp and well lit: the likeness will be at its best."
    if check.notes:
        embed.add_field(name="I fixed", value="\n".join(f"• {n}" for n in check.notes[:3]), inline=False)
    if warnings:
        embed.add_field(name="About your prompt", value="\n".join(f"• {w.message}" for w in warnings[:3])[:1024],
                        inline=False)
    if saved:
        embed.add_field(name="Saved", value=saved, inline=False)
    embed.set_image(url=f"attachment://{PREVIEW_NAME}")
    embed.set_footer(text="Green box: your face. Dashed square: the crop I suggest.")
    return embed


def progress_text(event: JobEvent | None, prompt: str, owner_id: str) -> str:
    """One line that says where the job is: queue position → ETA → a progress bar with step counts."""
    head = f"🎨 <@{owner_id}>'s portrait" + (f" — *{sanitize(prompt, 120)}*" if prompt else "")
    if event is None or event.kind == EventKind.QUEUED:
        if event is None or event.position is None:
            return f"{head}\nQueued."
        ahead = "next up" if event.position == 0 else f"position {event.position + 1} in the queue"
        return f"{head}\n⏳ Queued — {ahead}, starts in about {duration(event.eta_s)}."
    if event.kind == EventKind.STARTED:
        attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        return f"{head}\n🖌️ Generating{attempt}…"
    if event.kind == EventKind.PROGRESS:
        return f"{head}\n🖌️ {progress_bar(event.step or 0, event.total or 1)}"
    if event.kind == EventKind.CANCELLED:
        return f"{head}\n🛑 Cancelled. {sanitize(event.reason, 300)}".rstrip()
    if event.kind == EventKind.FAILED:
        return f"{head}\n❌ It didn't work: {sanitize(event.reason, 500)}"
    return f"{head}\n✅ Done."


def likeness_line(number: int, likeness: float | None, same_person: bool | None, face_found: bool,
                  refined: bool) -> str:
    if not face_found or likeness is None:
        verdict = "no face found in the result"
    else:
        verdict = f"likeness **{likeness:.2f}** " + ("✓ looks like you" if same_person else "✗ weak likeness")
    return f"`{number}` {verdict}" + (" · face re-rendered" if refined else "")


def results_embed(lines: Sequence[str], prompt: str, *, reencoded: bool, note: str = "") -> discord.Embed:
    embed = discord.Embed(title="Your portraits", colour=discord.Colour.blurple(), description="\n".join(lines))
    if prompt:
        embed.add_field(name="Prompt", value=sanitize(prompt, 1000), inline=False)
    notes = []
    if reencoded:
        notes.append("Some images were compressed to fit Discord's upload limit.")
    if note:  # what the worker said about the results (e.g. fewer images after running out of GPU memory)
        notes.append(sanitize(note, 300))
    if notes:
        embed.add_field(name="Note", value=" ".join(notes), inline=False)
    embed.set_footer(text=f"{AI_LABEL} · Likeness: 0-1 face similarity to your reference")
    return embed


WARMING_UP = "The portrait engine is warming up (loading its models); portraits start as soon as it is ready."


def queue_embed(lines: Sequence[str], warming_up: bool = False) -> discord.Embed:
    head = [WARMING_UP, ""] if warming_up else []
    if not lines:
        return discord.Embed(title="Your queue",
                             description="\n".join([*head, "You have no portraits waiting or in progress."]))
    return discord.Embed(title="Your queue", description="\n".join([*head, *lines]), colour=discord.Colour.blurple())
