"""/help: how to take a reference photo that keeps the likeness, with a picture of good and bad framing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.imaging import make_example_framing_png
from bot.render import upload_file

if TYPE_CHECKING:
    from bot.app import CloseupBot

TIPS = (
    "**Face big in the frame** — hold the phone at arm's length; your face should fill about half the picture.",
    "**Even light on your face** — face a window; no bright light behind you, no hard shadow on one side.",
    "**Sharp** — hold still, wipe the lens; no motion blur.",
    "**Look at the camera**, eyes open, no sunglasses, nothing covering the face.",
    "**Only you** in the photo. No filters or heavy makeup.",
)
HOW = (
    "`/portrait photo:<selfie>` checks your photo, shows what to fix, then makes portraits with a likeness "
    "score each. Without a photo it uses your saved reference (`/reference set`).\n"
    "**Swap the reference:** reply to one of my portrait messages with a new photo and **mention me** "
    "(@closeup) in the reply — I only see photos in messages that mention me. Or right-click your own "
    "photo → *Apps* → **Use as reference**.\n"
    "`/queue` shows your jobs with cancel buttons. `/forget` deletes everything I stored about you."
)


class Help(commands.Cog):
    def __init__(self, bot: CloseupBot) -> None:
        self.bot = bot
        self._example: bytes | None = None

    @app_commands.command(name="help", description="How to take a selfie that gives the best likeness")
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self._example is None:
            self._example = await self.bot.photos.in_thread(make_example_framing_png)
        embed = discord.Embed(title="Getting portraits that look like you", colour=discord.Colour.blurple(),
                              description="Bigger, clearer faces capture identity better.\n\n" + "\n".join(
                                  f"• {tip}" for tip in TIPS))
        embed.add_field(name="How it works", value=HOW, inline=False)
        embed.set_image(url="attachment://framing.png")
        embed.set_footer(text="Only use photos of yourself, or of someone who agreed. Results are AI-generated.")
        await interaction.edit_original_response(
            embed=embed, attachments=[upload_file(self._example, "framing.png")])


async def setup(bot: CloseupBot) -> None:
    await bot.add_cog(Help(bot))
