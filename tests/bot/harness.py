"""Runs the real bot against the local Discord emulator: one world, one bot, torn down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "testkit") not in sys.path:
    sys.path.insert(0, str(ROOT / "testkit"))

from emulator import MANAGE_GUILD, DiscordEmulator  # noqa: E402
from emulator.models import Channel, Guild, User  # noqa: E402

from bot.app import CloseupBot  # noqa: E402
from generation.config import Config  # noqa: E402

FACES = ROOT / "tests" / "fixtures" / "faces"
T = TypeVar("T")


def run(body: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """Sync test → async body, bounded so a hang fails the test instead of the whole run."""
    async def bounded() -> T:
        return await asyncio.wait_for(body(), timeout)

    return asyncio.run(bounded())


def photo(name: str = "obama.jpg") -> bytes:
    return (FACES / name).read_bytes()


def bot_config(data: Path, **bot_settings: Any) -> Config:
    config = Config()
    return dataclasses.replace(
        config,
        store=dataclasses.replace(config.store, data_dir=str(data / "store")),
        queue=dataclasses.replace(config.queue, path=str(data / "queue.db")),
        bot=dataclasses.replace(config.bot, **{"edit_interval_s": 0.2, "command_rate": 1000, **bot_settings}),
        metrics=dataclasses.replace(config.metrics, port=0),  # a free port: tests may run bots side by side
    )


_ANALYZER: Any = None


def analyzer() -> Any:
    """dlib's models load once per test session (about a second)."""
    global _ANALYZER
    if _ANALYZER is None:
        from generation.faces.dlib_backend import DlibAnalyzer

        _ANALYZER = DlibAnalyzer()
    return _ANALYZER


@dataclass
class World:
    emu: DiscordEmulator
    alice: User
    bob: User
    admin: User
    guild: Guild
    channel: Channel
    other_channel: Channel
    data: Path
    bots: list[CloseupBot] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def bot(self) -> CloseupBot:
        return self.bots[-1]

    async def start_bot(self, runner: Any, config: Config | None = None) -> CloseupBot:
        bot = CloseupBot(config or bot_config(self.data), runner=runner, analyzer=analyzer(),
                         connector_factory=self.emu.connector)
        self.bots.append(bot)
        self.tasks.append(asyncio.create_task(bot.start(self.emu.token)))
        task = self.tasks[-1]
        await self.emu.wait_until(lambda: bot.ready_for_jobs.is_set() or task.done(), timeout=15,
                                  what="the bot's setup")
        if task.done():
            task.result()  # raises what stopped the bot
        await self.emu.wait_ready()
        return bot

    async def stop_bot(self) -> None:
        bot = self.bots[-1]
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.tasks[-1], 10)

    async def slash(self, user: User, name: str, options: dict[str, Any] | None = None, *,
                    channel: Channel | None = None, **kwargs: Any) -> Any:
        return await self.emu.slash(user, channel or self.channel, name, options or {}, **kwargs)


@contextlib.asynccontextmanager
async def world(tmp_path: Path, runner: Any = None, config: Config | None = None) -> AsyncIterator[World]:
    async with DiscordEmulator() as emu:
        alice, bob, admin = emu.add_user("alice"), emu.add_user("bob"), emu.add_user("admin")
        guild = emu.add_guild("studio", owner=admin)
        channel = emu.add_channel(guild, "portraits")
        other = emu.add_channel(guild, "chat")
        emu.add_member(guild, alice)
        emu.add_member(guild, bob)
        emu.add_member(guild, admin, permissions=MANAGE_GUILD)
        w = World(emu, alice, bob, admin, guild, channel, other, tmp_path)
        try:
            if runner is not None:
                await w.start_bot(runner, config)
            yield w
        finally:
            if w.bots and not w.bots[-1].is_closed():
                await w.stop_bot()


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """label → custom_id of every button on a message."""
    found = {}
    for row in message.get("components") or []:
        for item in row.get("components") or []:
            if item.get("custom_id"):
                found[item.get("label", "")] = item["custom_id"]
    return found


def text_of(message: dict[str, Any]) -> str:
    """Content plus every embed's visible text, for assertions on what a person reads."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(p for p in parts if p)


async def result_of(inter: Any, timeout: float = 20) -> dict[str, Any]:
    """The public message with portraits that an interaction's followup turned into."""
    def check(i: Any) -> dict[str, Any] | None:
        return next((m for m in i.followups if m.get("attachments") and not m.get("_ephemeral")), None)

    return await inter.wait_for(check, timeout, "a result message")


async def ephemeral_reply(inter: Any, needle: str, timeout: float = 10) -> dict[str, Any]:
    """An ephemeral message of this interaction containing ``needle``."""
    return await inter.wait_message(lambda m: m.get("_ephemeral") and needle in text_of(m), timeout)
