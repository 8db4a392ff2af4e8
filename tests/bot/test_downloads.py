"""bot.downloads against a real HTTPS server on 127.0.0.1 that impersonates Discord's CDN.

A trustme CA issues a certificate for the CDN host names; the client trusts only that CA and
resolves only those names (to the local server), so TLS verification is exercised for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.downloads import ATTACHMENT_HOSTS, DownloadError, fetch_attachment

SECRET = "hm=5ec7e7t0ken"  # stands for Discord's signed query parameters
QUERY = f"?ex=6650&is=664e&{SECRET}"
PHOTO = bytes(range(256)) * 1200  # 300 KiB, more than a few chunks
MIB = 1024 * 1024


@cache
def _ca() -> trustme.CA:
    return trustme.CA()


def _server_ssl() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _ca().issue_cert(*sorted(ATTACHMENT_HOSTS)).configure_cert(context)
    return context


def _client_ssl(trusted: bool = True) -> ssl.SSLContext:
    """Verifies hostnames and trusts only the test CA (or, untrusted, only a stranger CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    (_ca() if trusted else trustme.CA()).configure_trust(context)
    return context


class CdnResolver(AbstractResolver):
    """Resolves the CDN names to the local server and nothing else; records every lookup."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        self.lookups.append(host)
        if host not in ATTACHMENT_HOSTS:
            raise OSError(f"test resolver refuses {host}")
        return [ResolveResult(hostname=host, host="127.0.0.1", port=self.port, family=socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        pass


@dataclass
class Cdn:
    """The fake CDN: what it was asked for and what its streaming handlers managed to send."""

    port: int
    hits: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # set at shutdown: stalled handlers finish

    def url(self, path: str, host: str = "cdn.discordapp.com") -> str:
        return f"https://{host}{path}{QUERY}"


async def _stream(request: web.Request, cdn: Cdn, *, length: int | None, total: int, stall: bool) -> web.StreamResponse:
    """Send ``total`` bytes in 64 KiB pieces (optionally declaring ``length``), then maybe stall."""
    response = web.StreamResponse()
    if length is not None:
        response.content_length = length
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    piece = b"\xab" * 65536
    path = request.path
    cdn.sent[path] = 0
    try:
        while cdn.sent[path] < total:
            # A write to a dead socket is silently dropped and never waits, so look at the
            # connection itself, and yield so that the loop can deliver the hang-up.
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError
            await response.write(piece)
            cdn.sent[path] += len(piece)
            await asyncio.sleep(0)
        if stall:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cdn.release.wait(), 10)
    except ConnectionError:
        cdn.disconnected.set()
    return response


def _app(cdn: Cdn) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        assert request.query_string, "the client must send the signed query"
        cdn.hits.append(request.path)
        return await handler(request)

    async def photo(request: web.Request) -> web.Response:
        return web.Response(body=PHOTO, content_type="image/jpeg")

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        if 300 <= code < 400:
            raise web.HTTPFound(f"/photo.jpg{QUERY}")
        return web.Response(status=code, text="nope")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="image/jpeg")

    async def declared_huge(request: web.Request) -> web.StreamResponse:
        return await _stream(request, cdn, length=50 * MIB, total=65536, stall=True)

    async def endless(request: web.Request) -> web.StreamResponse:
        return await _stream(request, cdn, length=None, total=64 * MIB, stall=False)

    async def slow_body(request: web.Request) -> web.StreamResponse:
        return await _stream(request, cdn, length=len(PHOTO), total=65536, stall=True)

    async def slow_headers(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cdn.release.wait(), 10)
        return web.Response(body=PHOTO)

    app = web.Application(middlewares=[count])
    app.router.add_get("/photo.jpg", photo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/empty", empty)
    app.router.add_get("/declared-huge", declared_huge)
    app.router.add_get("/endless", endless)
    app.router.add_get("/slow-body", slow_body)
    app.router.add_get("/slow-headers", slow_headers)
    return app


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Cdn]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    cdn = Cdn(port=sock.getsockname()[1])
    runner = web.AppRunner(_app(cdn), shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=_server_ssl()).start()
    try:
        yield cdn
    finally:
        cdn.release.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def client(port: int, *, trusted: bool = True) -> AsyncIterator[tuple[aiohttp.ClientSession, CdnResolver]]:
    resolver = CdnResolver(port)
    connector = aiohttp.TCPConnector(resolver=resolver, ssl=_client_ssl(trusted))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session, resolver


def _run(scenario: Callable[[Cdn, aiohttp.ClientSession, CdnResolver], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving() as cdn, client(cdn.port) as (session, resolver):
            await scenario(cdn, session, resolver)

    asyncio.run(main())


async def _refused(coro: Awaitable[bytes], code: str) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        await coro
    error = caught.value
    assert error.code == code, f"{error.code}: {error}"
    assert error.user_message
    for text in (str(error), repr(error), error.user_message, error.detail):
        assert SECRET not in text and QUERY not in text
    # aiohttp's exceptions quote the full URL: they must not ride along as cause or shown context.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return error


# --------------------------------------------------------------------------- tests


def test_downloads_the_photo_from_both_cdn_hosts() -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        for host in sorted(ATTACHMENT_HOSTS):
            data = await fetch_attachment(session, cdn.url("/photo.jpg", host), declared_size=len(PHOTO),
                                          max_bytes=MIB)
            assert data == PHOTO
        assert cdn.hits == ["/photo.jpg", "/photo.jpg"]
        # Exactly at the limit is allowed; a port of 443 written out is still the CDN.
        url = cdn.url("/photo.jpg").replace("discordapp.com/", "discordapp.com:443/")
        assert await fetch_attachment(session, url, declared_size=None, max_bytes=len(PHOTO)) == PHOTO

    _run(scenario)


def test_declared_size_over_the_limit_is_refused_before_any_request() -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        error = await _refused(fetch_attachment(session, cdn.url("/photo.jpg"), declared_size=12 * MIB,
                                                max_bytes=10 * MIB), "too_large")
        assert "10 MB" in error.user_message and "smaller photo" in error.user_message
        assert cdn.hits == [] and resolver.lookups == []

    _run(scenario)


@pytest.mark.parametrize("url", [
    "https://evil.com/photo.jpg",
    "https://cdn.discordapp.com.evil.com/photo.jpg",
    "https://evil.com/cdn.discordapp.com/photo.jpg",
    "http://cdn.discordapp.com/photo.jpg",
    "https://127.0.0.1/photo.jpg",
    "https://[::1]/photo.jpg",
    "https://user@cdn.discordapp.com/photo.jpg",
    "https://cdn.discordapp.com:secret@evil.com/photo.jpg",
    "https://cdn.discordapp.com:8443/photo.jpg",
    "https://cdn.discordapp.com./photo.jpg",
    "https://discordapp.com/photo.jpg",
    "//cdn.discordapp.com/photo.jpg",
    "cdn.discordapp.com/photo.jpg",
    "file:///etc/passwd",
    "https://cdn.discordapp.com:99999/photo.jpg",
    "https://cdn.discordаpp.com/photo.jpg",  # Cyrillic "а": a lookalike, punycode on the wire
    "https://cdn.discordapp.com\\@evil.com/photo.jpg",
])
def test_other_hosts_schemes_and_ports_are_refused_before_any_request(url: str) -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        error = await _refused(fetch_attachment(session, url + QUERY, declared_size=None, max_bytes=MIB), "host")
        assert "Discord" in error.user_message
        assert cdn.hits == [] and resolver.lookups == []

    _run(scenario)


def test_content_length_over_the_limit_is_refused_without_reading_the_body() -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        started = time.monotonic()
        # The server declares 50 MiB, sends 64 KiB and stalls: reading on would end in a timeout instead.
        await _refused(fetch_attachment(session, cdn.url("/declared-huge"), declared_size=None, max_bytes=MIB,
                                        timeout_s=5), "too_large")
        assert time.monotonic() - started < 2
        assert cdn.hits == ["/declared-huge"]

    _run(scenario)


def test_a_body_streaming_past_the_limit_is_cut_off() -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        error = await _refused(fetch_attachment(session, cdn.url("/endless"), declared_size=100, max_bytes=256 * 1024),
                               "too_large")
        assert "0.2 MB" in error.user_message  # 256 KiB, rounded down
        # The client hung up: the server's next write failed long before its 64 MiB were out.
        await asyncio.wait_for(cdn.disconnected.wait(), 5)
        assert cdn.sent["/endless"] < 8 * MIB

    _run(scenario)


@pytest.mark.parametrize(("code", "kind"), [(302, "http"), (404, "http"), (500, "http")])
def test_redirects_and_errors_are_refused(code: int, kind: str) -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        error = await _refused(fetch_attachment(session, cdn.url(f"/status/{code}"), declared_size=None,
                                                max_bytes=MIB), kind)
        assert f"HTTP {code}" in error.user_message
        assert cdn.hits == [f"/status/{code}"]  # the redirect target was never fetched

    _run(scenario)


def test_an_empty_body_is_refused() -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        await _refused(fetch_attachment(session, cdn.url("/empty"), declared_size=0, max_bytes=MIB), "empty")

    _run(scenario)


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
def test_a_stalled_server_times_out(path: str) -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        started = time.monotonic()
        await _refused(fetch_attachment(session, cdn.url(path), declared_size=None, max_bytes=MIB, timeout_s=0.4),
                       "timeout")
        assert time.monotonic() - started < 3

    _run(scenario)


def test_connection_and_certificate_failures_are_network_errors() -> None:
    async def main() -> None:
        with socket.socket() as probe:  # a port with nobody listening
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        async with client(closed_port) as (session, _):
            await _refused(fetch_attachment(session, f"https://cdn.discordapp.com/x.jpg{QUERY}", declared_size=None,
                                            max_bytes=MIB), "network")
        async with serving() as cdn, client(cdn.port, trusted=False) as (session, _):
            await _refused(fetch_attachment(session, cdn.url("/photo.jpg"), declared_size=None, max_bytes=MIB),
                           "network")
            assert cdn.hits == []  # the certificate was rejected before any request was sent

    asyncio.run(main())


def test_logs_never_contain_the_signed_query(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(cdn: Cdn, session: aiohttp.ClientSession, resolver: CdnResolver) -> None:
        for path in ("/status/404", "/empty", "/endless"):
            with contextlib.suppress(DownloadError):
                await fetch_attachment(session, cdn.url(path), declared_size=None, max_bytes=128 * 1024)
        with contextlib.suppress(DownloadError):
            await fetch_attachment(session, "https://evil.com/x" + QUERY, declared_size=None, max_bytes=MIB)

    with caplog.at_level(logging.DEBUG, logger="bot.downloads"):
        _run(scenario)
    assert "cdn.discordapp.com/status/404" in caplog.text
    assert SECRET not in caplog.text


def test_bad_arguments_are_programming_errors() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ValueError):
                await fetch_attachment(session, "https://cdn.discordapp.com/x.jpg", declared_size=None, max_bytes=0)

    asyncio.run(main())
