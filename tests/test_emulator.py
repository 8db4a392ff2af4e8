"""The emulator against the real discord.py 2.7 client: protocol, Discord's rules, and faults.

A small probe bot (commands.Bot with app commands, a persistent button view, a modal and a message
context menu) runs against a fresh emulator in each test. Tests are plain functions that run one
asyncio body under a hard timeout, so a protocol bug fails fast instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from emulator import MANAGE_GUILD, DiscordEmulator, EmulatorUsageError, Guild, Interaction, User
from emulator.models import Channel

TEST_TIMEOUT = 30
REROLL_ID = "closeup:reroll:42"
JPEG = b"\xff\xd8\xff\xe0" + b"fake-jpeg-bytes" * 20


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), TEST_TIMEOUT))


# ----------------------------------------------------------------------------- the probe bot


class RerollView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Reroll", custom_id=REROLL_ID)
    async def reroll(self, interaction: discord.Interaction, button: discord.ui.Button[RerollView]) -> None:
        await interaction.response.send_message("rerolled 42", ephemeral=True)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(label="Your words", custom_id="feedback:text")

    def __init__(self) -> None:
        super().__init__(custom_id="feedback:modal")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)


class ProbeBot(commands.Bot):
    """Just enough bot to exercise each emulator route; ``seen``/``errors`` let tests look inside."""

    def __init__(self, connector: aiohttp.BaseConnector, guild_id: str) -> None:
        super().__init__(
            command_prefix="!", intents=discord.Intents.default(), connector=connector, guild_ready_timeout=0.05
        )
        self.guild_id = int(guild_id)
        self.gate = asyncio.Event()
        self.seen: dict[str, Any] = {}
        self.errors: list[Exception] = []
        self.messages: list[discord.Message] = []
        self.http_errors: list[discord.HTTPException] = []
        self._register()

    async def setup_hook(self) -> None:
        self.add_view(RerollView())
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))

    async def on_message(self, message: discord.Message) -> None:
        if message.author != self.user:
            self.messages.append(message)

    def _register(self) -> None:
        tree = self.tree
        guild = discord.Object(self.guild_id)

        @tree.command(description="A portrait from a selfie")
        async def portrait(
            interaction: discord.Interaction, prompt: str, photo: discord.Attachment, count: int = 1
        ) -> None:
            await interaction.response.defer(thinking=True)
            data = await photo.read()
            self.seen["portrait"] = (prompt, count, photo.filename, photo.size, data, interaction.filesize_limit)
            await interaction.followup.send(f"working on {prompt!r} x{count}")
            await interaction.followup.send("done", file=discord.File(io.BytesIO(data[::-1]), "result.jpg"))

        @tree.command(description="Pong")
        async def ping(interaction: discord.Interaction) -> None:
            self.seen["ping"] = (interaction.guild_id, interaction.user.id, interaction.context.dm_channel)
            await interaction.response.send_message("pong")

        @tree.command(description="Buttons")
        async def menu(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("menu", view=RerollView())

        @tree.command(description="Waits for the test's gate before answering")
        async def slow(interaction: discord.Interaction) -> None:
            await self.gate.wait()
            await self._capture(interaction.response.send_message("late"))

        @tree.command(description="Acknowledges twice")
        async def twice(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("once")
            route = discord.http.Route(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                interaction_id=interaction.id,
                interaction_token=interaction.token,
            )
            await self._capture(self.http.request(route, json={"type": 4, "data": {"content": "twice"}}))

        @tree.command(description="Outlives its interaction token, then falls back to the channel")
        async def long(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await self.gate.wait()
            if not await self._capture(interaction.followup.send("done")):
                channel = interaction.channel
                assert isinstance(channel, discord.TextChannel)
                await channel.send(f"{interaction.user.mention} done (fallback)")

        @tree.command(description="Uploads what it is told")
        async def upload(interaction: discord.Interaction, size: int, count: int = 1) -> None:
            await interaction.response.defer(thinking=True)
            files = [discord.File(io.BytesIO(b"x" * size), f"f{i}.png") for i in range(count)]
            await self._capture(interaction.followup.send("files", files=files))

        @tree.command(description="A button with an overlong custom_id")
        async def badbutton(interaction: discord.Interaction) -> None:
            view = discord.ui.View()
            view.add_item(discord.ui.Button(label="x", custom_id="c" * 101))
            await self._capture(interaction.response.send_message("bad", view=view))

        @tree.command(description="Opens a modal")
        async def feedback(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(FeedbackModal())

        @tree.command(description="Guild-only command", guild=guild)
        async def studio(
            interaction: discord.Interaction, channel: discord.TextChannel, member: discord.Member
        ) -> None:
            self.seen["studio"] = (channel.id, member.id)
            await interaction.response.send_message(f"{channel.name} {member.name}", ephemeral=True)

        @tree.command(description="Uses every route a bot normally uses")
        async def kitchen(interaction: discord.Interaction) -> None:
            channel = interaction.channel
            assert isinstance(channel, discord.TextChannel)
            embed = discord.Embed(title="Result", description="d", color=0x00FF00).set_image(url="attachment://a.png")
            embed.set_footer(text="footer").add_field(name="seed", value="42")
            view = discord.ui.View(timeout=None)
            view.add_item(discord.ui.Select(custom_id="pick", options=[discord.SelectOption(label="A", value="a")]))
            view.add_item(discord.ui.Button(label="docs", url="https://example.com/docs"))
            file = discord.File(io.BytesIO(JPEG), "a.png")
            await interaction.response.send_message("k1", embed=embed, view=view, file=file)
            await interaction.edit_original_response(
                content="k2", attachments=[discord.File(io.BytesIO(b"2"), "b.png")]
            )
            original = await interaction.original_response()
            await interaction.edit_original_response(content="k3", embed=None)
            followup = await interaction.followup.send("f1", ephemeral=True, wait=True)
            await followup.edit(content="f2")
            await followup.delete()
            async with channel.typing():
                sent = await channel.send("plain", reference=original, file=discord.File(io.BytesIO(b"p"), "p.txt"))
            await sent.edit(content="plain2")
            fetched = await channel.fetch_message(sent.id)
            fetched_channel = await self.fetch_channel(channel.id)
            dm = await interaction.user.send("hello in DM", embed=discord.Embed(title="dm"))
            await sent.add_reaction("\N{THUMBS UP SIGN}")
            gone = await channel.send("to delete")
            await gone.delete()
            self.seen["kitchen"] = {
                "original": original.id,
                "followup": followup.id,
                "sent": sent.id,
                "fetched": fetched.content,
                "channel": fetched_channel.id,
                "dm": (dm.channel.id, dm.content),
                "gone": gone.id,
            }

        style = app_commands.Group(name="style", description="Style settings")
        preset = app_commands.Group(name="preset", description="Presets", parent=style)

        @style.command(name="set", description="Set a style")
        async def style_set(
            interaction: discord.Interaction, name: str, strength: float = 0.5, private: bool = False
        ) -> None:
            self.seen["style"] = (name, strength, private)
            await interaction.response.send_message(f"style {name}", ephemeral=private)

        @preset.command(name="apply", description="Apply a preset")
        async def preset_apply(interaction: discord.Interaction, preset: str) -> None:
            self.seen["preset"] = preset
            await interaction.response.send_message(f"preset {preset}")

        tree.add_command(style)

        @tree.command(description="Server managers only")
        @app_commands.default_permissions(manage_guild=True)
        async def admin(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("admin ok", ephemeral=True)

        @tree.context_menu(name="Use as reference")
        async def use_as_reference(interaction: discord.Interaction, message: discord.Message) -> None:
            self.seen["reference"] = (message.id, message.content, [a.filename for a in message.attachments])
            await interaction.response.send_message(f"reference: {len(message.attachments)} file(s)", ephemeral=True)

    async def _capture(self, call: Awaitable[Any]) -> bool:
        """Run an API call the test expects Discord to refuse; keep the HTTPException for assertions."""
        try:
            await call
        except discord.HTTPException as exc:
            self.http_errors.append(exc)
            return False
        return True


# ----------------------------------------------------------------------------- harness


@dataclass
class World:
    emu: DiscordEmulator
    bot: ProbeBot
    alice: User
    guild: Guild
    chan: Channel


@contextlib.asynccontextmanager
async def running_bot() -> AsyncIterator[World]:
    async with DiscordEmulator() as emu:
        alice = emu.add_user("alice")
        guild = emu.add_guild("studio", owner=emu.add_user("owner"))
        emu.add_member(guild, alice)
        chan = emu.add_channel(guild, "portraits")
        bot = ProbeBot(emu.connector(), guild.id)
        task = asyncio.create_task(bot.start(emu.token))
        try:
            await emu.wait_until(lambda: emu.gateway.ready or task.done(), 10, "the bot to connect")
            if task.done():
                task.result()  # login failed: surface the real error
            await emu.wait_ready()
            yield World(emu, bot, alice, guild, chan)
        finally:
            await bot.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


async def raw(emu: DiscordEmulator, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> tuple[int, Any]:
    """A request that bypasses discord.py's client-side checks, through the emulator connector."""
    headers = dict(kwargs.pop("headers", {}))
    if auth:
        headers["Authorization"] = f"Bot {emu.token}"
    async with (
        aiohttp.ClientSession(connector=emu.connector()) as session,
        session.request(method, f"https://discord.com/api/v10{path}", headers=headers, **kwargs) as resp,
    ):
        assert resp.headers.get("Content-Type") in (None, "application/json")
        body = await resp.read()
        return resp.status, json.loads(body) if body else None


