"""INTERACTION_CREATE payloads built the way Discord builds them, from the commands the bot registered.

Option values are typed by the *registered* option (attachment → type 11 with a string id plus
``data.resolved.attachments``), so a test cannot send what Discord never would. Misuse by a test
(unknown command or option, a custom_id that is not on the message) raises ``EmulatorUsageError``.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from .messages import find_component, public
from .models import ADMINISTRATOR, DEFAULT_EVERYONE_PERMISSIONS, Channel, Role, User

if TYPE_CHECKING:
    from .server import DiscordEmulator

SUBCOMMAND, GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3
CONTEXT_GUILD, CONTEXT_BOT_DM = 0, 1


class EmulatorUsageError(Exception):
    """The test asked for something Discord could not produce (a test bug, not a bot bug)."""


def new_token() -> str:
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)


class InteractionBuilder:
    """Builds interaction payloads; the emulator registers and dispatches them."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu

    # ----------------------------------------------------------------- common envelope

    def envelope(
        self,
        kind: int,
        user: User,
        channel: Channel,
        data: dict[str, Any],
        *,
        locale: str,
        attachment_size_limit: int,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        emu = self.emu
        payload: dict[str, Any] = {
            "id": emu.ids.next(),
            "application_id": emu.application_id,
            "type": kind,
            "data": data,
            "token": new_token(),
            "version": 1,
            "channel_id": channel.id,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": attachment_size_limit,
        }
        if channel.is_dm:
            if user not in channel.recipients:
                raise EmulatorUsageError(f"{user.username} is not a recipient of DM channel {channel.id}")
            payload.update(
                {
                    "user": user.payload(),
                    "channel": channel.payload(),
                    "app_permissions": str(DEFAULT_EVERYONE_PERMISSIONS),
                    "authorizing_integration_owners": {"0": "0"},
                    "context": CONTEXT_BOT_DM,
                }
            )
        else:
            guild = emu.guilds[channel.guild_id or ""]
            member = guild.members.get(user.id)
            if member is None:
                raise EmulatorUsageError(f"{user.username} is not a member of guild {guild.name!r}; add_member() first")
            perms = guild.permissions_in(user.id, channel)
            channel_payload = channel.payload()
            channel_payload["permissions"] = str(perms)
            payload.update(
                {
                    "guild_id": guild.id,
                    "guild": {"id": guild.id, "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "member": member.payload(permissions=perms),
                    "channel": channel_payload,
                    "app_permissions": str(emu.bot_permissions(channel)),
                    "authorizing_integration_owners": {"0": guild.id},
                    "context": CONTEXT_GUILD,
                }
            )
        if message is not None:
            payload["message"] = public(message)
        return payload

    # ----------------------------------------------------------------- commands

    def find_command(self, name: str, kind: int, channel: Channel, user: User) -> dict[str, Any]:
        emu = self.emu
        scopes = [] if channel.is_dm else [channel.guild_id]
        for scope in [*scopes, None]:
            for command in emu.commands(scope):
                if command["name"] == name and command["type"] == kind:
                    self._check_visible(command, channel, user)
                    return command
        registered = [
            (c["name"], c["type"])
            for c in emu.commands(None) + ([] if channel.is_dm else emu.commands(channel.guild_id))
        ]
        raise EmulatorUsageError(f"no registered command {name!r} of type {kind} here; registered: {registered}")

    def _check_visible(self, command: dict[str, Any], channel: Channel, user: User) -> None:
        """Discord only shows a command where its contexts and default_member_permissions allow."""
        contexts = command.get("contexts")
        if channel.is_dm:
            allowed = (contexts is None and command.get("dm_permission", True) is not False) or (
                contexts is not None and CONTEXT_BOT_DM in contexts
            )
            if not allowed:
                raise EmulatorUsageError(f"command {command['name']!r} is not available in DMs (contexts={contexts})")
            return
        if contexts is not None and CONTEXT_GUILD not in contexts:
            raise EmulatorUsageError(f"command {command['name']!r} is not available in guilds (contexts={contexts})")
        needed = command.get("default_member_permissions")
        if (channel.guild_id, command["name"], user.id) in self.emu.command_overrides:
            return  # a server admin allowed this person in Server Settings → Integrations
        if needed is not None:
            have = self.emu.guilds[channel.guild_id or ""].base_permissions(user.id)
            if not have & ADMINISTRATOR and (have & int(needed)) != int(needed):
                raise EmulatorUsageError(
                    f"Discord hides {command['name']!r} from {user.username}: needs permissions {needed}, has {have}"
                )

    def slash_data(
        self,
        command: dict[str, Any],
        options: dict[str, Any],
        channel: Channel,
        subcommand: str | None,
        group: str | None,
    ) -> dict[str, Any]:
        resolved: dict[str, dict[str, Any]] = {}
        defs = command.get("options") or []
        path = [p for p in (group, subcommand) if p]
        built = self._nest(defs, path, options, resolved, channel, command["name"])
        data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": CHAT_INPUT}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return data

    def _nest(
        self,
        defs: list[dict[str, Any]],
        path: list[str],
        options: dict[str, Any],
        resolved: dict[str, dict[str, Any]],
        channel: Channel,
        where: str,
    ) -> list[dict[str, Any]]:
        nested = [d for d in defs if d["type"] in (SUBCOMMAND, GROUP)]
        if not path:
            if nested:
                names = [d["name"] for d in nested]
                raise EmulatorUsageError(f"{where} needs a subcommand/group (one of {names})")
            return self._leaf_options(defs, options, resolved, channel, where)
        head = next((d for d in nested if d["name"] == path[0]), None)
        if head is None:
            raise EmulatorUsageError(f"{where} has no subcommand/group {path[0]!r}; has {[d['name'] for d in nested]}")
        inner = self._nest(head.get("options") or [], path[1:], options, resolved, channel, f"{where} {path[0]}")
        return [{"name": head["name"], "type": head["type"], "options": inner}]

    def _leaf_options(
        self,
        defs: list[dict[str, Any]],
        options: dict[str, Any],
        resolved: dict[str, dict[str, Any]],
        channel: Channel,
        where: str,
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in defs}
        unknown = sorted(set(options) - set(by_name))
        if unknown:
            raise EmulatorUsageError(f"{where} has no option(s) {unknown}; registered: {sorted(by_name)}")
        missing = [d["name"] for d in defs if d.get("required") and d["name"] not in options]
        if missing:
            raise EmulatorUsageError(f"{where}: required option(s) {missing} not given")
        built = []
        for name, value in options.items():
            spec = by_name[name]
            built.append(
                {"name": name, "type": spec["type"], "value": self._value(spec, value, resolved, channel, where)}
            )
        return built

    def _value(
        self, spec: dict[str, Any], value: Any, resolved: dict[str, dict[str, Any]], channel: Channel, where: str
    ) -> Any:
        kind, name = spec["type"], f"{where} option {spec['name']!r}"
        if kind == ATTACHMENT:
            if not isinstance(value, dict) or "id" not in value:
                raise EmulatorUsageError(f"{name} is an attachment: pass the dict from emu.attachment()")
            resolved.setdefault("attachments", {})[value["id"]] = value
            return str(value["id"])  # a string id, as Discord sends it (an int would become discord.Object)
        if kind in (USER, CHANNEL, ROLE, MENTIONABLE):
            return self._resolve_entity(kind, value, resolved, channel, name)
        checks = {
            STRING: lambda v: isinstance(v, str),
            INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool),
            NUMBER: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            BOOLEAN: lambda v: isinstance(v, bool),
        }
        if kind not in checks or not checks[kind](value):
            raise EmulatorUsageError(f"{name} has type {kind}; {value!r} does not fit")
        choices = spec.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise EmulatorUsageError(f"{name}: {value!r} is not one of the choices {[c['value'] for c in choices]}")
        return value

    def _resolve_entity(
        self, kind: int, value: Any, resolved: dict[str, dict[str, Any]], channel: Channel, name: str
    ) -> str:
        emu = self.emu
        guild = None if channel.is_dm else emu.guilds[channel.guild_id or ""]
        if isinstance(value, Channel) and kind == CHANNEL:
            payload = value.payload()
            if guild is not None:
                payload["permissions"] = str(emu.bot_permissions(value))
            resolved.setdefault("channels", {})[value.id] = payload
            return value.id
        if isinstance(value, User) and kind in (USER, MENTIONABLE):
            resolved.setdefault("users", {})[value.id] = value.payload()
            if guild is not None and value.id in guild.members:
                member = guild.members[value.id].payload(permissions=guild.permissions_in(value.id, channel))
                member.pop("user")
                resolved.setdefault("members", {})[value.id] = member
            return value.id
        if isinstance(value, Role) and kind in (ROLE, MENTIONABLE):
            resolved.setdefault("roles", {})[value.id] = value.payload()
            return value.id
        raise EmulatorUsageError(f"{name} (type {kind}) wants a Channel/User/Role object, got {value!r}")

    def context_menu_data(self, command: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": command["id"],
            "name": command["name"],
            "type": MESSAGE_COMMAND,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: public(message)}},
        }
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return data

    # ----------------------------------------------------------------- components and modals

    @staticmethod
    def component_data(message: dict[str, Any], custom_id: str, values: list[str] | None) -> dict[str, Any]:
        component = find_component(message, custom_id)
        if component is None:
            raise EmulatorUsageError(f"message {message['id']} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise EmulatorUsageError(f"component {custom_id!r} is disabled; Discord would not let a user click it")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = list(values or [])
        return data

    @staticmethod
    def modal_data(modal: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """Mirror the modal's layout (action rows or labels) with the user's values filled in."""
        known: list[str] = []

        def answer(field: dict[str, Any]) -> dict[str, Any]:
            custom_id = field.get("custom_id", "")
            known.append(custom_id)
            value = values.get(custom_id, "")
            if isinstance(value, list):
                return {"type": field["type"], "custom_id": custom_id, "values": value}
            return {"type": field["type"], "custom_id": custom_id, "value": value}

        components = []
        for top in modal.get("components") or []:
            if top.get("type") == 1:
                components.append({"type": 1, "components": [answer(c) for c in top.get("components") or []]})
            elif top.get("type") == 18 and isinstance(top.get("component"), dict):
                components.append({"type": 18, "component": answer(top["component"])})
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise EmulatorUsageError(f"modal {modal.get('custom_id')!r} has no field(s) {unknown}; has {known}")
        return {"custom_id": modal["custom_id"], "components": components}
