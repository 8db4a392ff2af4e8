"""Buttons that keep working after a restart: all state lives in the ``custom_id``, data in the store.

discord.py routes a click to a ``DynamicItem`` by matching its ``custom_id`` against a template, so
no view has to be in memory: the bot registers the classes once and any old message's buttons work.
Views are built, then stopped before sending, so discord.py does not keep one per message forever.
Each callback only parses the id and hands over to ``bot.flows`` (bot/flows.py), where the logic is.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from bot.host import ButtonHost, ComponentActions

PREFIX = "closeup"
MAX_CUSTOM_ID = 100  # Discord's limit

# action name → (label, style, emoji) for the buttons on a finished portrait
RESULT_ACTIONS: dict[str, tuple[str, discord.ButtonStyle, str]] = {
    "reroll": ("Re-roll", discord.ButtonStyle.primary, "🎲"),
    "vary": ("Variations", discord.ButtonStyle.secondary, "🔀"),
    "closer": ("Closer framing", discord.ButtonStyle.secondary, "🔍"),
    "delete": ("Delete", discord.ButtonStyle.danger, "🗑️"),
}
# action name → (label, style) for the buttons under a photo's quality report
DRAFT_ACTIONS: dict[str, tuple[str, discord.ButtonStyle]] = {
    "gen": ("Generate", discord.ButtonStyle.success),
    "crop": ("Use suggested crop", discord.ButtonStyle.primary),
    "anyway": ("Generate anyway", discord.ButtonStyle.secondary),
    "drop": ("Cancel", discord.ButtonStyle.danger),
}

_ID = r"[0-9a-f]{32}"
_Button = discord.ui.DynamicItem[discord.ui.Button[Any]]


def custom_id(*parts: str) -> str:
    value = ":".join((PREFIX, *parts))
    if len(value) > MAX_CUSTOM_ID:
        raise ValueError(f"custom_id longer than {MAX_CUSTOM_ID}: {value!r}")
    return value


def _flows(interaction: discord.Interaction[Any]) -> ComponentActions:
    bot: ButtonHost = interaction.client  # type: ignore[assignment]
    return bot.flows


class ResultButton(_Button, template=rf"{PREFIX}:(?P<action>reroll|vary|closer|delete):(?P<job>{_ID})"):
    def __init__(self, action: str, job_id: str) -> None:
        label, style, emoji = RESULT_ACTIONS[action]
        super().__init__(discord.ui.Button(label=label, style=style, emoji=emoji, custom_id=custom_id(action, job_id)))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ResultButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _flows(interaction).result_action(interaction, self.action, self.job_id)


class DraftButton(_Button, template=rf"{PREFIX}:(?P<action>gen|crop|anyway|drop):(?P<draft>{_ID})"):
    def __init__(self, action: str, draft_id: str) -> None:
        label, style = DRAFT_ACTIONS[action]
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id(action, draft_id)))
        self.action = action
        self.draft_id = draft_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> DraftButton:
        return cls(match["action"], match["draft"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _flows(interaction).draft_action(interaction, self.action, self.draft_id)


class CancelJobButton(_Button, template=rf"{PREFIX}:(?P<who>cancel|admincancel):(?P<job>{_ID})"):
    """Cancel one job: its owner's (/queue), or a server admin's (/settings queue, Manage Server checked on
    every click)."""

    def __init__(self, job_id: str, label: str = "Cancel", admin: bool = False) -> None:
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.danger,
                                           custom_id=custom_id("admincancel" if admin else "cancel", job_id)))
        self.job_id = job_id
        self.admin = admin

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> CancelJobButton:
        return cls(match["job"], admin=match["who"] == "admincancel")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        flows = _flows(interaction)
        if self.admin:
            await flows.cancel_job_as_admin(interaction, self.job_id)
        else:
            await flows.cancel_job(interaction, self.job_id)


class ForgetButton(_Button, template=rf"{PREFIX}:forget:(?P<answer>yes|no):(?P<user>\d{{1,20}})"):
    def __init__(self, answer: str, user_id: str) -> None:
        yes = answer == "yes"
        super().__init__(discord.ui.Button(
            label="Yes, delete everything" if yes else "Keep my data",
            style=discord.ButtonStyle.danger if yes else discord.ButtonStyle.secondary,
            custom_id=custom_id("forget", answer, user_id)))
        self.answer = answer
        self.user_id = user_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ForgetButton:
        return cls(match["answer"], match["user"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _flows(interaction).forget_answer(interaction, self.answer, self.user_id)


DYNAMIC_ITEMS = (ResultButton, DraftButton, CancelJobButton, ForgetButton)


def stopped(view: discord.ui.View) -> discord.ui.View:
    """Dynamic items dispatch by custom_id; a stopped view is not kept in memory per message."""
    view.stop()
    return view


def result_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in RESULT_ACTIONS:
        view.add_item(ResultButton(action, job_id))
    return stopped(view)


def draft_view(draft_id: str, verdict: str, has_crop: bool) -> discord.ui.View:
    """pass → Generate; warn → Generate anyway; fail → only the crop (when there is one); always Cancel."""
    view = discord.ui.View(timeout=None)
    if verdict == "pass":
        view.add_item(DraftButton("gen", draft_id))
    if has_crop:
        view.add_item(DraftButton("crop", draft_id))
    if verdict == "warn":
        view.add_item(DraftButton("anyway", draft_id))
    view.add_item(DraftButton("drop", draft_id))
    return stopped(view)


def cancel_view(job_ids: list[str], labels: list[str], *, admin: bool = False) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for job_id, label in list(zip(job_ids, labels, strict=True))[:25]:
        view.add_item(CancelJobButton(job_id, label, admin=admin))
    return stopped(view)


def forget_view(user_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton("yes", user_id))
    view.add_item(ForgetButton("no", user_id))
    return stopped(view)