def rules(emu: DiscordEmulator) -> list[str]:
    return [v.rule for v in emu.violations]


# ----------------------------------------------------------------------------- happy paths


def test_ready_populates_guild_cache_and_registers_commands() -> None:
    async def body() -> None:
        async with running_bot() as w:
            await asyncio.wait_for(w.bot.wait_until_ready(), 5)
            guild = w.bot.get_guild(int(w.guild.id))
            assert guild is not None and guild.name == "studio"
            assert guild.me is not None and guild.default_role.id == guild.id
            assert {c.name for c in guild.text_channels} == {"general", "portraits"}
            assert w.bot.application_id == int(w.emu.application_id)
            global_names = {c["name"] for c in w.emu.commands()}
            assert {"portrait", "ping", "menu", "Use as reference"} <= global_names
            assert [c["name"] for c in w.emu.commands(w.guild)] == ["studio"]
            portrait = next(c for c in w.emu.commands() if c["name"] == "portrait")
            assert {o["name"]: o["type"] for o in portrait["options"]} == {"prompt": 3, "photo": 11, "count": 4}
            assert w.emu.violations == [] and w.emu.unexpected == []

    run(body)


def test_slash_with_attachment_defers_downloads_and_uploads() -> None:
    async def body() -> None:
        async with running_bot() as w:
            emu = w.emu
            photo = emu.attachment(JPEG, "selfie.jpg", width=640, height=480)
            inter = await emu.slash(w.alice, w.chan, "portrait", {"prompt": "astronaut", "count": 2, "photo": photo})
            first = await inter.wait_response()
            assert first.type == 5 and first.ok and first.latency < 3
            result = await inter.wait_message(lambda m: m["attachments"])
            prompt, count, filename, size, data, limit = w.bot.seen["portrait"]
            assert (prompt, count, filename, size, data) == ("astronaut", 2, "selfie.jpg", len(JPEG), JPEG)
            assert limit == 10 * 1024 * 1024
            # The first followup after the defer replaced the "thinking" message.
            original = inter.original
            assert original is not None and original["content"] == "working on 'astronaut' x2"
            assert original["flags"] & 128 == 0 and len(original["_edits"]) == 1
            assert [m["id"] for m in inter.followups] == [result["id"]]
            att = result["attachments"][0]
            assert att["filename"] == "result.jpg" and emu.file_bytes(att) == JPEG[::-1]
            async with (
                aiohttp.ClientSession(connector=emu.connector()) as session,
                session.get(att["url"]) as resp,
            ):
                assert resp.status == 200 and await resp.read() == JPEG[::-1]
                assert resp.headers["Content-Type"] == "image/jpeg"
                assert resp.headers["Content-Length"] == str(len(JPEG))
            assert [m["id"] for m in emu.channel_messages(w.chan)] == [original["id"], result["id"]]
            assert any(r.host == "cdn.discordapp.com" for r in emu.requests)
            assert emu.violations == [] and emu.unexpected == []

    run(body)


