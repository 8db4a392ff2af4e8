"""bot.components: custom_ids that survive a restart, and views discord.py will not keep in memory."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import discord
import pytest

from bot.components import (
    DRAFT_ACTIONS,
    DYNAMIC_ITEMS,
    MAX_CUSTOM_ID,
    RESULT_ACTIONS,
    CancelJobButton,
    DraftButton,
    ForgetButton,
    ResultButton,
    cancel_view,
    custom_id,
    draft_view,
    forget_view,
    result_view,
)

JOB = "0123456789abcdef0123456789abcdef"
DRAFT = "fedcba9876543210fedcba9876543210"
USER = "123456789012345678"


def on_loop(build: Callable[[], Any]) -> Any:
    """Views are built inside the bot's event loop; build them the same way here."""

    async def inside() -> Any:
        return build()

    return asyncio.run(inside())


def template(cls: type) -> re.Pattern[str]:
    return cls.__discord_ui_compiled_template__  # type: ignore[attr-defined,no-any-return]


def ids(view: discord.ui.View) -> list[str]:
    return [item.custom_id for item in view.children]  # type: ignore[attr-defined]


def actions(view: discord.ui.View) -> list[str]:
    return [item.action for item in view.children]  # type: ignore[attr-defined]


def test_custom_id_joins_parts_under_the_prefix() -> None:
    assert custom_id("reroll", JOB) == f"closeup:reroll:{JOB}"


def test_custom_id_length_limit() -> None:
    longest = custom_id("x" * (MAX_CUSTOM_ID - len("closeup:")))
    assert len(longest) == MAX_CUSTOM_ID == 100
    with pytest.raises(ValueError, match="longer than 100"):
        custom_id("x" * (MAX_CUSTOM_ID - len("closeup:") + 1))


def every_button() -> list[discord.ui.DynamicItem[Any]]:
    return [
        *(ResultButton(action, JOB) for action in RESULT_ACTIONS),
        *(DraftButton(action, DRAFT) for action in DRAFT_ACTIONS),
        CancelJobButton(JOB),
        CancelJobButton(JOB, label="Cancel #2"),
        ForgetButton("yes", USER),
        ForgetButton("no", USER),
        ForgetButton("no", "9" * 20),
    ]


@pytest.mark.parametrize("button", every_button(), ids=lambda b: b.custom_id)
def test_custom_id_round_trips_through_its_template(button: discord.ui.DynamicItem[Any]) -> None:
    cls = type(button)
    value = button.custom_id
    assert value is not None and len(value) <= MAX_CUSTOM_ID
    match = template(cls).fullmatch(value)  # discord.py dispatches with fullmatch
    assert match is not None
    # Exactly one registered class claims it, so the click cannot be routed to the wrong handler.
    assert [other for other in DYNAMIC_ITEMS if template(other).fullmatch(value)] == [cls]
    rebuilt = asyncio.run(cls.from_custom_id(None, button.item, match))  # type: ignore[arg-type]
    assert type(rebuilt) is cls
    assert rebuilt.custom_id == value
    assert rebuilt.item.style == button.item.style
    if button.item.label != "Cancel #2":  # a cancel button's label is free text, not part of its id
        assert rebuilt.item.label == button.item.label
    for attribute in ("action", "job_id", "draft_id", "answer", "user_id"):
        assert getattr(rebuilt, attribute, None) == getattr(button, attribute, None)


def test_round_trip_recovers_the_fields() -> None:
    match = template(ResultButton).fullmatch(f"closeup:closer:{JOB}")
    assert match is not None
    rebuilt = asyncio.run(ResultButton.from_custom_id(None, None, match))  # type: ignore[arg-type]
    assert (rebuilt.action, rebuilt.job_id) == ("closer", JOB)
    match = template(ForgetButton).fullmatch(f"closeup:forget:yes:{USER}")
    assert match is not None
    forget = asyncio.run(ForgetButton.from_custom_id(None, None, match))  # type: ignore[arg-type]
    assert (forget.answer, forget.user_id) == ("yes", USER)
    assert forget.item.style == discord.ButtonStyle.danger


