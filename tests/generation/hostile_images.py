"""A corpus of broken, hostile and awkward image files, built in memory at test time.

No binary fixtures are committed: every file is made here with Pillow, pillow-heif or by
writing PNG/JPEG structures by hand (chunks with correct CRCs, patched markers), so the
corpus documents exactly what each file contains.

:func:`build_corpus` returns a list of :class:`HostileCase`. Each case expects either a
typed :class:`~generation.images.ImageError` subclass (``error``), or a successfully loaded
image that ``check`` inspects (it raises ``AssertionError`` when the image is handled wrongly).
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from generation.images import (
    AnimatedImageError,
    CorruptImageError,
    EmptyFileError,
    FileTooLargeError,
    ImageError,
    LoadedImage,
    TooManyPixelsError,
    UnsupportedFormatError,
)

Checker = Callable[[LoadedImage], None]

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)
GREY = (128, 128, 128)
DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class HostileCase:
    """One file of the corpus and what the loader must do with it."""

    name: str
    filename: str  # what the user's upload was called (extension may lie)
    data: bytes
    error: type[ImageError] | None = None  # expected refusal ...
    check: Checker | None = None  # ... or a checker for a correctly handled image
    message_contains: tuple[str, ...] = ()  # words the user_message must contain (case-insensitive)
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None  # set when this environment cannot build the file

    def __post_init__(self) -> None:
        if self.skip_reason is None and (self.error is None) == (self.check is None):
            raise ValueError(f"case {self.name}: give exactly one of error / check")

    @property
    def code(self) -> str | None:
        return self.error.code if self.error is not None else None


# --------------------------------------------------------------------------- builders


def _encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def quadrant_image(size: tuple[int, int] = (80, 60), mode: str = "RGB") -> Image.Image:
    """Blue image whose top-left quadrant is red: asymmetric, so any rotation or mirror shows."""
    width, height = size
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:] = BLUE
    arr[: height // 2, : width // 2] = RED
    im = Image.fromarray(arr)
    return im if mode == "RGB" else im.convert(mode)


def gradient_image(size: tuple[int, int]) -> Image.Image:
    """Smooth, cheap-to-encode RGB content of any size."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    arr = np.empty((height, width, 3), np.uint8)
    arr[..., 0] = x.astype(np.uint8)
    arr[..., 1] = y.astype(np.uint8)
    arr[..., 2] = ((x + y) / 2).astype(np.uint8)
    return Image.fromarray(arr)


def exif_bytes(orientation: int | None = None, description: str | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if description is not None:
        exif[0x010E] = description  # ImageDescription
    return exif.tobytes()


def jpeg_with_orientation(im: Image.Image, orientation: int, **params: Any) -> bytes:
    return _encode(im, "JPEG", quality=92, exif=exif_bytes(orientation), **params)


def insert_jpeg_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """Insert a raw segment (e.g. APP1) straight after SOI, without any validation of the payload."""
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("JPEG segments are limited to 65535 bytes")
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def patch_jpeg_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header's declared size (the scan data is left as it was)."""
    for sof in (b"\xff\xc0", b"\xff\xc2"):
        pos = jpeg.find(sof)
        if pos > 0:
            # FFCx, length(2), precision(1), height(2), width(2)
            return jpeg[: pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9 :]
    raise ValueError("no SOF marker found")


def png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def handmade_png(
    width: int,
    height: int,
    *,
    bit_depth: int = 8,
    color_type: int = 2,
    idat: bytes,
    extra_chunks: tuple[bytes, ...] = (),
) -> bytes:
    """A PNG written chunk by chunk: IHDR can declare anything, IDAT carries whatever it is given."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + b"".join(extra_chunks)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def zeros_deflate(total: int, block: int = 1 << 20) -> bytes:
    """A valid zlib stream that inflates to ``total`` zero bytes, built in milliseconds.

    Each block is compressed after a full flush, so every block after the first has identical,
    byte-aligned output that can simply be repeated; the Adler-32 of n zeros is (n mod 65521, 1).
    """
    if total % block:
        raise ValueError("total must be a multiple of block")
    zeros = bytes(block)
    comp = zlib.compressobj(9)
    first = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    repeat = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush()[:-4]  # final empty block; the checksum is rewritten below
    adler = ((total % 65521) << 16) | 1
    return first + repeat * (total // block - 1) + tail + struct.pack(">I", adler)


def rgb16_png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one, so it is written by hand)."""
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type 0
        for x in range(width):
            row += struct.pack(">HHH", *pixel(x, y))
        rows.append(bytes(row))
    return handmade_png(width, height, bit_depth=16, color_type=2, idat=zlib.compress(b"".join(rows)))


def animation(
    fmt: str, colours: tuple[tuple[int, int, int], ...] = (RED, BLUE, GREEN), **params: Any
) -> bytes:
    frames = [Image.new("RGB", (48, 32), colour) for colour in colours]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)


