"""Discord objects the emulator keeps (users, guilds, roles, channels) and their wire payloads.

Payloads carry every key discord.py 2.7 reads with ``data[...]`` so a KeyError inside the library
means the emulator is wrong, not the bot.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

# Permission bits the emulator reasons about (Discord's values).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)
DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE_PERMISSIONS

# Gateway intents that change what the emulator sends.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

TEXT_CHANNEL = 0
DM_CHANNEL = 1

DISCORD_EPOCH_MS = 1_420_070_400_000


class Clock:
    """Emulator time: wall time plus a test-controlled offset, so rules can be expired instantly."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""
        return time.monotonic() + self.offset

    def epoch(self) -> float:
        """Unix time as the emulated Discord sees it (for timestamps and signed CDN URLs)."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Jump forward; every clock-based rule (3 s window, 15 min token) sees the jump."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        self.offset += seconds

    def iso(self) -> str:
        return dt.datetime.fromtimestamp(self.epoch(), dt.UTC).isoformat()


class Snowflakes:
    """Discord-shaped ids: milliseconds since the Discord epoch in the high bits, a counter below."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._counter) & 0x3FFFFF))


@dataclass
class User:
    id: str
    username: str
    global_name: str | None = None
    bot: bool = False
    dms_open: bool = True  # False: the bot's DMs to this user fail with 50007, as with closed DMs

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class Role:
    id: str
    name: str
    permissions: int
    position: int = 0
    bot_id: str | None = None  # set for the bot's managed integration role

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.bot_id is not None,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": self.bot_id}
        return data


@dataclass
class Member:
    user: User
    roles: list[str]
    joined_at: str

    def payload(self, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.user.payload(),
            "roles": list(self.roles),
            "joined_at": self.joined_at,
            "nick": None,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass
class Channel:
    id: str
    type: int
    name: str | None = None
    guild_id: str | None = None
    position: int = 0
    recipients: list[User] = field(default_factory=list)
    overwrites: list[dict[str, Any]] = field(default_factory=list)  # Discord permission_overwrites objects

    @property
    def is_dm(self) -> bool:
        return self.type == DM_CHANNEL

    def payload(self, *, with_guild_id: bool = True) -> dict[str, Any]:
        if self.is_dm:
            return {
                "id": self.id,
                "type": DM_CHANNEL,
                "last_message_id": None,
                "flags": 0,
                "recipients": [user.payload() for user in self.recipients],
            }
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [dict(o) for o in self.overwrites],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if with_guild_id:
            data["guild_id"] = self.guild_id
        return data


@dataclass
class Guild:
    id: str
    name: str
    owner_id: str
    bot_id: str
    roles: dict[str, Role] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    joined_at: str = ""

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def base_permissions(self, user_id: str) -> int:
        """Guild-wide permissions: @everyone plus the member's roles; owner and admin get everything."""
        member = self.members.get(user_id)
        if member is None:
            return 0
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role_id in member.roles:
            role = self.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def permissions_in(self, user_id: str, channel: Channel | None) -> int:
        """Discord's overwrite algorithm: @everyone, then roles (deny before allow), then the member."""
        perms = self.base_permissions(user_id)
        if channel is None or perms & ADMINISTRATOR:
            return perms
        member = self.members[user_id]
        by_id = {o["id"]: o for o in channel.overwrites}
        everyone = by_id.get(self.id)
        if everyone:
            perms = (perms & ~int(everyone.get("deny", 0))) | int(everyone.get("allow", 0))
        allow = deny = 0
        for role_id in member.roles:
            overwrite = by_id.get(role_id)
            if overwrite:
                allow |= int(overwrite.get("allow", 0))
                deny |= int(overwrite.get("deny", 0))
        perms = (perms & ~deny) | allow
        own = by_id.get(user_id)
        if own:
            perms = (perms & ~int(own.get("deny", 0))) | int(own.get("allow", 0))
        return perms

    def create_payload(self, *, include_all_members: bool) -> dict[str, Any]:
        """GUILD_CREATE: without the members intent Discord only sends the bot's own member."""
        members = [m for uid, m in self.members.items() if include_all_members or uid == self.bot_id]
        text_channel = next((c.id for c in self.channels.values()), None)
        return {
            "id": self.id,
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "application_id": None,
            "system_channel_id": text_channel,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "joined_at": self.joined_at,
            "large": False,
            "lazy": True,
            "unavailable": False,
            "member_count": len(self.members),
            "roles": [role.payload() for role in self.roles.values()],
            "channels": [c.payload(with_guild_id=False) for c in self.channels.values()],
            "members": [m.payload() for m in members],
            "threads": [],
            "emojis": [],
            "stickers": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }
