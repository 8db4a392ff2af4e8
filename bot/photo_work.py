"""The bot's work on photos, off the event loop: CDN downloads, quality checks and job references.

Kept apart from CloseupBot (which wires everything) so the flows, cogs and delivery that need these reach
them without importing the bot class: a download is size-capped before and during the transfer, CPU work
runs on one worker thread, and at most ``concurrent_photos`` photos are in memory at once.
"""

from __future__ import annotations

import asyncio
import base64
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp
import discord

from bot.downloads import fetch_attachment
from bot.imaging import PhotoCheck, check_photo, job_reference
from bot.limits import cdn_throttle
from generation.config import Config
from generation.faces.types import FaceAnalyzer

T = TypeVar("T")

JOB_REFERENCE_CACHE = 64  # prepared job references kept in memory (≈ 0.2 MB each)


class PhotoWork:
    """Downloads, checks and job references for one bot; ``open`` before use, ``close`` at the end."""

    def __init__(self, config: Config, analyzer: FaceAnalyzer | None = None) -> None:
        self.config = config
        self.analyzer = analyzer
        self.cdn = cdn_throttle()
        self.session: aiohttp.ClientSession | None = None  # the CDN session
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="closeup-checks")
        # Downloads, checks and job references in flight at once: a burst of 25 MB uploads waits here.
        self.slots = asyncio.Semaphore(config.bot.concurrent_photos)
        self._job_refs: OrderedDict[str, str] = OrderedDict()  # photo sha -> prepared job reference

    async def open(self, connector: aiohttp.BaseConnector | None = None) -> None:
        """The CDN session, and the face analyzer (built on the check thread: it loads models)."""
        self.session = aiohttp.ClientSession(connector=connector)
        if self.analyzer is None:
            from generation.faces.factory import create_analyzer

            self.analyzer = await self.in_thread(create_analyzer, self.config.faces)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """CPU work (decoding, face detection, encoding) off the event loop, one at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def download(self, attachment: discord.Attachment) -> bytes:
        """An attachment from Discord's CDN, size-capped before and during the download."""
        assert self.session is not None
        async with self.cdn:
            return await fetch_attachment(self.session, attachment.url, declared_size=attachment.size,
                                          max_bytes=self.config.images.max_bytes)

    async def check(self, data: bytes) -> PhotoCheck:
        return await self.in_thread(check_photo, data, self.analyzer, self.config.images)

    async def job_references(self, photos: list[bytes], shas: list[str]) -> tuple[str, ...]:
        """What a job carries of its photos: face-centred re-encodes of ≤ 1024 px, base64 (in the check
        thread, under the photo slots), never the uploads. Kept for the last few photos by content hash,
        so re-rolls and variations don't detect the same face again; emptied by any /forget."""
        missing = [(sha, data) for sha, data in zip(shas, photos, strict=True) if sha not in self._job_refs]

        def prepare() -> list[str]:
            return [base64.b64encode(job_reference(data, self.analyzer, self.config.images)).decode("ascii")
                    for _, data in missing]

        if missing:
            async with self.slots:
                prepared = await self.in_thread(prepare)
            for (sha, _), reference in zip(missing, prepared, strict=True):
                self._job_refs[sha] = reference
        references = tuple(self._job_refs[sha] for sha in shas)
        for sha in shas:
            self._job_refs.move_to_end(sha)
        while len(self._job_refs) > JOB_REFERENCE_CACHE:
            self._job_refs.popitem(last=False)
        return references

    def forget_job_references(self) -> None:
        """/forget: no prepared face stays in memory either."""
        self._job_refs.clear()
