"""What happens when someone runs a command or presses a button, independent of how it was wired.

Every entry point acknowledges Discord first (defer) and only then downloads, checks or queues:
Discord gives three seconds for the first answer. Every refusal is an ephemeral message that says
what to do next; nothing here raises into discord.py except real bugs, which the cogs' error
handler turns into an apology.

One class in one file: every command and button goes through the same refusal, quota, draft and
queueing steps, and a change to one of those steps should be read against all its callers at once.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.components import draft_view, forget_view
from bot.downloads import DownloadError
from bot.imaging import PhotoCheck
from bot.render import PREVIEW_NAME, consent_notice, progress_text, report_embed, upload_file
from bot.store import Draft, JobRecord, NotFound, StoreError
from bot.text import duration, sanitize
from generation.images import ImageError
from generation.jobs import JobSpec, PortraitJob, new_job_id
from generation.prompts import (
    PromptRejectedError,
    PromptWarning,
    UnknownFramingError,
    lint_prompt,
    stricter_policy,
)
from generation.queue.base import QueueStorageError
from generation.queue.scheduler import QueueLimitError
from generation.styles import FRAMINGS, UnknownStyleError, get_style

if TYPE_CHECKING:
    from bot.host import FlowsHost

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 15 * 60


def where(interaction: discord.Interaction[Any]) -> tuple[str, str]:
    """(guild id or "", channel id) of an interaction."""
    guild = str(interaction.guild_id) if interaction.guild_id else ""
    return guild, str(interaction.channel_id or "")


def queue_guild(user_id: str, guild_id: str) -> str:
    """DMs count as a server of one, so the per-server cap never lumps strangers together."""
    return guild_id or f"dm:{user_id}"


SORRY = "Something went wrong on my side (it's logged for the bot's host). Please try again."


def apologize(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A bug in one click must not leave the person with "This interaction failed" and no word."""

    @functools.wraps(fn)
    async def wrapper(self: Flows, interaction: discord.Interaction[Any], *args: Any, **kwargs: Any) -> None:
        try:
            await fn(self, interaction, *args, **kwargs)
        except StoreError as exc:
            log.error("%s: %s", fn.__name__, exc)
            await self.try_say(interaction, "My storage is having a problem right now; nothing was lost. "
                               "Please try again in a minute.")
        except Exception:
            log.exception("%s failed", fn.__name__)
            await self.try_say(interaction, SORRY)

    return wrapper