def test_button_click_reaches_persistent_view() -> None:
    async def body() -> None:
        async with running_bot() as w:
            inter = await w.emu.slash(w.alice, w.chan, "menu")
            menu = await inter.wait_message()
            assert menu["components"][0]["components"][0]["custom_id"] == REROLL_ID
            click = await w.emu.click(w.alice, menu, REROLL_ID)
            reply = await click.wait_message()
            assert reply["content"] == "rerolled 42" and reply["_ephemeral"]
            assert click.payload["data"] == {"custom_id": REROLL_ID, "component_type": 2}
            with pytest.raises(EmulatorUsageError):
                await w.emu.click(w.alice, menu, "no-such-button")
            assert w.emu.violations == []

    run(body)


def test_message_context_menu_and_content_intent_stripping() -> None:
    async def body() -> None:
        async with running_bot() as w:
            emu = w.emu
            photo = emu.attachment(JPEG, "new.jpg")
            plain = await emu.send_message(w.alice, w.chan, "look at this", attachments=[photo])
            pinged = await emu.send_message(w.alice, w.chan, "and this", mention_bot=True)
            await emu.wait_until(lambda: len(w.bot.messages) == 2, 5, "on_message twice")
            # No message-content intent: Discord strips content and attachments unless the bot is mentioned.
            assert (w.bot.messages[0].content, w.bot.messages[0].attachments) == ("", [])
            assert w.bot.messages[1].content == f"{emu.bot_user.mention} and this"
            inter = await emu.message_command(w.alice, plain, "Use as reference")
            await inter.wait_message()
            assert w.bot.seen["reference"] == (int(plain["id"]), "look at this", ["new.jpg"])
            assert inter.payload["data"]["target_id"] == plain["id"]
            assert pinged["mentions"][0]["id"] == emu.bot_user.id
            assert emu.violations == []

    run(body)


