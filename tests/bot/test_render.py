"""bot.render: embeds and message text built from plain data, checked through their Discord payloads."""

from __future__ import annotations

import re

import discord

from bot.imaging import PhotoCheck
from bot.render import (
    AI_LABEL,
    PREVIEW_NAME,
    likeness_line,
    progress_text,
    queue_embed,
    report_embed,
    results_embed,
)
from generation.jobs import EventKind, JobEvent
from generation.prompts import PromptWarning

PING = re.compile(r"@everyone|@here|<(@[!&]?|#)\d+>")
JOB = "0123456789abcdef0123456789abcdef"


def photo_check(verdict: str, messages: tuple[str, ...] = (), notes: tuple[str, ...] = ()) -> PhotoCheck:
    return PhotoCheck(verdict=verdict, messages=messages, notes=notes, faces_found=1, preview_png=b"png",
                      crop_jpeg=None, photo=b"jpeg", checks=())


def fields(embed: discord.Embed) -> dict[str, str]:
    return {field.name: field.value for field in embed.fields}


def test_report_embed_pass_with_no_advice() -> None:
    embed = report_embed(photo_check("pass"))
    assert embed.title == "✅ Great photo"
    assert embed.colour == discord.Colour.green()
    assert embed.description and "Face is large" in embed.description
    assert embed.image.url == f"attachment://{PREVIEW_NAME}"
    assert embed.footer.text
    assert fields(embed) == {}


def test_report_embed_shows_at_most_three_pieces_of_advice_and_notes() -> None:
    messages = tuple(f"advice {n}" for n in range(5))
    notes = tuple(f"note {n}" for n in range(4))
    embed = report_embed(photo_check("warn", messages, notes))
    assert embed.title == "⚠️ Usable, could be better"
    assert embed.colour == discord.Colour.gold()
    assert embed.description == "• advice 0\n• advice 1\n• advice 2"
    assert fields(embed)["I fixed"] == "• note 0\n• note 1\n• note 2"


def test_report_embed_fail_with_prompt_warnings_and_saved() -> None:
    warnings = [PromptWarning("w", f"warning {n} " + "x" * 600) for n in range(4)]
    embed = report_embed(photo_check("fail", ("too dark",)), warnings, saved="Saved as your reference.")
    assert embed.title == "❌ This photo won't work"
    assert embed.colour == discord.Colour.red()
    found = fields(embed)
    assert found["About your prompt"].startswith("• warning 0 ")
    assert len(found["About your prompt"]) <= 1024  # Discord's field value limit
    assert "warning 3" not in found["About your prompt"]
    assert found["Saved"] == "Saved as your reference."
    assert len(embed) <= 6000
    embed.to_dict()  # serialises


def test_report_embed_unknown_verdict_still_renders() -> None:
    embed = report_embed(photo_check("odd"))
    assert embed.title == "odd"
    assert embed.colour is None


def test_progress_text_queued_states() -> None:
    assert progress_text(None, "", "42") == "🎨 <@42>'s portrait\nQueued."
    no_position = JobEvent(EventKind.QUEUED, JOB)
    assert progress_text(no_position, "", "42").endswith("\nQueued.")
    next_up = progress_text(JobEvent(EventKind.QUEUED, JOB, position=0, eta_s=30), "", "42")
    assert "next up" in next_up and "30 s" in next_up
    later = progress_text(JobEvent(EventKind.QUEUED, JOB, position=2, eta_s=125), "", "42")
    assert "position 3 in the queue" in later and "2 min 05 s" in later


def test_progress_text_running_and_finished_states() -> None:
    started = progress_text(JobEvent(EventKind.STARTED, JOB, attempt=1), "", "42")
    assert "Generating" in started and "attempt" not in started
    assert "(attempt 2)" in progress_text(JobEvent(EventKind.STARTED, JOB, attempt=2), "", "42")
    progress = progress_text(JobEvent(EventKind.PROGRESS, JOB, step=5, total=20), "", "42")
    assert progress.endswith(" 5/20 steps")
    assert progress_text(JobEvent(EventKind.PROGRESS, JOB), "", "42").endswith(" 0/1 steps")
    assert progress_text(JobEvent(EventKind.CANCELLED, JOB), "", "42").endswith("🛑 Cancelled.")
    cancelled = progress_text(JobEvent(EventKind.CANCELLED, JOB, reason="by you"), "", "42")
    assert cancelled.endswith("🛑 Cancelled. by you")
    assert progress_text(JobEvent(EventKind.DONE, JOB), "", "42").endswith("✅ Done.")


def test_progress_text_sanitizes_prompt_and_reason() -> None:
    text = progress_text(JobEvent(EventKind.FAILED, JOB, reason="**boom** @everyone"), "@here <@7> *me*", "42")
    head, body = text.split("\n")
    assert head.startswith("🎨 <@42>'s portrait — *")  # the owner is mentioned on purpose
    assert not PING.search(head.replace("<@42>", ""))
    assert not PING.search(body)
    assert r"\*me\*" in head
    assert body.startswith("❌ It didn't work: ") and r"\*\*boom\*\*" in body


def test_progress_text_bounds_a_long_prompt() -> None:
    text = progress_text(None, "p" * 1000, "42")
    assert len(text) < 200
    assert "…" in text


def test_likeness_line() -> None:
    assert likeness_line(1, 0.834, True, True, False) == "`1` likeness **0.83** ✓ looks like you"
    assert likeness_line(2, 0.2, False, True, True) == "`2` likeness **0.20** ✗ weak likeness · face re-rendered"
    assert likeness_line(3, None, None, True, False) == "`3` no face found in the result"
    assert likeness_line(4, 0.9, True, False, False) == "`4` no face found in the result"


def test_results_embed() -> None:
    embed = results_embed(["line 1", "line 2"], "@everyone **me** as a knight", reencoded=True,
                          note="The GPU ran out of memory making 4 images at once, so this is one. @everyone")
    assert embed.title == "Your portraits"
    assert embed.description == "line 1\nline 2"
    found = fields(embed)
    assert not PING.search(found["Prompt"])
    assert r"\*\*me\*\*" in found["Prompt"]
    assert "compressed" in found["Note"] and "ran out of memory making 4 images" in found["Note"]
    assert not PING.search(found["Note"])  # the worker's words are sanitised like the prompt
    assert embed.footer.text and AI_LABEL in embed.footer.text


def test_results_embed_without_prompt_or_notes() -> None:
    embed = results_embed(["only"], "", reencoded=False)
    assert fields(embed) == {}
    assert embed.footer.text and AI_LABEL in embed.footer.text


def test_results_embed_prompt_fits_a_field() -> None:
    embed = results_embed([], "*" * 5000, reencoded=False)
    assert len(fields(embed)["Prompt"]) <= 1024


def test_queue_embed() -> None:
    empty = queue_embed([])
    assert empty.title == "Your queue"
    assert empty.description and "no portraits" in empty.description
    full = queue_embed(["a", "b"])
    assert full.description == "a\nb"
    assert full.colour == discord.Colour.blurple()
