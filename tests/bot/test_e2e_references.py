"""Saved references, "Use as reference", and replying to a portrait with a new photo."""

from __future__ import annotations

import base64
from pathlib import Path

from fake_generator import FastGenerator
from harness import buttons, ephemeral_reply, photo, result_of, run, text_of, world


def test_reference_set_add_show_delete_and_privacy(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            emu = w.emu
            first = await w.slash(w.alice, "reference", {"photo": emu.attachment(photo())}, subcommand="set")
            await ephemeral_reply(first, "1 photo in your set", timeout=20)
            second = await w.slash(w.alice, "reference", {"photo": emu.attachment(photo("obama2.jpg"))},
                                   subcommand="add")
            await ephemeral_reply(second, "2 photos in your set", timeout=20)
            failing = await w.slash(w.alice, "reference", {"photo": emu.attachment(photo("camera.png"), "c.png",
                                                                                      "image/png")}, subcommand="add")
            await ephemeral_reply(failing, "Not saved", timeout=20)
            shown = await w.slash(w.alice, "reference", subcommand="show")
            listing = await ephemeral_reply(shown, "Your reference photos")
            assert len(listing["attachments"]) == 2
            assert "**pass**" in text_of(listing) and "**warn**" in text_of(listing)
            # Bob sees none of Alice's photos.
            bobs = await w.slash(w.bob, "reference", subcommand="show")
            await ephemeral_reply(bobs, "no saved reference photos")
            gone = await w.slash(w.alice, "reference", {"number": 1}, subcommand="delete")
            await ephemeral_reply(gone, "Deleted reference photo 1")
            refs = await w.bot.store.references(w.alice.id)
            assert [r.verdict for r in refs] == ["warn"]
            missing = await w.slash(w.alice, "reference", {"number": 3}, subcommand="delete")
            await ephemeral_reply(missing, "there is no number 3")
            # "set" replaces the whole set.
            again = await w.slash(w.alice, "reference", {"photo": emu.attachment(photo())}, subcommand="set")
            await ephemeral_reply(again, "1 photo in your set", timeout=20)
            assert emu.violations == []

    run(body)


def test_use_as_reference_context_menu(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            emu = w.emu
            # The menu target is always visible to the bot, with or without the message-content intent.
            own = await emu.send_message(w.alice, w.channel, "me", attachments=[emu.attachment(photo())])
            inter = await emu.message_command(w.alice, own, "Use as reference")
            await ephemeral_reply(inter, "Saved as your reference", timeout=20)
            assert len(await w.bot.store.references(w.alice.id)) == 1
            # Someone else's selfie cannot become Bob's reference.
            stolen = await emu.message_command(w.bob, own, "Use as reference")
            await ephemeral_reply(stolen, "only use your own photos")
            assert await w.bot.store.references(w.bob.id) == []
            text_only = await emu.send_message(w.bob, w.channel, "hello")
            empty = await emu.message_command(w.bob, text_only, "Use as reference")
            await ephemeral_reply(empty, "no photo")
            assert emu.violations == []

    run(body)


def test_reply_with_a_photo_swaps_the_reference_and_runs_again(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo()), "prompt": "a knight"})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            result = await result_of(await emu.click(w.alice, report, buttons(report)["Generate"]))
            # Without a mention Discord hides the attachment from a bot without the content intent: nothing happens.
            await emu.send_message(w.alice, w.channel, attachments=[emu.attachment(photo("biden.jpg"))],
                                   reply_to=result)
            # With a mention the bot sees it: reference swapped, same job again, results as a reply.
            reply = await emu.send_message(w.alice, w.channel, attachments=[emu.attachment(photo("biden.jpg"))],
                                           reply_to=result, mention_bot=True)

            def rerun() -> dict | None:
                return next((m for m in emu.channel_messages(w.channel)
                             if (m.get("message_reference") or {}).get("message_id") == reply["id"]
                             and m.get("attachments")), None)

            done = await emu.wait_until(rerun, timeout=20, what="the re-run's results")
            assert "likeness" in text_of(done)
            assert len(generator.seen) == 2
            assert generator.seen[1].prompt == "a knight"
            # The job carries the new photo as the bot prepares every reference (face-centred, ≤ 1024 px).
            from harness import analyzer

            from bot.imaging import job_reference

            expected = job_reference(photo("biden.jpg"), analyzer(), w.bot.config.images)
            assert base64.b64decode(generator.seen[1].references[0]) == expected
            refs = await w.bot.store.references(w.alice.id)
            assert len(refs) == 1
            # Bob replying to Alice's portrait is refused.
            await emu.send_message(w.bob, w.channel, attachments=[emu.attachment(photo())], reply_to=result,
                                   mention_bot=True)
            await emu.wait_until(lambda: any("Only the person who made" in (m.get("content") or "")
                                             for m in emu.channel_messages(w.channel)), what="Bob's refusal")
            assert len(generator.seen) == 2
            # The server's channel allow-list holds for replies too.
            from bot.store import GuildSettings

            await w.bot.store.set_guild_settings(GuildSettings(w.guild.id, (w.other_channel.id,)))
            await emu.send_message(w.alice, w.channel, attachments=[emu.attachment(photo())], reply_to=result,
                                   mention_bot=True)
            await emu.wait_until(lambda: any("aren't made in this channel" in (m.get("content") or "")
                                             for m in emu.channel_messages(w.channel)), what="the channel refusal")
            assert len(generator.seen) == 2
            assert emu.violations == []

    run(body)
