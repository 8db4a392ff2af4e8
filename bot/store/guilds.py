"""What a server's admins set and see: its settings (table ``guild_settings``), the daily quota (table
``asks``) and its usage statistics."""

from __future__ import annotations

import json

from bot.store.core import StoreCore
from bot.store.records import DayUsage, GuildSettings

QUOTA_WINDOW_S = 86400.0  # a server's daily quota counts the last 24 hours


class GuildsMixin(StoreCore):
    """Store methods for server settings, quotas and statistics."""

    async def guild_settings(self, guild_id: str) -> GuildSettings:
        """This server's settings; the defaults when its owner never changed any."""
        def select() -> GuildSettings:
            row = self._sql.execute("SELECT allowed_channels, per_user, per_guild, nsfw_policy, daily_quota "
                                    "FROM guild_settings WHERE guild_id = ?", (guild_id,)).fetchone()
            if row is None:
                return GuildSettings(guild_id)
            channels, per_user, per_guild, nsfw_policy, daily_quota = row
            return GuildSettings(guild_id, tuple(json.loads(channels)), per_user, per_guild, nsfw_policy, daily_quota)

        return await self._call(select)

    async def set_guild_settings(self, settings: GuildSettings) -> None:
        await self._call(lambda: self._sql.execute(
            "INSERT OR REPLACE INTO guild_settings (guild_id, allowed_channels, per_user, per_guild, nsfw_policy, "
            "daily_quota) VALUES (?, ?, ?, ?, ?, ?)",
            (settings.guild_id, json.dumps(list(settings.allowed_channels)), settings.per_user, settings.per_guild,
             settings.nsfw_policy, settings.daily_quota)))

    async def take_quota(self, guild_id: str, user_id: str, quota: int, now: float) -> float | None:
        """Count one portrait against this person's daily quota here, in one write transaction (two clicks
        at once cannot both slip through); None when taken, else when the oldest of the window expires.
        Kept apart from the jobs, so deleting a result does not give the portrait back."""
        def take() -> float | None:
            with self._write() as sql:
                count, oldest = sql.execute(
                    "SELECT COUNT(*), MIN(asked_at) FROM asks WHERE guild_id = ? AND user_id = ? AND asked_at >= ?",
                    (guild_id, user_id, now - QUOTA_WINDOW_S)).fetchone()
                if count >= quota:
                    return float(oldest) + QUOTA_WINDOW_S
                sql.execute("INSERT INTO asks (guild_id, user_id, asked_at) VALUES (?, ?, ?)", (guild_id, user_id, now))
                return None

        return await self._call(take)

    async def give_back_quota(self, guild_id: str, user_id: str, asked_at: float) -> None:
        """A portrait counted by take_quota that never reached the queue."""
        await self._call(lambda: self._sql.execute(
            "DELETE FROM asks WHERE rowid = (SELECT rowid FROM asks WHERE guild_id = ? AND user_id = ? AND "
            "asked_at = ? LIMIT 1)", (guild_id, user_id, asked_at)))

    async def usage(self, guild_id: str, since: float) -> list[DayUsage]:
        """Per UTC day since ``since``: portraits asked for, finished, failed, cancelled, and the average
        wait from asking to a worker starting it (jobs that started)."""
        def select() -> list[DayUsage]:
            rows = self._sql.execute(
                "SELECT date(created_at, 'unixepoch') AS day, COUNT(*), SUM(state = 'done'), "
                "SUM(state IN ('failed', 'poisoned')), SUM(state = 'cancelled'), "
                "AVG(CASE WHEN started_at IS NOT NULL THEN started_at - created_at END) "
                "FROM jobs WHERE guild_id = ? AND created_at >= ? GROUP BY day ORDER BY day",
                (guild_id, since)).fetchall()
            return [DayUsage(day, int(asked), int(done or 0), int(failed or 0), int(cancelled or 0), wait)
                    for day, asked, done, failed, cancelled, wait in rows]

        return await self._call(select)
