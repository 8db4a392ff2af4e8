"""/forget: delete everything stored about you, after a confirmation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from bot.app import CloseupBot


class Privacy(commands.Cog):
    def __init__(self, bot: CloseupBot) -> None:
        self.bot = bot

    @app_commands.command(name="forget", description="Delete all your photos, face data, jobs and portraits")
    async def forget(self, interaction: discord.Interaction) -> None:
        await self.bot.flows.ask_forget(interaction)


async def setup(bot: CloseupBot) -> None:
    await bot.add_cog(Privacy(bot))
