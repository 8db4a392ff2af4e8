"""What the emulator remembers for tests: request log, rule violations, and per-interaction handles."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Channel, User
    from .server import DiscordEmulator


@dataclass
class RequestRecord:
    """One HTTP request the bot made (REST or CDN) and how the emulator answered it."""

    method: str
    path: str  # as requested, e.g. /api/v10/channels/1/messages
    route: str | None  # spec template, e.g. /channels/{channel_id}/messages; None when unknown
    host: str
    query: dict[str, str]
    wall: float  # time.monotonic() on arrival
    clock: float  # emulator clock on arrival
    body: Any = None  # parsed JSON body, or the payload_json of a multipart body
    files: list[tuple[str, int]] = field(default_factory=list)  # (filename, size)
    status: int = 0
    error_code: int | None = None
    fault: bool = False  # answered by an armed fault, not by the emulated API
    note: str = ""  # why a request was refused, in words


@dataclass
class Violation:
    """A Discord rule the bot broke; the bot also got Discord's error for it."""

    rule: str  # response_window, double_ack, token_expired, upload_too_large, too_many_attachments,
    # components, schema, auth, bad_request, not_acknowledged, expired_cdn_url, emulator_error, ...
    message: str
    method: str
    path: str
    status: int
    code: int


@dataclass
class CallbackRecord:
    """One POST to /interactions/{id}/{token}/callback, accepted or not."""

    type: int | None
    data: dict[str, Any] | None
    at: float  # emulator clock
    latency: float  # wall seconds since the INTERACTION_CREATE dispatch
    files: list[str] = field(default_factory=list)
    status: int = 200
    error_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.status < 300


POLL_S = 0.02


class Notifier:
    """Wakes waiters when emulator state changes; also polls, since predicates may watch the bot's own state."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, check: Callable[[], Any], timeout: float, what: str, hint: Callable[[], str]) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"emulator: timed out after {timeout}s waiting for {what}\n{hint()}")
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, POLL_S))


@dataclass
class Interaction:
    """Handle for one dispatched INTERACTION_CREATE: everything the bot did with it."""

    emulator: DiscordEmulator
    id: str
    token: str
    type: int
    user: User
    channel: Channel
    payload: dict[str, Any]
    attachment_size_limit: int
    dispatched_wall: float
    dispatched_clock: float
    message_id: str | None = None  # the message a component/modal interaction came from
    responses: list[CallbackRecord] = field(default_factory=list)
    original_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)
    errors: list[RequestRecord] = field(default_factory=list)  # rejected calls made with this token
    loading: bool = False  # a type-5 "thinking" message awaits its first followup/edit

    @property
    def acknowledged(self) -> bool:
        return any(r.ok for r in self.responses)

    @property
    def original(self) -> dict[str, Any] | None:
        return None if self.original_id is None else self.emulator.message(self.original_id)

    @property
    def followups(self) -> list[dict[str, Any]]:
        found = (self.emulator.message(mid) for mid in self.followup_ids)
        return [m for m in found if m is not None]

    def messages(self) -> list[dict[str, Any]]:
        """The original (if any) then the followups, in their current state."""
        original = self.original
        return ([original] if original is not None else []) + self.followups

    async def wait_response(self, timeout: float = 5) -> CallbackRecord:
        """The first callback the bot made (accepted or not)."""
        return await self.wait_for(lambda i: i.responses[0] if i.responses else None, timeout, "a callback")

    async def wait_for(self, predicate: Callable[[Interaction], Any], timeout: float = 5, what: str = "") -> Any:
        """Wait until ``predicate(self)`` is truthy and return its value."""
        return await self.emulator.notifier.wait_until(
            lambda: predicate(self), timeout, what or f"predicate on interaction {self.id}", self._hint
        )

    async def wait_message(
        self, predicate: Callable[[dict[str, Any]], Any] | None = None, timeout: float = 5
    ) -> dict[str, Any]:
        """The first of original + followups for which ``predicate(message)`` is truthy."""

        def check() -> dict[str, Any] | None:
            return next((m for m in self.messages() if predicate is None or predicate(m)), None)

        return await self.emulator.notifier.wait_until(
            check, timeout, f"a message of interaction {self.id}", self._hint
        )

    def _hint(self) -> str:
        return f"responses={self.responses!r}\nmessages={self.messages()!r}\n{self.emulator.debug_summary()}"