def test_dm_interaction_and_guild_command_with_resolved_options() -> None:
    async def body() -> None:
        async with running_bot() as w:
            emu = w.emu
            dm = emu.dm_channel(w.alice)
            inter = await emu.slash(w.alice, dm, "ping")
            await inter.wait_message()
            assert "guild_id" not in inter.payload and inter.payload["user"]["id"] == w.alice.id
            assert w.bot.seen["ping"] == (None, int(w.alice.id), True)
            assert inter.original is not None and inter.original["channel_id"] == dm.id
            with pytest.raises(EmulatorUsageError):
                await emu.slash(w.alice, dm, "studio", {"channel": w.chan, "member": w.alice})  # guild-only
            studio = await emu.slash(w.alice, w.chan, "studio", {"channel": w.chan, "member": w.alice})
            await studio.wait_message()
            assert w.bot.seen["studio"] == (int(w.chan.id), int(w.alice.id))
            options = {"name": "noir", "strength": 0.7, "private": True}
            styled = await emu.slash(w.alice, w.chan, "style", options, subcommand="set")
            assert (await styled.wait_message())["_ephemeral"]
            assert w.bot.seen["style"] == ("noir", 0.7, True)
            sub = styled.payload["data"]["options"][0]
            assert (sub["type"], [o["type"] for o in sub["options"]]) == (1, [3, 10, 5])
            applied = await emu.slash(w.alice, w.chan, "style", {"preset": "film"}, group="preset", subcommand="apply")
            await applied.wait_message()
            assert w.bot.seen["preset"] == "film" and applied.payload["data"]["options"][0]["type"] == 2
            assert emu.violations == []

    run(body)


def test_modal_submit() -> None:
    async def body() -> None:
        async with running_bot() as w:
            opener = await w.emu.slash(w.alice, w.chan, "feedback")
            assert (await opener.wait_response()).type == 9
            submit = await w.emu.submit_modal(w.alice, None, "feedback:modal", {"feedback:text": "great"})
            reply = await submit.wait_message()
            assert reply["content"] == "thanks: great"
            assert w.emu.violations == []

    run(body)


