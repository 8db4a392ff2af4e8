"""Faults a test can arm: 429s, 5xx, random failures and gateway drops.

Faults hit only REST routes the emulator implements (never the CDN unless ``cdn=True``), so a
test that arms "one 429" gets exactly one on the bot's next API call.
"""

from __future__ import annotations

import json
import math
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass
class _Armed:
    status: int
    remaining: int
    retry_after: float
    route_contains: str | None
    cdn: bool
    is_global: bool = False

    def matches(self, path: str, *, cdn: bool) -> bool:
        if cdn and not self.cdn:
            return False
        return self.route_contains is None or self.route_contains in path


@dataclass
class _RandomFaults:
    rate: float
    statuses: tuple[int, ...]
    rng: _random.Random
    retry_after: float
    route_contains: str | None
    cdn: bool


@dataclass(frozen=True)
class Injected:
    status: int
    retry_after: float
    is_global: bool
    path: str


class Faults:
    """Test-facing switchboard; the server asks ``take()`` before answering each request."""

    def __init__(self, drop_gateway: Callable[[int], None]) -> None:
        self._drop_gateway = drop_gateway
        self._armed: list[_Armed] = []
        self._random: _RandomFaults | None = None
        self.injected: list[Injected] = []

    def rate_limit(
        self,
        n: int = 1,
        retry_after: float = 0.2,
        route_contains: str | None = None,
        *,
        is_global: bool = False,
        cdn: bool = False,
    ) -> None:
        """The next ``n`` matching calls get 429 with ``retry_after`` (and the headers discord.py reads)."""
        self._armed.append(_Armed(429, n, retry_after, route_contains, cdn, is_global))

    def server_error(
        self, n: int = 1, status: int = 500, route_contains: str | None = None, *, cdn: bool = False
    ) -> None:
        """The next ``n`` matching calls get a 5xx (discord.py retries 500/502/504 after 1 s, 3 s, ...)."""
        if status < 500:
            raise ValueError("server_error wants a 5xx status")
        self._armed.append(_Armed(status, n, 0.0, route_contains, cdn))

    def random(
        self,
        rate: float = 0.1,
        statuses: tuple[int, ...] = (429, 500, 502),
        seed: int | None = None,
        *,
        route_contains: str | None = None,
        retry_after: float = 0.05,
        cdn: bool = False,
    ) -> None:
        """A seeded fraction of matching calls fail with one of ``statuses``; ``rate=0`` turns it off."""
        self._random = (
            _RandomFaults(rate, tuple(statuses), _random.Random(seed), retry_after, route_contains, cdn)
            if rate
            else None
        )

    def drop_gateway(self, code: int = 4000) -> None:
        """Close the bot's websocket now; discord.py should reconnect and RESUME."""
        self._drop_gateway(code)

    def clear(self) -> None:
        self._armed.clear()
        self._random = None

    def take(self, path: str, *, cdn: bool) -> Injected | None:
        for armed in self._armed:
            if armed.remaining > 0 and armed.matches(path, cdn=cdn):
                armed.remaining -= 1
                return self._record(Injected(armed.status, armed.retry_after, armed.is_global, path))
        self._armed = [a for a in self._armed if a.remaining > 0]
        rnd = self._random
        if rnd is None or (cdn and not rnd.cdn) or (rnd.route_contains and rnd.route_contains not in path):
            return None
        if rnd.rng.random() >= rnd.rate:
            return None
        return self._record(Injected(rnd.rng.choice(rnd.statuses), rnd.retry_after, False, path))

    def _record(self, injected: Injected) -> Injected:
        self.injected.append(injected)
        return injected


def fault_response(injected: Injected) -> web.Response:
    """Discord's 429 (with Via, which discord.py requires before trusting retry_after) or a bare 5xx."""
    if injected.status == 429:
        body = {
            "message": "You are being rate limited.",
            "retry_after": injected.retry_after,
            "global": injected.is_global,
        }
        headers = {
            "Content-Type": "application/json",
            "Via": "1.1 google",
            "Retry-After": str(math.ceil(injected.retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + injected.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{injected.retry_after:.3f}",
            "X-RateLimit-Bucket": "emulator-fault",
            "X-RateLimit-Scope": "global" if injected.is_global else "user",
        }
        if injected.is_global:
            headers["X-RateLimit-Global"] = "true"
        return web.Response(status=429, body=json.dumps(body).encode(), headers=headers)
    body = {"message": f"{injected.status}: emulated server error", "code": 0}
    return web.Response(
        status=injected.status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
