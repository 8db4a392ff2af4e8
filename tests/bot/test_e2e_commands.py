"""/queue, /forget, /help and the admin /settings, end to end."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from emulator import EmulatorUsageError
from fake_generator import FastGenerator
from harness import buttons, ephemeral_reply, photo, result_of, run, text_of, world

from bot.store import GuildSettings


def _files(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm")
            and not p.name.startswith("closeup.db") and p.name != "commands.sha256"}


def test_queue_lists_jobs_and_cancels(tmp_path: Path) -> None:
    gate = threading.Event()
    generator = FastGenerator(gate=gate)

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            first = await w.slash(w.alice, "portrait", {"prompt": "first"})
            progress = await first.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            second = await w.slash(w.alice, "portrait", {"prompt": "second"})
            await second.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            listed = await w.slash(w.alice, "queue")
            shown = await ephemeral_reply(listed, "Your queue")
            assert "generating now" in text_of(shown) and "position" in text_of(shown)
            labels = buttons(shown)
            assert set(labels) == {"Cancel 1", "Cancel 2"}
            # Bob cannot cancel Alice's job, and his queue is empty.
            bobs = await emu.click(w.bob, shown, labels["Cancel 2"])
            await ephemeral_reply(bobs, "Only <@")
            empty = await w.slash(w.bob, "queue")
            await ephemeral_reply(empty, "no portraits waiting")
            cancel = await emu.click(w.alice, shown, labels["Cancel 1"])
            await ephemeral_reply(cancel, "Cancelled")
            await emu.wait_until(lambda: "Cancelled" in (emu.message(progress["id"]) or {}).get("content", ""),
                                 timeout=10, what="the progress message to say cancelled")
            gate.set()
            await emu.wait_until(lambda: len((emu.message(progress["id"]) or {}).get("attachments") or []) == 0
                                 and len(generator.seen) == 2, timeout=20, what="the second job to run")
            late = await emu.click(w.alice, shown, labels["Cancel 1"])
            await ephemeral_reply(late, "already finished")
            assert emu.violations == []

    run(body)


def test_forget_deletes_every_row_and_file(tmp_path: Path) -> None:
    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            store_dir = tmp_path / "store"
            # Bob's data must survive Alice's /forget.
            await w.bot.store.add_reference(w.bob.id, photo("biden.jpg"), "pass", ())
            ref = await w.slash(w.alice, "reference", {"photo": emu.attachment(photo())}, subcommand="set")
            await ephemeral_reply(ref, "Saved", timeout=20)
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo("obama2.jpg"))})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            await result_of(await emu.click(w.alice, report, buttons(report)["Generate anyway"]))
            pending = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo("obama2.jpg"))})
            await pending.wait_message(lambda m: m.get("embeds"), timeout=20)  # a draft left waiting
            before = _files(store_dir)
            assert len(before) >= 4
            ask = await w.slash(w.alice, "forget")
            question = await ephemeral_reply(ask, "can't be undone")
            no = await emu.click(w.alice, question, buttons(question)["Keep my data"])
            await no.wait_message(lambda m: "Nothing was deleted" in (m.get("content") or ""))
            assert _files(store_dir) == before
            ask = await w.slash(w.alice, "forget")
            question = await ephemeral_reply(ask, "can't be undone")
            yes = await emu.click(w.alice, question, buttons(question)["Yes, delete everything"])
            await yes.wait_message(lambda m: "I deleted everything" in (m.get("content") or ""), timeout=10)
            counts = await _rows_about(w.bot.store.db_path, w.alice.id)
            assert counts == 0
            assert await w.bot.queue.jobs_for(w.alice.id) == []
            bob_sha = (await w.bot.store.references(w.bob.id))[0].sha256
            assert {Path(n).stem for n in _files(store_dir)} == {bob_sha}
            assert emu.violations == []

    run(body)


async def _rows_about(db: Path, user_id: str) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        total = 0
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            if "user_id" in columns:
                total += conn.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", (user_id,)).fetchone()[0]
        return total


def test_help_explains_framing_with_a_picture(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            inter = await w.slash(w.alice, "help")
            shown = await ephemeral_reply(inter, "Face big in the frame")
            assert shown["attachments"][0]["filename"] == "framing.png"
            assert "mention me" in text_of(shown)
            assert w.emu.file_bytes(shown["attachments"][0])[:8] == b"\x89PNG\r\n\x1a\n"

    run(body)


def test_admin_settings_channels_limits_policy(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            emu = w.emu
            # Discord hides the command from people without Manage Server (default_member_permissions).
            with pytest.raises(EmulatorUsageError, match="needs permissions"):
                await w.slash(w.alice, "settings", {"channel": w.channel, "allowed": True}, subcommand="channel")
            # An integration override can show it to anyone: the bot still checks on every call.
            emu.allow_command(w.guild, "settings", w.alice)
            for sub, options in (("channel", {"channel": w.channel, "allowed": True}), ("show", {}),
                                 ("limits", {"per_user": 50}), ("content", {"policy": "allow"})):
                denied = await w.slash(w.alice, "settings", options, subcommand=sub)
                await ephemeral_reply(denied, "Manage Server")
            assert await w.bot.store.guild_settings(w.guild.id) == GuildSettings(w.guild.id)
            allow = await w.slash(w.admin, "settings", {"channel": w.channel, "allowed": True}, subcommand="channel")
            await ephemeral_reply(allow, "Allowed")
            elsewhere = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo())}, channel=w.other_channel)
            await ephemeral_reply(elsewhere, "aren't made in this channel")
            here = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo())})
            await here.wait_message(lambda m: m.get("embeds"), timeout=20)
            policy = await w.slash(w.admin, "settings", {"policy": "block"}, subcommand="content")
            await ephemeral_reply(policy, "block")
            limits = await w.slash(w.admin, "settings", {"per_user": 1}, subcommand="limits")
            await ephemeral_reply(limits, "Limits updated")
            shown = await w.slash(w.admin, "settings", subcommand="show")
            text = text_of(await ephemeral_reply(shown, "Channels"))
            assert f"<#{w.channel.id}>" in text and "per person:** 1" in text
            settings = await w.bot.store.guild_settings(w.guild.id)
            assert settings.per_user == 1 and settings.allowed_channels == (w.channel.id,)
            assert emu.violations == []

    run(body)


def test_server_limit_per_person(tmp_path: Path) -> None:
    gate = threading.Event()

    async def body() -> None:
        async with world(tmp_path, FastGenerator(gate=gate)) as w:
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            limits = await w.slash(w.admin, "settings", {"per_user": 1}, subcommand="limits")
            await ephemeral_reply(limits, "Limits updated")
            first = await w.slash(w.alice, "portrait")
            await first.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            second = await w.slash(w.alice, "portrait")
            await ephemeral_reply(second, "allows 1 portrait")
            gate.set()

    run(body)


def test_commands_are_rate_limited_per_person(tmp_path: Path) -> None:
    from harness import bot_config

    async def body() -> None:
        async with world(tmp_path, FastGenerator(), bot_config(tmp_path, command_rate=2)) as w:
            for _ in range(2):
                ok = await w.slash(w.alice, "portrait")
                await ephemeral_reply(ok, "no saved reference")
            third = await w.slash(w.alice, "portrait")
            await ephemeral_reply(third, "going a little fast")
            bob = await w.slash(w.bob, "portrait")
            await ephemeral_reply(bob, "no saved reference")

    run(body)


def test_server_content_policy_travels_with_every_job(tmp_path: Path) -> None:
    """The host allows everything; the server says "warn". The stricter policy must reach the engine
    with the job itself (it lints again there), for /portrait and for a re-roll of its result."""
    import dataclasses

    from harness import bot_config

    generator = FastGenerator()
    config = bot_config(tmp_path)
    config = dataclasses.replace(config, generation=dataclasses.replace(config.generation, nsfw_policy="allow"))

    async def body() -> None:
        async with world(tmp_path, generator, config) as w:
            await w.bot.store.set_guild_settings(GuildSettings(w.guild.id, nsfw_policy="warn"))
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            first = await w.slash(w.alice, "portrait", {"prompt": "a nude portrait"})
            result = await result_of(first)
            reroll = await w.emu.click(w.alice, result, buttons(result)["Re-roll"])
            await w.emu.wait_until(lambda: len(generator.seen) == 2, timeout=20, what="the re-roll to run")
            assert reroll is not None
            assert [spec.nsfw_policy for spec in generator.seen] == ["warn", "warn"]

    run(body)


class WarmingGenerator(FastGenerator):
    """The embedded worker's warm-up protocol (state, warm_up) on the fast stand-in: loading ends on cue."""

    def __init__(self) -> None:
        super().__init__()
        self.state = "cold"
        self.loaded = threading.Event()

    def warm_up(self) -> None:
        self.state = "warming"
        self.loaded.wait(30)
        self.state = "ready"