class Flows:
    def __init__(self, bot: FlowsHost) -> None:
        self.bot = bot
        self._drafts_starting: set[str] = set()  # draft ids whose button is being handled (double clicks)

    # ------------------------------------------------------------------ shared

    async def say(self, interaction: discord.Interaction[Any], text: str, **kwargs: Any) -> None:
        """An ephemeral answer, whether or not the interaction was acknowledged yet."""
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, **kwargs)
        else:
            await interaction.response.send_message(text, ephemeral=True, **kwargs)

    async def try_say(self, interaction: discord.Interaction[Any], text: str) -> None:
        try:
            await self.say(interaction, text)
        except discord.HTTPException as exc:
            self.bot.metrics.observe_discord_error(exc.status, exc.code)
            log.info("could not tell the person about an error either (%s)", exc.status)

    async def refusal(self, interaction: discord.Interaction[Any]) -> str | None:
        """Why this person may not start work here right now, or None."""
        return await self.refusal_for(str(interaction.user.id), *where(interaction))

    async def refusal_for(self, user_id: str, guild_id: str, channel_id: str) -> str | None:
        """The same rules for every way in: slash commands, buttons, and replies with a photo."""
        if not guild_id and not self.bot.config.bot.allow_dms:
            return "I only make portraits in servers, not in direct messages."
        if guild_id:
            settings = await self.bot.store.guild_settings(guild_id)
            if settings.allowed_channels and channel_id not in settings.allowed_channels:
                places = ", ".join(f"<#{c}>" for c in settings.allowed_channels[:10])
                return f"Portraits aren't made in this channel on this server. Try {places}."
        wait = self.bot.rate.allow(user_id)
        if wait:
            return f"You're going a little fast: try again in {max(1, round(wait))} s."
        return None

    async def policy(self, guild_id: str) -> str:
        guild_policy = (await self.bot.store.guild_settings(guild_id)).nsfw_policy if guild_id else None
        return stricter_policy(self.bot.config.generation.nsfw_policy, guild_policy)

    def lint(self, options: PortraitJob, policy: str) -> tuple[tuple[PromptWarning, ...], str | None]:
        """Prompt warnings to show, or a refusal message."""
        try:
            result = lint_prompt(options.prompt, style=options.style, framing=options.framing, nsfw_policy=policy)
        except PromptRejectedError as exc:
            return (), str(exc)
        except (UnknownStyleError, UnknownFramingError) as exc:
            return (), str(exc)
        return result.warnings, None

    async def photo_from(self, attachment: discord.Attachment) -> PhotoCheck | str:
        """Download and check a photo; a string is the message to show instead.

        Discord's content type only rules out what is plainly not an image (a PDF, a text file);
        what the bytes really are is decided by the safe loader."""
        kind = attachment.content_type or ""
        if kind and not kind.startswith(("image/", "application/octet-stream")):
            return (f"`{sanitize(attachment.filename, 80)}` isn't a photo ({sanitize(attachment.content_type, 40)}). "
                    "Attach a JPEG, PNG, WebP or HEIC selfie.")
        async with self.bot.photos.slots:  # at most a few 25 MB photos in memory at once
            try:
                data = await self.bot.photos.download(attachment)
            except DownloadError as exc:
                return exc.user_message
            try:
                checked = await self.bot.photos.check(data)
            except ImageError as exc:
                return exc.user_message
        self.bot.metrics.observe_check(checked)
        return checked

    # ------------------------------------------------------------------ /portrait

    @apologize
    async def portrait(self, interaction: discord.Interaction[Any], photo: discord.Attachment | None,
                       options: PortraitJob) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user_id = str(interaction.user.id)
        guild_id, channel_id = where(interaction)
        refusal = await self.refusal(interaction)
        if refusal:
            return await self.edit(interaction, refusal)
        warnings, problem = self.lint(options, await self.policy(guild_id))
        if problem:
            return await self.edit(interaction, problem)
        first_use = await self.bot.store.touch_person(user_id)
        if photo is None:
            saved = await self.bot.store.reference_set(user_id)
            if not saved:
                return await self.edit(interaction, "You have no saved reference photo yet. Attach a selfie to "
                                       "`/portrait`, or save one with `/reference set`.")
            shas, photos = [sha for sha, _ in saved], [data for _, data in saved]
            note = f"Using your {len(photos)} saved reference photo{'s' if len(photos) > 1 else ''}."
            if warnings:
                note += "\n" + "\n".join(f"• {w.message}" for w in warnings[:3])
            await self.edit(interaction, note + " Progress is in the message below.")
            await self.start_job(interaction, photos, shas, options)
            return
        checked = await self.photo_from(photo)
        if isinstance(checked, str):
            return await self.edit(interaction, checked)
        photo_sha = await self.bot.store.put_photo(checked.photo)
        crop_sha = await self.bot.store.put_photo(checked.crop_jpeg) if checked.crop_jpeg else None
        draft = Draft(draft_id=new_job_id(), user_id=user_id, guild_id=guild_id, channel_id=channel_id,
                      photo_sha=photo_sha, crop_sha=crop_sha, verdict=checked.verdict, prompt=options.prompt,
                      style=options.style, framing=options.framing, count=options.count, seed=options.seed,
                      identity_strength=options.identity_strength, use_saved_references=False,
                      created_at=time.time())
        await self.bot.store.save_draft(draft)
        await interaction.edit_original_response(
            embed=report_embed(checked, warnings, notice=self.notice() if first_use else ""),
            attachments=[upload_file(checked.preview_png, PREVIEW_NAME)],
            view=draft_view(draft.draft_id, checked.verdict, crop_sha is not None))

    def notice(self) -> str:
        return consent_notice(self.bot.config.store.retention_days)

    async def edit(self, interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.edit_original_response(content=text, embed=None, attachments=[], view=None)

    @apologize
    async def draft_action(self, interaction: discord.Interaction[Any], action: str, draft_id: str) -> None:
        await interaction.response.defer()
        draft = await self.bot.store.draft(draft_id)
        if draft is None:
            return await self.say(interaction, "This photo check has expired or was already used. "
                                  "Run `/portrait` again.")
        if draft.user_id != str(interaction.user.id):
            return await self.say(interaction, "These buttons belong to someone else's photo. "
                                  "Run `/portrait` to make your own.")
        if action == "drop":
            await self.bot.store.delete_draft(draft_id)
            return await interaction.edit_original_response(
                content="Cancelled. Your photo was not kept.", embed=None, attachments=[], view=None)
        allowed = {"gen": draft.verdict == "pass", "anyway": draft.verdict == "warn", "crop": bool(draft.crop_sha)}
        if not allowed.get(action):
            return await self.say(interaction, "That option isn't available for this photo.")
        refusal = await self.refusal(interaction)
        if refusal:
            return await self.say(interaction, refusal)
        if draft_id in self._drafts_starting:  # a second click while the first one is queuing it
            return await self.say(interaction, "Already on it: this photo is being queued.")
        self._drafts_starting.add(draft_id)
        try:
            await self._start_draft(interaction, draft, draft_id, action)
        finally:
            self._drafts_starting.discard(draft_id)

    async def _start_draft(self, interaction: discord.Interaction[Any], draft: Draft, draft_id: str,
                           action: str) -> None:
        sha = draft.crop_sha if action == "crop" and draft.crop_sha else draft.photo_sha
        try:
            photo = await self.bot.store.photo_bytes(sha)
        except NotFound:
            return await self.say(interaction, "Your photo is no longer stored. Run `/portrait` again.")
        options = PortraitJob(draft.prompt, draft.style, draft.framing, draft.count, draft.seed,
                                  draft.identity_strength)
        started = await self.start_job(interaction, [photo], [sha], options)
        if started:
            await self.bot.store.delete_draft(draft_id)
            label = "with the suggested crop" if action == "crop" else ""
            await interaction.edit_original_response(content=f"Queued {label}✓ — progress is in the message below.",
                                                     view=None)

    # ------------------------------------------------------------------ jobs

    async def start_job(self, interaction: discord.Interaction[Any] | None, photos: list[bytes], shas: list[str],
                        options: PortraitJob, *, user_id: str | None = None, guild_id: str | None = None,
                        channel_id: str | None = None, reply_to: discord.Message | None = None) -> bool:
        """Queue a job and post its progress message; False (after telling the person) when refused."""
        if interaction is not None:
            user_id = str(interaction.user.id)
            guild_id, channel_id = where(interaction)
        assert user_id is not None and guild_id is not None and channel_id is not None
        cap = await self._guild_cap(user_id, guild_id)
        if cap:
            await self._tell(interaction, reply_to, cap)
            return False
        counted_at, over_quota = await self._take_quota(user_id, guild_id)
        if over_quota:
            await self._tell(interaction, reply_to, over_quota)
            return False
        queued = await self._queue_job(interaction, reply_to, options, photos, shas, user_id, guild_id, channel_id)
        if counted_at is not None and not queued:  # refused further on (queue full, storage): not counted
            await self.bot.store.give_back_quota(guild_id, user_id, counted_at)
        return queued

    async def _queue_job(self, interaction: discord.Interaction[Any] | None, reply_to: discord.Message | None,
                         options: PortraitJob, photos: list[bytes], shas: list[str], user_id: str, guild_id: str,
                         channel_id: str) -> bool:
        try:
            references = await self.bot.photos.job_references(photos, shas)
        except ImageError as exc:  # a stored photo that no longer decodes
            await self._tell(interaction, reply_to, exc.user_message)
            return False
        # Every path (/portrait, draft buttons, re-roll, variations, closer, reply-with-photo) comes here, so
        # the server's content policy travels with the job and applies at generation, not only to warnings.
        spec = JobSpec(user_id=user_id, guild_id=queue_guild(user_id, guild_id), prompt=options.prompt,
                       style=options.style, framing=options.framing, count=options.count, seed=options.seed,
                       identity_strength=options.identity_strength, nsfw_policy=await self.policy(guild_id),
                       references=references)
        record = JobRecord(
            job_id=spec.job_id, user_id=user_id, guild_id=guild_id, channel_id=channel_id,
            spec_json=dataclasses.replace(spec, references=()).to_json(), reference_shas=tuple(shas),
            application_id=str(self.bot.application_id or ""),
            interaction_token=interaction.token if interaction else "",
            token_expires_at=(interaction.created_at.timestamp() + TOKEN_LIFETIME_S) if interaction else 0.0,
            progress_message_id=None, state="queued", created_at=time.time(), finished_at=None,
            attachment_limit=interaction.filesize_limit if interaction else 0)
        async with self.bot.delivery.hold(spec.job_id):
            await self.bot.store.save_job(record)
            try:
                queued = await self.bot.queue.submit(spec)
            except QueueLimitError as exc:
                self.bot.delivery.discard(spec.job_id)
                await self.bot.store.delete_job(spec.job_id)
                await self._tell(interaction, reply_to, exc.user_message)
                return False
            except QueueStorageError as exc:  # the details (paths, what to fix) are for the host's log
                log.error("queueing a job failed: %s", exc)
                self.bot.delivery.discard(spec.job_id)
                await self.bot.store.delete_job(spec.job_id)
                await self._tell(interaction, reply_to, "I couldn't queue your portrait just now: the bot's job "
                                 "storage is locked or full. Nothing was queued; please try again in a minute.")
                return False
            text = progress_text(queued, options.prompt, user_id)
            if interaction is not None:
                message = await interaction.followup.send(text, wait=True)
            else:
                assert reply_to is not None
                message = await reply_to.reply(text, mention_author=False)
            await self.bot.store.update_job(spec.job_id, progress_message_id=str(message.id))
        return True

    async def _take_quota(self, user_id: str, guild_id: str) -> tuple[float | None, str | None]:
        """(when this portrait was counted against the server's daily quota, or a refusal): the count is
        taken at once, so two clicks cannot both get through, and given back if the job never queues."""
        if not guild_id:
            return None, None
        quota = (await self.bot.store.guild_settings(guild_id)).daily_quota
        if quota is None:
            return None, None
        now = time.time()
        free_at = await self.bot.store.take_quota(guild_id, user_id, quota, now)
        if free_at is None:
            return now, None
        return None, (f"This server allows {quota} portrait(s) per person a day, and you've had yours. You can "
                      f"ask again in {duration(max(60.0, free_at - now))}.")

    async def _guild_cap(self, user_id: str, guild_id: str) -> str | None:
        """A server's own (lower) caps from /settings limits; the queue enforces the host's."""
        if not guild_id:
            return None
        settings = await self.bot.store.guild_settings(guild_id)
        if settings.per_user is None and settings.per_guild is None:
            return None
        active, mine = await self.bot.store.active_counts(guild_id, user_id)
        if settings.per_user is not None and mine >= settings.per_user:
            return (f"This server allows {settings.per_user} portrait(s) in the queue per person. "
                    "Wait for one to finish, or cancel one with `/queue`.")
        if settings.per_guild is not None and active >= settings.per_guild:
            return "This server's queue is full right now. Please try again in a few minutes."
        return None

    async def _tell(self, interaction: discord.Interaction[Any] | None, reply_to: discord.Message | None,
                    text: str) -> None:
        if interaction is not None:
            await self.say(interaction, text)
        elif reply_to is not None:
            await reply_to.reply(text, mention_author=False)

    async def _owned_job(self, interaction: discord.Interaction[Any], job_id: str) -> JobRecord | None:
        record = await self.bot.store.job(job_id)
        if record is None:
            await self.say(interaction, "This portrait was deleted, so its buttons no longer work. "
                           "Run `/portrait` to make a new one.")
            return None
        if record.user_id != str(interaction.user.id):
            await self.say(interaction, f"Only <@{record.user_id}> can use the buttons on their portrait. "
                           "Run `/portrait` to make your own.")
            return None
        return record

    @apologize
    async def result_action(self, interaction: discord.Interaction[Any], action: str, job_id: str) -> None:
        await interaction.response.defer()
        record = await self._owned_job(interaction, job_id)
        if record is None:
            return
        if action == "delete":
            await self.bot.queue.cancel(job_id, str(interaction.user.id))
            await self.bot.store.delete_job(job_id)
            try:
                await interaction.delete_original_response()
            except discord.HTTPException as exc:
                self.bot.metrics.observe_discord_error(exc.status, exc.code)
                await interaction.edit_original_response(content="Deleted.", embeds=[], attachments=[], view=None)
            return
        spec = JobSpec.from_json(record.spec_json)
        options = PortraitJob(spec.prompt, spec.style, spec.framing, spec.count, None, spec.identity_strength)
        seed = random.randrange(2**31)
        if action == "reroll":
            options = dataclasses.replace(options, seed=seed)
        elif action == "vary":
            options = dataclasses.replace(options, seed=seed, count=min(4, self.bot.config.generation.max_images))
        elif action == "closer":
            current = spec.framing or get_style(spec.style).framing
            index = FRAMINGS.index(current) if current in FRAMINGS else 1
            if index == 0:
                return await self.say(interaction, "This portrait is already a close-up: it can't get closer.")
            options = dataclasses.replace(options, framing=FRAMINGS[index - 1], seed=spec.seed)
        refusal = await self.refusal(interaction)
        if refusal:
            return await self.say(interaction, refusal)
        try:
            photos = [await self.bot.store.photo_bytes(sha) for sha in record.reference_shas]
        except NotFound:
            return await self.say(interaction, "The reference photo of this portrait is no longer stored. "
                                  "Run `/portrait` with a photo again.")
        await self.start_job(interaction, photos, list(record.reference_shas), options)

    @apologize
    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        await interaction.response.defer()
        record = await self._owned_job(interaction, job_id)
        if record is None:
            return
        if await self.bot.queue.cancel(job_id, record.user_id):
            await self.say(interaction, "Cancelled.")
        else:
            await self.say(interaction, "That portrait has already finished, so there is nothing to cancel.")

    @apologize
    async def cancel_job_as_admin(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """A cancel from /settings queue: Manage Server in the job's own server, checked on every click."""
        await interaction.response.defer()
        record = await self.bot.store.job(job_id)
        if not interaction.permissions.manage_guild or record is None or \
                record.guild_id != str(interaction.guild_id or ""):
            return await self.say(interaction, "Only people with **Manage Server** here can cancel other people's "
                                  "portraits, and only this server's.")
        if await self.bot.queue.cancel(job_id):
            log.info("job %s of user %s cancelled by admin %s", job_id, record.user_id, interaction.user.id)
            await self.say(interaction, f"Cancelled <@{record.user_id}>'s portrait.")
        else:
            await self.say(interaction, "That portrait has already finished, so there is nothing to cancel.")

    # ------------------------------------------------------------------ /forget

    @apologize
    async def forget_answer(self, interaction: discord.Interaction[Any], answer: str, user_id: str) -> None:
        await interaction.response.defer()
        if user_id != str(interaction.user.id):
            return await self.say(interaction, "Only the person who asked can answer this.")
        if answer == "no":
            return await interaction.edit_original_response(content="Nothing was deleted.", view=None)
        purged = await self.bot.queue.purge(user_id)
        self.bot.photos.forget_job_references()
        try:
            report = await self.bot.store.forget(user_id)
        except StoreError as exc:
            log.error("forget failed: %s", exc)
            return await interaction.edit_original_response(
                content="Deleting failed because of a storage problem; nothing is half-deleted. "
                "Please try again later or tell the server owner.", view=None)
        await interaction.edit_original_response(
            content=f"Done. I deleted everything I stored about you: {report.rows + purged} records and "
            f"{report.files} files (photos and portraits). Messages already posted in channels stay until "
            "you delete them.", view=None)

    async def ask_forget(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message(
            "This deletes **everything** I store about you: reference photos, face data, queued and finished "
            "jobs, and your portraits. It can't be undone.", view=forget_view(str(interaction.user.id)),
            ephemeral=True)

    # ------------------------------------------------------------------ references

    @apologize
    async def save_reference(self, interaction: discord.Interaction[Any], attachment: discord.Attachment, *,
                             replace: bool, deferred: bool = False) -> None:
        if not deferred:
            await interaction.response.defer(ephemeral=True, thinking=True)
        refusal = await self.refusal(interaction)
        if refusal:
            return await self.edit(interaction, refusal)
        checked = await self.photo_from(attachment)
        if isinstance(checked, str):
            return await self.edit(interaction, checked)
        first_use = await self.bot.store.touch_person(str(interaction.user.id))
        saved = await self._keep_reference(str(interaction.user.id), checked, replace=replace)
        await interaction.edit_original_response(
            embed=report_embed(checked, saved=saved, notice=self.notice() if first_use else ""),
            attachments=[upload_file(checked.preview_png, PREVIEW_NAME)], view=None)

    async def _keep_reference(self, user_id: str, checked: PhotoCheck, *, replace: bool) -> str:
        """Stores a photo that passed or warned; says what happened in one line."""
        if checked.verdict == "fail":
            return "Not saved: fix the problem above and send it again."
        try:
            await self.bot.store.add_reference(user_id, checked.photo, checked.verdict, checked.messages,
                                               replace=replace)
        except ValueError as exc:
            return str(exc)
        count = len(await self.bot.store.references(user_id))
        return (f"Saved as your reference ({count} photo{'s' if count > 1 else ''} in your set). "
                "`/portrait` without a photo uses it.")

    @apologize
    async def use_as_reference(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        own = message.author.id == interaction.user.id
        if not own:
            return await self.edit(interaction, "You can only use your own photos as your reference: it has to be "
                                   "your face. Post your selfie yourself, then use this on it.")
        images = [a for a in message.attachments if (a.content_type or "image/").startswith("image/")]
        if not images:
            return await self.edit(interaction, "That message has no photo attached.")
        await self.save_reference(interaction, images[0], replace=True, deferred=True)

    async def reply_with_photo(self, message: discord.Message) -> None:
        """A reply to one of our portraits with a new photo: it becomes the reference and the job runs again."""
        ref = message.reference
        if ref is None or ref.message_id is None or not message.attachments:
            return
        record = await self.bot.store.job_by_message(str(ref.message_id))
        if record is None:
            return
        if record.user_id != str(message.author.id):
            await message.reply("Only the person who made that portrait can swap its reference photo.",
                                mention_author=False)
            return
        guild_id = str(message.guild.id) if message.guild else ""
        refusal = await self.refusal_for(record.user_id, guild_id, str(message.channel.id))
        if refusal:  # the server's channel allow-list, DMs and the rate limit hold here too
            await message.reply(refusal, mention_author=False)
            return
        checked = await self.photo_from(message.attachments[0])
        if isinstance(checked, str):
            await message.reply(checked, mention_author=False)
            return
        saved = await self._keep_reference(record.user_id, checked, replace=True)
        if checked.verdict == "fail":
            await message.reply(embed=report_embed(checked, saved=saved),
                                file=upload_file(checked.preview_png, PREVIEW_NAME), mention_author=False)
            return
        spec = JobSpec.from_json(record.spec_json)
        sha = await self.bot.store.put_photo(checked.photo)
        options = PortraitJob(spec.prompt, spec.style, spec.framing, spec.count, spec.seed,
                                  spec.identity_strength)
        await self.start_job(None, [checked.photo], [sha], options, user_id=record.user_id, guild_id=guild_id,
                             channel_id=str(message.channel.id), reply_to=message)