@pytest.mark.parametrize("value", [
    f"closeup:reroll:{JOB.upper()}",
    f"closeup:reroll:{JOB[:-1]}",
    f"closeup:reroll:{JOB}0",
    f"closeup:explode:{JOB}",
    f"other:reroll:{JOB}",
    f"closeup:cancel:{JOB}:extra",
    f"closeup:gen:{DRAFT} ",
    "closeup:forget:maybe:123",
    "closeup:forget:yes:" + "1" * 21,
    "closeup:forget:yes:",
])
def test_templates_reject_foreign_ids(value: str) -> None:
    assert not any(template(cls).fullmatch(value) for cls in DYNAMIC_ITEMS)


def test_buttons_refuse_ids_their_template_cannot_parse() -> None:
    with pytest.raises(ValueError, match="must match the template"):
        ResultButton("reroll", "not-a-job-id")
    with pytest.raises(KeyError):
        ResultButton("explode", JOB)


def test_result_view_has_four_buttons_within_the_limit() -> None:
    view = on_loop(lambda: result_view(JOB))
    assert len(view.children) == 4
    assert all(isinstance(item, ResultButton) for item in view.children)
    assert actions(view) == ["reroll", "vary", "closer", "delete"]
    assert all(len(value) <= MAX_CUSTOM_ID for value in ids(view))
    assert len(set(ids(view))) == 4
    for value in ids(view):
        assert template(ResultButton).fullmatch(value)


@pytest.mark.parametrize(("verdict", "has_crop", "expected"), [
    ("pass", False, ["gen", "drop"]),
    ("pass", True, ["gen", "crop", "drop"]),
    ("warn", False, ["anyway", "drop"]),
    ("warn", True, ["crop", "anyway", "drop"]),
    ("fail", False, ["drop"]),
    ("fail", True, ["crop", "drop"]),
])
def test_draft_view_buttons_per_verdict(verdict: str, has_crop: bool, expected: list[str]) -> None:
    view = on_loop(lambda: draft_view(DRAFT, verdict, has_crop))
    assert actions(view) == expected
    assert ids(view) == [f"closeup:{action}:{DRAFT}" for action in expected]
    assert all(isinstance(item, DraftButton) for item in view.children)
    assert view.is_finished()


def test_cancel_view_caps_at_25_buttons_and_needs_matching_labels() -> None:
    job_ids = [f"{n:032x}" for n in range(30)]
    view = on_loop(lambda: cancel_view(job_ids, [f"#{n}" for n in range(30)]))
    assert len(view.children) == 25
    assert ids(view) == [f"closeup:cancel:{job_id}" for job_id in job_ids[:25]]
    assert [item.item.label for item in view.children] == [f"#{n}" for n in range(25)]  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        on_loop(lambda: cancel_view(job_ids[:2], ["only one"]))


def test_forget_view() -> None:
    view = on_loop(lambda: forget_view(USER))
    assert ids(view) == [f"closeup:forget:yes:{USER}", f"closeup:forget:no:{USER}"]


@pytest.mark.parametrize("build", [
    lambda: result_view(JOB),
    lambda: draft_view(DRAFT, "pass", True),
    lambda: cancel_view([JOB], ["Cancel"]),
    lambda: forget_view(USER),
], ids=["result", "draft", "cancel", "forget"])
def test_views_are_finished_so_discord_py_does_not_store_them(build: Callable[[], discord.ui.View]) -> None:
    view = on_loop(build)
    assert view.timeout is None
    assert view.is_persistent()
    # discord.py stores a sent view only when ``not view.is_finished() and view.is_dispatchable()``.
    assert view.is_dispatchable()
    assert view.is_finished()
    assert not view.is_dispatching()
