"""/reference set|add|show|delete: the photos of you that /portrait uses when you attach none."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import upload_file
from bot.store import MAX_REFERENCES, NotFound

if TYPE_CHECKING:
    from bot.app import CloseupBot



def _thumbnail(data: bytes) -> bytes:
    """A small JPEG of a stored photo, so `show` never trips the upload limit."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        im.thumbnail((384, 384))
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=85)
        return out.getvalue()


class References(commands.GroupCog, group_name="reference", group_description="Your saved reference photos"):
    def __init__(self, bot: CloseupBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="set", description="Make this photo your only reference (quality-checked first)")
    @app_commands.describe(photo="A selfie: face large, sharp, evenly lit")
    async def set_(self, interaction: discord.Interaction, photo: discord.Attachment) -> None:
        await self.bot.flows.save_reference(interaction, photo, replace=True)

    @app_commands.command(name="add", description="Add another photo of you (up to 5; more angles, better likeness)")
    @app_commands.describe(photo="Another selfie of the same person")
    async def add(self, interaction: discord.Interaction, photo: discord.Attachment) -> None:
        await self.bot.flows.save_reference(interaction, photo, replace=False)

    @app_commands.command(name="show", description="See your saved reference photos and their quality verdicts")
    async def show(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        refs = await self.bot.store.references(str(interaction.user.id))
        if not refs:
            await interaction.edit_original_response(
                content="You have no saved reference photos. Save one with `/reference set`.")
            return
        lines, files = [], []
        for number, ref in enumerate(refs, start=1):
            advice = f" — {ref.advice[0]}" if ref.advice else ""
            lines.append(f"`{number}` **{ref.verdict}**{advice}")
            data = await self.bot.store.reference_bytes(str(interaction.user.id), ref.ref_id)
            files.append(upload_file(await self.bot.photos.in_thread(_thumbnail, data), f"reference-{number}.jpg"))
        embed = discord.Embed(title="Your reference photos", description="\n".join(lines),
                              colour=discord.Colour.blurple())
        embed.set_footer(text="Delete one with /reference delete number:<n> · delete everything with /forget")
        await interaction.edit_original_response(embed=embed, attachments=files)

    @app_commands.command(name="delete", description="Delete one of your saved reference photos")
    @app_commands.describe(number="Which photo, as numbered in /reference show")
    async def delete(self, interaction: discord.Interaction,
                     number: app_commands.Range[int, 1, MAX_REFERENCES]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user_id = str(interaction.user.id)
        refs = await self.bot.store.references(user_id)
        if number > len(refs):
            await interaction.edit_original_response(
                content=f"You have {len(refs)} saved photo(s); there is no number {number}.")
            return
        try:
            await self.bot.store.delete_reference(user_id, refs[number - 1].ref_id)
        except NotFound:
            await interaction.edit_original_response(content="That photo was already deleted.")
            return
        await interaction.edit_original_response(content=f"Deleted reference photo {number}.")


async def setup(bot: CloseupBot) -> None:
    await bot.add_cog(References(bot))
