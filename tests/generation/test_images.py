"""The safe image loader against a corpus of broken, hostile and awkward files.

Every case must end in either a typed ImageError whose message a Discord user can act on, or
an upright uint8 RGB array; never a traceback, a hang or unbounded memory.
"""

from __future__ import annotations

import io
import re
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from generation.images import (
    FileTooLargeError,
    ImageError,
    LoadedImage,
    load_image,
    load_image_file,
)

try:  # tests/ laid out as packages
    from . import hostile_images as hostile
except ImportError:  # pytest's default rootdir-relative imports
    import hostile_images as hostile  # type: ignore[no-redef]

CASES = hostile.build_corpus()
CASE_IDS = [case.name for case in CASES]

# Pillow warns (and the loader carries on) about the deliberately damaged EXIF blocks.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

JARGON = ("Traceback", "Error", "error:", "struct", "Errno", "errno", "Exception", "PIL", "BytesIO", "None")
MAX_SECONDS_PER_CASE = 5.0  # safety nets, not performance claims
MAX_TRACED_BYTES = 200 * 1024 * 1024
MAX_RSS_GROWTH_BYTES = 400 * 1024 * 1024


def assert_user_message(exc: ImageError) -> None:
    message = exc.user_message
    assert isinstance(message, str) and message.strip(), "empty user_message"
    assert len(message) < 300, f"user_message too long for a chat reply: {message!r}"
    for word in JARGON:
        assert word not in message, f"user_message contains jargon {word!r}: {message!r}"
    assert message.rstrip()[-1] in ".!)", f"user_message is not a finished sentence: {message!r}"
    words = re.findall(r"[\w']+", message.lower())
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    repeated = {t for t in trigrams if trigrams.count(t) > 1}
    assert not repeated, f"user_message repeats itself ({sorted(repeated)}): {message!r}"


def assert_case_outcome(case: hostile.HostileCase, run) -> LoadedImage | None:
    """Run ``run()`` and hold the outcome to the case's expectation."""
    if case.error is not None:
        with pytest.raises(ImageError) as info:
            run()
        exc = info.value
        assert type(exc) is case.error, (
            f"{case.name}: got {type(exc).__name__} ({exc}), want {case.error.__name__}"
        )
        assert exc.code == case.code
        assert_user_message(exc)
        for word in case.message_contains:
            assert word.lower() in exc.user_message.lower(), f"{word!r} not in {exc.user_message!r}"
        return None
    image = run()
    assert isinstance(image, LoadedImage)
    assert case.check is not None
    case.check(image)
    return image


def _skip_if_unbuildable(case: hostile.HostileCase) -> None:
    if case.skip_reason:
        pytest.skip(case.skip_reason)


# --------------------------------------------------------------------------- the corpus


def test_corpus_is_large_and_covers_the_spec() -> None:
    assert len(CASES) >= 20
    names = set(CASE_IDS)
    required = {
        "empty_file",
        "jpeg_truncated_mid_scan",
        "jpeg_truncated_in_header",
        "text_named_jpg",
        "svg",
        "png_declares_30000x30000_tiny_idat",
        "png_zlib_bomb_just_over_pixel_cap",
        "animated_gif",
        "animated_webp",
        "apng",
        "cmyk_jpeg",
        "png_16bit_grey_gradient",
        "greyscale_jpeg",
        "rgba_png",
        "la_png",
        "palette_png_transparency",
        "exif_orientation_6",
        "exif_orientation_8",
        "heic",
        "huge_exif_block_60kb",
        "png_named_jpg",
        "jpeg_named_png",
        "bmp",
        "tiff_named_jpg",
        "html_page",
        "pdf_header",
        "random_bytes",
        "over_max_bytes",
        "one_pixel_png",
        "exif_invalid_orientation_9",
        "exif_invalid_orientation_0",
        "exif_garbage_payload",
    }
    assert required <= names, sorted(required - names)
    assert all(case.data or case.name == "empty_file" or case.skip_reason for case in CASES)