def test_discord_py_normal_bodies_validate_against_the_spec() -> None:
    async def body() -> None:
        async with running_bot() as w:
            emu = w.emu
            emu.faults.rate_limit(n=1, retry_after=0.1, route_contains=f"/channels/{w.chan.id}/messages")
            inter = await emu.slash(w.alice, w.chan, "kitchen")
            seen = await emu.wait_until(lambda: w.bot.seen.get("kitchen"), 10, "the kitchen command")
            assert emu.violations == [] and emu.unexpected == []
            original = inter.original
            assert original is not None and original["content"] == "k3" and original["embeds"] == []
            assert [a["filename"] for a in original["attachments"]] == ["b.png"]
            assert len(original["_edits"]) == 2 and original["components"][0]["components"][0]["custom_id"] == "pick"
            assert emu.message(str(seen["followup"])) is None and emu.message(str(seen["gone"])) is None
            reply = emu.message(str(seen["sent"]))
            assert reply is not None and reply["content"] == "plain2" and seen["fetched"] == "plain2"
            assert reply["message_reference"]["message_id"] == original["id"] and reply["type"] == 19
            assert emu.file_bytes(reply["attachments"][0]) == b"p"
            assert reply["reactions"][0]["emoji"]["name"] == "\N{THUMBS UP SIGN}" and reply["reactions"][0]["me"]
            dm = emu.dm_channel(w.alice)
            assert seen["dm"] == (int(dm.id), "hello in DM")
            assert [m["content"] for m in emu.channel_messages(dm)] == ["hello in DM"]
            posts = [
                r.status for r in emu.requests if r.method == "POST" and r.route == "/channels/{channel_id}/messages"
            ]
            assert posts[:2] == [429, 200]  # discord.py's HTTPClient honoured retry_after

    run(body)


def test_cdn_serves_both_hosts_and_expires_signed_urls() -> None:
    async def body() -> None:
        async with DiscordEmulator() as emu:
            att = emu.attachment(JPEG, "selfie.jpg")
            async with aiohttp.ClientSession(connector=emu.connector()) as session:
                for url in (att["url"], att["proxy_url"]):
                    async with session.get(url) as resp:
                        assert resp.status == 200 and await resp.read() == JPEG
                emu.clock.advance(24 * 3600 + 1)
                async with session.get(att["url"]) as resp:
                    assert resp.status == 404
            assert rules(emu) == ["expired_cdn_url"]

    run(body)


# ----------------------------------------------------------------------------- Discord's rules


def test_late_first_response_is_unknown_interaction() -> None:
    async def body() -> None:
        async with running_bot() as w:
            inter = await w.emu.slash(w.alice, w.chan, "slow")
            w.emu.clock.advance(4)
            w.bot.gate.set()
            first = await inter.wait_response()
            assert (first.status, first.error_code) == (404, 10062)
            await w.emu.wait_until(lambda: w.bot.http_errors, 5, "the bot to see the error")
            assert w.bot.http_errors[0].code == 10062
            assert rules(w.emu) == ["response_window"]

    run(body)


def test_second_acknowledgement_is_rejected() -> None:
    async def body() -> None:
        async with running_bot() as w:
            inter = await w.emu.slash(w.alice, w.chan, "twice")
            await w.emu.wait_until(lambda: w.bot.http_errors, 5, "the second callback")
            err = w.bot.http_errors[0]
            assert isinstance(err, discord.HTTPException) and (err.status, err.code) == (400, 40060)
            assert [(r.status, r.error_code) for r in inter.responses] == [(200, None), (400, 40060)]
            assert rules(w.emu) == ["double_ack"]

    run(body)


def test_expired_token_then_channel_fallback() -> None:
    async def body() -> None:
        async with running_bot() as w:
            inter = await w.emu.slash(w.alice, w.chan, "long")
            await inter.wait_response()
            w.emu.clock.advance(15 * 60 + 1)
            w.bot.gate.set()
            fallback = await w.emu.wait_message(lambda m: "fallback" in m["content"])
            assert fallback["channel_id"] == w.chan.id and "webhook_id" not in fallback
            assert (w.bot.http_errors[0].status, w.bot.http_errors[0].code) == (401, 50027)
            assert rules(w.emu) == ["token_expired"] and inter.errors[0].status == 401

    run(body)


