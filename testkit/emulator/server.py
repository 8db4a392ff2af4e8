"""DiscordEmulator: one HTTPS+WSS server that plays discord.com, the gateway and the CDN for tests.

State (users, guilds, channels, commands, messages, files, interactions) lives here; ``rest.py``
answers the API, ``gateway.py`` the websocket, ``interactions.py`` builds interaction payloads.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .faults import Faults, fault_response
from .gateway import APPLICATION_FLAGS, GatewayHub
from .interactions import EmulatorUsageError, InteractionBuilder
from .messages import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    MAX_ATTACHMENTS,
    MessageStore,
    Upload,
    public,
    upload_index,
)
from .models import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM_CHANNEL,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    TEXT_CHANNEL,
    Channel,
    Clock,
    Guild,
    Member,
    Role,
    Snowflakes,
    User,
)
from .openapi import DEFAULT_SPEC, load_openapi
from .records import Interaction, Notifier, RequestRecord, Violation
from .rest import API_PREFIX, SUPPRESS_EMBEDS, ApiError, RestApi, json_response
from .tls import API_HOST, CDN_HOST, GATEWAY_HOST, MEDIA_HOST, TlsMaterial, make_connector

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TOKEN_LIFETIME_S = 15 * 60
RESPONSE_WINDOW_S = 3.0

GuildRef = Guild | str
ChannelRef = Channel | str
MessageRef = dict[str, Any] | str


def _fake_token(user_id: str) -> str:
    """Shaped like a real bot token: base64(user id) . timestamp-ish . HMAC-ish."""
    head = base64.b64encode(user_id.encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(4)[:6]}.{secrets.token_urlsafe(29)[:38]}"


class DiscordEmulator:
    """A local Discord for the real discord.py client; see the package docstring for the test API."""

    def __init__(self, openapi_path: str | Path | None = None) -> None:
        self.clock = Clock()
        self.ids = Snowflakes()
        self.openapi = load_openapi(Path(openapi_path).resolve() if openapi_path is not None else DEFAULT_SPEC)
        self.response_window_s = RESPONSE_WINDOW_S
        self.token_lifetime_s = TOKEN_LIFETIME_S
        self.channel_upload_limit = DEFAULT_UPLOAD_LIMIT
        self.application_id = self.ids.next()
        self.application_flags = APPLICATION_FLAGS
        self.bot_user = User(self.application_id, "Closeup", global_name="Closeup", bot=True)
        self.app_owner = User(self.ids.next(), "app-owner")
        self.token = _fake_token(self.application_id)
        self.users: dict[str, User] = {u.id: u for u in (self.bot_user, self.app_owner)}
        self.guilds: dict[str, Guild] = {}
        self.channels: dict[str, Channel] = {}
        self._dms: dict[str, Channel] = {}
        self._commands: dict[str | None, list[dict[str, Any]]] = {}
        self.command_overrides: set[tuple[str | None, str, str]] = set()  # (guild, command, user) allowed
        self.command_syncs: list[tuple[str | None, float]] = []  # (guild id or None, wall time)
        self.store = MessageStore(self.ids, self.clock)
        self.interactions: dict[str, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.requests: list[RequestRecord] = []
        self.violations: list[Violation] = []
        self.unexpected: list[RequestRecord] = []
        self.notifier = Notifier()
        self.faults = Faults(self._drop_gateway)
        self.gateway = GatewayHub(
            self.token, self._ready_payload, self._guild_payloads, self.notifier.notify, self._gateway_violation
        )
        self.rest = RestApi(self)
        self.builder = InteractionBuilder(self)
        self._tls = TlsMaterial()
        self._client_ssl = self._tls.client_context()
        self._upload_channel_id = self.ids.next()  # where test-made attachments "were uploaded"
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> DiscordEmulator:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self._tls.server_context()).start()
        return self

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def connector(self) -> aiohttp.TCPConnector:
        """A new aiohttp connector into the emulator (call inside the running loop; one per session)."""
        if not self.port:
            raise RuntimeError("await emu.start() before emu.connector()")
        return make_connector(self.port, self._client_ssl)

    # ----------------------------------------------------------------- world building

    def add_user(self, username: str, *, global_name: str | None = None, dms_open: bool = True) -> User:
        user = User(self.ids.next(), username, global_name=global_name, dms_open=dms_open)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        owner: User | None = None,
        *,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
    ) -> Guild:
        """A guild the bot is in, with @everyone (id == guild id), the bot's managed role and #general."""
        owner = owner or self.add_user(f"{name}-owner")
        gid = self.ids.next()
        guild = Guild(gid, name, owner.id, self.bot_user.id, joined_at=self.clock.iso())
        guild.roles[gid] = Role(gid, "@everyone", everyone_permissions)
        bot_role = Role(self.ids.next(), self.bot_user.username, bot_permissions, position=1, bot_id=self.bot_user.id)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = Member(self.bot_user, [bot_role.id], self.clock.iso())
        guild.members[owner.id] = Member(owner, [], self.clock.iso())
        self.guilds[gid] = guild
        self.add_channel(guild, "general", announce=False)
        if self.gateway.ready:
            self.gateway.dispatch("GUILD_CREATE", self._guild_payload(guild))
        return guild

    def add_channel(
        self, guild: GuildRef, name: str, *, overwrites: list[dict[str, Any]] | None = None, announce: bool = True
    ) -> Channel:
        """A text channel; ``overwrites`` are Discord permission_overwrites ({id, type, allow, deny})."""
        g = self._guild(guild)
        channel = Channel(self.ids.next(), TEXT_CHANNEL, name, g.id, position=len(g.channels))
        channel.overwrites = [
            {**o, "allow": str(o.get("allow", 0)), "deny": str(o.get("deny", 0))} for o in overwrites or []
        ]
        g.channels[channel.id] = channel
        self.channels[channel.id] = channel
        if announce and self.gateway.ready:
            self.gateway.dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    def add_role(self, guild: GuildRef, name: str, permissions: int = 0) -> Role:
        g = self._guild(guild)
        role = Role(self.ids.next(), name, permissions, position=len(g.roles))
        g.roles[role.id] = role
        return role

    def add_member(self, guild: GuildRef, user: User, permissions: int = 0, roles: Iterable[Role | str] = ()) -> Member:
        """Join ``user`` to the guild; extra ``permissions`` come through a role of their own, as on Discord."""
        g = self._guild(guild)
        role_ids = [r.id if isinstance(r, Role) else str(r) for r in roles]
        if permissions:
            role_ids.append(self.add_role(g, f"{user.username}-perms", permissions).id)
        member = Member(user, role_ids, self.clock.iso())
        g.members[user.id] = member
        return member

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between ``user`` and the bot (created on first use, then reused)."""
        channel = self._dms.get(user.id)
        if channel is None:
            channel = Channel(self.ids.next(), DM_CHANNEL, recipients=[user])
            self._dms[user.id] = channel
            self.channels[channel.id] = channel
        return channel

    def attachment(
        self,
        data: bytes,
        filename: str = "selfie.jpg",
        content_type: str | None = "image/jpeg",
        size: int | None = None,
        url: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> dict[str, Any]:
        """Register bytes on the emulated CDN; returns the attachment object Discord would send."""
        return self.store.store_file(
            data,
            filename,
            channel_id=self._upload_channel_id,
            content_type=content_type,
            size=size,
            url=url,
            width=width,
            height=height,
        )

    def bot_permissions(self, channel: Channel) -> int:
        if channel.guild_id is None:
            return DEFAULT_EVERYONE_PERMISSIONS
        return self.guilds[channel.guild_id].permissions_in(self.bot_user.id, channel)

    # ----------------------------------------------------------------- commands

    def commands(self, guild: GuildRef | None = None) -> list[dict[str, Any]]:
        """Commands the bot registered: global ones, or one guild's."""
        key = None if guild is None else (guild.id if isinstance(guild, Guild) else str(guild))
        return list(self._commands.get(key, []))

    def allow_command(self, guild: GuildRef, name: str, user: User) -> None:
        """Discord's per-server command permission override (Server Settings → Integrations): ``user`` sees
        ``name`` whatever its default_member_permissions say — so the bot must check permissions itself."""
        self.command_overrides.add((self._guild(guild).id, name, user.id))

    def set_commands(self, guild_id: str | None, commands: list[dict[str, Any]]) -> None:
        self._commands[guild_id] = commands
        self.command_syncs.append((guild_id, time.monotonic()))

    # ----------------------------------------------------------------- messages (queries)

    def message(self, message_id: str) -> dict[str, Any] | None:
        """A live message by id; None once deleted."""
        return self.store.get(message_id)

    def channel_messages(self, channel: ChannelRef) -> list[dict[str, Any]]:
        """Every live message in a channel in order, interaction originals and followups included."""
        return self.store.in_channel(channel.id if isinstance(channel, Channel) else str(channel))

    def file_bytes(self, attachment: dict[str, Any] | str) -> bytes:
        """The stored bytes behind an attachment dict (or id), uploaded by the bot or the test."""
        att_id = attachment["id"] if isinstance(attachment, dict) else str(attachment)
        return self.store.files[str(att_id)].data

    async def wait_message(self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 5) -> dict[str, Any]:
        """The first live message in any channel matching ``predicate``."""

        def check() -> dict[str, Any] | None:
            return next((m for m in list(self.store.by_id.values()) if predicate(m)), None)

        return await self.wait_until(check, timeout, "a matching message")

    async def wait_until(self, check: Callable[[], Any], timeout: float = 5, what: str = "a condition") -> Any:
        """Wait (event-driven, bounded) until ``check()`` is truthy; return its value."""
        return await self.notifier.wait_until(check, timeout, what, self.debug_summary)

    async def wait_ready(self, timeout: float = 10) -> None:
        """The bot IDENTIFYed and READY plus every GUILD_CREATE went out on its socket."""

        def flushed() -> bool:
            conn = self.gateway.current
            return self.gateway.ready and conn is not None and conn.queue.empty()

        await self.wait_until(flushed, timeout, "the bot to IDENTIFY")
        await asyncio.sleep(0.05)  # let discord.py parse what was just written

    async def wait_resumed(self, count: int = 1, timeout: float = 10) -> None:
        """The bot RESUMEd its session at least ``count`` times in total."""
        await self.wait_until(lambda: self.gateway.resume_count >= count, timeout, f"{count} gateway RESUME(s)")

    def debug_summary(self) -> str:
        recent = "\n".join(
            f"  {r.method} {r.path} -> {r.status}{' (' + r.note + ')' if r.note else ''}" for r in self.requests[-12:]
        )
        return f"recent requests:\n{recent}\nviolations: {self.violations!r}\nunexpected: {len(self.unexpected)}"

    def add_violation(self, violation: Violation) -> None:
        self.violations.append(violation)
        self.notifier.notify()

    # ----------------------------------------------------------------- messages (bot side, used by rest.py)

    def create_interaction_message(
        self,
        inter: Interaction,
        body: dict[str, Any],
        uploads: list[Upload],
        flags: int,
        msg_type: int,
        *,
        followup: bool = False,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": inter.id,
            "type": inter.type,
            "user": inter.user.payload(),
            "authorizing_integration_owners": inter.payload["authorizing_integration_owners"],
        }
        if inter.type == 2:
            meta["name"] = inter.payload["data"]["name"]
            meta["command_type"] = inter.payload["data"].get("type", 1)
        if followup and inter.original_id is not None:
            meta["original_response_message_id"] = inter.original_id
        if inter.message_id is not None:
            meta["interacted_message_id"] = inter.message_id
        extra = {
            "webhook_id": self.application_id,
            "application_id": self.application_id,
            "interaction_metadata": meta,
            "_interaction_id": inter.id,
        }
        return self._create_message(inter.channel, body, uploads, flags, msg_type, extra)

    def create_bot_message(
        self,
        channel: Channel,
        body: dict[str, Any],
        uploads: list[Upload],
        flags: int,
        msg_type: int,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        return self._create_message(channel, body, uploads, flags, msg_type, extra)

    def _create_message(
        self,
        channel: Channel,
        body: dict[str, Any],
        uploads: list[Upload],
        flags: int,
        msg_type: int,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        message = self.store.new_message(
            channel=channel,
            author=self.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            attachments=self._new_attachments(body, uploads, channel.id),
            flags=flags,
            type=msg_type,
            extra=extra,
        )
        self._broadcast("MESSAGE_CREATE", message)
        self.notifier.notify()
        return message

    def _new_attachments(self, body: dict[str, Any], uploads: list[Upload], channel_id: str) -> list[dict[str, Any]]:
        """Store uploaded files; names/descriptions come from the body's attachments[] entry with the file's index."""
        meta = {str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)}
        stored = []
        for position, upload in enumerate(uploads):
            index = upload_index(upload)
            info = meta.get(str(position if index is None else index), {})
            stored.append(
                self.store.store_file(
                    upload.data,
                    info.get("filename") or upload.filename,
                    channel_id=channel_id,
                    content_type=None,
                    description=info.get("description"),
                )
            )
        return stored

    def edit_message(self, message: dict[str, Any], body: dict[str, Any], uploads: list[Upload]) -> None:
        """PATCH semantics: only keys present change; a listed attachments[] keeps just those ids."""
        listed = body.get("attachments")
        kept = message["attachments"]
        if listed is not None:
            keep_ids = {str(a.get("id")) for a in listed if isinstance(a, dict)}
            kept = [a for a in kept if a["id"] in keep_ids]
        if len(kept) + len(uploads) > MAX_ATTACHMENTS:  # checked before anything changes
            raise ApiError(400, 50035, "Invalid Form Body", rule="too_many_attachments")
        message["attachments"] = kept + self._new_attachments(body, uploads, message["channel_id"])
        if "content" in body:
            message["content"] = body["content"] or ""
        for key in ("embeds", "components"):
            if key in body:
                message[key] = body[key] or []
        if body.get("flags") is not None:
            settable = int(body["flags"]) & (SUPPRESS_EMBEDS | IS_COMPONENTS_V2)
            message["flags"] = (message["flags"] & EPHEMERAL) | settable
        message["flags"] &= ~LOADING
        message["edited_timestamp"] = self.clock.iso()
        message["_edits"].append(time.monotonic())
        self._broadcast("MESSAGE_UPDATE", message)
        self.notifier.notify()

    def set_reaction(self, message: dict[str, Any], emoji: str, *, add: bool) -> None:
        """The bot's own reaction (unicode emoji name or ``name:id``), kept in Discord's reactions[] shape."""
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        name, _, emoji_id = emoji.partition(":")
        entry = next((r for r in reactions if r["emoji"]["name"] == name), None)
        if add and entry is None:
            entry = {"emoji": {"id": emoji_id or None, "name": name}, "count": 0, "me": False}
            entry.update({"count_details": {"burst": 0, "normal": 0}, "burst_colors": [], "me_burst": False})
            reactions.append(entry)
        if entry is not None and entry["me"] != add:
            entry["me"] = add
            entry["count"] += 1 if add else -1
            entry["count_details"]["normal"] = entry["count"]
            if entry["count"] == 0:
                reactions.remove(entry)
        self.notifier.notify()

    def delete_message(self, message_id: str) -> None:
        message = self.store.delete(message_id)
        if message is not None:
            self._broadcast("MESSAGE_DELETE", message)
        self.notifier.notify()

    # ----------------------------------------------------------------- gateway events for messages

    def _intent_allows(self, channel: Channel) -> bool:
        need = INTENT_DIRECT_MESSAGES if channel.is_dm else INTENT_GUILD_MESSAGES
        return self.gateway.ready and bool(self.gateway.intents & need)

    def _content_visible(self, message: dict[str, Any], channel: Channel) -> bool:
        """Discord hides content without the message-content intent, except DMs, own messages, mentions."""
        return (
            bool(self.gateway.intents & INTENT_MESSAGE_CONTENT)
            or channel.is_dm
            or message["author"]["id"] == self.bot_user.id
            or any(u["id"] == self.bot_user.id for u in message.get("mentions", []))
        )

    def _as_seen_by_bot(self, message: dict[str, Any], channel: Channel) -> dict[str, Any]:
        data = public(message)
        if not self._content_visible(message, channel):
            data.update(content="", embeds=[], attachments=[], components=[])
            data.pop("poll", None)
        ref = message.get("referenced_message")
        if isinstance(ref, dict):
            data["referenced_message"] = self._as_seen_by_bot(ref, channel)
        if channel.guild_id is not None:
            member = self.guilds[channel.guild_id].members.get(message["author"]["id"])
            if member is not None:
                data["member"] = {k: v for k, v in member.payload().items() if k != "user"}
        return data

    def _broadcast(self, event: str, message: dict[str, Any]) -> None:
        channel = self.channels.get(message["channel_id"])
        if channel is None or message.get("_ephemeral") or not self._intent_allows(channel):
            return
        if event == "MESSAGE_DELETE":
            data = {"id": message["id"], "channel_id": channel.id}
            if channel.guild_id is not None:
                data["guild_id"] = channel.guild_id
        else:
            data = self._as_seen_by_bot(message, channel)
        self.gateway.dispatch(event, data)

    # ----------------------------------------------------------------- user actions (test side)

    async def send_message(
        self,
        user: User,
        channel: ChannelRef,
        content: str = "",
        attachments: list[dict[str, Any]] | None = None,
        reply_to: MessageRef | None = None,
        mention_bot: bool = False,
    ) -> dict[str, Any]:
        """A user posts a message (MESSAGE_CREATE, content stripped as Discord would for this bot)."""
        chan = self._channel(channel)
        self._check_user_in(user, chan)
        extra: dict[str, Any] = {}
        mentions = []
        if reply_to is not None:
            target = self._message(reply_to)
            extra = {
                "message_reference": {"type": 0, "channel_id": chan.id, "message_id": target["id"]},
                "referenced_message": public(target),
            }
            if chan.guild_id is not None:
                extra["message_reference"]["guild_id"] = chan.guild_id
        if mention_bot:
            mentions.append(self.bot_user.payload())
            if reply_to is None and self.bot_user.mention not in content:
                content = f"{self.bot_user.mention} {content}".rstrip()
        message = self.store.new_message(
            channel=chan,
            author=user,
            content=content,
            attachments=list(attachments or []),
            type=19 if reply_to is not None else 0,
            extra={"mentions": mentions, **extra},
        )
        self._broadcast("MESSAGE_CREATE", message)
        self.notifier.notify()
        await asyncio.sleep(0)
        return message

    async def slash(
        self,
        user: User,
        channel: ChannelRef,
        name: str,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        group: str | None = None,
        locale: str = "en-US",
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> Interaction:
        """A user runs ``/name`` (typed by the registered command's options) → INTERACTION_CREATE type 2."""
        chan = self._channel(channel)
        command = self.builder.find_command(name, 1, chan, user)
        data = self.builder.slash_data(command, dict(options or {}), chan, subcommand, group)
        payload = self.builder.envelope(2, user, chan, data, locale=locale, attachment_size_limit=attachment_size_limit)
        return await self._dispatch_interaction(payload, user, chan, attachment_size_limit)

    async def message_command(
        self,
        user: User,
        message: MessageRef,
        name: str,
        locale: str = "en-US",
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> Interaction:
        """A user picks a message context-menu command on ``message`` (type 2, data.type 3)."""
        target = self._message(message)
        chan = self._channel(target["channel_id"])
        command = self.builder.find_command(name, 3, chan, user)
        data = self.builder.context_menu_data(command, target)
        payload = self.builder.envelope(2, user, chan, data, locale=locale, attachment_size_limit=attachment_size_limit)
        return await self._dispatch_interaction(payload, user, chan, attachment_size_limit)

    async def click(
        self,
        user: User,
        message: MessageRef,
        custom_id: str,
        values: list[str] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> Interaction:
        """A user clicks a button (or picks ``values`` in a select) on a stored message → type 3."""
        target = self._message(message)
        chan = self._channel(target["channel_id"])
        data = self.builder.component_data(target, custom_id, values)
        payload = self.builder.envelope(
            3, user, chan, data, locale=locale, attachment_size_limit=attachment_size_limit, message=target
        )
        return await self._dispatch_interaction(payload, user, chan, attachment_size_limit, target["id"])

    async def submit_modal(
        self,
        user: User,
        message: MessageRef | None,
        custom_id: str,
        values: dict[str, Any],
        locale: str = "en-US",
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> Interaction:
        """A user submits a modal the bot opened (type-9 callback) with ``{field custom_id: value}`` → type 5."""
        opener = self._modal_opener(user, custom_id)
        modal = next(r.data for r in reversed(opener.responses) if r.ok and r.type == 9 and r.data)
        target = self._message(message) if message is not None else None
        data = self.builder.modal_data(modal, values)
        payload = self.builder.envelope(
            5, user, opener.channel, data, locale=locale, attachment_size_limit=attachment_size_limit, message=target
        )
        message_id = target["id"] if target is not None else None
        return await self._dispatch_interaction(payload, user, opener.channel, attachment_size_limit, message_id)

    def _modal_opener(self, user: User, custom_id: str) -> Interaction:
        for inter in reversed(list(self.interactions.values())):
            if inter.user.id != user.id:
                continue
            if any(r.ok and r.type == 9 and (r.data or {}).get("custom_id") == custom_id for r in inter.responses):
                return inter
        raise EmulatorUsageError(f"the bot never opened a modal {custom_id!r} for {user.username}")

    async def _dispatch_interaction(
        self,
        payload: dict[str, Any],
        user: User,
        channel: Channel,
        limit: int,
        message_id: str | None = None,
    ) -> Interaction:
        if self.gateway.session_id is None:
            raise EmulatorUsageError("the bot has no gateway session yet; await emu.wait_ready() first")
        inter = Interaction(
            emulator=self,
            id=payload["id"],
            token=payload["token"],
            type=payload["type"],
            user=user,
            channel=channel,
            payload=payload,
            attachment_size_limit=limit,
            dispatched_wall=time.monotonic(),
            dispatched_clock=self.clock.now(),
            message_id=message_id,
        )
        self.interactions[inter.id] = inter
        self.interactions_by_token[inter.token] = inter
        self.gateway.dispatch("INTERACTION_CREATE", payload)
        self.notifier.notify()
        await asyncio.sleep(0)
        return inter

    # ----------------------------------------------------------------- lookups

    def _guild(self, guild: GuildRef) -> Guild:
        found = self.guilds.get(guild.id if isinstance(guild, Guild) else str(guild))
        if found is None:
            raise EmulatorUsageError(f"unknown guild {guild!r}")
        return found

    def _channel(self, channel: ChannelRef) -> Channel:
        found = self.channels.get(channel.id if isinstance(channel, Channel) else str(channel))
        if found is None:
            raise EmulatorUsageError(f"unknown channel {channel!r}")
        return found

    def _message(self, message: MessageRef) -> dict[str, Any]:
        message_id = message["id"] if isinstance(message, dict) else str(message)
        found = self.store.get(message_id)
        if found is None:
            raise EmulatorUsageError(f"message {message_id} does not exist (deleted, or never sent)")
        return found

    def _check_user_in(self, user: User, channel: Channel) -> None:
        if channel.is_dm:
            if user not in channel.recipients:
                raise EmulatorUsageError(f"{user.username} is not in DM channel {channel.id}")
        elif user.id not in self.guilds[channel.guild_id or ""].members:
            raise EmulatorUsageError(f"{user.username} is not a member of the channel's guild")

    # ----------------------------------------------------------------- gateway glue

    def _ready_payload(self, identify: dict[str, Any]) -> dict[str, Any]:
        me = self.bot_user.payload()
        me.update({"verified": True, "mfa_enabled": False, "email": None})
        return {
            "v": 10,
            "user": me,
            "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
            "application": {"id": self.application_id, "flags": self.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "session_type": "normal",
            "geo_ordered_rtc_regions": [],
            "_trace": ["discord-emulator"],
        }

    def _guild_payload(self, guild: Guild) -> dict[str, Any]:
        return guild.create_payload(include_all_members=bool(self.gateway.intents & INTENT_GUILD_MEMBERS))

    def _guild_payloads(self) -> list[dict[str, Any]]:
        return [self._guild_payload(g) for g in self.guilds.values()]

    def _drop_gateway(self, code: int) -> None:
        self.gateway.drop(code)

    def _gateway_violation(self, rule: str, message: str) -> None:
        self.add_violation(Violation(rule, message, "WS", "/", 0, 0))

    # ----------------------------------------------------------------- HTTP entry point

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0]
        if host == GATEWAY_HOST and request.path == "/" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.gateway.handle(request)
        record = RequestRecord(
            request.method, request.path, None, host, dict(request.query), time.monotonic(), self.clock.now()
        )
        self.requests.append(record)
        if host == API_HOST and request.path.startswith(API_PREFIX + "/"):
            response = await self.rest.handle(request, record)
        elif host in (CDN_HOST, MEDIA_HOST):
            try:
                response = self._cdn(request, record)
            except Exception as exc:  # never let an emulator bug kill the server mid-test
                self.add_violation(Violation("emulator_error", repr(exc), request.method, request.path, 400, 0))
                response = web.Response(status=400, text="emulator error")
        else:
            self.unexpected.append(record)
            response = json_response({"message": "404: Not Found", "code": 0}, 404)
        record.status = response.status
        self.notifier.notify()
        return response

    def _cdn(self, request: web.Request, record: RequestRecord) -> web.Response:
        parts = request.path.strip("/").split("/")
        stored = None
        if len(parts) == 4 and parts[0] in ("attachments", "ephemeral-attachments"):
            stored = self.store.files.get(parts[2])
        if stored is None or stored.filename != parts[3] or request.method not in ("GET", "HEAD"):
            self.unexpected.append(record)
            return web.Response(status=404, text="Not Found")
        injected = self.faults.take(request.path, cdn=True)
        if injected is not None:
            record.fault = True
            return fault_response(injected)
        if self.clock.epoch() > stored.expires_epoch:
            record.note = "signed CDN URL expired: store the bytes, not the URL"
            self.add_violation(Violation("expired_cdn_url", record.note, request.method, request.path, 404, 0))
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})
