"""/settings: per-server settings for people with Manage Server — channels, limits, content policy.

The permission is declared to Discord (so the command is hidden from others by default) AND checked
on every call, because server owners can override command permissions in their integration settings.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.components import cancel_view
from bot.store import GuildSettings
from bot.text import duration, sanitize
from generation.jobs import JobState

if TYPE_CHECKING:
    from bot.app import CloseupBot

POLICY_CHOICES = [
    app_commands.Choice(name="block: refuse explicit prompts", value="block"),
    app_commands.Choice(name="warn: remove explicit words and say so", value="warn"),
    app_commands.Choice(name="allow (the host's setting still applies)", value="allow"),
]
MAX_CHANNELS = 25


def describe(settings: GuildSettings, host_per_user: int, host_per_guild: int, host_policy: str) -> str:
    channels = ", ".join(f"<#{c}>" for c in settings.allowed_channels) or "every channel"
    per_user = settings.per_user if settings.per_user is not None else f"{host_per_user} (host default)"
    per_guild = settings.per_guild if settings.per_guild is not None else f"{host_per_guild} (host default)"
    policy = settings.nsfw_policy or f"{host_policy} (host default)"
    quota = f"{settings.daily_quota} per person" if settings.daily_quota is not None else "none"
    return (f"**Channels:** {channels}\n**Queued portraits per person:** {per_user}\n"
            f"**Queued portraits for the server:** {per_guild}\n**Content policy:** {policy}\n"
            f"**Daily quota:** {quota}")


STATS_DAYS = 7
EMBED_DESCRIPTION_LIMIT = 4096


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="settings", group_description="Server settings for closeup (admins)"):
    def __init__(self, bot: CloseupBot) -> None:
        self.bot = bot
        super().__init__()

    async def _allowed(self, interaction: discord.Interaction) -> GuildSettings | None:
        """Defers, checks Manage Server, and returns the server's settings (None after refusing)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.guild_id is None:
            await interaction.edit_original_response(content="Settings belong to a server; run this in one.")
            return None
        if not interaction.permissions.manage_guild:
            await interaction.edit_original_response(
                content="Only people with the **Manage Server** permission can change closeup's settings.")
            return None
        return await self.bot.store.guild_settings(str(interaction.guild_id))

    async def _save(self, interaction: discord.Interaction, settings: GuildSettings, done: str) -> None:
        await self.bot.store.set_guild_settings(settings)
        q, g = self.bot.config.queue, self.bot.config.generation
        await interaction.edit_original_response(
            content=f"{done}\n\n{describe(settings, q.per_user, q.per_guild, g.nsfw_policy)}")

    @app_commands.command(name="show", description="Show closeup's settings for this server")
    async def show(self, interaction: discord.Interaction) -> None:
        settings = await self._allowed(interaction)
        if settings is not None:
            q, g = self.bot.config.queue, self.bot.config.generation
            await interaction.edit_original_response(
                content=describe(settings, q.per_user, q.per_guild, g.nsfw_policy))

    @app_commands.command(name="channel", description="Allow or disallow /portrait in a channel")
    @app_commands.describe(channel="The channel", allowed="True: portraits may be made there")
    async def channel(self, interaction: discord.Interaction, channel: discord.TextChannel, allowed: bool) -> None:
        settings = await self._allowed(interaction)
        if settings is None:
            return
        channels = [c for c in settings.allowed_channels if c != str(channel.id)]
        if allowed:
            if len(channels) >= MAX_CHANNELS:
                await interaction.edit_original_response(content=f"At most {MAX_CHANNELS} channels can be listed.")
                return
            channels.append(str(channel.id))
        note = "" if channels else " With no channel listed, portraits can be made in every channel."
        await self._save(interaction, dataclasses.replace(settings, allowed_channels=tuple(channels)),
                         f"{'Allowed' if allowed else 'Removed'} <#{channel.id}>.{note}")

    @app_commands.command(name="limits", description="Queued portraits per person and for the whole server")
    @app_commands.describe(per_user="Per person (leave out: host default)",
                           per_guild="For the whole server (leave out: host default)")
    async def limits(self, interaction: discord.Interaction, per_user: app_commands.Range[int, 1, 100] | None = None,
                     per_guild: app_commands.Range[int, 1, 10000] | None = None) -> None:
        settings = await self._allowed(interaction)
        if settings is not None:
            await self._save(interaction, dataclasses.replace(settings, per_user=per_user, per_guild=per_guild),
                             "Limits updated. The host's limits still apply when they are lower.")

    @app_commands.command(name="quota", description="Portraits one person may ask for per day on this server")
    @app_commands.describe(per_person="Per person per 24 hours (leave out: no quota)")
    async def quota(self, interaction: discord.Interaction,
                    per_person: app_commands.Range[int, 1, 1000] | None = None) -> None:
        settings = await self._allowed(interaction)
        if settings is not None:
            done = (f"Each person may ask for {per_person} portrait(s) in any 24 hours." if per_person
                    else "No daily quota: the queue limits still apply.")
            await self._save(interaction, dataclasses.replace(settings, daily_quota=per_person), done)

    @app_commands.command(name="queue", description="Everyone's portraits waiting or running on this server")
    async def queue(self, interaction: discord.Interaction) -> None:
        if await self._allowed(interaction) is None:
            return
        records = await self.bot.store.guild_jobs(str(interaction.guild_id))
        lines, ids, labels = [], [], []
        for number, record in enumerate(records[:25], start=1):
            status = await self.bot.queue.status(record.job_id)
            if status is None:
                continue
            where = "generating now" if status.state == JobState.RUNNING else f"position {(status.position or 0) + 1}"
            waited = duration(time.time() - record.created_at)
            prompt = sanitize(status.prompt, 40) or "portrait"
            lines.append(f"`{number}` <@{record.user_id}> — {prompt} — {where}, asked {waited} ago")
            ids.append(record.job_id)
            labels.append(f"Cancel {number}")
        while len("\n".join(lines)) > EMBED_DESCRIPTION_LIMIT - 40:  # Discord's limit, room for the last line
            lines.pop()
            ids.pop()
            labels.pop()
        text = "\n".join(lines) if lines else "Nothing is waiting or running on this server."
        if len(records) > len(lines) and lines:
            text += f"\n…and {len(records) - len(lines)} more."
        kwargs = {"view": cancel_view(ids, labels, admin=True)} if ids else {}
        embed = discord.Embed(title="This server's queue", description=text, colour=discord.Colour.blurple())
        await interaction.edit_original_response(embed=embed, allowed_mentions=discord.AllowedMentions.none(),
                                                 **kwargs)

    @app_commands.command(name="stats", description=f"This server's portraits over the last {STATS_DAYS} days")
    async def stats(self, interaction: discord.Interaction) -> None:
        if await self._allowed(interaction) is None:
            return
        days = await self.bot.store.usage(str(interaction.guild_id), time.time() - STATS_DAYS * 86400)
        if not days:
            await interaction.edit_original_response(content=f"No portraits in the last {STATS_DAYS} days.")
            return
        rows = ["day         asked  done  failed  cancelled  average wait"]
        for day in days:
            wait = duration(day.average_wait_s) if day.average_wait_s is not None else "-"
            rows.append(f"{day.day}  {day.asked:5d}  {day.done:4d}  {day.failed:6d}  {day.cancelled:9d}  {wait}")
        total = sum(day.asked for day in days)
        failed = sum(day.failed for day in days)
        await interaction.edit_original_response(
            content=f"**Last {STATS_DAYS} days** (UTC): {total} portraits asked for, {failed} failed\n"
                    "```\n" + "\n".join(rows) + "\n```")

    @app_commands.command(name="content", description="What to do with explicit prompts")
    @app_commands.describe(policy="block, warn or allow; a server can be stricter than the host, never looser")
    @app_commands.choices(policy=POLICY_CHOICES)
    async def content(self, interaction: discord.Interaction, policy: str) -> None:
        settings = await self._allowed(interaction)
        if settings is not None:
            await self._save(interaction, dataclasses.replace(settings, nsfw_policy=policy),
                             f"Content policy set to **{policy}**.")


async def setup(bot: CloseupBot) -> None:
    cog = Admin(bot)
    await bot.add_cog(cog)
    # Server settings need the bot in the server: not offered where only a person installed it.
    cog.app_command.allowed_installs = app_commands.AppInstallationType(guild=True, user=False)
    cog.app_command.allowed_contexts = app_commands.AppCommandContext(guild=True, dm_channel=False,
                                                                      private_channel=False)
