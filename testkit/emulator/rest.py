"""REST API at https://discord.com/api/v10: the routes a bot uses, with Discord's rules and errors.

Pipeline for every request: match the spec template → armed fault? → bot-token auth → parse the
body (JSON or multipart) → upload size/count and component limits → OpenAPI schema → handler.
Every refusal is Discord-shaped ({"message", "code"[, "errors"]}) and every broken rule is also
appended to ``emu.violations``. Unknown routes answer 404 and land in ``emu.unexpected``.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .faults import fault_response
from .messages import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    MAX_ATTACHMENTS,
    BodyError,
    Upload,
    component_problem,
    parse_body,
    public,
)
from .models import (
    ADD_REACTIONS,
    ATTACH_FILES,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
)
from .records import CallbackRecord, Interaction, RequestRecord, Violation

if TYPE_CHECKING:
    from .server import DiscordEmulator

API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
NONCE_WINDOW_S = 5 * 60  # how long Discord remembers an enforced nonce ("the past few minutes")
MAX_REQUEST_BYTES = 25 * 1024 * 1024
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
SETTABLE_FLAGS = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
CALLBACK_TYPES = {4, 5, 6, 7, 9}
TYPE_DEFAULT, TYPE_REPLY, TYPE_CHAT_INPUT, TYPE_CONTEXT_MENU = 0, 19, 20, 23
CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"


class ApiError(Exception):
    """A Discord error answer; ``rule`` set means the bot broke a rule (recorded as a violation)."""

    def __init__(
        self, status: int, code: int, message: str, *, rule: str | None = None, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.rule, self.errors = status, code, message, rule, errors


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py compares the whole header (no "; charset=utf-8").
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


def no_content() -> web.Response:
    return web.Response(status=204)


@dataclass
class Call:
    """One parsed REST request as handlers see it."""

    method: str
    template: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    uploads: list[Upload]
    record: RequestRecord
    interaction: Interaction | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


Handler = Callable[[Call], Awaitable[web.Response]]


def _message_part(call: Call) -> dict[str, Any]:
    """The message-shaped part of a body (callbacks nest it under "data")."""
    if call.template == CALLBACK:
        data = call.json.get("data")
        return data if isinstance(data, dict) else {}
    return call.json


def _response_type(inter: Interaction) -> int:
    """Message type of an interaction's response: chat-input 20, context menu 23, components 0."""
    if inter.type != 2:
        return TYPE_DEFAULT
    return TYPE_CONTEXT_MENU if inter.payload["data"].get("type") in (2, 3) else TYPE_CHAT_INPUT


def _is_empty(message: dict[str, Any]) -> bool:
    keys = ("content", "embeds", "components", "attachments", "sticker_ids", "poll")
    return not any(message.get(key) for key in keys)


