"""/portrait end to end: the real bot, the real discord.py, the local Discord emulator."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from fake_generator import FastGenerator
from harness import buttons, ephemeral_reply, photo, result_of, run, text_of, world


def test_portrait_with_a_photo_reports_then_generates(tmp_path: Path) -> None:
    generator = FastGenerator(steps=4, step_s=0.05)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo()), "prompt": "an astronaut",
                                                        "count": 2})
            first = await inter.wait_response()
            assert first.type == 5 and first.ok
            assert first.latency < 1.0
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            assert report["_ephemeral"]
            assert report["attachments"][0]["filename"] == "preview.png"
            labels = buttons(report)
            assert "Generate" in labels and "Cancel" in labels
            click = await emu.click(w.alice, report, labels["Generate"])
            done = await click.wait_message(lambda m: len(m.get("attachments") or []) == 2, timeout=20)
            assert not done.get("_ephemeral")
            assert "likeness" in text_of(done)
            assert set(buttons(done)) == {"Re-roll", "Variations", "Closer framing", "Delete"}
            assert generator.seen[0].prompt == "an astronaut" and generator.seen[0].count == 2
            assert emu.violations == [], emu.violations
            assert emu.unexpected == [], emu.unexpected

    run(body)


def test_saved_reference_is_used_without_a_photo(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            none_yet = await w.slash(w.alice, "portrait")
            refused = await none_yet.wait_message(lambda m: "no saved reference" in (m.get("content") or ""))
            assert refused["_ephemeral"]
            saved = await w.slash(w.alice, "reference", {"photo": emu.attachment(photo())}, subcommand="set")
            await saved.wait_message(lambda m: "Saved as your reference" in text_of(m), timeout=20)
            inter = await w.slash(w.alice, "portrait", {"style": "anime"})
            done = await inter.wait_message(lambda m: m.get("attachments"), timeout=20)
            assert "likeness" in text_of(done)
            spec = generator.seen[0]
            assert spec.style == "anime" and spec.user_id == w.alice.id
            import base64

            from harness import analyzer

            from bot.imaging import job_reference

            # The saved photo, as every job carries it: face-centred, at most 1024 px, re-encoded.
            assert base64.b64decode(spec.references[0]) == job_reference(photo(), analyzer(), w.bot.config.images)
            # Bob has no reference and cannot use Alice's.
            bob = await w.slash(w.bob, "portrait")
            await bob.wait_message(lambda m: "no saved reference" in (m.get("content") or ""))
            assert len(generator.seen) == 1
            assert emu.violations == []

    run(body)


def test_warning_photo_offers_generate_anyway_and_crop(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            inter = await w.slash(w.alice, "portrait", {"photo": w.emu.attachment(photo("obama2.jpg"))})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            labels = buttons(report)
            assert "Generate anyway" in labels and "Generate" not in labels
            assert "camera" in text_of(report).lower()  # the advice is shown
            click = await w.emu.click(w.alice, report, labels["Use suggested crop"])
            await click.wait_message(lambda m: m.get("attachments") and not m.get("_ephemeral"), timeout=20)
            import base64

            sent = base64.b64decode(generator.seen[0].references[0])
            assert sent[:2] == b"\xff\xd8" and sent != photo("obama2.jpg")  # the crop, not the original
            assert w.emu.violations == []

    run(body)


def test_failing_photo_cannot_be_generated_and_cancel_keeps_nothing(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            inter = await w.slash(w.alice, "portrait", {"photo": w.emu.attachment(photo("camera.png"),
                                                                                 "camera.png", "image/png")})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            labels = buttons(report)
            assert set(labels) == {"Cancel"}
            assert "couldn't find a face" in text_of(report)
            # A hand-made click on a button the bot never offered is refused.
            draft_id = labels["Cancel"].rsplit(":", 1)[1]
            forged = await w.emu.click(w.alice, report, labels["Cancel"])
            await forged.wait_message(lambda m: "not kept" in (m.get("content") or ""))
            assert await w.bot.store.draft(draft_id) is None
            assert generator.seen == []
            assert w.emu.violations == []

    run(body)


def test_result_buttons_reroll_vary_closer_delete(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo()), "seed": 7,
                                                        "framing": "head-and-shoulders"})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            click = await emu.click(w.alice, report, buttons(report)["Generate"])
            result = await click.wait_message(lambda m: m.get("attachments") and not m.get("_ephemeral"), timeout=20)
            labels = buttons(result)

            async def press(label: str) -> dict:
                return await result_of(await emu.click(w.alice, result, labels[label]))

            rerolled = await press("Re-roll")
            assert generator.seen[1].seed != 7 and generator.seen[1].count == 1
            await press("Variations")
            assert generator.seen[2].count == 4
            await press("Closer framing")
            assert generator.seen[3].framing == "close-up" and generator.seen[3].seed == 7
            # Bob may not press Alice's buttons.
            bobs = await emu.click(w.bob, result, labels["Re-roll"])
            await ephemeral_reply(bobs, "Only <@")
            assert len(generator.seen) == 4
            # Delete removes the message and the job; its buttons then say so.
            deleting = await emu.click(w.alice, result, labels["Delete"])
            await emu.wait_until(lambda: emu.message(result["id"]) is None, what="the result to be deleted")
            assert deleting.responses[0].type == 6
            # A job gone from the store (retention sweep, /forget) leaves buttons that explain themselves.
            old = buttons(rerolled)["Re-roll"]
            await w.bot.store.delete_job(old.rsplit(":", 1)[1])
            stale = await emu.click(w.alice, rerolled, old)
            await ephemeral_reply(stale, "deleted")
            assert len(generator.seen) == 4
            assert emu.violations == []

    run(body)


def test_prompt_mentions_and_markdown_never_ping(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            nasty = f"@everyone @here <@{w.bob.id}> # heading **bold** ||spoiler||"
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo()), "prompt": nasty})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            click = await emu.click(w.alice, report, buttons(report)["Generate"])
            result = await click.wait_message(lambda m: m.get("attachments") and not m.get("_ephemeral"), timeout=20)
            shown = text_of(result)
            assert "@everyone" not in shown and "@here" not in shown and f"<@{w.bob.id}>" not in shown
            assert "**bold**" not in shown
            for request in emu.requests:
                body = request.body if isinstance(request.body, dict) else {}
                mentions = body.get("allowed_mentions")
                if mentions is not None:
                    assert "everyone" not in (mentions.get("parse") or [])
            assert emu.violations == []

    run(body)


def test_portrait_in_a_direct_message(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            dm = w.emu.dm_channel(w.alice)
            inter = await w.slash(w.alice, "portrait", {"photo": w.emu.attachment(photo())}, channel=dm)
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            click = await w.emu.click(w.alice, report, buttons(report)["Generate"])
            await click.wait_message(lambda m: m.get("attachments") and not m.get("_ephemeral"), timeout=20)
            assert generator.seen[0].guild_id == f"dm:{w.alice.id}"
            assert w.emu.violations == []

    run(body)


def test_direct_messages_can_be_turned_off(tmp_path: Path) -> None:
    """Discord is told (the commands' contexts) and no longer offers /portrait in DMs; a reply with a photo
    in a DM, which no command registration covers, still gets the bot's own refusal."""
    from emulator import EmulatorUsageError
    from harness import bot_config

    async def body() -> None:
        async with world(tmp_path, FastGenerator(), bot_config(tmp_path, allow_dms=False)) as w:
            dm = w.emu.dm_channel(w.alice)
            with pytest.raises(EmulatorUsageError, match="not available in DMs"):
                await w.slash(w.alice, "portrait", {"photo": w.emu.attachment(photo())}, channel=dm)
            assert await w.bot.flows.refusal_for(w.alice.id, "", dm.id) == \
                "I only make portraits in servers, not in direct messages."

    run(body)


def test_progress_edits_are_throttled_and_show_steps(tmp_path: Path) -> None:
    generator = FastGenerator(steps=20, step_s=0.05)  # a step every 50 ms; edits at most every 200 ms

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            inter = await w.slash(w.alice, "portrait")
            progress = await inter.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            seen: list[str] = []

            def watch() -> bool:
                content = (emu.message(progress["id"]) or {}).get("content") or ""
                if content and (not seen or seen[-1] != content):
                    seen.append(content)
                return bool((emu.message(progress["id"]) or {}).get("attachments"))

            await emu.wait_until(watch, timeout=20, what="the results")
            edits = emu.message(progress["id"])["_edits"]
            gaps = [b - a for a, b in itertools.pairwise(edits[:-1])]  # the final edit is never held
            assert all(gap >= 0.18 for gap in gaps), gaps
            assert len(edits) < 20  # far fewer edits than steps
            assert any("steps" in text for text in seen)

    run(body)


def test_consent_notice_on_first_use_only_and_results_labelled(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            emu = w.emu
            first = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo())})
            report = await first.wait_message(lambda m: m.get("embeds"), timeout=20)
            assert "Before you start" in text_of(report) and "yourself" in text_of(report)
            result = await result_of(await emu.click(w.alice, report, buttons(report)["Generate"]))
            assert "AI-generated" in (result.get("content") or "")
            assert "AI-generated" in text_of(result)
            second = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo())})
            again = await second.wait_message(lambda m: m.get("embeds"), timeout=20)
            assert "Before you start" not in text_of(again)
            ref = await w.slash(w.bob, "reference", {"photo": emu.attachment(photo())}, subcommand="set")
            await ephemeral_reply(ref, "Before you start", timeout=20)

    run(body)


def test_a_double_click_on_generate_queues_one_job(tmp_path: Path) -> None:
    import asyncio

    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo())})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            clicks = await asyncio.gather(emu.click(w.alice, report, buttons(report)["Generate"]),
                                          emu.click(w.alice, report, buttons(report)["Generate"]))
            await result_of(clicks[0])
            await asyncio.sleep(0.5)
            assert len(generator.seen) == 1
            assert (await w.bot.store.counts())["jobs"] == 1

    run(body)


def test_refused_jobs_leave_no_delivery_lane_behind(tmp_path: Path) -> None:
    import dataclasses
    import threading

    from harness import bot_config

    gate = threading.Event()
    generator = FastGenerator(gate=gate)
    config = bot_config(tmp_path)
    config = dataclasses.replace(config, queue=dataclasses.replace(config.queue, per_user=1))

    async def body() -> None:
        async with world(tmp_path, generator, config) as w:
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            running = await w.slash(w.alice, "portrait")
            await running.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            for _ in range(5):
                refused = await w.slash(w.alice, "portrait")
                await ephemeral_reply(refused, "queue", timeout=20)
            assert w.bot.delivery.active_lanes == 1  # the running job's only
            gate.set()

    run(body)
