"""What goes wrong in production: restarts mid-job, expired tokens, big results, hostile input."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import pytest
from fake_generator import FastGenerator
from harness import bot_config, buttons, ephemeral_reply, photo, result_of, run, text_of, world


def test_restart_mid_job_delivers_results_and_old_buttons_still_work(tmp_path: Path) -> None:
    first_gen = FastGenerator()
    gate = threading.Event()
    blocked = FastGenerator(gate=gate)

    async def body() -> None:
        async with world(tmp_path, first_gen) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            done = await w.slash(w.alice, "portrait", {"prompt": "old one"})
            old_result = await result_of(done)
            await w.stop_bot()
            # Second life: a job is running when the bot goes down.
            await w.start_bot(blocked)
            running = await w.slash(w.alice, "portrait", {"prompt": "interrupted"})
            progress = await running.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            await emu.wait_until(lambda: blocked.seen, what="the job to start")
            gate.set()  # the stopping worker is let go; the queue runs the job again after the restart
            await w.stop_bot()
            finisher = FastGenerator()
            await w.start_bot(finisher)
            await emu.wait_until(lambda: len((emu.message(progress["id"]) or {}).get("attachments") or []) == 1,
                                 timeout=20, what="the interrupted job's results")
            assert any(spec.prompt == "interrupted" for spec in finisher.seen + blocked.seen)
            # A button on a message from before both restarts still works.
            again = await emu.click(w.alice, old_result, buttons(old_result)["Re-roll"])
            await result_of(again)
            assert finisher.seen[-1].prompt == "old one"
            # Exactly one result message per job.
            results = [m for m in emu.channel_messages(w.channel) if m.get("attachments")]
            assert len(results) == 3
            assert emu.violations == []

    run(body, timeout=120)


def test_expired_token_sends_results_to_the_channel(tmp_path: Path) -> None:
    gate = threading.Event()
    generator = FastGenerator(gate=gate)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            inter = await w.slash(w.alice, "portrait", {"prompt": "slow"})
            await inter.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            await emu.wait_until(lambda: generator.seen, what="the job to start")
            emu.clock.advance(16 * 60)  # the interaction token is now dead on Discord's side
            gate.set()

            def posted() -> dict | None:
                return next((m for m in emu.channel_messages(w.channel)
                             if m.get("attachments") and m.get("interaction_metadata") is None), None)

            message = await emu.wait_until(posted, timeout=20, what="results posted with the bot token")
            assert f"<@{w.alice.id}>" in text_of(message)
            rejected = [r for r in emu.requests if r.error_code == 50027]
            assert rejected, "the bot should have tried the token first"
            assert all(v.rule == "token_expired" for v in emu.violations)
            # The buttons on the channel message work like any others.
            again = await emu.click(w.alice, message, buttons(message)["Re-roll"])
            await result_of(again)

    run(body)


def test_expired_token_in_a_dm_goes_to_the_dm(tmp_path: Path) -> None:
    gate = threading.Event()
    generator = FastGenerator(gate=gate)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            dm = emu.dm_channel(w.alice)
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            inter = await w.slash(w.alice, "portrait", channel=dm)
            await inter.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            emu.clock.advance(16 * 60)
            gate.set()
            await emu.wait_until(lambda: any(m.get("attachments") and m.get("interaction_metadata") is None
                                             for m in emu.channel_messages(dm)), timeout=20, what="DM results")

    run(body)


def test_results_are_reencoded_to_fit_the_upload_limit(tmp_path: Path) -> None:
    generator = FastGenerator(size=768, noise=True)  # ~1.7 MB PNGs of noise

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            limit = 400 * 1024
            inter = await w.slash(w.alice, "portrait", {"count": 2}, attachment_size_limit=limit)
            result = await result_of(inter)
            for attachment in result["attachments"]:
                assert attachment["size"] <= limit
                assert attachment["filename"].endswith(".jpg")
            assert "compressed" in text_of(result)
            assert emu.violations == []

    run(body)


def test_bad_attachments_get_clear_messages_and_the_bot_keeps_running(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            cases = [
                (emu.attachment(b"just some text\n" * 50, "notes.txt", "text/plain"), "isn't a photo"),
                (emu.attachment(b"%PDF-1.4 not an image", "selfie.jpg", "image/jpeg"), "PDF"),
                (emu.attachment(photo()[:5000], "cut.jpg", "image/jpeg"), "damaged"),
                (emu.attachment(b"", "empty.jpg", "image/jpeg"), "empty"),
                (emu.attachment(photo(), "huge.jpg", size=200 * 1024 * 1024), "MB"),
                (emu.attachment(photo(), "away.jpg", url="https://evil.example.com/selfie.jpg"), "Discord"),
            ]
            for attachment, needle in cases:
                cdn_before = sum(1 for r in emu.requests if "/attachments/" in r.path)
                inter = await w.slash(w.alice, "portrait", {"photo": attachment})
                await inter.wait_message(lambda m, n=needle: n.lower() in text_of(m).lower(), timeout=20)
                if attachment["filename"] in ("huge.jpg", "away.jpg", "notes.txt"):
                    # refused before anything was downloaded
                    assert sum(1 for r in emu.requests if "/attachments/" in r.path) == cdn_before
            ok = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo())})
            await ok.wait_message(lambda m: m.get("embeds"), timeout=20)
            assert generator.seen == []
            assert emu.violations == []

    run(body, timeout=120)


def test_every_first_response_is_fast(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            interactions = [await w.slash(w.alice, "help"), await w.slash(w.bob, "queue"),
                            await w.slash(w.alice, "portrait", {"photo": w.emu.attachment(photo())})]
            for inter in interactions:
                first = await inter.wait_response()
                assert first.ok and first.latency < 1.0
            await ephemeral_reply(interactions[0], "Face big")

    run(body)


def test_rate_limits_server_errors_and_a_dropped_gateway_lose_nothing(tmp_path: Path) -> None:
    generator = FastGenerator(steps=6, step_s=0.05)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            emu.faults.rate_limit(n=2, retry_after=0.1, route_contains="/webhooks/")
            emu.faults.server_error(n=1, status=502, route_contains="/webhooks/")
            first = await w.slash(w.alice, "portrait", {"prompt": "one"})
            emu.faults.drop_gateway()
            await emu.wait_resumed(timeout=15)
            second = await w.slash(w.alice, "portrait", {"prompt": "two"})
            for inter in (first, second):
                await result_of(inter, timeout=30)
            results = [m for m in emu.channel_messages(w.channel) if m.get("attachments")]
            assert len(results) == 2
            assert [r.status for r in emu.requests if r.fault].count(429) == 2
            assert emu.violations == []

    run(body)


def test_expired_token_and_no_channel_permission_falls_back_to_a_dm(tmp_path: Path) -> None:
    from emulator import SEND_MESSAGES

    gate = threading.Event()
    generator = FastGenerator(steps=6, step_s=0.05, gate=gate)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            quiet = emu.add_channel(w.guild, "read-only", overwrites=[
                {"id": emu.bot_user.id, "type": 1, "allow": 0, "deny": SEND_MESSAGES}])
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            inter = await w.slash(w.alice, "portrait", channel=quiet)
            await inter.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)  # webhooks need no permission
            await emu.wait_until(lambda: generator.seen, what="the job to start")
            emu.clock.advance(16 * 60)
            gate.set()
            dm = emu.dm_channel(w.alice)
            done = await emu.wait_until(lambda: next((m for m in emu.channel_messages(dm) if m.get("attachments")),
                                                     None), timeout=20, what="results by DM")
            assert "likeness" in text_of(done)
            # Progress after the switch and the results share one DM message, not one per edit.
            assert len([m for m in emu.channel_messages(dm) if m["author"]["id"] == emu.bot_user.id]) == 1

    run(body)


def test_a_channel_post_repeated_after_a_crash_is_not_a_duplicate(tmp_path: Path) -> None:
    """The bot may die after Discord took a channel post but before the store recorded it; the post it
    makes again after the restart carries the same enforced nonce, so Discord returns the first one."""
    gate = threading.Event()
    generator = FastGenerator(gate=gate)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            inter = await w.slash(w.alice, "portrait")
            await inter.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            emu.clock.advance(16 * 60)
            gate.set()
            await emu.wait_until(lambda: any(m.get("attachments") and m.get("interaction_metadata") is None
                                             for m in emu.channel_messages(w.channel)), timeout=20,
                                 what="results in the channel")
            job_id = generator.seen[0].job_id
            record = await w.bot.store.job(job_id)
            # Replay the crash: the store forgets the post, and the same job posts again.
            await w.bot.store.update_job(job_id, progress_message_id=None)
            again = await w.bot.delivery._channel_message(dataclasses.replace(record, progress_message_id=None),
                                                          content="again")
            posted = [m for m in emu.channel_messages(w.channel) if m.get("interaction_metadata") is None
                      and m["author"]["id"] == emu.bot_user.id]
            assert len(posted) == 1 and again.progress_message_id == posted[0]["id"]

    run(body)


def test_results_nobody_will_take_are_given_up_not_retried_forever(tmp_path: Path) -> None:
    """Token expired, the channel message became unreachable (the bot lost access) and the person's DMs
    are closed: the results cannot go anywhere. The bot says so in its log, marks the job delivered and
    drops the results from the queue, instead of retrying every minute forever."""
    from emulator import VIEW_CHANNEL

    gate = threading.Event()
    generator = FastGenerator(steps=4, gate=gate)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            inter = await w.slash(w.alice, "portrait")
            await inter.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            emu.clock.advance(16 * 60)  # progress now goes to a channel message with the bot token
            await emu.wait_until(lambda: any(m.get("interaction_metadata") is None and
                                             m["author"]["id"] == emu.bot_user.id
                                             for m in emu.channel_messages(w.channel)), timeout=20,
                                 what="progress in a channel message")
            w.channel.overwrites = [{"id": emu.bot_user.id, "type": 1, "allow": "0", "deny": str(VIEW_CHANNEL)}]
            w.alice.dms_open = False
            # The progress message can be the queued notice, posted before the worker has the job.
            await emu.wait_until(lambda: generator.seen, timeout=20, what="the job to reach the generator")
            job_id = generator.seen[0].job_id
            gate.set()
            record = None
            for _ in range(200):
                record = await w.bot.store.job(job_id)
                if record is not None and record.state == "done":
                    break
                await asyncio.sleep(0.1)
            assert record is not None and record.state == "done"
            assert await w.bot.queue.undelivered() == [] and await w.bot.queue.results(job_id) == ()
            assert all(v.rule in ("token_expired", "missing_permissions") for v in emu.violations)

    run(body)


def test_a_failing_command_apologises_instead_of_thinking_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store goes away under /queue (a real outage of the real SQLite queue, closed under the bot)."""
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            await w.bot.queue.close()
            inter = await w.slash(w.alice, "queue")
            reply = await inter.wait_message(lambda m: "Sorry" in text_of(m), timeout=10)
            assert "try again" in text_of(reply)
            assert "sqlite" not in text_of(reply).lower() and "Traceback" not in text_of(reply)
            errors = [r for r in caplog.records if r.levelname == "ERROR" and "/queue failed" in r.getMessage()]
            assert errors and str(inter.id) in errors[0].getMessage()
            # The bot is still there for everything else.
            help_inter = await w.slash(w.bob, "help")
            await ephemeral_reply(help_inter, "Face big")

    with caplog.at_level("ERROR"):
        run(body)


