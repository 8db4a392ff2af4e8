"""The bot process: discord.py client, store, queue, delivery and the periodic sweep, wired together.

`closeup bot` builds one ``CloseupBot``. Tests build it too, with a fast fake runner and a
connector that points discord.py at the local emulator; nothing else differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.components import DYNAMIC_ITEMS
from bot.delivery import Delivery
from bot.flows import Flows
from bot.limits import CommandRate, EditBudget
from bot.metrics import Metrics
from bot.photo_work import PhotoWork
from bot.store import Store
from bot.web import StatusServer, serve_status
from generation.config import Config
from generation.faces.types import FaceAnalyzer
from generation.queue.base import Runner
from generation.queue.scheduler import Limits

log = logging.getLogger(__name__)

COGS = ("bot.cogs.portrait", "bot.cogs.references", "bot.cogs.queue", "bot.cogs.privacy", "bot.cogs.help",
        "bot.cogs.admin", "bot.cogs.context")


def build_queue(config: Config, runner: Runner | None) -> Any:
    """The embedded queue (in-process worker) or the Redis queue (workers elsewhere)."""
    q = config.queue
    limits = Limits(per_user=q.per_user, per_guild=q.per_guild)
    if q.backend == "redis":
        from generation.queue.redis import RedisQueue

        return RedisQueue(q.redis_url, prefix=q.redis_prefix, limits=limits, max_failures=q.max_failures,
                          dead_after_s=q.dead_after_s, keep_finished_s=config.queue_retention_s,
                          events_maxlen=q.events_maxlen)
    from generation.queue.engine_runner import LazyEngineRunner
    from generation.queue.local import LocalQueue

    Path(q.path).parent.mkdir(parents=True, exist_ok=True)
    return LocalQueue(q.path, runner or LazyEngineRunner(config), limits=limits, timeout_s=q.job_timeout_s,
                      max_failures=q.max_failures, keep_finished_s=config.queue_retention_s)


class CloseupBot(commands.Bot):
    """One bot: commands in cogs, buttons as dynamic items, jobs through ``self.queue``."""

    def __init__(self, config: Config, *, runner: Runner | None = None, queue: Any = None,
                 analyzer: FaceAnalyzer | None = None,
                 connector_factory: Callable[[], aiohttp.BaseConnector] | None = None) -> None:
        intents = discord.Intents.default()  # no message-content intent: replies must mention the bot
        metrics = Metrics()
        # Installable to a server and to a person's own account (then usable in servers whose owners allow
        # user-installed apps, and in group DMs), with the same limits; /settings stays server-installed only.
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
                         allowed_contexts=app_commands.AppCommandContext(
                             guild=True, dm_channel=config.bot.allow_dms, private_channel=config.bot.allow_dms),
                         allowed_mentions=discord.AllowedMentions.none(),
                         connector=connector_factory() if connector_factory else None,
                         http_trace=metrics.trace_config())
        self.metrics = metrics
        self.web_server: StatusServer | None = None  # /metrics and /healthz
        self.config = config
        self._runner = runner
        self._connector_factory = connector_factory
        self.queue: Any = queue
        self.store = Store(config.store.data_dir)
        self.rate = CommandRate(config.bot.command_rate, config.bot.command_period_s)
        self.photos = PhotoWork(config, analyzer)
        self.edits = EditBudget(config.bot.edits_per_s)
        self.flows = Flows(self)
        self.delivery = Delivery(self)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready_for_jobs = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def setup_hook(self) -> None:
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]
        await self.store.start()
        if self.queue is None:
            self.queue = build_queue(self.config, self._runner)
        await self.queue.start()
        self._start_warm_up()
        await self.photos.open(self._connector_factory() if self._connector_factory else None)
        for name in COGS:
            await self.load_extension(name)
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        if self.config.bot.sync_commands:
            await self.sync_commands()
        await self.delivery.start()
        self._tasks.append(asyncio.create_task(self._sweep_forever(), name="closeup-sweep"))
        self.web_server = await serve_status(self)
        self.ready_for_jobs.set()

    def _start_warm_up(self) -> None:
        """The embedded worker loads its models now, on a daemon thread, while the bot already answers (a
        stop during a first-start download does not wait for it)."""
        warm_up = getattr(getattr(self.queue, "runner", None), "warm_up", None)
        if self.config.generation.warm_up and callable(warm_up):
            threading.Thread(target=warm_up, name="closeup-warm-up", daemon=True).start()

    def engine_state(self) -> str | None:
        """The embedded worker's state ("warming", "ready", ...), or None when workers are elsewhere."""
        return getattr(getattr(self.queue, "runner", None), "state", None)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.web_server is not None:
            await self.web_server.close()
        await self.delivery.close()
        if self.queue is not None:
            with contextlib.suppress(Exception):
                await self.queue.close()
        await self.store.close()
        await self.photos.close()
        await super().close()

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        self.metrics.observe_interaction(interaction)

    async def on_app_command_error(self, interaction: discord.Interaction[Any],
                                   error: app_commands.AppCommandError) -> None:
        """Any slash command that fails (a store or Redis outage in /queue or /settings) ends in an apology
        instead of "thinking…" forever; the host gets the details, with the interaction's id."""
        cause = getattr(error, "original", error)
        name = interaction.command.qualified_name if interaction.command else "?"
        log.error("/%s failed for interaction %s: %s: %s", name, interaction.id, type(cause).__name__, cause,
                  exc_info=(type(cause), cause, cause.__traceback__))
        self.metrics.observe_command_error(name)
        text = ("Sorry — something went wrong on my side and I couldn't finish that. Please try again in a "
                "minute; the host has the details.")
        with contextlib.suppress(discord.HTTPException, discord.InteractionResponded):
            if interaction.response.is_done():
                await interaction.edit_original_response(content=text, embed=None, view=None, attachments=[])
            else:
                await interaction.response.send_message(text, ephemeral=True)

    async def on_command_error(self, context: commands.Context[Any], exception: commands.CommandError) -> None:
        """closeup has no text commands: a message that mentions the bot is a mention, not a command (the
        reply-with-a-photo listener handles the ones it cares about), so it is not an error."""
        if isinstance(exception, commands.CommandNotFound):
            return
        log.error("message command failed: %s", exception, exc_info=exception)

    async def sync_commands(self) -> None:
        """Register commands only when they changed: Discord allows 200 creations a day per server."""
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        marker = Path(self.config.store.data_dir) / "commands.sha256"
        try:
            if marker.read_text().strip() == digest:
                log.info("slash commands unchanged since the last sync; not syncing")
                return
        except OSError:
            pass
        synced = await self.tree.sync()
        log.info("synced %d slash commands", len(synced))
        marker.write_text(digest + "\n")

    async def _sweep_forever(self) -> None:
        store_cfg, bot_cfg = self.config.store, self.config.bot
        while True:
            try:
                removed = await self.store.sweep(retention_s=store_cfg.retention_days * 86400,
                                                 draft_ttl_s=bot_cfg.draft_ttl_s)
                if removed:
                    log.info("retention sweep removed %d rows and files", removed)
            except Exception:
                log.exception("retention sweep failed; will try again")
            await asyncio.sleep(store_cfg.sweep_interval_s)