def test_corpus_files_are_what_they_claim() -> None:
    """Guard the builders: the hand-made files really have the hostile property under test."""
    by_name = {case.name: case for case in CASES}
    bomb = by_name["png_zlib_bomb_just_over_pixel_cap"].data
    assert len(bomb) < 1_000_000  # ...while its IDAT inflates to more than 100 MB
    assert by_name["png_declares_30000x30000_tiny_idat"].data[16:24] == (30000).to_bytes(4, "big") * 2
    huge_idat = by_name["png_small_header_1gib_idat"].data
    assert len(huge_idat) < 2_000_000
    huge_exif = by_name["huge_exif_block_60kb"].data
    app1_length = int.from_bytes(huge_exif[huge_exif.find(b"\xff\xe1") + 2 :][:2], "big")
    assert app1_length > 60_000
    assert len(by_name["over_max_bytes"].data) > hostile.DEFAULT_MAX_BYTES
    with Image.open(io.BytesIO(by_name["cmyk_jpeg"].data)) as im:
        assert im.mode == "CMYK"
    with Image.open(io.BytesIO(by_name["png_16bit_grey_gradient"].data)) as im:
        assert im.mode.startswith("I")
    with Image.open(io.BytesIO(by_name["multi_picture_jpeg"].data)) as im:
        assert im.format == "MPO" and im.n_frames == 2
    for name in ("animated_gif", "animated_webp", "apng"):
        with Image.open(io.BytesIO(by_name[name].data)) as im:
            assert im.n_frames == 3, name


def test_zeros_deflate_is_a_valid_stream() -> None:
    total = 8 << 20
    stream = hostile.zeros_deflate(total)
    out = zlib.decompress(stream)
    assert len(out) == total and not any(out[:: 1 << 16])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_load_image(case: hostile.HostileCase) -> None:
    _skip_if_unbuildable(case)
    assert_case_outcome(case, lambda: load_image(case.data, **case.load_kwargs))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_load_image_file(case: hostile.HostileCase, tmp_path: Path) -> None:
    _skip_if_unbuildable(case)
    path = tmp_path / case.filename
    path.write_bytes(case.data)
    assert_case_outcome(case, lambda: load_image_file(path, **case.load_kwargs))


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux only)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _rss_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match
    return int(match.group(1))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bounded_time_and_memory(case: hostile.HostileCase) -> None:
    _skip_if_unbuildable(case)
    rss_measured = _peak_rss_reset()
    rss_before = _rss_kib("VmRSS") if rss_measured else 0
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        load_image(case.data, **case.load_kwargs)
    except ImageError:
        pass
    finally:
        elapsed = time.perf_counter() - started
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS_PER_CASE, f"{case.name} took {elapsed:.1f} s"
    assert traced_peak < MAX_TRACED_BYTES, f"{case.name} traced {traced_peak / 1e6:.0f} MB"
    if rss_measured:  # covers Pillow's own C allocations, which tracemalloc cannot see
        growth = (_rss_kib("VmHWM") - rss_before) * 1024
        assert growth < MAX_RSS_GROWTH_BYTES, f"{case.name} grew RSS by {growth / 1e6:.0f} MB"


# --------------------------------------------------------------------------- refusing big files early


def test_load_image_file_refuses_from_size_without_reading(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "huge.jpg"
    with path.open("wb") as f:  # sparse: no 25 MB written to disk
        f.write(b"\xff\xd8\xff")
        f.truncate(25 * 1024 * 1024 + 1)

    def no_reading(self: Path) -> bytes:
        raise AssertionError("the file was read before its size was checked")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(FileTooLargeError) as info:
        load_image_file(path)
    assert_user_message(info.value)
    with pytest.raises(FileTooLargeError):
        load_image_file(path, max_bytes=10)


def test_too_large_message_never_shows_size_equal_to_limit() -> None:
    limit = 25 * 1024 * 1024
    with pytest.raises(FileTooLargeError) as info:
        load_image(b"\xff\xd8\xff" + bytes(limit), max_bytes=limit)
    shown = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?) MB", info.value.user_message)[:2]]
    assert shown[0] > shown[1], info.value.user_message


def test_load_image_file_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        load_image_file(tmp_path / "nope.jpg")
    assert_user_message(info.value)
    with pytest.raises(ImageError) as info:
        load_image_file(tmp_path)
    assert "folder" in info.value.user_message