def test_queue_says_the_engine_is_warming_up_until_it_is_ready(tmp_path: Path) -> None:
    from bot.render import WARMING_UP

    generator = WarmingGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            await w.emu.wait_until(lambda: generator.state == "warming", what="the warm-up to start")
            inter = await w.slash(w.alice, "queue")
            await inter.wait_message(lambda m: WARMING_UP in text_of(m), timeout=10)
            generator.loaded.set()
            await w.emu.wait_until(lambda: generator.state == "ready", what="the warm-up to end")
            after = await w.slash(w.alice, "queue")
            reply = await after.wait_message(lambda m: "queue" in text_of(m).lower(), timeout=10)
            assert WARMING_UP not in text_of(reply)

    try:
        run(body)
    finally:
        generator.loaded.set()


def test_commands_are_installable_to_a_person_and_usable_in_dms_settings_only_in_servers(tmp_path: Path) -> None:
    """What Discord is told at sync: user installs and DMs for everyone's commands (same limits), server-only
    for /settings; with allow_dms off, no DM context either."""
    GUILD_INSTALL, USER_INSTALL = 0, 1
    GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2

    async def body(config_dms: bool) -> dict[str, dict]:
        from harness import bot_config

        async with world(tmp_path / str(config_dms), FastGenerator(),
                         bot_config(tmp_path / str(config_dms), allow_dms=config_dms)) as w:
            return {c["name"]: c for c in w.emu.commands(None)}

    registered = run(lambda: body(True))
    for name in ("portrait", "queue", "help"):
        assert set(registered[name]["integration_types"]) == {GUILD_INSTALL, USER_INSTALL}, registered[name]
        assert set(registered[name]["contexts"]) == {GUILD, BOT_DM, PRIVATE_CHANNEL}
    assert registered["settings"]["integration_types"] == [GUILD_INSTALL]
    assert registered["settings"]["contexts"] == [GUILD]
    no_dms = run(lambda: body(False))
    assert set(no_dms["portrait"]["contexts"]) == {GUILD}