class RestApi:
    """Route table and handlers; state lives on the emulator."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu
        webhook = "/webhooks/{webhook_id}/{webhook_token}"
        reaction = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me"
        self.routes: dict[tuple[str, str], tuple[Handler, bool]] = {
            ("GET", "/users/@me"): (self.get_me, True),
            ("GET", "/oauth2/applications/@me"): (self.get_application, True),
            ("GET", "/gateway"): (self.get_gateway, False),
            ("GET", "/gateway/bot"): (self.get_gateway, True),
            ("GET", "/applications/{application_id}/commands"): (self.get_commands, True),
            ("PUT", "/applications/{application_id}/commands"): (self.put_commands, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands"): (self.get_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"): (self.put_commands, True),
            ("POST", CALLBACK): (self.callback, False),
            ("POST", webhook): (self.execute_webhook, False),
            ("GET", webhook + "/messages/@original"): (self.get_webhook_message, False),
            ("PATCH", webhook + "/messages/@original"): (self.edit_webhook_message, False),
            ("DELETE", webhook + "/messages/@original"): (self.delete_webhook_message, False),
            ("GET", webhook + "/messages/{message_id}"): (self.get_webhook_message, False),
            ("PATCH", webhook + "/messages/{message_id}"): (self.edit_webhook_message, False),
            ("DELETE", webhook + "/messages/{message_id}"): (self.delete_webhook_message, False),
            ("GET", "/channels/{channel_id}"): (self.get_channel, True),
            ("POST", "/channels/{channel_id}/messages"): (self.create_channel_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}"): (self.get_channel_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}"): (self.edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}"): (self.delete_channel_message, True),
            ("POST", "/channels/{channel_id}/typing"): (self.typing, True),
            ("PUT", reaction): (self.add_reaction, True),
            ("DELETE", reaction): (self.remove_reaction, True),
            ("POST", "/users/@me/channels"): (self.create_dm, True),
        }

    # ----------------------------------------------------------------- pipeline

    async def handle(self, request: web.Request, record: RequestRecord) -> web.Response:
        try:
            return await self._process(request, record)
        except ApiError as err:
            return self.error(err, record)
        except Exception as exc:  # an emulator bug must fail the test loudly, not crash the server
            detail = "".join(traceback.format_exception(exc))[-2000:]
            return self.error(
                ApiError(400, 0, f"emulator internal error: {exc!r}", rule="emulator_error"), record, detail
            )

    def error(self, err: ApiError, record: RequestRecord, detail: str | None = None) -> web.Response:
        body: dict[str, Any] = {"message": err.message, "code": err.code}
        if err.errors is not None:
            body["errors"] = err.errors
        record.error_code = err.code
        if err.rule is not None:
            message = detail or (f"{err.message}: {record.note}" if record.note else err.message)
            self.emu.add_violation(Violation(err.rule, message, record.method, record.path, err.status, err.code))
        return json_response(body, err.status)

    async def _process(self, request: web.Request, record: RequestRecord) -> web.Response:
        api_path = request.path[len(API_PREFIX) :]
        match = self.emu.openapi.match(api_path)
        route = self.routes.get((request.method, match.template)) if match else None
        if match is None or route is None:
            self.emu.unexpected.append(record)
            raise ApiError(404, 0, "404: Not Found")
        record.route = match.template
        injected = self.emu.faults.take(request.path, cdn=False)
        if injected is not None:
            record.fault = True
            return fault_response(injected)
        handler, needs_bot_auth = route
        if needs_bot_auth and request.headers.get("Authorization") != f"Bot {self.emu.token}":
            raise ApiError(401, 0, "401: Unauthorized", rule="auth")
        call = await self._call(request, record, match.template, match.params)
        try:
            if call.template == CALLBACK and call.interaction is not None:
                self._start_callback(call, call.interaction)
            self._check_uploads(call)
            self._check_message_rules(call)
            self._check_schema(call)
            return await handler(call)
        except ApiError as err:
            self._charge_interaction(call, err)
            raise

    def _start_callback(self, call: Call, inter: Interaction) -> None:
        """Every callback attempt is on the interaction's record, even one refused for its body."""
        callback = CallbackRecord(
            type=call.json.get("type"),
            data=call.json.get("data"),
            at=self.emu.clock.now(),
            latency=time.monotonic() - inter.dispatched_wall,
            files=[u.filename for u in call.uploads],
        )
        inter.responses.append(callback)
        call.extra["callback"] = callback

    def _charge_interaction(self, call: Call, err: ApiError) -> None:
        if call.interaction is None:
            return
        call.interaction.errors.append(call.record)
        callback: CallbackRecord | None = call.extra.get("callback")
        if callback is not None:
            callback.status, callback.error_code = err.status, err.code
        self.emu.notifier.notify()

    async def _call(self, request: web.Request, record: RequestRecord, template: str, params: dict[str, str]) -> Call:
        try:
            parsed = await parse_body(request)
        except BodyError as exc:
            raise ApiError(400, 50035, f"Invalid Form Body: {exc}", rule="bad_request") from exc
        record.body = parsed.json
        record.files = [(u.filename, len(u.data)) for u in parsed.uploads]
        call = Call(request.method, template, params, dict(request.query), parsed.json, parsed.uploads, record)
        call.interaction = self._interaction_for(call)
        return call

    def _interaction_for(self, call: Call) -> Interaction | None:
        if "interaction_id" in call.params:
            found = self.emu.interactions.get(call.params["interaction_id"])
            return found if found is not None and found.token == call.params["interaction_token"] else None
        if "webhook_token" in call.params:
            return self.emu.interactions_by_token.get(call.params["webhook_token"])
        return None

    def _check_uploads(self, call: Call) -> None:
        limit = call.interaction.attachment_size_limit if call.interaction else self.emu.channel_upload_limit
        for upload in call.uploads:
            if len(upload.data) > limit:
                call.record.note = f"{upload.filename}: {len(upload.data)} bytes > limit {limit}"
                raise ApiError(413, 40005, "Request entity too large", rule="upload_too_large")
        total = sum(len(u.data) for u in call.uploads)
        if total > max(MAX_REQUEST_BYTES, limit):
            call.record.note = f"request carries {total} bytes of files"
            raise ApiError(413, 40005, "Request entity too large", rule="upload_too_large")
        listed = _message_part(call).get("attachments")
        count = max(len(call.uploads), len(listed) if isinstance(listed, list) else 0)
        if count > MAX_ATTACHMENTS:
            call.record.note = f"{count} attachments in one message (max {MAX_ATTACHMENTS})"
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                rule="too_many_attachments",
                errors=_field_error(
                    "attachments", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ATTACHMENTS} or fewer in length."
                ),
            )

    def _check_message_rules(self, call: Call) -> None:
        part = _message_part(call)
        flags = part.get("flags") if isinstance(part.get("flags"), int) else 0
        problem = component_problem(part.get("components"), flags)
        if problem is not None:
            call.record.note = problem
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                rule="components",
                errors=_field_error("components", "COMPONENT_LIMIT", problem),
            )
        content = part.get("content")
        if isinstance(content, str) and len(content) > MAX_CONTENT:
            call.record.note = f"content of {len(content)} characters"
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                rule="content_too_long",
                errors=_field_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."),
            )

    def _check_schema(self, call: Call) -> None:
        if call.method not in ("POST", "PUT", "PATCH") or not self.emu.openapi.accepts_body(call.method, call.template):
            return
        problem = self.emu.openapi.validate(call.method, call.template, call.body)
        if problem is not None:
            call.record.note = problem.message
            raise ApiError(400, 50035, "Invalid Form Body", rule="schema", errors=problem.errors)

    # ----------------------------------------------------------------- identity

    async def get_me(self, call: Call) -> web.Response:
        me = self.emu.bot_user.payload()
        me.update({"verified": True, "mfa_enabled": False, "email": None, "locale": "en-US", "bio": ""})
        return json_response(me)

    async def get_application(self, call: Call) -> web.Response:
        emu = self.emu
        return json_response(
            {
                "id": emu.application_id,
                "name": emu.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": emu.application_flags,
                "owner": emu.app_owner.payload(),
                "team": None,
                "bot": emu.bot_user.payload(),
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "rpc_origins": [],
                "tags": [],
                "install_params": None,
                "custom_install_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": len(emu.guilds),
                "integration_types_config": {"0": {}},
            }
        )

    async def get_gateway(self, call: Call) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": "wss://gateway.discord.gg", "shards": 1, "session_start_limit": limit})

    # ----------------------------------------------------------------- commands

    def _command_scope(self, call: Call) -> str | None:
        if call.params["application_id"] != self.emu.application_id:
            raise ApiError(403, 50001, "Missing Access", rule="bad_request")
        guild_id = call.params.get("guild_id")
        if guild_id is not None and guild_id not in self.emu.guilds:
            raise ApiError(403, 50001, "Missing Access", rule="bad_request")
        return guild_id

    async def get_commands(self, call: Call) -> web.Response:
        return json_response(self.emu.commands(self._command_scope(call)))

    async def put_commands(self, call: Call) -> web.Response:
        guild_id = self._command_scope(call)
        previous = {(c["name"], c["type"]): c["id"] for c in self.emu.commands(guild_id)}
        stored = []
        for item in call.body or []:
            kind = item.get("type") or 1
            dmp = item.get("default_member_permissions")
            command = {
                "id": previous.get((item["name"], kind)) or self.emu.ids.next(),
                "application_id": self.emu.application_id,
                "version": self.emu.ids.next(),
                "type": kind,
                "name": item["name"],
                "name_localizations": item.get("name_localizations"),
                "description": item.get("description") or "",
                "description_localizations": item.get("description_localizations"),
                "options": item.get("options") or [],
                "default_member_permissions": None if dmp is None else str(dmp),
                "dm_permission": item.get("dm_permission", True),
                "contexts": item.get("contexts"),
                "integration_types": item.get("integration_types") or [0],
                "nsfw": bool(item.get("nsfw", False)),
            }
            if guild_id is not None:
                command["guild_id"] = guild_id
            stored.append(command)
        self.emu.set_commands(guild_id, stored)
        return json_response(stored)

    # ----------------------------------------------------------------- interactions

    async def callback(self, call: Call) -> web.Response:
        inter = call.interaction
        if inter is None:
            raise ApiError(404, 10062, "Unknown interaction", rule="unknown_interaction")
        callback: CallbackRecord = call.extra["callback"]
        self._check_callback(inter, callback, call.record)
        kind = int(callback.type or 0)
        message = self._apply_callback(call, inter, kind)
        self.emu.notifier.notify()
        if call.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        return json_response(self._callback_body(inter, kind, message))

    def _check_callback(self, inter: Interaction, callback: CallbackRecord, request: RequestRecord) -> None:
        if any(r.ok for r in inter.responses if r is not callback):
            raise ApiError(400, 40060, "Interaction has already been acknowledged.", rule="double_ack")
        waited = callback.at - inter.dispatched_clock
        if waited > self.emu.response_window_s:
            request.note = f"first response {waited:.2f}s after dispatch (window {self.emu.response_window_s}s)"
            raise ApiError(404, 10062, "Unknown interaction", rule="response_window")
        kind = callback.type
        if kind not in CALLBACK_TYPES:
            raise ApiError(400, 50035, f"Invalid interaction response type {kind}", rule="bad_callback")
        if kind in (6, 7) and inter.message_id is None:
            raise ApiError(400, 50035, "Interaction response type 6/7 needs a message interaction", rule="bad_callback")
        if kind == 9 and inter.type == 5:
            raise ApiError(400, 50035, "A modal submit cannot be answered with a modal", rule="bad_callback")
        if kind == 4 and _is_empty(callback.data or {}) and not callback.files:
            raise ApiError(400, 50006, "Cannot send an empty message", rule="empty_message")

    def _apply_callback(self, call: Call, inter: Interaction, kind: int) -> dict[str, Any] | None:
        data = call.json.get("data") or {}
        emu = self.emu
        if kind in (4, 5):
            flags = int(data.get("flags") or 0) & SETTABLE_FLAGS
            if kind == 5:
                message = emu.create_interaction_message(inter, {}, [], flags | LOADING, _response_type(inter))
                inter.loading = True
            else:
                message = emu.create_interaction_message(inter, data, call.uploads, flags, _response_type(inter))
            inter.original_id = message["id"]
            return message
        if kind in (6, 7):
            inter.original_id = inter.message_id
            message = emu.message(inter.message_id or "")
            if kind == 7 and message is not None:
                emu.edit_message(message, data, call.uploads)
            return message
        return None  # 9: the modal is on record in inter.responses

    def _callback_body(self, inter: Interaction, kind: int, message: dict[str, Any] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"id": inter.id, "type": inter.type, "activity_instance_id": None}
        resource: dict[str, Any] = {"type": kind}
        if message is not None and kind in (4, 5, 7):
            meta["response_message_id"] = message["id"]
            meta["response_message_loading"] = bool(message["flags"] & LOADING)
            meta["response_message_ephemeral"] = bool(message["flags"] & EPHEMERAL)
            resource["message"] = public(message)
        return {"interaction": meta, "resource": resource}

    def _token_interaction(self, call: Call) -> Interaction:
        """Webhook-token routes: known token, right application, not expired, already acknowledged."""
        inter = call.interaction
        if call.params["webhook_id"] != self.emu.application_id:
            raise ApiError(404, 10015, "Unknown Webhook", rule="unknown_webhook")
        if inter is None:
            raise ApiError(401, 50027, "Invalid Webhook Token", rule="token_invalid")
        age = self.emu.clock.now() - inter.dispatched_clock
        if age > self.emu.token_lifetime_s:
            raise ApiError(401, 50027, "Invalid Webhook Token", rule="token_expired")
        if not inter.acknowledged:
            raise ApiError(404, 10015, "Unknown Webhook", rule="not_acknowledged")
        return inter

    def _token_message(self, call: Call, inter: Interaction) -> dict[str, Any]:
        message_id = call.params.get("message_id")
        if message_id is None:
            message_id = inter.original_id
        elif message_id not in inter.followup_ids and message_id != inter.original_id:
            message_id = None
        message = self.emu.message(message_id) if message_id else None
        if message is None:
            raise ApiError(404, 10008, "Unknown Message", rule="unknown_message")
        return message

    async def execute_webhook(self, call: Call) -> web.Response:
        inter = self._token_interaction(call)
        body = call.json
        if _is_empty(body) and not call.uploads:
            raise ApiError(400, 50006, "Cannot send an empty message", rule="empty_message")
        emu = self.emu
        thinking = emu.message(inter.original_id) if inter.loading and inter.original_id else None
        if thinking is not None:
            # The first followup after a type-5 defer replaces the "thinking" message (flags stay the defer's).
            message = thinking
            emu.edit_message(message, {k: v for k, v in body.items() if k != "flags"}, call.uploads)
            inter.loading = False
        else:
            flags = int(body.get("flags") or 0) & SETTABLE_FLAGS
            message = emu.create_interaction_message(inter, body, call.uploads, flags, TYPE_DEFAULT, followup=True)
            inter.followup_ids.append(message["id"])
        emu.notifier.notify()
        if call.query.get("wait") in ("1", "true", "True"):
            return json_response(public(message))
        return no_content()

    async def get_webhook_message(self, call: Call) -> web.Response:
        inter = self._token_interaction(call)
        return json_response(public(self._token_message(call, inter)))

    async def edit_webhook_message(self, call: Call) -> web.Response:
        inter = self._token_interaction(call)
        message = self._token_message(call, inter)
        self.emu.edit_message(message, call.json, call.uploads)
        if message["id"] == inter.original_id:
            inter.loading = False
        self.emu.notifier.notify()
        return json_response(public(message))

    async def delete_webhook_message(self, call: Call) -> web.Response:
        inter = self._token_interaction(call)
        message = self._token_message(call, inter)
        self.emu.delete_message(message["id"])
        return no_content()

    # ----------------------------------------------------------------- channels (bot token)

    def _channel(self, call: Call, *needed: int) -> Channel:
        channel = self.emu.channels.get(call.params["channel_id"])
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel", rule="unknown_channel")
        if channel.guild_id is not None:
            perms = self.emu.bot_permissions(channel)
            if not perms & VIEW_CHANNEL:
                raise ApiError(403, 50001, "Missing Access", rule="missing_permissions")
            missing = [bit for bit in needed if not perms & bit]
            if missing:
                raise ApiError(403, 50013, "Missing Permissions", rule="missing_permissions")
        return channel

    def _channel_message(self, call: Call, channel: Channel) -> dict[str, Any]:
        message = self.emu.message(call.params["message_id"])
        if message is None or message["channel_id"] != channel.id or message.get("_ephemeral"):
            raise ApiError(404, 10008, "Unknown Message", rule="unknown_message")
        return message

    async def get_channel(self, call: Call) -> web.Response:
        return json_response(self._channel(call).payload())

    async def typing(self, call: Call) -> web.Response:
        self._channel(call, SEND_MESSAGES)
        return no_content()

    async def create_channel_message(self, call: Call) -> web.Response:
        channel = self._channel(call, SEND_MESSAGES, *([ATTACH_FILES] if call.uploads else []))
        if channel.is_dm and not channel.recipients[0].dms_open:
            # Not a rule the bot broke (it cannot know in advance), so no violation is recorded.
            raise ApiError(403, 50007, "Cannot send messages to this user")
        body = call.json
        if _is_empty(body) and not call.uploads:
            raise ApiError(400, 50006, "Cannot send an empty message", rule="empty_message")
        repeat = self._same_nonce(channel, body)
        if repeat is not None:  # enforce_nonce: Discord answers with the message it already created
            return json_response(public(repeat))
        extra: dict[str, Any] = {}
        reference = body.get("message_reference")
        if isinstance(reference, dict):
            extra = self._reference(channel, reference)
        flags = int(body.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2)
        msg_type = TYPE_REPLY if extra else TYPE_DEFAULT
        if body.get("nonce") not in (None, ""):
            extra["nonce"] = str(body["nonce"])
        extra["_created_clock"] = self.emu.clock.now()
        message = self.emu.create_bot_message(channel, body, call.uploads, flags, msg_type, extra)
        return json_response(public(message))

    def _same_nonce(self, channel: Channel, body: dict[str, Any]) -> dict[str, Any] | None:
        """The bot's message in this channel with the same nonce in the last few minutes, when enforced."""
        nonce = body.get("nonce")
        if not body.get("enforce_nonce") or nonce in (None, ""):
            return None
        recent = self.emu.clock.now() - NONCE_WINDOW_S
        for message in reversed(self.emu.channel_messages(channel)):
            if (message.get("nonce") == str(nonce) and message["author"]["id"] == self.emu.bot_user.id
                    and message.get("_created_clock", 0.0) >= recent):
                return message
        return None

    def _reference(self, channel: Channel, reference: dict[str, Any]) -> dict[str, Any]:
        target = self.emu.message(str(reference.get("message_id")))
        if target is None or target["channel_id"] != channel.id:
            if reference.get("fail_if_not_exists") is False:
                return {}
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                rule="unknown_reference",
                errors=_field_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"),
            )
        ref = {"type": 0, "channel_id": channel.id, "message_id": target["id"]}
        if channel.guild_id is not None:
            ref["guild_id"] = channel.guild_id
        return {"message_reference": ref, "referenced_message": public(target)}

    async def get_channel_message(self, call: Call) -> web.Response:
        channel = self._channel(call, READ_MESSAGE_HISTORY)
        return json_response(public(self._channel_message(call, channel)))

    async def edit_channel_message(self, call: Call) -> web.Response:
        channel = self._channel(call)
        message = self._channel_message(call, channel)
        if message["author"]["id"] != self.emu.bot_user.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user", rule="edit_foreign_message")
        self.emu.edit_message(message, call.json, call.uploads)
        self.emu.notifier.notify()
        return json_response(public(message))

    async def delete_channel_message(self, call: Call) -> web.Response:
        channel = self._channel(call)
        message = self._channel_message(call, channel)
        if message["author"]["id"] != self.emu.bot_user.id:
            if channel.is_dm:
                raise ApiError(403, 50003, "Cannot execute action on a DM channel", rule="missing_permissions")
            if not self.emu.bot_permissions(channel) & MANAGE_MESSAGES:
                raise ApiError(403, 50013, "Missing Permissions", rule="missing_permissions")
        self.emu.delete_message(message["id"])
        return no_content()

    async def add_reaction(self, call: Call) -> web.Response:
        channel = self._channel(call, READ_MESSAGE_HISTORY, ADD_REACTIONS)
        self.emu.set_reaction(self._channel_message(call, channel), call.params["emoji_name"], add=True)
        return no_content()

    async def remove_reaction(self, call: Call) -> web.Response:
        channel = self._channel(call, READ_MESSAGE_HISTORY)
        self.emu.set_reaction(self._channel_message(call, channel), call.params["emoji_name"], add=False)
        return no_content()

    async def create_dm(self, call: Call) -> web.Response:
        user = self.emu.users.get(str(call.json.get("recipient_id")))
        if user is None or user.id == self.emu.bot_user.id:
            raise ApiError(400, 50033, "Invalid Recipient(s)", rule="bad_request")
        return json_response(self.emu.dm_channel(user).payload())


def _field_error(name: str, code: str, message: str) -> dict[str, Any]:
    return {name: {"_errors": [{"code": code, "message": message}]}}
