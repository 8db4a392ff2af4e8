"""/queue: your waiting and running portraits, with their position, ETA and a cancel button each."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.components import cancel_view
from bot.render import queue_embed
from bot.text import duration, sanitize
from generation.jobs import JobState

if TYPE_CHECKING:
    from bot.app import CloseupBot


class Queue(commands.Cog):
    def __init__(self, bot: CloseupBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="Your portraits in the queue, with cancel buttons")
    async def queue(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = await self.bot.queue.jobs_for(str(interaction.user.id))
        lines, ids, labels = [], [], []
        for number, job in enumerate(jobs, start=1):
            prompt = sanitize(job.prompt, 60) or "portrait"
            if job.state == JobState.RUNNING:
                where = "generating now"
            else:
                where = f"position {(job.position or 0) + 1}, starts in about {duration(job.eta_s)}"
            lines.append(f"`{number}` {prompt} — {where}")
            ids.append(job.job_id)
            labels.append(f"Cancel {number}")
        kwargs = {"view": cancel_view(ids, labels)} if ids else {}
        warming = self.bot.engine_state() == "warming"
        await interaction.edit_original_response(embed=queue_embed(lines, warming_up=warming), **kwargs)


async def setup(bot: CloseupBot) -> None:
    await bot.add_cog(Queue(bot))
