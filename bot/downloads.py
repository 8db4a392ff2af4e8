"""Fetching a Discord attachment without trusting the URL, the server or the declared sizes.

The bot only ever passes URLs taken from Discord's interaction payload, so the host allow-list
is defence in depth: a bug elsewhere must not turn the bot into a fetcher of arbitrary URLs
(internal addresses, other sites). Sizes are enforced three times: the size Discord declared
(before any request), the Content-Length header (before reading the body) and the bytes that
actually arrive (a server may lie or send no length at all).

Attachment URLs carry signed query parameters (``ex``, ``is``, ``hm``): those are credentials,
so errors and logs name only the host and path. aiohttp's own exceptions embed the full URL,
which is why they are never chained onto a :class:`DownloadError`.
"""

from __future__ import annotations

import asyncio
import logging
import math

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

ATTACHMENT_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
_HTTPS_PORT = 443


class DownloadError(Exception):
    """A photo that could not be fetched. ``code`` is for machines, ``user_message`` for people.

    ``detail`` is for logs; like every other field it never contains the URL's query string.
    """

    def __init__(self, code: str, user_message: str, detail: str = "") -> None:
        super().__init__(user_message if not detail else f"{user_message} ({detail})")
        self.code = code
        self.user_message = user_message
        self.detail = detail


def _megabytes(limit: int) -> str:
    # Rounded down, so a file just over the limit never reads "the limit is 10.1 MB" for 10.05 MB.
    return f"{math.floor(limit * 10 / 1048576) / 10:g} MB"


def _too_large(max_bytes: int, size: int | None = None) -> DownloadError:
    limit = _megabytes(max_bytes)
    if size is not None:
        opening = f"That file is {math.ceil(size * 10 / 1048576) / 10:g} MB; the limit is {limit}."
    else:
        opening = f"That file is larger than the {limit} limit."
    return DownloadError(
        "too_large",
        f"{opening} Send a smaller photo, or a screenshot of it.",
        f"size {size}" if size is not None else "body passed the limit",
    )


def redact(url: str | URL) -> str:
    """``https://host/path`` only: safe to log (the query holds Discord's signed token)."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        return f"{parsed.scheme}://{parsed.raw_host or '?'}{parsed.raw_path}"
    except (TypeError, ValueError):
        return "<unparseable url>"


def _checked_url(url: str) -> URL:
    """The parsed URL when it points at Discord's CDN over plain https, else a "host" error.

    The URL object validated here is the one requested, so no second parser can read it differently.
    """
    refusal = DownloadError(
        "host",
        "I can only fetch photos uploaded to Discord. Please attach the photo to the command.",
        f"refused {redact(url)}",
    )
    try:
        parsed = URL(url)
        port = parsed.explicit_port
    except (TypeError, ValueError):
        raise refusal from None
    if (
        not parsed.absolute
        or parsed.scheme != "https"
        or parsed.raw_user is not None
        or parsed.raw_password is not None
        or (port is not None and port != _HTTPS_PORT)
        # Exact match: no IP literals, no subdomains, no lookalikes such as "cdn.discordapp.com.evil.com".
        or parsed.raw_host not in ATTACHMENT_HOSTS
    ):
        raise refusal
    return parsed


async def fetch_attachment(
    session: aiohttp.ClientSession,
    url: str,
    *,
    declared_size: int | None,
    max_bytes: int,
    timeout_s: float = 30.0,
    chunk: int = 65536,
) -> bytes:
    """Download one attachment into memory, refusing anything off-host, redirected or oversized.

    Raises :class:`DownloadError` with code ``host``, ``too_large``, ``http``, ``empty``,
    ``timeout`` or ``network``.
    """
    if max_bytes < 1 or chunk < 1 or not timeout_s > 0:
        raise ValueError("max_bytes and chunk must be >= 1 and timeout_s > 0")
    target = _checked_url(url)
    shown = redact(target)
    if declared_size is not None and declared_size > max_bytes:
        raise _too_large(max_bytes, declared_size)

    received = bytearray()
    try:
        async with session.get(
            target,
            allow_redirects=False,  # a redirect could leave the allow-listed hosts
            raise_for_status=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            # Compressed bodies would make Content-Length meaningless as a size check.
            headers={"Accept-Encoding": "identity"},
        ) as response:
            if response.status != 200:
                response.close()
                raise DownloadError(
                    "http",
                    f"Discord would not give me the photo (HTTP {response.status}); please upload it again.",
                    f"HTTP {response.status} from {shown}",
                )
            length = response.content_length
            if length is not None and length > max_bytes:
                response.close()  # drop the connection rather than drain a body we will not use
                raise _too_large(max_bytes, length)
            async for piece in response.content.iter_chunked(chunk):
                received += piece
                if len(received) > max_bytes:
                    response.close()
                    raise _too_large(max_bytes)
    except DownloadError as exc:
        log.info("download refused: %s (%s)", exc.code, exc.detail)
        raise
    except TimeoutError:  # before OSError: TimeoutError is one
        log.info("download timed out after %.1f s: %s", timeout_s, shown)
        raise DownloadError(
            "timeout",
            "Discord took too long to send me the photo. Please try again in a moment.",
            f"no complete answer within {timeout_s:g} s from {shown}",
        ) from None
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        # The exception's text names the full URL, token included: keep only its type.
        log.info("download failed (%s): %s", type(exc).__name__, shown)
        raise DownloadError(
            "network",
            "I couldn't download the photo from Discord. Please try again.",
            f"{type(exc).__name__} from {shown}",
        ) from None
    if not received:
        log.info("download empty: %s", shown)
        raise DownloadError("empty", "That upload arrived empty. Please attach the photo again.",
                            f"0 bytes from {shown}")
    return bytes(received)
