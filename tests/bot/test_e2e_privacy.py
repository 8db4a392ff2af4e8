"""After /forget nothing of the person is left on disk, with the bot still running; after a retention
sweep nothing of what it removed is left either.

Every file under the data folder is read as bytes — the SQLite databases with their write-ahead logs
and shared-memory files, the photo and result folders — and searched for the person's id and for
byte signatures of their photos (the uploads and the re-encoded references jobs carry, raw and in
base64) and of their portraits.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path

import numpy as np
from fake_generator import FastGenerator, png_bytes
from harness import analyzer, bot_config, buttons, ephemeral_reply, photo, result_of, run, world

from bot.imaging import job_reference

SIZE = 64  # noise PNGs of this size: every portrait has its own bytes


def signatures(name: str, data: bytes) -> dict[str, bytes]:
    """A slice from the middle of ``data`` and of its base64 (how queues and JSON hold it)."""
    middle = len(data) // 2
    encoded = base64.b64encode(data)
    half = len(encoded) // 2
    return {f"{name} (bytes)": data[middle:middle + 24], f"{name} (base64)": encoded[half:half + 32]}


def needles_for(user_id: str, photos: list[bytes], seeds: list[int], images) -> dict[str, bytes]:
    found = {"user id": user_id.encode()}
    for number, data in enumerate(photos, start=1):
        found |= signatures(f"photo {number}", data)
        found |= signatures(f"job reference {number}", job_reference(data, analyzer(), images))
    for seed in seeds:
        found |= signatures(f"portrait seed {seed}", png_bytes(SIZE, seed, True))
    return found


def leftovers(root: Path, needles: dict[str, bytes]) -> list[str]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path.relative_to(root)}: {name}" for name, needle in needles.items() if needle in data]
    return hits


def test_forget_leaves_no_byte_behind_and_neither_does_a_sweep(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    generator = FastGenerator(size=SIZE, noise=True, gate=gate)
    config = bot_config(tmp_path)

    async def body() -> None:
        async with world(tmp_path, generator, config) as w:
            emu = w.emu
            # Bob: a reference and a delivered portrait; they must survive Alice's /forget.
            await w.bot.store.add_reference(w.bob.id, photo("biden.jpg"), "pass", ())
            bobs = await w.slash(w.bob, "portrait", {"prompt": "bob", "seed": 500})
            await result_of(bobs)
            # Alice: a saved reference, a delivered portrait from a checked upload, a draft left waiting,
            # and a job still running when she asks to be forgotten.
            saved = await w.slash(w.alice, "reference", {"photo": emu.attachment(photo())}, subcommand="set")
            await ephemeral_reply(saved, "Saved", timeout=20)
            upload = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo("obama2.jpg")), "seed": 100,
                                                         "count": 2})
            report = await upload.wait_message(lambda m: m.get("embeds"), timeout=20)
            await result_of(await emu.click(w.alice, report, buttons(report)["Generate anyway"]))
            waiting = await w.slash(w.alice, "portrait", {"photo": emu.attachment(photo("obama2.jpg"))})
            await waiting.wait_message(lambda m: m.get("embeds"), timeout=20)
            gate.clear()
            running = await w.slash(w.alice, "portrait", {"prompt": "running", "seed": 300})
            await running.wait_message(lambda m: not m.get("_ephemeral"), timeout=20)
            await emu.wait_until(lambda: len(generator.seen) == 3, timeout=20, what="Alice's job to start")

            alice = needles_for(w.alice.id, [photo(), photo("obama2.jpg")], [100, 101, 300], config.images)
            bob = needles_for(w.bob.id, [photo("biden.jpg")], [500], config.images)
            assert leftovers(tmp_path, alice), "the test must see Alice's data before she asks"

            ask = await w.slash(w.alice, "forget")
            question = await ephemeral_reply(ask, "can't be undone")
            yes = await emu.click(w.alice, question, buttons(question)["Yes, delete everything"])
            await yes.wait_message(lambda m: "I deleted everything" in (m.get("content") or ""), timeout=10)
            assert leftovers(tmp_path, alice) == []  # the bot is still running
            assert leftovers(tmp_path, bob) != []
            # Delivered portraits live in the store only: the queue's journal dropped them on acknowledgement.
            portraits = {k: v for k, v in bob.items() if k.startswith("portrait")}
            assert [hit for hit in leftovers(tmp_path, portraits) if hit.startswith("queue.db")] == []
            assert [hit for hit in leftovers(tmp_path, portraits) if hit.startswith("store")] != []

            gate.set()  # the job that was running ends now: its portraits have nowhere to land
            await asyncio.sleep(1.0)
            assert leftovers(tmp_path, alice) == []

            # A retention sweep far in the future removes Bob's data the same way.
            future = time.time() + 10 * 365 * 86400
            await w.bot.store.sweep(retention_s=86400, draft_ttl_s=3600, now=future)
            await w.bot.queue.sweep(now=future)
            assert leftovers(tmp_path, bob) == []
            assert emu.violations == []

    run(body, timeout=120)


def test_a_job_carries_a_face_centred_reencode_not_the_upload(tmp_path: Path) -> None:
    import io

    from PIL import Image

    generator = FastGenerator()

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            upload = photo("obama2.jpg")
            inter = await w.slash(w.alice, "portrait", {"photo": w.emu.attachment(upload)})
            report = await inter.wait_message(lambda m: m.get("embeds"), timeout=20)
            await result_of(await w.emu.click(w.alice, report, buttons(report)["Generate anyway"]))
            (carried,) = generator.seen[0].references
            data = base64.b64decode(carried)
            assert data != upload and len(data) < len(upload)
            image = Image.open(io.BytesIO(data))
            assert image.format == "JPEG" and max(image.size) <= 1024 and not image.getexif()
            pixels = np.asarray(image.convert("RGB"))
            faces = analyzer().analyze(pixels)
            original = analyzer().analyze(np.asarray(Image.open(io.BytesIO(upload)).convert("RGB")))
            assert len(faces) == 1  # the face, large: at least as many pixels between the eyes as uploaded
            assert faces[0].inter_eye_distance >= 0.95 * max(f.inter_eye_distance for f in original)

    run(body)


def test_a_burst_of_uploads_holds_only_a_few_photos_at_once(tmp_path: Path) -> None:
    import dataclasses

    config = bot_config(tmp_path)
    config = dataclasses.replace(config, bot=dataclasses.replace(config.bot, concurrent_photos=2))
    peak = [0, 0]  # now, highest

    async def body() -> None:
        async with world(tmp_path, FastGenerator(), config) as w:
            real = w.bot.photos.download

            async def counting(attachment):  # the real download, counted while it and the check hold a photo
                peak[0] += 1
                peak[1] = max(peak)
                try:
                    await asyncio.sleep(0.05)
                    return await real(attachment)
                finally:
                    peak[0] -= 1

            w.bot.photos.download = counting
            people = [w.alice, w.bob, w.admin]
            inters = [await w.slash(person, "portrait", {"photo": w.emu.attachment(photo())})
                      for person in people for _ in range(2)]
            for inter in inters:
                await inter.wait_message(lambda m: m.get("embeds"), timeout=30)
            assert peak[1] <= 2

    run(body, timeout=120)


def test_every_database_the_bot_opens_overwrites_what_it_deletes(tmp_path: Path) -> None:
    """secure_delete is set on each connection (Debian's SQLite happens to default to it; others do not)."""
    async def body() -> None:
        async with world(tmp_path, FastGenerator()) as w:
            store_flag = await w.bot.store._call(lambda: w.bot.store._sql.execute("PRAGMA secure_delete").fetchone())
            queue_flag = await w.bot.queue._db(lambda: w.bot.queue._sql.execute("PRAGMA secure_delete").fetchone())
            assert store_flag == (1,) and queue_flag == (1,)

    run(body)