def test_upload_limits() -> None:
    async def body() -> None:
        async with running_bot() as w:
            emu = w.emu
            big = await emu.slash(
                w.alice, w.chan, "upload", {"size": 1024 * 1024 + 1}, attachment_size_limit=1024 * 1024
            )
            await emu.wait_until(lambda: w.bot.http_errors, 5, "the 413")
            assert (w.bot.http_errors[0].status, w.bot.http_errors[0].code) == (413, 40005)
            assert big.original is not None and big.original["flags"] & 128  # still "thinking"
            many = await emu.slash(w.alice, w.chan, "upload", {"size": 10, "count": 11})
            await emu.wait_until(lambda: len(w.bot.http_errors) == 2, 5, "the 11-file refusal")
            assert (w.bot.http_errors[1].status, w.bot.http_errors[1].code) == (400, 50035)
            assert many.followups == []
            assert rules(emu) == ["upload_too_large", "too_many_attachments"]
            # Channel route (bot token): the default 10 MiB per-file limit.
            emu.channel_upload_limit = 100
            form = aiohttp.FormData(quote_fields=False)
            form.add_field("payload_json", json.dumps({"content": "x"}))
            form.add_field("files[0]", b"y" * 101, filename="y.png", content_type="application/octet-stream")
            status, err = await raw(emu, "POST", f"/channels/{w.chan.id}/messages", data=form)
            assert (status, err["code"]) == (413, 40005)

    run(body)


def test_component_limits() -> None:
    async def body() -> None:
        async with running_bot() as w:
            emu = w.emu
            inter = await emu.slash(w.alice, w.chan, "badbutton")
            await emu.wait_until(lambda: w.bot.http_errors, 5, "the custom_id refusal")
            assert (w.bot.http_errors[0].status, w.bot.http_errors[0].code) == (400, 50035)
            assert not inter.acknowledged and rules(emu) == ["components"]
            assert [(r.status, r.error_code) for r in inter.responses] == [(400, 50035)]

            def button(i: int) -> dict[str, Any]:
                return {"type": 2, "style": 1, "label": "b", "custom_id": f"b{i}"}

            path = f"/channels/{w.chan.id}/messages"
            six_rows = [{"type": 1, "components": [button(i)]} for i in range(6)]
            status, err = await raw(emu, "POST", path, json={"content": "x", "components": six_rows})
            assert (status, err["code"]) == (400, 50035)
            wide_row = [{"type": 1, "components": [button(i) for i in range(6)]}]
            status, err = await raw(emu, "POST", path, json={"content": "x", "components": wide_row})
            assert (status, err["code"]) == (400, 50035)
            status, ok = await raw(emu, "POST", path, json={"content": "x", "components": [six_rows[0]]})
            assert status == 200 and ok["components"][0]["components"][0]["custom_id"] == "b0"
            assert rules(emu) == ["components"] * 3

    run(body)


def test_schema_validation_and_auth() -> None:
    async def body() -> None:
        async with running_bot() as w:
            emu = w.emu
            path = f"/channels/{w.chan.id}/messages"
            status, err = await raw(emu, "POST", path, json={"content": 123})
            assert (status, err["code"]) == (400, 50035) and "content" in err["errors"]
            status, err = await raw(emu, "POST", path, data=b"{not json", headers={"Content-Type": "application/json"})
            assert (status, err["code"]) == (400, 50035)
            status, err = await raw(emu, "POST", path, auth=False, json={"content": "hi"})
            assert status == 401
            status, err = await raw(emu, "GET", "/no/such/route")
            assert (status, err) == (404, {"message": "404: Not Found", "code": 0})
            assert rules(emu) == ["schema", "bad_request", "auth"]
            shy = emu.add_user("shy", dms_open=False)
            status, dm = await raw(emu, "POST", "/users/@me/channels", json={"recipient_id": shy.id})
            assert status == 200 and dm["type"] == 1 and dm["recipients"][0]["id"] == shy.id
            status, err = await raw(emu, "POST", f"/channels/{dm['id']}/messages", json={"content": "hi"})
            assert (status, err["code"]) == (403, 50007)
            assert emu.unexpected[-1].path == "/api/v10/no/such/route"
            assert "content" in emu.violations[0].message

    run(body)


