"""Start the bot for real: check the token and the data folder, then run until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
from pathlib import Path

import aiohttp
import discord

from generation.config import Config
from generation.queue.base import QueueStorageError

log = logging.getLogger("closeup.bot")

EXIT_OK, EXIT_SETUP = 0, 2
# Three base64url parts separated by dots: the bot's id, a timestamp, an HMAC.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$")


def token_problem(token: str) -> str | None:
    if not token:
        return ("no Discord bot token. Create a bot at https://discord.com/developers/applications, copy its "
                "token and run: DISCORD_TOKEN=<token> closeup bot")
    if token.lower().startswith("bot "):
        return "the token starts with 'Bot ': set only the token itself, without the 'Bot ' prefix"
    if not TOKEN_SHAPE.match(token.strip()):
        return "the Discord token does not look like a bot token (three parts separated by dots)"
    return None


def data_problem(config: Config) -> str | None:
    for folder in {Path(config.store.data_dir), Path(config.queue.path).parent}:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            return f"cannot create the data folder {folder}: {exc.strerror or exc}"
        if not os.access(folder, os.W_OK):
            return f"the data folder {folder} is not writable by this user"
    return None


async def redis_problem(config: Config) -> str | None:
    """With the Redis queue: does Redis answer within 2 s? Asked before logging in to Discord (which is
    where the queue would otherwise first be opened, a traceback later)."""
    if config.queue.backend != "redis":
        return None
    try:
        from generation.queue.redis_store import check_reachable
    except ImportError:
        return "queue.backend is \"redis\" but the redis package is missing: pip install 'closeup[redis]'"
    try:
        await check_reachable(config.queue.redis_url, timeout_s=1.5)
    except QueueStorageError as exc:
        return str(exc)
    return None


async def serve(config: Config) -> int:
    from bot.app import CloseupBot

    bot = CloseupBot(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    try:
        async with bot:
            await bot.start(config.discord.token.strip())
    except discord.LoginFailure:
        log.error("Discord refused the token (401). Reset it in the developer portal and set DISCORD_TOKEN again.")
        return EXIT_SETUP
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused an intent this bot asked for; closeup needs no privileged intents.")
        return EXIT_SETUP
    except QueueStorageError as exc:  # Redis went away between the start-up check and the queue's start
        log.error("cannot start the bot: %s", exc)
        return EXIT_SETUP
    except (aiohttp.ClientConnectionError, discord.GatewayNotFound, socket.gaierror) as exc:
        log.error("cannot reach Discord (%s: %s). Is this machine online, and can it reach discord.com "
                  "(proxy, firewall, DNS)?", type(exc).__name__, exc)
        return EXIT_SETUP
    return EXIT_OK


def warn_if_generation_cannot_run_here(config: Config) -> None:
    """With the embedded worker, say at start (not at the first job's timeout) when this machine has no
    GPU to generate with, or no generation packages at all."""
    if config.queue.backend != "local":
        return
    from generation.doctor import Scope, check_gpu

    row = check_gpu(config.generation, Scope(generates=True, worker=False), config.queue.job_timeout_s)
    if row.status in ("warn", "fail"):
        log.warning("generation on this machine: %s. Fix: %s", row.detail, row.fix)


def run_bot(config: Config) -> int:
    """Every setup problem is one clear line and exit 2; checks that need no network come first."""
    from generation.licences import refusal as licence_refusal

    checks = (lambda: token_problem(config.discord.token), lambda: licence_refusal(config),
              lambda: data_problem(config), lambda: asyncio.run(redis_problem(config)))
    for check in checks:
        problem = check()
        if problem:
            log.error("cannot start the bot: %s", problem)
            return EXIT_SETUP
    warn_if_generation_cannot_run_here(config)
    return asyncio.run(serve(config))