# --------------------------------------------------------------------------- JPEG draft mode


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return hostile._encode(hostile.gradient_image((4000, 3000)), "JPEG", quality=90)


@pytest.fixture(scope="module")
def big_jpeg_rotated() -> bytes:
    return hostile.jpeg_with_orientation(hostile.gradient_image((4000, 3000)), 6)


@pytest.fixture
def draft_sizes(monkeypatch) -> list[tuple[int, int]]:
    """Records the decode size each JPEG draft request produced."""
    sizes: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return sizes


def test_jpeg_draft_mode_decodes_at_reduced_size(big_jpeg: bytes, draft_sizes) -> None:
    image = load_image(big_jpeg, max_side=1000)
    assert draft_sizes == [(1000, 750)], "the JPEG was not decoded at reduced size"
    assert abs(max(image.size) - 1000) <= 1
    assert image.pixels.dtype == np.uint8 and image.pixels.shape[2] == 3
    assert image.original_size == (4000, 3000)
    assert image.jpeg_quantization
    assert image.scale == pytest.approx(0.25, abs=0.002)
    assert image.format == "JPEG"


def test_jpeg_draft_mode_then_exact_resize(big_jpeg: bytes, draft_sizes) -> None:
    image = load_image(big_jpeg, max_side=900)
    assert draft_sizes == [(1000, 750)]
    assert image.size == (900, 675)
    assert image.scale == pytest.approx(0.225, abs=0.002)
    assert image.original_size == (4000, 3000)


def test_jpeg_draft_mode_with_exif_rotation(big_jpeg_rotated: bytes) -> None:
    image = load_image(big_jpeg_rotated, max_side=1000)
    assert image.original_size == (3000, 4000)
    assert abs(image.size[1] - 1000) <= 1 and abs(image.size[0] - 750) <= 1
    assert image.scale == pytest.approx(0.25, abs=0.002)
    assert image.jpeg_quantization


def test_multi_picture_jpeg_uses_draft_mode_on_the_main_picture(draft_sizes) -> None:
    main = hostile.gradient_image((2000, 1500))
    data = hostile._encode(main, "MPO", save_all=True, append_images=[Image.new("RGB", (500, 400))])
    image = load_image(data, max_side=500)
    assert draft_sizes == [(500, 375)]
    assert image.size == (500, 375)
    assert image.original_size == (2000, 1500)
    assert image.format == "JPEG" and image.jpeg_quantization
    # The main picture's gradient, not the black second picture.
    assert image.pixels[:, -20:, 0].mean() > 200


def test_no_max_side_keeps_full_resolution(big_jpeg: bytes) -> None:
    image = load_image(big_jpeg)
    assert image.size == (4000, 3000)
    assert image.scale == 1.0


def test_max_side_applies_to_png_too() -> None:
    data = hostile._encode(hostile.quadrant_image((800, 600)), "PNG")
    image = load_image(data, max_side=200)
    assert image.size == (200, 150)
    assert image.original_size == (800, 600)
    assert image.scale == pytest.approx(0.25)


# --------------------------------------------------------------------------- animations


def test_gif_first_frame_when_allowed() -> None:
    data = hostile.animation("GIF")
    image = load_image(data, allow_animation_first_frame=True)
    assert image.format == "GIF"
    assert image.size == (48, 32)
    assert image.original_size == (48, 32)
    assert (image.pixels.reshape(-1, 3) == hostile.RED).all(), "not the first (red) frame"
    assert any("first frame" in note for note in image.notes)


def test_animation_refused_by_default_with_clear_message() -> None:
    for name in ("animated_gif", "animated_webp", "apng"):
        case = hostile.case_by_name(name)
        with pytest.raises(ImageError) as info:
            load_image(case.data)
        assert_user_message(info.value)
        assert "JPEG" in info.value.user_message


def test_binary_files_with_nul_bytes_are_not_called_text() -> None:
    import pytest

    from generation.images import UnsupportedFormatError, load_image

    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 600
    with pytest.raises(UnsupportedFormatError) as caught:
        load_image(elf)
    assert "text file" not in caught.value.user_message