def heic_bytes(im: Image.Image, exif: bytes | None = None) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": 90}
    if exif is not None:
        kwargs["exif"] = exif
    pillow_heif.from_pillow(im).save(buffer, **kwargs)
    return buffer.getvalue()


def noise_jpeg(size: tuple[int, int] = (400, 300), seed: int = 1) -> bytes:
    """A JPEG whose scan is large (noise compresses badly), for truncation tests."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return _encode(Image.fromarray(arr), "JPEG", quality=90)


# --------------------------------------------------------------------------- checkers


def region_mean(pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Mean colour inside a box given as fractions (left, top, right, bottom), with a margin."""
    height, width = pixels.shape[:2]
    left, top, right, bottom = box
    x0, x1 = int(width * left), max(int(width * left) + 1, int(width * right))
    y0, y1 = int(height * top), max(int(height * top) + 1, int(height * bottom))
    # Stay clear of edges where JPEG blocks and chroma subsampling blur the colours.
    mx, my = (x1 - x0) // 5, (y1 - y0) // 5
    return pixels[y0 + my : y1 - my or None, x0 + mx : x1 - mx or None].reshape(-1, 3).mean(axis=0)


QUADRANTS = {
    "top-left": (0, 0, 0.5, 0.5),
    "top-right": (0.5, 0, 1, 0.5),
    "bottom-left": (0, 0.5, 0.5, 1),
    "bottom-right": (0.5, 0.5, 1, 1),
}


def assert_colour(actual: np.ndarray, expected: tuple[int, int, int], tolerance: float, where: str) -> None:
    diff = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)).max()
    assert diff <= tolerance, f"{where}: expected ~{expected}, got {np.round(actual, 1).tolist()}"


def check_rgb(image: LoadedImage) -> None:
    pixels = image.pixels
    assert isinstance(pixels, np.ndarray)
    assert pixels.dtype == np.uint8, pixels.dtype
    assert pixels.ndim == 3 and pixels.shape[2] == 3, pixels.shape
    assert pixels.shape[0] >= 1 and pixels.shape[1] >= 1


def expect_loaded(
    *,
    size: tuple[int, int] | None = None,
    original_size: tuple[int, int] | None = None,
    fmt: str | None = None,
    red_at: str | None = None,
    colours: tuple[tuple[tuple[float, float, float, float], tuple[int, int, int]], ...] = (),
    tolerance: float = 40,
    notes_contain: tuple[str, ...] = (),
    extra: Checker | None = None,
) -> Checker:
    """Build a checker: RGB uint8 array, optional sizes/format, colours at places, notes."""

    def check(image: LoadedImage) -> None:
        check_rgb(image)
        if size is not None:
            assert image.size == size, f"working size {image.size}, expected {size}"
        if original_size is not None:
            assert image.original_size == original_size, (
                f"original_size {image.original_size}, expected {original_size}"
            )
        if fmt is not None:
            assert image.format == fmt, f"format {image.format}, expected {fmt}"
        if red_at is not None:
            for quadrant, box in QUADRANTS.items():
                expected = RED if quadrant == red_at else BLUE
                assert_colour(region_mean(image.pixels, box), expected, tolerance, f"{quadrant} quadrant")
        for box, expected in colours:
            assert_colour(region_mean(image.pixels, box), expected, tolerance, f"region {box}")
        for word in notes_contain:
            assert any(word in note for note in image.notes), f"no note mentions {word!r}: {image.notes}"
        if extra is not None:
            extra(image)

    return check