def test_admins_see_and_cancel_the_servers_queue_and_read_its_stats(tmp_path: Path) -> None:
    gate = threading.Event()

    async def body() -> None:
        async with world(tmp_path, FastGenerator(gate=gate)) as w:
            emu = w.emu
            for person in (w.alice, w.bob):
                await w.bot.store.add_reference(person.id, photo(), "pass", ())
                started = await w.slash(person, "portrait")
                await started.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            queue = await w.slash(w.admin, "settings", subcommand="queue")
            listing = await ephemeral_reply(queue, "This server's queue")
            text = text_of(listing)
            assert f"<@{w.alice.id}>" in text and f"<@{w.bob.id}>" in text
            assert "generating now" in text and "position 1" in text
            bob_job = (await w.bot.queue.jobs_for(w.bob.id))[0].job_id
            # Alice may see an admin's message but not use its buttons (Manage Server checked on the click).
            emu.allow_command(w.guild, "settings", w.alice)
            refused = await emu.click(w.alice, listing, buttons(listing)["Cancel 2"])
            await refused.wait_message(lambda m: "Manage Server" in text_of(m), timeout=10)
            assert (await w.bot.queue.status(bob_job)).state == "queued"
            cancelled = await emu.click(w.admin, listing, buttons(listing)["Cancel 2"])
            await cancelled.wait_message(lambda m: "Cancelled" in text_of(m), timeout=10)
            assert (await w.bot.queue.status(bob_job)).state == "cancelled"
            gate.set()
            for _ in range(100):  # Alice's portrait finishes and is delivered
                if not await w.bot.store.guild_jobs(w.guild.id):
                    break
                await asyncio.sleep(0.1)
            stats = await w.slash(w.admin, "settings", subcommand="stats")
            shown = text_of(await ephemeral_reply(stats, "Last 7 days"))
            assert "2 portraits asked for" in shown
            row = next(line for line in shown.splitlines() if line[:4].isdigit())
            asked, done, failed, cancelled_count = (int(v) for v in row.split()[1:5])
            assert (asked, done, failed, cancelled_count) == (2, 1, 0, 1)
            assert row.split()[5] != "-"  # Alice's job started: an average wait is shown

    try:
        run(body)
    finally:
        gate.set()


def test_a_daily_quota_refuses_the_next_portrait_and_says_when(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            await w.bot.store.add_reference(w.alice.id, photo(), "pass", ())
            quota = await w.slash(w.admin, "settings", {"per_person": 1}, subcommand="quota")
            await ephemeral_reply(quota, "1 portrait(s) in any 24 hours")
            first = await w.slash(w.alice, "portrait")
            result = await result_of(first)
            # Deleting the result does not give the portrait back.
            deleted = await w.emu.click(w.alice, result, buttons(result)["Delete"])
            await deleted.wait_response()
            await w.emu.wait_until(lambda: w.emu.message(result["id"]) is None, what="the result deleted")
            second = await w.slash(w.alice, "portrait")
            refusal = text_of(await ephemeral_reply(second, "per person a day"))
            assert "ask again in" in refusal
            bob_ok = await w.slash(w.bob, "portrait")  # another person is not affected
            await ephemeral_reply(bob_ok, "no saved reference")
            shown = await w.slash(w.admin, "settings", subcommand="show")
            assert "1 per person" in text_of(await ephemeral_reply(shown, "Daily quota"))

    run(body)
