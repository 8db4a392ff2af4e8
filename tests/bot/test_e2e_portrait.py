"""/portrait end to end: the real bot, the real discord.py, the local Discord emulator."""

from __future__ import annotations

from pathlib import Path

from fake_generator import FastGenerator
from harness import buttons, photo, run, text_of, world


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
