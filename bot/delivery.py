"""From queue events to Discord: one progress message per job, throttled edits, results exactly once.

Every job gets a *lane*: the latest progress event and the final event, consumed by one task, so
progress is coalesced (a 30-step job makes a handful of edits, not 30) and a job's messages never
race each other. The final event is never skipped; it is acknowledged to the queue only after
Discord accepted it, and the store marks the job delivered first, so a restart neither loses nor
repeats results.

Where messages go: through the interaction's webhook while its 15-minute token is valid; after
that (or when Discord answers 50027 / 401) as a channel message with the bot token; when the bot
may not post there, as a direct message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot.components import result_view
from bot.imaging import FittedImage, fit_images
from bot.render import likeness_line, progress_text, results_embed, upload_file
from bot.store import JobRecord, StoreError
from generation.jobs import EventKind, JobEvent, ResultImage, prompt_of
from generation.queue.base import RETRIED

if TYPE_CHECKING:
    from bot.host import DeliveryHost

log = logging.getLogger(__name__)

FINISHED = {"done", "failed", "cancelled"}
TOKEN_MARGIN_S = 30.0  # stop using a token this long before Discord's 15 minutes run out
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MESSAGE_TOTAL_LIMIT = 25 * 1024 * 1024
TOKEN_GONE = {50027, 10015}
STORE_RETRY_S = 1.0  # a lane whose store write failed (locked, full) tries again after this, doubling
STORE_RETRY_MAX_S = 30.0
FINAL_ATTEMPTS = 8  # about two minutes of retries (1, 2, 4, ... 30 s) before the catch-up takes over
CATCH_UP_EVERY_S = 60.0  # invalid webhook token, unknown webhook


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    latest: JobEvent | None = None
    final: JobEvent | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # cuts a throttling pause short
    last_edit: float = 0.0
    shown: str = ""
    record: JobRecord | None = None  # read once per lane; progress edits only need its ids and token
    task: asyncio.Task[None] | None = None
    started_at: float | None = None  # when the STARTED event came (kept for the server's wait statistics)


class Delivery:
    def __init__(self, bot: DeliveryHost) -> None:
        self.bot = bot
        self._lanes: dict[str, _Lane] = {}
        self._retried: set[str] = set()  # jobs the host queued again (their record says finished)
        self._events: asyncio.Queue[JobEvent] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._catch_up_task: asyncio.Task[None] | None = None
        self.delivered = 0

    async def start(self) -> None:
        self._events = self.bot.queue.subscribe()
        self._pump = asyncio.create_task(self._pump_events(), name="closeup-delivery")
        self._catch_up_task = asyncio.create_task(self._catch_up_forever(), name="closeup-delivery-catch-up")
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Finished jobs the queue still holds undelivered (after a restart, or a delivery that gave up)."""
        for event in await self.bot.queue.undelivered():
            if event.job_id not in self._lanes:
                self._feed(event)

    async def _catch_up_forever(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_EVERY_S)
            try:
                await self._catch_up()
            except Exception as exc:  # the queue's storage is down: next time
                log.warning("looking for undelivered results failed: %s", exc)

    async def close(self) -> None:
        if self._events is not None:
            self.bot.queue.unsubscribe(self._events)
        tasks = [t for t in [self._pump, self._catch_up_task, *(lane.task for lane in self._lanes.values())]
                 if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._lanes.clear()

    @contextlib.asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        """While a job is being set up (record saved, message sent), its events wait."""
        lane = self._lane(job_id)
        async with lane.lock:
            yield

    def discard(self, job_id: str) -> None:
        """Drop the lane of a job the queue refused: nothing will ever arrive for it."""
        lane = self._lanes.pop(job_id, None)
        if lane is not None and lane.task is not None:
            lane.task.cancel()

    @property
    def active_lanes(self) -> int:
        return len(self._lanes)

    # ------------------------------------------------------------------ event intake

    def _lane(self, job_id: str) -> _Lane:
        lane = self._lanes.get(job_id)
        if lane is None:
            lane = self._lanes[job_id] = _Lane()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._run_lane(job_id, lane), name=f"closeup-lane-{job_id[:8]}")
        return lane

    def _feed(self, event: JobEvent) -> None:
        self.bot.metrics.observe_event(event)
        if event.kind == EventKind.QUEUED and event.reason == RETRIED:
            self._retried.add(event.job_id)  # its next lane brings the finished record back to life
        lane = self._lane(event.job_id)
        if event.kind in (EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED):
            lane.final = event
            lane.finished.set()
        else:
            lane.latest = event
            if event.kind == EventKind.STARTED and lane.started_at is None:
                lane.started_at = time.time()
        lane.wake.set()

    async def _pump_events(self) -> None:
        assert self._events is not None
        while True:
            self._feed(await self._events.get())

    # ------------------------------------------------------------------ one job

    async def _run_lane(self, job_id: str, lane: _Lane) -> None:
        failures = 0
        try:
            while True:
                await lane.wake.wait()
                lane.wake.clear()
                try:
                    if await self._step(job_id, lane):
                        return
                    failures = 0
                except StoreError as exc:  # locked or full for a while: the lane waits (longer each time), tries again
                    delay = min(STORE_RETRY_S * 2**failures, STORE_RETRY_MAX_S)
                    failures += 1
                    log.warning("job %s: %s; trying again in %.0f s", job_id, exc, delay)
                    await asyncio.sleep(delay)
                    lane.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering job %s failed", job_id)
        finally:
            if self._lanes.get(job_id) is lane:
                del self._lanes[job_id]

    async def _step(self, job_id: str, lane: _Lane) -> bool:
        """Bring the job's message up to date with its latest event; True once the lane is done."""
        async with lane.lock:
            if lane.record is None or lane.final is not None:  # the final needs the latest state
                lane.record = await self.bot.store.job(job_id)
        record = lane.record
        if record is None:
            if lane.final is not None:  # not ours (forgotten, or another bot's): nothing to show
                await self.bot.queue.ack(job_id)
            return True
        if job_id in self._retried and record.state in FINISHED:
            # The host queued this failed job again (`closeup queue retry`): it is live once more.
            await self.bot.store.update_job(job_id, state="queued", finished_at=None, started_at=None)
            self._retried.discard(job_id)
            record = lane.record = dataclasses.replace(record, state="queued", finished_at=None, started_at=None)
        if lane.started_at is not None and record.started_at is None:
            await self.bot.store.update_job(job_id, started_at=lane.started_at)
            record = lane.record = dataclasses.replace(record, started_at=lane.started_at)
        if lane.final is not None:
            await self._finish(record, lane.final)
            return True
        await self._progress(record, lane)
        return False

    async def _progress(self, record: JobRecord, lane: _Lane) -> None:
        wait = self.bot.config.bot.edit_interval_s - (time.monotonic() - lane.last_edit)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.finished.wait(), wait)
            if lane.final is not None:
                lane.wake.set()
                return
        event = lane.latest
        text = progress_text(event, prompt_of(record.spec_json), record.user_id)
        if text == lane.shown or record.progress_message_id is None:
            return
        if not self.bot.edits.take():
            lane.wake.set()  # over the global budget: try again after the next interval
            lane.last_edit = time.monotonic()
            return
        lane.last_edit = time.monotonic()
        lane.shown = text
        try:
            lane.record = await self._edit(record, content=text)
        except discord.HTTPException as exc:
            self.bot.metrics.observe_discord_error(exc.status, exc.code)
            log.info("progress edit for job %s failed (%s); the next one will carry on", record.job_id, exc.status)

    async def _finish(self, record: JobRecord, event: JobEvent) -> None:
        if record.state in FINISHED:  # delivered before a restart, only the ack was missing
            await self.bot.queue.ack(record.job_id)
            return
        for attempt in range(FINAL_ATTEMPTS):
            try:
                await self._deliver_final(record, event)
                await self.bot.store.update_job(record.job_id, state=str(event.kind), finished_at=time.time())
                break
            except Undeliverable as exc:
                log.warning("%s; its results are dropped", exc)
                await self.bot.store.update_job(record.job_id, state=str(event.kind), finished_at=time.time())
                break
            except discord.HTTPException as exc:
                self.bot.metrics.observe_discord_error(exc.status, exc.code)
                log.warning("delivering job %s: Discord said %s (attempt %d)", record.job_id, exc.status, attempt + 1)
            except StoreError as exc:  # locked or full: the results wait in the queue until it clears
                log.warning("delivering job %s: %s (attempt %d)", record.job_id, exc, attempt + 1)
            await asyncio.sleep(min(2**attempt, 30))
            with contextlib.suppress(StoreError):
                record = await self.bot.store.job(record.job_id) or record
        else:
            log.error("job %s could not be delivered yet; it is tried again in a minute", record.job_id)
            return
        await self.bot.queue.ack(record.job_id)
        self.delivered += 1

    async def _deliver_final(self, record: JobRecord, event: JobEvent) -> None:
        if event.kind != EventKind.DONE:
            await self._edit(record, content=progress_text(event, prompt_of(record.spec_json), record.user_id))
            return
        results = await self.bot.queue.results(record.job_id)  # read once; ack() drops them from the queue
        good, broken = _decode_results(results)
        pngs = [png for png, _ in good]
        stored = await self.bot.store.save_results(
            record.job_id, [(png, r.seed, r.likeness, r.same_person, r.face_found, r.refined) for png, r in good])
        limit = record.attachment_limit or DEFAULT_UPLOAD_LIMIT
        fitted: list[FittedImage] = await self.bot.photos.in_thread(
            lambda: fit_images(pngs, per_file_limit=limit, total_limit=MESSAGE_TOTAL_LIMIT)) if pngs else []
        lines = [likeness_line(i, s.likeness, s.same_person, s.face_found, s.refined)
                 for i, s in enumerate(stored, start=1)]
        if broken:
            lines.append(f"{broken} image(s) came back damaged from the worker and were left out.")
        if not pngs:
            await self._edit(record, content=progress_text(JobEvent(
                EventKind.FAILED, record.job_id, reason="The worker returned no images. Please try again."),
                prompt_of(record.spec_json), record.user_id))
            return
        embed = results_embed(lines, prompt_of(record.spec_json), reencoded=any(f.reencoded for f in fitted),
                              note=event.reason)
        head = f"🎨 <@{record.user_id}>'s portrait is ready (AI-generated)."
        files = [upload_file(f.data, f.filename) for f in fitted]
        await self._edit(record, content=head, embed=embed, attachments=files, view=result_view(record.job_id))
        self.bot.metrics.observe_results(results)

    # ------------------------------------------------------------------ where messages go

    def _token_valid(self, record: JobRecord) -> bool:
        return bool(record.interaction_token) and time.time() < record.token_expires_at - TOKEN_MARGIN_S

    async def _edit(self, record: JobRecord, **fields: Any) -> JobRecord:
        """Edit the job's message through the interaction token, falling back to the channel.

        Returns the job's record as it is afterwards (the fallback changes its token and message)."""
        if self._token_valid(record) and record.progress_message_id is not None:
            webhook = discord.Webhook.partial(int(record.application_id), record.interaction_token, client=self.bot)
            try:
                await webhook.edit_message(int(record.progress_message_id), **fields)
                self.bot.metrics.observe_delivery("webhook")
                return record
            except discord.HTTPException as exc:
                if exc.code not in TOKEN_GONE and exc.status != 401:
                    raise
                self.bot.metrics.observe_discord_error(exc.status, exc.code)
                log.info("interaction token of job %s expired; using the channel", record.job_id)
            # The interaction message can no longer be edited: its replacement lives in the channel.
            await self.bot.store.update_job(record.job_id, interaction_token="", progress_message_id=None)
            record = await self.bot.store.job(record.job_id) or record
        return await self._channel_message(record, **fields)

    async def _channel_message(self, record: JobRecord, **fields: Any) -> JobRecord:
        """Bot-token path: edit our channel message, or post a new one that mentions the person."""
        files = fields.pop("attachments", None)
        mention = discord.AllowedMentions(users=[discord.Object(int(record.user_id))], everyone=False, roles=False)
        if record.progress_message_id is not None:
            channel = self.bot.get_partial_messageable(int(record.channel_id))
            try:
                await channel.get_partial_message(int(record.progress_message_id)).edit(
                    **fields, **({"attachments": files} if files else {}))
                self.bot.metrics.observe_delivery("channel")
                return record
            except (discord.Forbidden, discord.NotFound) as exc:  # permission lost, or the message deleted
                self.bot.metrics.observe_discord_error(exc.status, exc.code)
                log.info("cannot edit job %s's message in channel %s (%s); posting anew", record.job_id,
                         record.channel_id, exc.status)
                await self.bot.store.update_job(record.job_id, progress_message_id=None)
                record = dataclasses.replace(record, progress_message_id=None)
                for file in files or []:
                    file.reset()
        kwargs: dict[str, Any] = dict(fields)
        if files:
            kwargs["files"] = files
        channel_id = record.channel_id
        # A nonce Discord enforces: if the bot dies after this post but before recording it, the
        # post after the restart returns the same message instead of a visible duplicate.
        kwargs["nonce"] = record.job_id[:24]
        try:
            channel = self.bot.get_partial_messageable(int(channel_id))
            message = await channel.send(allowed_mentions=mention, **kwargs)
            self.bot.metrics.observe_delivery("channel")
        except discord.Forbidden as exc:
            self.bot.metrics.observe_discord_error(exc.status, exc.code)
            log.info("cannot post in channel %s; sending job %s by direct message", channel_id, record.job_id)
            for file in files or []:
                file.reset()
            dm = await self.bot.create_dm(discord.Object(int(record.user_id)))
            try:
                message = await dm.send(**kwargs)
            except discord.Forbidden as dm_exc:  # no channel and no DM will take it: retrying cannot help
                self.bot.metrics.observe_discord_error(dm_exc.status, dm_exc.code)
                raise Undeliverable(f"job {record.job_id}: neither channel {channel_id} nor a DM accepts it") \
                    from None
            self.bot.metrics.observe_delivery("dm")
            channel_id = str(dm.id)
        changed = {"progress_message_id": str(message.id), "channel_id": channel_id}
        await self.bot.store.update_job(record.job_id, **changed)
        return dataclasses.replace(record, **changed)


class Undeliverable(Exception):  # noqa: N818 - an outcome
    """Discord refuses every place the result could go (channel and DM): give up instead of retrying."""


def _decode_results(results: Sequence[ResultImage]) -> tuple[list[tuple[bytes, ResultImage]], int]:
    good, broken = [], 0
    for result in results:
        try:
            data = base64.b64decode(result.png, validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if data:
            good.append((data, result))
        else:
            broken += 1
    return good, broken
