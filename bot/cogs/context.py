"""Swapping the reference without a command: the "Use as reference" menu and replies with a photo.

Without the message-content intent Discord only shows the bot attachments of messages that mention
it (and DMs); a message context menu needs no intent at all, so both paths are offered.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from bot.app import CloseupBot

log = logging.getLogger(__name__)


class Context(commands.Cog):
    def __init__(self, bot: CloseupBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Use as reference", callback=self.use_as_reference)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def use_as_reference(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self.bot.flows.use_as_reference(interaction, message)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.reference is None or not message.attachments:
            return
        try:
            await self.bot.flows.reply_with_photo(message)
        except Exception:
            log.exception("handling a reply with a photo failed")
            with contextlib.suppress(discord.HTTPException):
                await message.reply("Something went wrong on my side; please try again.", mention_author=False)


async def setup(bot: CloseupBot) -> None:
    await bot.add_cog(Context(bot))
