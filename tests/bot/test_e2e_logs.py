"""Secrets stay out of the logs: a whole job at DEBUG level, every line checked for tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_generator import FastGenerator
from harness import buttons, photo, result_of, run, world

from generation.logging_setup import setup_logging


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_token_reaches_the_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    setup_logging("DEBUG", fmt)
    tokens: list[str] = []

    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            emu = w.emu
            tokens.append(emu.token)
            inter = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo())})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            click = await emu.click(w.alice, report, buttons(report)["Generate"])
            await result_of(click)
            tokens.extend([inter.token, click.token])

    run(body)
    logged = capsys.readouterr().err
    assert "interactions/" in logged or "webhooks/" in logged  # discord.py did log its requests
    for token in tokens:
        assert token not in logged