def test_mentioning_the_bot_is_not_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            await w.emu.send_message(w.alice, w.channel, "hello there, what can you do?", mention_bot=True)
            await w.emu.send_message(w.bob, w.channel, "!portrait please", mention_bot=True)
            await asyncio.sleep(0.5)
            inter = await w.slash(w.alice, "help")
            await ephemeral_reply(inter, "Face big")

    with caplog.at_level("DEBUG"):
        run(body)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records
                                                                          if r.levelname == "ERROR"]
    assert not [r for r in caplog.records if "CommandNotFound" in r.getMessage()]


def test_a_job_the_host_retries_after_it_was_set_aside_is_delivered_to_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Redis set-up: a worker crashes on a job until it is set aside and the person is told; the host
    fixes the fault and runs `closeup queue retry`: the same message shows the new progress and the results."""
    import uuid

    from redis_server import redis_url as private_redis_url

    from generation.cli import main as closeup
    from generation.queue.worker import Worker

    class Flaky(FastGenerator):
        broken = True

        def run(self, spec, progress, cancelled):  # type: ignore[no-untyped-def]
            if self.broken:
                raise RuntimeError("boom: a bug the host fixes")
            return super().run(spec, progress, cancelled)

    generator = Flaky()

    with private_redis_url() as url:
        prefix = f"e2e{uuid.uuid4().hex[:6]}:"
        monkeypatch.setenv("CLOSEUP_QUEUE__BACKEND", "redis")
        monkeypatch.setenv("CLOSEUP_QUEUE__REDIS_URL", url)
        monkeypatch.setenv("CLOSEUP_QUEUE__REDIS_PREFIX", prefix)
        base = bot_config(tmp_path)
        config = dataclasses.replace(base, queue=dataclasses.replace(
            base.queue, backend="redis", redis_url=url, redis_prefix=prefix, max_failures=1))

        async def body() -> None:
            worker = Worker("w", url, generator, prefix=prefix, heartbeat_s=0.2, dead_after_s=1.0, max_failures=1,
                            shutdown_grace_s=1.0)
            task = asyncio.create_task(worker.run())
            try:
                async with world(tmp_path, generator, config) as w:
                    await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
                    inter = await w.slash(w.alice, "portrait")
                    await inter.wait_message(lambda m: "set aside" in text_of(m), timeout=20)
                    failed = await w.bot.queue.set_aside_jobs()
                    assert len(failed) == 1
                    for _ in range(100):  # the bot has recorded the failure (and acknowledged it)
                        record = await w.bot.store.job(failed[0].job_id)
                        if record is not None and record.state == "failed":
                            break
                        await asyncio.sleep(0.05)
                    assert await w.bot.store.guild_jobs(w.guild.id) == []  # finished, as far as the bot knows
                    generator.broken = False
                    code = await asyncio.to_thread(closeup, ["queue", "retry", failed[0].job_id])
                    assert code == 0
                    result = await result_of(inter, timeout=30)
                    assert result["attachments"]
                    record = await w.bot.store.job(failed[0].job_id)
                    assert record is not None and record.state == "done"
            finally:
                worker.stop()
                await asyncio.wait_for(task, 10)

        run(body, timeout=90)
