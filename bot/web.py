"""The bot's small HTTP side: ``GET /metrics`` for Prometheus and ``GET /healthz`` for Docker or a load balancer.

It runs on the bot's own event loop, so a scrape also shows whether that loop still answers.
/healthz says "down" (503) while the gateway is not connected and ready: the bot cannot hear
anyone. It says "degraded" (503) when Discord is fine but the queue or the store does not answer
within ``CHECK_TIMEOUT_S``: commands still get a polite answer, but no portrait can be made. Else "ok"
(200). Neither endpoint shows ids, tokens, prompts or URLs with passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:
    from bot.host import StatusHost

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0


async def serve_status(bot: StatusHost) -> StatusServer | None:
    """Start the server when ``[metrics]`` enables it. A port already taken is logged, not fatal:
    a bot without its metrics still serves people."""
    settings = bot.config.metrics
    if not settings.enabled:
        return None
    server = StatusServer(bot, settings.host, settings.port)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot serve /metrics and /healthz on %s:%d (%s); running without them",
                  settings.host, settings.port, exc.strerror or exc)
        return None
    return server


class StatusServer:
    """Serves /metrics and /healthz; ``port`` is the bound one (useful with port 0)."""

    def __init__(self, bot: StatusHost, host: str, port: int) -> None:
        self.bot = bot
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)  # a scrape every few seconds would flood the log
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self.port = runner.addresses[0][1]
        self._probe = asyncio.create_task(self.bot.metrics.watch_event_loop(), name="closeup-loop-lag")
        host = f"[{self.host}]" if ":" in self.host else self.host
        log.info("metrics on http://%s:%d/metrics, health on http://%s:%d/healthz", host, self.port, host, self.port)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ handlers

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.bot.metrics.render(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def _healthz(self, _request: web.Request) -> web.Response:
        body = await self.health()
        return web.json_response(body, status=200 if body["status"] == "ok" else 503)

    async def health(self) -> dict[str, Any]:
        bot = self.bot
        ws = bot.ws
        discord_ok = bool(bot.is_ready() and not bot.is_closed() and ws is not None and ws.open)
        queue = bot.queue
        queue_ok, store_ok = await asyncio.gather(
            _answers(queue.status("healthz")) if queue is not None else _no(),
            _answers(bot.store.counts()))
        latency = bot.latency
        status = "down" if not discord_ok else "ok" if queue_ok and store_ok else "degraded"
        return {"status": status, "discord": discord_ok,
                "gateway_latency_s": round(latency, 4) if math.isfinite(latency) else None,
                "queue": queue_ok, "store": store_ok, "uptime_s": round(time.monotonic() - bot.metrics.started, 1)}


async def _answers(call: Awaitable[Any]) -> bool:
    """Whether a backend answered in time; the reason goes to the debug log, not to the caller."""
    try:
        await asyncio.wait_for(call, CHECK_TIMEOUT_S)
    except Exception as exc:  # TimeoutError, a storage error, a closed connection: all mean "not now"
        log.debug("health check: %s", type(exc).__name__)
        return False
    return True


async def _no() -> bool:
    return False
