"""The gateway websocket: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE, RESUME → replay + RESUMED.

One bot session at a time. Dispatches are numbered and buffered, so when a test drops the socket
the bot's RESUME gets everything it missed, as on the real gateway. Frames are always text
(discord.py only decompresses binary frames, whatever ``compress`` it asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

HEARTBEAT_INTERVAL_MS = 41250
RESUME_GATEWAY_URL = "wss://gateway.discord.gg"
NOT_REPLAYED = frozenset({"READY", "RESUMED"})
APPLICATION_FLAGS = (1 << 19) | (1 << 23)  # message-content intent (limited), command badge


@dataclass(eq=False)  # identity semantics: connections live in a set
class _Connection:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)

    def send(self, frame: dict[str, Any]) -> None:
        self.queue.put_nowait(json.dumps(frame))


@dataclass
class GatewayEvent:
    direction: str  # "in" (from the bot) or "out"
    op: int | None
    t: str | None = None
    s: int | None = None


class GatewayHub:
    """Session state shared by every websocket the bot opens (first IDENTIFY, later RESUMEs)."""

    def __init__(
        self,
        token: str,
        ready_payload: Callable[[dict[str, Any]], dict[str, Any]],
        guild_payloads: Callable[[], list[dict[str, Any]]],
        on_change: Callable[[], None],
        on_violation: Callable[[str, str], None],
    ) -> None:
        self._token = token
        self._ready_payload = ready_payload
        self._guild_payloads = guild_payloads
        self._on_change = on_change
        self._on_violation = on_violation
        self.session_id: str | None = None
        self.intents: int = 0
        self.seq = 0
        self.buffer: list[dict[str, Any]] = []
        self.current: _Connection | None = None
        self.log: list[GatewayEvent] = []
        self.identify_count = 0
        self.resume_count = 0
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def ready(self) -> bool:
        return self.session_id is not None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws)
        self._connections.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        conn.send({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["discord-emulator"]}})
        self.log.append(GatewayEvent("out", 10))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._close(conn, 4002, "binary frames are not expected from a json-encoding client")
        finally:
            self._connections.discard(conn)
            if self.current is conn:
                self.current = None
            conn.queue.put_nowait(None)
            await writer
            self._on_change()
        return ws

    async def _writer(self, conn: _Connection) -> None:
        while (text := await conn.queue.get()) is not None:
            if conn.ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(text)

    def _on_frame(self, conn: _Connection, text: str) -> None:
        try:
            frame = json.loads(text)
            op = frame["op"]
        except (ValueError, KeyError, TypeError):
            self._on_violation("gateway", f"undecodable gateway frame: {text[:200]!r}")
            self._close(conn, 4002, "Error while decoding payload.")
            return
        self.log.append(GatewayEvent("in", op))
        data = frame.get("d")
        if op == 1:
            conn.send({"op": 11})
        elif op == 2:
            self._identify(conn, data or {})
        elif op == 6:
            self._resume(conn, data or {})
        elif op in (3, 4, 8, 31):  # presence, voice state, request members, soundboard: accepted, ignored
            return
        else:
            self._on_violation("gateway", f"unknown gateway opcode {op}")
            self._close(conn, 4001, "Unknown opcode.")

    def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self._token:
            self._on_violation("auth", "IDENTIFY with a wrong token")
            self._close(conn, 4004, "Authentication failed.")
            return
        self.intents = int(data.get("intents") or 0)
        self.session_id = secrets.token_hex(16)
        self.seq = 0
        self.buffer = []
        self.current = conn
        self.identify_count += 1
        ready = self._ready_payload(data)
        ready["session_id"] = self.session_id
        ready["resume_gateway_url"] = RESUME_GATEWAY_URL
        if "shard" in data:
            ready["shard"] = data["shard"]
        self.dispatch("READY", ready)
        for guild in self._guild_payloads():
            self.dispatch("GUILD_CREATE", guild)
        self._on_change()

    def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self._token or data.get("session_id") != self.session_id:
            conn.send({"op": 9, "d": False})  # not resumable: the client re-IDENTIFYs
            self.log.append(GatewayEvent("out", 9))
            return
        last = int(data.get("seq") or 0)
        for frame in self.buffer:
            if frame["s"] > last and frame["t"] not in NOT_REPLAYED:
                conn.send(frame)
        self.current = conn
        self.resume_count += 1
        self.dispatch("RESUMED", {"_trace": ["discord-emulator"]})
        self._on_change()

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Number, buffer and send an op-0 event; while disconnected it waits in the buffer for RESUME."""
        self.seq += 1
        frame = {"op": 0, "t": event, "s": self.seq, "d": data}
        self.buffer.append(frame)
        self.log.append(GatewayEvent("out", 0, event, self.seq))
        if self.current is not None:
            self.current.send(frame)

    def drop(self, code: int = 4000) -> None:
        """Close the live socket abruptly (test fault); later dispatches wait for the RESUME."""
        conn, self.current = self.current, None
        if conn is not None:
            self._close(conn, code, "emulated gateway drop")

    def _close(self, conn: _Connection, code: int, reason: str) -> None:
        if self.current is conn:
            self.current = None
        task = asyncio.create_task(conn.ws.close(code=code, message=reason.encode()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for conn in list(self._connections):
            await conn.ws.close(code=1001, message=b"emulator shutting down")
