"""A local Discord (REST + gateway + CDN) for testing the bot with the real, unmodified discord.py.

Why: the rules that break Discord bots in production (3 s first response, one acknowledgement,
15-minute interaction tokens, upload limits, component limits, 429s, gateway drops) are invisible
to mocks. This emulator speaks the wire protocol discord.py 2.7 speaks and enforces those rules,
so a test drives the bot exactly as Discord would and sees exactly what a user would.

How the bot reaches it: one aiohttp HTTPS+WSS server on 127.0.0.1 (random port), with a
certificate for discord.com / gateway.discord.gg / cdn.discordapp.com / media.discordapp.net from a
throwaway ``trustme`` CA. ``emu.connector()`` returns an ``aiohttp.TCPConnector`` that resolves
those four names to the emulator, trusts only that CA and refuses every other host (fail closed)::

    async with DiscordEmulator() as emu:
        alice = emu.add_user("alice")
        guild = emu.add_guild("studio", owner=alice)
        chan = emu.add_channel(guild, "portraits")
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), connector=emu.connector())
        task = asyncio.create_task(bot.start(emu.token))
        await emu.wait_ready()
        photo = emu.attachment(jpeg_bytes, "selfie.jpg")
        inter = await emu.slash(alice, chan, "portrait", {"photo": photo})
        first = await inter.wait_response()                # CallbackRecord: type, data, at, latency
        msg = await inter.wait_message(lambda m: m["attachments"])
        assert emu.violations == []

World building: ``add_user``, ``add_guild`` (@everyone role with the guild's id, the bot's managed
role, #general), ``add_channel`` (optional permission overwrites), ``add_role``, ``add_member``
(``permissions`` become a role of the member's own), ``dm_channel``, ``attachment`` (bytes on the
emulated CDN; ``size``/``url`` overrides fake a huge or foreign file).

User actions (each returns a handle or the stored message): ``slash``, ``message_command``,
``click``, ``submit_modal``, ``send_message``. Interactions are typed from the commands the bot
registered; misuse raises ``EmulatorUsageError`` (a test bug, not a bot bug).

Observation: ``Interaction.responses / original / followups / errors``, ``wait_response``,
``wait_for``, ``wait_message``; ``emu.channel_messages``, ``emu.message`` (None once deleted),
``emu.file_bytes``, ``emu.wait_message``, ``emu.wait_until``, ``emu.requests`` (every call with
route template, status, body, wall and emulator time), ``emu.violations`` (rules the bot broke),
``emu.unexpected`` (routes the emulator does not know), ``emu.commands``, ``emu.gateway.log``.
Messages are Discord-shaped dicts; ``_edits`` (wall times of each edit) and ``_ephemeral`` are
the emulator's own keys.

Rules and faults: ``emu.clock.advance(s)`` moves the clock the 3 s window (``response_window_s``)
and the 15-minute token (``token_lifetime_s``) are measured on; ``channel_upload_limit``; request
bodies are validated against Discord's OpenAPI spec (``openapi.json``, patched where Discord is
laxer than the spec, see ``openapi.py``); ``emu.faults.rate_limit / server_error / random /
drop_gateway / clear``.

Usage notes: testkit/ is on ``sys.path`` (via tests/conftest.py), so ``from emulator import ...``
works from any test. Close the bot before the emulator (else discord.py tries to reconnect).
Waits are bounded and raise ``TimeoutError`` with the recent requests and violations.
Not emulated: real rate-limit buckets (normal answers carry no X-RateLimit headers, so discord.py
never throttles itself), member chunking, threads, voice, autocomplete, user context menus.
"""

from .faults import Faults
from .interactions import EmulatorUsageError
from .models import (
    ADMINISTRATOR,
    ATTACH_FILES,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    MANAGE_GUILD,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    Clock,
    Guild,
    Member,
    Role,
    User,
)
from .records import CallbackRecord, Interaction, RequestRecord, Violation
from .server import DEFAULT_UPLOAD_LIMIT, DiscordEmulator
from .tls import HOSTS

__all__ = [
    "ADMINISTRATOR",
    "ATTACH_FILES",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "DEFAULT_UPLOAD_LIMIT",
    "HOSTS",
    "MANAGE_GUILD",
    "SEND_MESSAGES",
    "VIEW_CHANNEL",
    "CallbackRecord",
    "Channel",
    "Clock",
    "DiscordEmulator",
    "EmulatorUsageError",
    "Faults",
    "Guild",
    "Interaction",
    "Member",
    "RequestRecord",
    "Role",
    "User",
    "Violation",
]