LEFT = (0, 0, 0.5, 1)
RIGHT = (0.5, 0, 1, 1)


def _check_grey_gradient(image: LoadedImage) -> None:
    """Row of a 16-bit 0..65535 gradient: must come out as 0..255, not clipped to white."""
    pixels = image.pixels.astype(np.int32)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    row = pixels[0, :, 0]
    expected = np.arange(256)
    assert np.abs(row - expected).max() <= 1, f"16-bit values badly scaled: {row[:8]} ... {row[-8:]}"
    assert row.min() <= 1 and row.max() >= 254


def _check_rgb16_gradient(image: LoadedImage) -> None:
    pixels = image.pixels.astype(np.int32)
    x = np.arange(pixels.shape[1])
    assert np.abs(pixels[0, :, 0] - x).max() <= 1, pixels[0, :8, 0]
    assert np.abs(pixels[0, :, 1] - (255 - x)).max() <= 1, pixels[0, :8, 1]
    assert np.abs(pixels[0, :, 2] - 128).max() <= 1, pixels[0, :8, 2]


def _check_greyscale(image: LoadedImage) -> None:
    pixels = image.pixels.astype(np.int32)
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 1
    assert np.abs(pixels[..., 1] - pixels[..., 2]).max() <= 1


# --------------------------------------------------------------------------- the corpus


