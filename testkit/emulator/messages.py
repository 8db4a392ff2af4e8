"""Messages, attachments and uploaded bytes, plus the request-body parsing they come from.

Messages are plain dicts in Discord's wire shape so a test can assert on exactly what a user would
see; keys starting with ``_`` are the emulator's own bookkeeping (edit times, ephemeral, owner
interaction) and are stripped before anything goes back over the wire.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from .tls import CDN_HOST, MEDIA_HOST

if TYPE_CHECKING:
    from .models import Channel, Clock, Snowflakes, User

EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15
CDN_URL_LIFETIME_S = 24 * 3600
MAX_ATTACHMENTS = 10
MAX_CUSTOM_ID = 100
MAX_ROWS = 5
MAX_PER_ROW = 5


class BodyError(ValueError):
    """The request body could not be read as Discord expects (bad JSON, bad multipart, ...)."""


@dataclass
class Upload:
    field: str
    filename: str
    data: bytes


@dataclass
class ParsedBody:
    json: Any = None
    uploads: list[Upload] = field(default_factory=list)
    multipart: bool = False


@dataclass
class StoredFile:
    data: bytes
    filename: str
    content_type: str
    expires_epoch: float


async def parse_body(request: web.Request) -> ParsedBody:
    """JSON, or multipart with ``payload_json`` plus ``files[n]`` parts (how discord.py uploads)."""
    if request.content_type == "multipart/form-data":
        return await _parse_multipart(request)
    raw = await request.read()
    if not raw:
        return ParsedBody()
    if request.content_type != "application/json":
        raise BodyError(f"unsupported Content-Type {request.content_type!r}")
    try:
        return ParsedBody(json=json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from exc


async def _parse_multipart(request: web.Request) -> ParsedBody:
    parsed = ParsedBody(multipart=True)
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BodyError("nested multipart is not supported")
            name = part.name or ""
            if name == "payload_json":
                parsed.json = json.loads(await part.text())
            elif part.filename is not None or name.startswith("files["):
                data = bytes(await part.read(decode=True))
                parsed.uploads.append(Upload(name, part.filename or name, data))
            else:
                raise BodyError(f"unexpected multipart field {name!r}")
    except (ValueError, AssertionError) as exc:  # JSONDecodeError is a ValueError; aiohttp asserts on framing
        raise BodyError(f"malformed multipart body: {exc}") from exc
    return parsed


def upload_index(upload: Upload) -> int | None:
    """``files[3]`` → 3 (discord.py's naming); other field names have no index."""
    if upload.field.startswith("files[") and upload.field.endswith("]"):
        inner = upload.field[6:-1]
        return int(inner) if inner.isdigit() else None
    return None


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width/height like Discord reports for images; None for anything Pillow can't read."""
    try:
        from PIL import Image  # a base dependency of the project; header-only read

        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except Exception:  # not an image (or Pillow missing): Discord sends no dimensions either
        return None, None


def public(message: dict[str, Any]) -> dict[str, Any]:
    """The wire form: emulator bookkeeping removed, nested referenced_message included."""
    data = {k: v for k, v in message.items() if not k.startswith("_")}
    if isinstance(data.get("referenced_message"), dict):
        data["referenced_message"] = public(data["referenced_message"])
    return data


def walk_components(components: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Every component, nested ones included (rows, containers, sections, labels, accessories)."""
    found: list[dict[str, Any]] = []
    stack = list(components or [])
    while stack:
        comp = stack.pop(0)
        if not isinstance(comp, dict):
            continue
        found.append(comp)
        stack.extend(comp.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), dict):
                stack.append(comp[key])
    return found


def component_problem(components: Any, flags: int = 0) -> str | None:
    """Discord's component limits: ≤5 action rows (classic layout), ≤5 items per row, custom_id ≤100."""
    if not isinstance(components, list):
        return None
    rows = [c for c in components if isinstance(c, dict) and c.get("type") == 1]
    if not flags & IS_COMPONENTS_V2 and len(rows) > MAX_ROWS:
        return f"{len(rows)} action rows (max {MAX_ROWS})"
    for comp in walk_components(components):
        children = comp.get("components") or []
        if comp.get("type") == 1 and len(children) > MAX_PER_ROW:
            return f"{len(children)} components in one action row (max {MAX_PER_ROW})"
        custom_id = comp.get("custom_id")
        if isinstance(custom_id, str) and len(custom_id) > MAX_CUSTOM_ID:
            return f"custom_id of {len(custom_id)} characters (max {MAX_CUSTOM_ID})"
    return None


def find_component(message: dict[str, Any], custom_id: str) -> dict[str, Any] | None:
    return next((c for c in walk_components(message.get("components")) if c.get("custom_id") == custom_id), None)


class MessageStore:
    """Every message and every file the emulated Discord holds, in creation order."""

    def __init__(self, ids: Snowflakes, clock: Clock) -> None:
        self.ids = ids
        self.clock = clock
        self.by_id: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}
        self.files: dict[str, StoredFile] = {}

    def add(self, message: dict[str, Any]) -> dict[str, Any]:
        self.by_id[message["id"]] = message
        return message

    def get(self, message_id: str) -> dict[str, Any] | None:
        return self.by_id.get(str(message_id))

    def delete(self, message_id: str) -> dict[str, Any] | None:
        message = self.by_id.pop(str(message_id), None)
        if message is not None:
            self.deleted[message["id"]] = message
        return message

    def in_channel(self, channel_id: str) -> list[dict[str, Any]]:
        return [m for m in self.by_id.values() if m["channel_id"] == str(channel_id)]

    def store_file(
        self,
        data: bytes,
        filename: str,
        *,
        channel_id: str,
        content_type: str | None = None,
        size: int | None = None,
        url: str | None = None,
        width: int | None = None,
        height: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Keep the bytes and return the attachment object Discord would send for them."""
        att_id = self.ids.next()
        ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if width is None and height is None and ctype.startswith("image/"):
            width, height = image_size(data)
        expires = self.clock.epoch() + CDN_URL_LIFETIME_S
        self.files[att_id] = StoredFile(data, filename, ctype, expires)
        attachment: dict[str, Any] = {
            "id": att_id,
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": url or self._signed_url(CDN_HOST, channel_id, att_id, filename, expires),
            "proxy_url": url or self._signed_url(MEDIA_HOST, channel_id, att_id, filename, expires),
            "content_type": ctype,
        }
        if width is not None and height is not None:
            attachment["width"], attachment["height"] = width, height
        if description is not None:
            attachment["description"] = description
        return attachment

    def _signed_url(self, host: str, channel_id: str, att_id: str, filename: str, expires: float) -> str:
        issued = int(self.clock.epoch())
        sig = hashlib.sha256(f"{att_id}:{int(expires)}".encode()).hexdigest()
        return f"https://{host}/attachments/{channel_id}/{att_id}/{quote(filename)}?ex={int(expires):x}&is={issued:x}&hm={sig}&"

    def new_message(
        self,
        *,
        channel: Channel,
        author: User,
        content: str = "",
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        flags: int = 0,
        type: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": self.ids.next(),
            "channel_id": channel.id,
            "author": author.payload(),
            "content": content,
            "timestamp": self.clock.iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "components": components or [],
            "pinned": False,
            "type": type,
            "flags": flags,
            "_edits": [],
            "_ephemeral": bool(flags & EPHEMERAL),
        }
        if channel.guild_id is not None:
            message["guild_id"] = channel.guild_id
        message.update(extra or {})
        return self.add(message)
