"""TLS and name resolution that point an unmodified aiohttp client at the emulator and nowhere else.

The emulator serves a certificate for Discord's real host names, issued by a throwaway ``trustme``
CA; the client connector trusts only that CA and resolves only those names (to 127.0.0.1:PORT).
Every other host, IP literals included, is refused: a test can never reach the internet.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import TYPE_CHECKING

import aiohttp
import trustme
from aiohttp.abc import AbstractResolver, ResolveResult

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest, ClientTimeout
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

API_HOST = "discord.com"
GATEWAY_HOST = "gateway.discord.gg"
CDN_HOST = "cdn.discordapp.com"
MEDIA_HOST = "media.discordapp.net"
HOSTS = (API_HOST, GATEWAY_HOST, CDN_HOST, MEDIA_HOST)


def _refusal(host: str) -> OSError:
    return OSError(errno.ECONNREFUSED, f"discord emulator: host {host!r} is not a Discord host; refused")


class TlsMaterial:
    """A test CA and one certificate covering the four Discord host names."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert(*HOSTS)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


class EmulatorResolver(AbstractResolver):
    """Maps the Discord hosts to the emulator's port; any other name raises OSError (fail closed)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in HOSTS:
            raise _refusal(host)
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class EmulatorConnector(aiohttp.TCPConnector):
    """A TCPConnector that also refuses IP literals, which aiohttp would connect to without resolving."""

    async def connect(self, req: ClientRequest, traces: list[Trace], timeout: ClientTimeout) -> Connection:
        host = req.url.host or ""
        if host not in HOSTS:
            raise aiohttp.ClientConnectorError(req.connection_key, _refusal(host))
        return await super().connect(req, traces, timeout)


def make_connector(port: int, ssl_context: ssl.SSLContext) -> aiohttp.TCPConnector:
    """A fresh connector; aiohttp wants one per ClientSession, created inside the running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("call emu.connector() inside the running event loop (aiohttp needs it)") from None
    return EmulatorConnector(resolver=EmulatorResolver(port), ssl=ssl_context)