@functools.cache
def build_corpus() -> tuple[HostileCase, ...]:
    """Every case, built once per process (a few hundred milliseconds)."""
    cases: list[HostileCase] = []
    add = cases.append

    small_jpeg = _encode(quadrant_image(), "JPEG", quality=92)
    small_png = _encode(quadrant_image(), "PNG")
    noisy = noise_jpeg()

    # ---- empty, truncated and damaged files
    add(HostileCase("empty_file", "selfie.jpg", b"", error=EmptyFileError, message_contains=("empty",)))
    add(
        HostileCase(
            "jpeg_truncated_mid_scan",
            "selfie.jpg",
            noisy[: len(noisy) * 6 // 10],
            error=CorruptImageError,
            message_contains=("damaged",),
        )
    )
    sos = noisy.find(b"\xff\xda")
    add(
        HostileCase(
            "jpeg_truncated_just_after_scan_header", "selfie.jpg", noisy[: sos + 20], error=CorruptImageError
        )
    )
    dqt = small_jpeg.find(b"\xff\xdb")
    add(
        HostileCase("jpeg_truncated_in_header", "selfie.jpg", small_jpeg[: dqt + 30], error=CorruptImageError)
    )
    add(HostileCase("jpeg_soi_only", "selfie.jpg", b"\xff\xd8\xff", error=CorruptImageError))
    add(HostileCase("png_truncated", "selfie.png", small_png[: len(small_png) // 2], error=CorruptImageError))
    add(HostileCase("png_signature_only", "selfie.png", small_png[:8], error=CorruptImageError))
    bad_crc = bytearray(small_png)
    bad_crc[29] ^= 0xFF  # last byte of IHDR's CRC
    add(HostileCase("png_bad_ihdr_crc", "selfie.png", bytes(bad_crc), error=CorruptImageError))
    webp = _encode(quadrant_image(), "WEBP", quality=90)
    add(HostileCase("webp_truncated", "selfie.webp", webp[: len(webp) // 2], error=CorruptImageError))
    add(
        HostileCase(
            "webp_garbage_body",
            "selfie.webp",
            b"RIFF" + struct.pack("<I", 4 + 200) + b"WEBP" + bytes(range(200)),
            error=CorruptImageError,
        )
    )
    add(
        HostileCase(
            "heif_header_garbage_body",
            "selfie.heic",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200),
            error=CorruptImageError,
        )
    )

    # ---- things that are not photos at all (any name)
    add(
        HostileCase(
            "text_named_jpg",
            "selfie.jpg",
            b"This is not a photo, just some notes.\n" * 20,
            error=UnsupportedFormatError,
            message_contains=("text",),
        )
    )
    # Multi-byte UTF-8 character cut by the 512-byte sniffing window: still plain text.
    add(
        HostileCase(
            "utf8_text_cut_mid_character",
            "notes.jpg",
            ("a" + "é" * 1000).encode("utf-8"),
            error=UnsupportedFormatError,
            message_contains=("text",),
        )
    )
    svg = (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="30000" height="30000">'
        b'<circle cx="50" cy="50" r="40" fill="red"/></svg>\n'
    )
    add(HostileCase("svg", "selfie.svg", svg, error=UnsupportedFormatError, message_contains=("SVG",)))
    add(
        HostileCase(
            "svg_named_png", "selfie.png", svg, error=UnsupportedFormatError, message_contains=("SVG",)
        )
    )
    add(
        HostileCase(
            "html_page",
            "selfie.jpg",
            b"<!DOCTYPE html><html><body><img src=x></body></html>",
            error=UnsupportedFormatError,
            message_contains=("web page",),
        )
    )
    add(
        HostileCase(
            "pdf_header",
            "selfie.pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
            error=UnsupportedFormatError,
            message_contains=("PDF",),
        )
    )
    add(
        HostileCase(
            "bmp",
            "selfie.bmp",
            _encode(quadrant_image(), "BMP"),
            error=UnsupportedFormatError,
            message_contains=("BMP",),
        )
    )
    add(
        HostileCase(
            "tiff_named_jpg",
            "selfie.jpg",
            _encode(quadrant_image(), "TIFF"),
            error=UnsupportedFormatError,
            message_contains=("TIFF",),
        )
    )
    add(
        HostileCase(
            "random_bytes",
            "selfie.jpg",
            random.Random(1234).randbytes(4096),
            error=UnsupportedFormatError,
            message_contains=("JPEG", "PNG"),
        )
    )
    add(
        HostileCase(
            "static_gif_refused",
            "selfie.gif",
            _encode(quadrant_image(), "GIF"),
            error=UnsupportedFormatError,
            message_contains=("GIF",),
        )
    )

    # ---- size limits, bombs and lying headers
    oversize = small_jpeg + bytes(DEFAULT_MAX_BYTES + 1 - len(small_jpeg))
    add(
        HostileCase("over_max_bytes", "huge.jpg", oversize, error=FileTooLargeError, message_contains=("MB",))
    )
    add(
        HostileCase(
            "over_configured_max_bytes",
            "selfie.png",
            small_png,
            error=FileTooLargeError,
            load_kwargs={"max_bytes": len(small_png) - 1},
        )
    )
    tiny_idat = zlib.compress(b"\x00" * 100)
    add(
        HostileCase(
            "png_declares_30000x30000_tiny_idat",
            "selfie.png",
            handmade_png(30000, 30000, idat=tiny_idat),
            error=TooManyPixelsError,
        )
    )
    # 6400 x 6400 = 40.96 MP, just over the 40 MP cap; the IDAT really inflates to ~123 MB.
    bomb_w = bomb_h = 6400
    add(
        HostileCase(
            "png_zlib_bomb_just_over_pixel_cap",
            "selfie.png",
            handmade_png(bomb_w, bomb_h, idat=zlib.compress(bytes((bomb_w * 3 + 1) * bomb_h), 9)),
            error=TooManyPixelsError,
            message_contains=("6400",),
        )
    )
    # Declares a modest 500 x 500, but the IDAT inflates to 1 GiB of zeros: only the first
    # 750 KB may ever be inflated.
    add(
        HostileCase(
            "png_small_header_1gib_idat",
            "selfie.png",
            handmade_png(500, 500, idat=zeros_deflate(1 << 30)),
            check=expect_loaded(size=(500, 500), colours=(((0, 0, 1, 1), (0, 0, 0)),), tolerance=0),
        )
    )
    # Declares 4000 x 3000 (allowed) but carries one row of data.
    add(
        HostileCase(
            "png_under_cap_tiny_idat",
            "selfie.png",
            handmade_png(4000, 3000, idat=tiny_idat),
            error=CorruptImageError,
        )
    )
    add(
        HostileCase(
            "jpeg_sof_claims_65535x65535",
            "selfie.jpg",
            patch_jpeg_sof_size(small_jpeg, 65535, 65535),
            error=TooManyPixelsError,
        )
    )
    add(
        HostileCase(
            "jpeg_sof_claims_zero_height",
            "selfie.jpg",
            patch_jpeg_sof_size(small_jpeg, 80, 0),
            error=CorruptImageError,
        )
    )
    add(
        HostileCase(
            "configured_pixel_cap",
            "selfie.png",
            small_png,
            error=TooManyPixelsError,
            load_kwargs={"max_pixels": 80 * 60 - 1},
            message_contains=("80×60",),
        )
    )

    # ---- animations
    add(
        HostileCase(
            "animated_gif",
            "selfie.gif",
            animation("GIF"),
            error=UnsupportedFormatError,
            message_contains=("GIF",),
        )
    )
    add(
        HostileCase(
            "animated_webp",
            "selfie.webp",
            animation("WEBP", lossless=True),
            error=AnimatedImageError,
            message_contains=("animation",),
        )
    )
    add(
        HostileCase(
            "apng", "selfie.png", animation("PNG"), error=AnimatedImageError, message_contains=("animation",)
        )
    )
    add(
        HostileCase(
            "animated_webp_first_frame_allowed",
            "selfie.webp",
            animation("WEBP", lossless=True),
            load_kwargs={"allow_animation_first_frame": True},
            check=expect_loaded(
                size=(48, 32), colours=(((0, 0, 1, 1), RED),), tolerance=2, notes_contain=("first frame",)
            ),
        )
    )
    add(
        HostileCase(
            "apng_first_frame_allowed",
            "selfie.png",
            animation("PNG"),
            load_kwargs={"allow_animation_first_frame": True},
            check=expect_loaded(
                size=(48, 32), colours=(((0, 0, 1, 1), RED),), tolerance=0, notes_contain=("first frame",)
            ),
        )
    )
    # A multi-picture JPEG (MPO: cameras, and phones storing a gain map or depth map next to the
    # photo) is a still photo, not an animation: the main picture is used.
    mpo = _encode(
        quadrant_image(), "MPO", save_all=True, append_images=[Image.new("RGB", (80, 60), GREEN)], quality=92
    )
    add(
        HostileCase(
            "multi_picture_jpeg",
            "selfie.jpg",
            mpo,
            check=expect_loaded(size=(80, 60), fmt="JPEG", red_at="top-left"),
        )
    )

    # ---- colour modes and bit depths that must be converted, not refused
    cmyk = Image.new("CMYK", (80, 60), (0, 255, 255, 0))  # red
    cmyk.paste((255, 255, 0, 0), (40, 0, 80, 60))  # blue
    add(
        HostileCase(
            "cmyk_jpeg",
            "selfie.jpg",
            _encode(cmyk, "JPEG", quality=92),
            check=expect_loaded(size=(80, 60), colours=((LEFT, RED), (RIGHT, BLUE)), notes_contain=("CMYK",)),
        )
    )
    grey16 = np.tile((np.arange(256, dtype=np.uint16) * 257)[None, :], (8, 1))
    add(
        HostileCase(
            "png_16bit_grey_gradient",
            "selfie.png",
            _encode(Image.fromarray(grey16), "PNG"),
            check=expect_loaded(size=(256, 8), extra=_check_grey_gradient),
        )
    )
    add(
        HostileCase(
            "png_16bit_rgb_gradient",
            "selfie.png",
            rgb16_png(256, 4, lambda x, y: (x * 257, (255 - x) * 257, 128 * 257)),
            check=expect_loaded(size=(256, 4), extra=_check_rgb16_gradient),
        )
    )
    add(
        HostileCase(
            "greyscale_jpeg",
            "selfie.jpg",
            _encode(gradient_image((64, 48)).convert("L"), "JPEG"),
            check=expect_loaded(size=(64, 48), extra=_check_greyscale),
        )
    )
    add(
        HostileCase(
            "one_bit_png",
            "selfie.png",
            _encode(quadrant_image().convert("1"), "PNG"),
            check=expect_loaded(size=(80, 60), extra=_check_greyscale),
        )
    )
    rgba = Image.new("RGBA", (80, 60), (255, 0, 0, 0))  # transparent left half (red, but invisible)
    rgba.paste((0, 255, 0, 255), (40, 0, 80, 30))  # opaque green top right
    rgba.paste((0, 0, 0, 128), (40, 30, 80, 60))  # half-transparent black bottom right
    add(
        HostileCase(
            "rgba_png",
            "selfie.png",
            _encode(rgba, "PNG"),
            check=expect_loaded(
                size=(80, 60),
                tolerance=2,
                notes_contain=("transparent",),
                colours=((LEFT, GREY), ((0.5, 0, 1, 0.5), GREEN), ((0.5, 0.5, 1, 1), (64, 64, 64))),
            ),
        )
    )
    add(
        HostileCase(
            "rgba_webp",
            "selfie.webp",
            _encode(rgba, "WEBP", lossless=True),
            check=expect_loaded(size=(80, 60), tolerance=2, colours=((LEFT, GREY),)),
        )
    )
    la = Image.new("LA", (80, 60), (0, 0))
    la.paste((200, 255), (40, 0, 80, 60))
    add(
        HostileCase(
            "la_png",
            "selfie.png",
            _encode(la, "PNG"),
            check=expect_loaded(size=(80, 60), tolerance=1, colours=((LEFT, GREY), (RIGHT, (200, 200, 200)))),
        )
    )
    palette = Image.new("P", (80, 60), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    palette.paste(1, (40, 0, 80, 60))
    add(
        HostileCase(
            "palette_png_transparency",
            "selfie.png",
            _encode(palette, "PNG", transparency=0),
            check=expect_loaded(size=(80, 60), tolerance=0, colours=((LEFT, GREY), (RIGHT, RED))),
        )
    )
    add(
        HostileCase(
            "one_pixel_png",
            "dot.png",
            _encode(Image.new("RGB", (1, 1), RED), "PNG"),
            check=expect_loaded(
                size=(1, 1), original_size=(1, 1), colours=(((0, 0, 1, 1), RED),), tolerance=0
            ),
        )
    )
    add(
        HostileCase(
            "one_pixel_jpeg",
            "dot.jpg",
            _encode(Image.new("RGB", (1, 1), RED), "JPEG"),
            check=expect_loaded(size=(1, 1), original_size=(1, 1)),
        )
    )

    # ---- formats named wrongly: sniffed from the bytes
    add(
        HostileCase(
            "png_named_jpg",
            "selfie.jpg",
            small_png,
            check=expect_loaded(size=(80, 60), fmt="PNG", red_at="top-left", tolerance=0),
        )
    )
    add(
        HostileCase(
            "jpeg_named_png",
            "selfie.png",
            small_jpeg,
            check=expect_loaded(size=(80, 60), fmt="JPEG", red_at="top-left"),
        )
    )
    add(
        HostileCase(
            "webp_named_jpg",
            "selfie.jpg",
            webp,
            check=expect_loaded(size=(80, 60), fmt="WEBP", red_at="top-left"),
        )
    )
    add(HostileCase("jpeg_no_extension", "selfie", small_jpeg, check=expect_loaded(fmt="JPEG")))

    # ---- EXIF: orientation, garbage, size
    # Stored 80 x 60 with red top-left. Orientation 6 = rotate 90° clockwise to display,
    # 8 = rotate 90° counter-clockwise, 3 = rotate 180°.
    src = quadrant_image()
    add(
        HostileCase(
            "exif_orientation_6",
            "selfie.jpg",
            jpeg_with_orientation(src, 6),
            check=expect_loaded(
                size=(60, 80), original_size=(60, 80), red_at="top-right", notes_contain=("EXIF",)
            ),
        )
    )
    add(
        HostileCase(
            "exif_orientation_8",
            "selfie.jpg",
            jpeg_with_orientation(src, 8),
            check=expect_loaded(size=(60, 80), original_size=(60, 80), red_at="bottom-left"),
        )
    )
    add(
        HostileCase(
            "exif_orientation_3",
            "selfie.jpg",
            jpeg_with_orientation(src, 3),
            check=expect_loaded(size=(80, 60), original_size=(80, 60), red_at="bottom-right"),
        )
    )
    png_exif = _encode(src, "PNG", exif=exif_bytes(6))
    add(
        HostileCase(
            "png_exif_orientation_6",
            "selfie.png",
            png_exif,
            check=expect_loaded(size=(60, 80), original_size=(60, 80), red_at="top-right", tolerance=0),
        )
    )
    for bad in (0, 9, 65535):
        add(
            HostileCase(
                f"exif_invalid_orientation_{bad}",
                "selfie.jpg",
                jpeg_with_orientation(src, bad),
                check=expect_loaded(size=(80, 60), original_size=(80, 60), red_at="top-left"),
            )
        )
    add(
        HostileCase(
            "exif_garbage_payload",
            "selfie.jpg",
            insert_jpeg_segment(small_jpeg, 0xE1, b"Exif\x00\x00" + random.Random(7).randbytes(3000)),
            check=expect_loaded(size=(80, 60), red_at="top-left"),
        )
    )
    # Valid TIFF header whose first IFD offset points far outside the block.
    add(
        HostileCase(
            "exif_ifd_offset_out_of_range",
            "selfie.jpg",
            insert_jpeg_segment(small_jpeg, 0xE1, b"Exif\x00\x00MM\x00*\x7f\xff\xff\xf0" + bytes(64)),
            check=expect_loaded(size=(80, 60), red_at="top-left"),
        )
    )
    # IFD claiming 65535 entries in a 100-byte block.
    add(
        HostileCase(
            "exif_ifd_entry_count_lies",
            "selfie.jpg",
            insert_jpeg_segment(
                small_jpeg, 0xE1, b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + bytes(100)
            ),
            check=expect_loaded(size=(80, 60), red_at="top-left"),
        )
    )
    huge_exif = _encode(src, "JPEG", quality=92, exif=exif_bytes(6, description="x" * 60_000))
    add(
        HostileCase(
            "huge_exif_block_60kb",
            "selfie.jpg",
            huge_exif,
            check=expect_loaded(size=(60, 80), original_size=(60, 80), red_at="top-right"),
        )
    )

    # ---- HEIC (made with pillow-heif)
    try:
        heic_plain = heic_bytes(src)
        heic_rotated = heic_bytes(src, exif=exif_bytes(6))
        skip = None
    except Exception as exc:  # pragma: no cover - depends on the pillow-heif build
        heic_plain = heic_rotated = b""
        skip = f"this pillow-heif build cannot encode HEIC ({type(exc).__name__}: {exc})"
    add(
        HostileCase(
            "heic",
            "IMG_0001.HEIC",
            heic_plain,
            skip_reason=skip,
            check=expect_loaded(size=(80, 60), original_size=(80, 60), fmt="HEIF", red_at="top-left"),
        )
    )
    add(
        HostileCase(
            "heic_exif_orientation_6",
            "IMG_0002.HEIC",
            heic_rotated,
            skip_reason=skip,
            check=expect_loaded(size=(60, 80), original_size=(60, 80), fmt="HEIF", red_at="top-right"),
        )
    )
    add(
        HostileCase(
            "heic_named_jpg",
            "selfie.jpg",
            heic_plain,
            skip_reason=skip,
            check=expect_loaded(size=(80, 60), fmt="HEIF", red_at="top-left"),
        )
    )
    add(
        HostileCase(
            "heic_truncated",
            "IMG_0003.HEIC",
            heic_plain[: len(heic_plain) // 2],
            skip_reason=skip,
            error=CorruptImageError,
        )
    )

    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return tuple(cases)


def case_by_name(name: str) -> HostileCase:
    for case in build_corpus():
        if case.name == name:
            return case
    raise KeyError(name)
