"""bot.text: user text made harmless, progress bars and durations."""

from __future__ import annotations

import re

import pytest

from bot.text import duration, progress_bar, sanitize

# What Discord turns into a ping: @everyone / @here, and <@id>, <@!id>, <@&role>, <#channel>.
PING = re.compile(r"@everyone|@here|<(@[!&]?|#)\d+>")


def test_sanitize_defuses_pings_and_escapes_markdown() -> None:
    out = sanitize("@everyone hi <@123> **bold**")
    assert not PING.search(out)
    assert "<@123>" not in out
    assert "123" in out  # still readable as typed
    assert "**" not in out
    assert r"\*\*bold\*\*" in out


@pytest.mark.parametrize("mention", ["<@!42>", "<@&42>", "<#42>", "@here"])
def test_sanitize_defuses_every_mention_form(mention: str) -> None:
    out = sanitize(f"hello {mention} there")
    assert not PING.search(out)
    assert mention not in out


@pytest.mark.parametrize(("text", "escaped"), [
    ("# Big heading", r"\# Big heading"),
    ("> quote", r"\> quote"),
    ("- item", r"\- item"),
    ("`code`", r"\`code\`"),
    ("~~strike~~", r"\~\~strike\~\~"),
    ("||spoiler||", r"\|\|spoiler\|\|"),
    ("__under__", r"\_\_under\_\_"),
    ("[click](https://evil.example)", r"\[click](https://evil.example)"),
])
def test_sanitize_escapes_markdown(text: str, escaped: str) -> None:
    assert sanitize(text) == escaped


def test_sanitize_collapses_newlines_and_whitespace() -> None:
    out = sanitize("  line one\n\n# line two\r\n\tend  ")
    assert "\n" not in out and "\r" not in out and "\t" not in out
    assert out.startswith("line one ")
    assert "  " not in out


def test_sanitize_bounds_length_with_an_ellipsis() -> None:
    out = sanitize("a" * 500, limit=50)
    assert len(out) == 50
    assert out.endswith("…")
    assert sanitize("short", limit=50) == "short"
    assert sanitize("a" * 50, limit=50) == "a" * 50


def test_sanitize_truncation_does_not_leave_a_dangling_escape() -> None:
    # Escaping doubles "*" to "\*"; a cut between "\" and "*" must not end on a lone backslash.
    out = sanitize("x" * 8 + "*" * 10, limit=10)
    assert len(out) <= 10
    assert out.endswith("…")
    assert not out[:-1].endswith("\\")


def test_progress_bar() -> None:
    assert progress_bar(0, 10, width=10) == "░" * 10 + " 0/10 steps"
    assert progress_bar(5, 10, width=10) == "▓" * 5 + "░" * 5 + " 5/10 steps"
    assert progress_bar(10, 10, width=10) == "▓" * 10 + " 10/10 steps"


def test_progress_bar_clamps_out_of_range_input() -> None:
    assert progress_bar(15, 10, width=4) == "▓▓▓▓ 10/10 steps"
    assert progress_bar(-3, 10, width=4) == "░░░░ 0/10 steps"
    assert progress_bar(0, 0, width=4) == "░░░░ 0/1 steps"
    assert len(progress_bar(7, 30).split(" ")[0]) == 16


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "unknown"),
    (-5, "0 s"),
    (0, "0 s"),
    (59.4, "59 s"),
    (60, "1 min"),
    (61, "1 min 01 s"),
    (125, "2 min 05 s"),
    (3599, "59 min 59 s"),
    (3600, "1 h 00 min"),
    (3 * 3600 + 7 * 60 + 30, "3 h 07 min"),
])
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text