def test_resolver_refuses_foreign_hosts() -> None:
    async def body() -> None:
        async with DiscordEmulator() as emu:
            for url in ("https://example.com/", f"https://127.0.0.1:{emu.port}/", "https://discord.com.evil.test/"):
                async with aiohttp.ClientSession(connector=emu.connector()) as session:
                    with pytest.raises(aiohttp.ClientConnectorError):
                        await session.get(url)
            foreign = emu.attachment(JPEG, url="https://evil.example/x.jpg")
            assert foreign["url"] == "https://evil.example/x.jpg"

    run(body)


def test_slash_rejects_unregistered_commands_and_options() -> None:
    async def body() -> None:
        async with running_bot() as w:
            with pytest.raises(EmulatorUsageError, match="no registered command"):
                await w.emu.slash(w.alice, w.chan, "nope")
            with pytest.raises(EmulatorUsageError, match="no option"):
                await w.emu.slash(w.alice, w.chan, "ping", {"x": 1})
            with pytest.raises(EmulatorUsageError, match="required"):
                await w.emu.slash(w.alice, w.chan, "portrait", {"prompt": "x"})
            with pytest.raises(EmulatorUsageError, match="does not fit"):
                await w.emu.slash(w.alice, w.chan, "upload", {"size": "big"})
            with pytest.raises(EmulatorUsageError, match="needs a subcommand"):
                await w.emu.slash(w.alice, w.chan, "style", {"name": "noir"})
            with pytest.raises(EmulatorUsageError, match="hides 'admin'"):
                await w.emu.slash(w.alice, w.chan, "admin")
            manager = w.emu.add_user("manager")
            w.emu.add_member(w.guild, manager, permissions=MANAGE_GUILD)
            allowed = await w.emu.slash(manager, w.chan, "admin")
            assert (await allowed.wait_message())["content"] == "admin ok"
            admin = next(c for c in w.emu.commands() if c["name"] == "admin")
            assert admin["default_member_permissions"] == str(MANAGE_GUILD)

    run(body)


# ----------------------------------------------------------------------------- faults


def _callbacks(emu: DiscordEmulator, inter: Interaction) -> list[int]:
    return [r.status for r in emu.requests if r.path.endswith("/callback") and f"/{inter.id}/" in r.path]


def test_rate_limit_is_retried() -> None:
    async def body() -> None:
        async with running_bot() as w:
            w.emu.faults.rate_limit(n=1, retry_after=0.2, route_contains="/callback")
            inter = await w.emu.slash(w.alice, w.chan, "ping")
            await inter.wait_message()
            assert _callbacks(w.emu, inter) == [429, 200]
            assert w.emu.violations == []

    run(body)


def test_server_error_is_retried() -> None:
    async def body() -> None:
        async with running_bot() as w:
            w.emu.faults.server_error(n=1, status=502, route_contains="/callback")
            inter = await w.emu.slash(w.alice, w.chan, "ping")
            await inter.wait_message(timeout=8)
            assert _callbacks(w.emu, inter) == [502, 200]

    run(body)


def test_gateway_drop_resumes_and_keeps_working() -> None:
    async def body() -> None:
        async with running_bot() as w:
            w.emu.faults.drop_gateway()
            inter = await w.emu.slash(w.alice, w.chan, "ping")  # dispatched while the socket is down
            await w.emu.wait_resumed(timeout=10)
            await inter.wait_message(timeout=5)
            assert w.emu.gateway.identify_count == 1
            later = await w.emu.slash(w.alice, w.chan, "ping")
            assert (await later.wait_message())["content"] == "pong"
            assert w.emu.violations == []

    run(body)


def test_random_faults_are_seeded_and_bot_survives() -> None:
    async def body() -> None:
        async with running_bot() as w:
            w.emu.faults.random(rate=0.5, statuses=(429,), seed=7, route_contains="/callback")
            for _ in range(3):
                inter = await w.emu.slash(w.alice, w.chan, "ping")
                await inter.wait_message()
            assert w.emu.faults.injected and all(f.status == 429 for f in w.emu.faults.injected)

    run(body)
