"""/portrait: a selfie (or your saved reference) in, identity-locked portraits out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from generation.jobs import PortraitJob
from generation.styles import FRAMINGS, STYLES

if TYPE_CHECKING:
    from bot.app import CloseupBot

STYLE_CHOICES = [app_commands.Choice(name=preset.label, value=name) for name, preset in STYLES.items()][:25]
FRAMING_CHOICES = [app_commands.Choice(name=name.replace("-", " "), value=name) for name in FRAMINGS]


class Portrait(commands.Cog):
    def __init__(self, bot: CloseupBot) -> None:
        self.bot = bot

    @app_commands.command(name="portrait", description="Make AI portraits that look like you from one selfie")
    @app_commands.describe(
        photo="A selfie: face large, sharp, evenly lit (leave out to use your saved reference)",
        prompt="What to make, e.g. 'astronaut on the moon' (keep the face in view)",
        style="The look of the portrait",
        framing="How close the camera is (closer keeps the likeness best)",
        count="How many images (1-4)",
        seed="Repeat a result exactly with the same seed",
        identity_strength="How strongly to hold on to your face (0-1.5; default depends on the style)",
    )
    @app_commands.choices(style=STYLE_CHOICES, framing=FRAMING_CHOICES)
    async def portrait(self, interaction: discord.Interaction, photo: discord.Attachment | None = None,
                       prompt: app_commands.Range[str, 0, 500] = "", style: str = "studio-headshot",
                       framing: str | None = None, count: app_commands.Range[int, 1, 4] = 1,
                       seed: app_commands.Range[int, 0, 2**31 - 1] | None = None,
                       identity_strength: app_commands.Range[float, 0.0, 1.5] | None = None) -> None:
        options = PortraitJob(prompt=prompt, style=style, framing=framing,
                                  count=min(count, self.bot.config.generation.max_images), seed=seed,
                                  identity_strength=identity_strength)
        await self.bot.flows.portrait(interaction, photo, options)


async def setup(bot: CloseupBot) -> None:
    await bot.add_cog(Portrait(bot))
