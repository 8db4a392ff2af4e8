"""Safe image loading: every uploaded file is hostile until decoded into a plain RGB array.

Order matters: the byte size is checked before anything is parsed, the format is sniffed from
the file's first bytes (never trusted from the name), the pixel count is checked from the header
before any pixel is decoded, and only then is the image decoded, oriented and converted.
Every refusal is an :class:`ImageError` whose ``user_message`` tells a Discord user what to do.
"""

from __future__ import annotations

import codecs
import io
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
# Neutral grey: transparent areas should look like neither a bright window nor a dark room.
FLATTEN_BACKGROUND = (128, 128, 128)

_heif_registered = False


class ImageError(Exception):
    """An image that cannot be used. ``code`` is stable for machines, ``user_message`` is for people."""

    code = "unreadable"

    def __init__(self, user_message: str, detail: str = "") -> None:
        super().__init__(user_message if not detail else f"{user_message} ({detail})")
        self.user_message = user_message
        self.detail = detail


class EmptyFileError(ImageError):
    code = "empty_file"


class FileTooLargeError(ImageError):
    code = "file_too_large"


class UnsupportedFormatError(ImageError):
    code = "unsupported_format"


class TooManyPixelsError(ImageError):
    code = "too_many_pixels"


class AnimatedImageError(ImageError):
    code = "animated"


class CorruptImageError(ImageError):
    code = "corrupt"


@dataclass(frozen=True)
class LoadedImage:
    """A decoded, upright RGB working copy plus what the checks need to know about the file."""

    pixels: np.ndarray  # H x W x 3, uint8, RGB, upright
    original_size: tuple[int, int]  # (width, height) of the full-resolution upright image
    format: str  # one of ALLOWED_FORMATS (or GIF when first frames are allowed)
    file_bytes: int
    jpeg_quantization: dict[int, tuple[int, ...]] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # what was corrected, for the report
    # The validated file, kept only when the working copy is reduced, so a check that needs the
    # full resolution of one small region can decode it again (see full_resolution()).
    source: bytes | None = field(default=None, repr=False, compare=False)
    allow_animation_first_frame: bool = field(default=False, repr=False, compare=False)

    @property
    def scale(self) -> float:
        """Working-copy pixels per original pixel (1.0 when decoded at full size)."""
        return self.pixels.shape[1] / self.original_size[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


def _sniff(data: bytes) -> str | None:
    """Name the container from magic bytes; file names and MIME types are not trusted."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
    ):
        return "HEIF"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _describe_unknown(data: bytes) -> str | None:
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        return "an SVG drawing"
    if head.startswith((b"<!doctype html", b"<html")):
        return "a web page"
    if data[:4] == b"%PDF":
        return "a PDF document"
    if data[:2] == b"BM":
        return "a BMP image"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "a TIFF image"
    if b"\x00" in data[:512]:  # binary (an executable, an archive): valid UTF-8 but not text
        return None
    try:
        # Incremental decoding: a character cut by the 512-byte window is still text.
        codecs.getincrementaldecoder("utf-8")().decode(data[:512], final=False)
        return "a text file"
    except UnicodeDecodeError:
        return None


def _too_large(size: int, max_bytes: int) -> FileTooLargeError:
    # Round the file size up and the limit down, so a file just over the limit never reads
    # "25.0 MB; the limit is 25 MB".
    shown_size = math.ceil(size * 10 / 1048576) / 10
    shown_limit = math.floor(max_bytes * 10 / 1048576) / 10
    return FileTooLargeError(
        f"That file is {shown_size:g} MB; the limit is {shown_limit:g} MB. "
        "Send a smaller copy (a normal phone photo is 2-6 MB).",
    )


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB without clipping 16-bit data or losing alpha badly."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        notes.append("converted 16-bit greyscale to 8-bit colour")
        arr = np.asarray(im).astype(np.float32)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr8 = np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2))
    if im.mode == "F":
        arr8 = np.clip(np.nan_to_num(np.asarray(im)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2))
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append("filled the transparent background with grey")
        background = Image.new("RGB", rgba.size, FLATTEN_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode == "CMYK":
        notes.append("converted CMYK colours to RGB")
    elif im.mode in ("L", "1"):
        notes.append("black-and-white photo")
    return im.convert("RGB")


def load_image(
    data: bytes,
    *,
    max_bytes: int = 25 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    allow_animation_first_frame: bool = False,
    max_side: int | None = None,
) -> LoadedImage:
    """Decode untrusted bytes into an upright RGB working copy, or raise an ImageError.

    ``max_side`` bounds the working copy's long side; JPEGs are then decoded at reduced size
    (DCT scaling, several times faster than a full decode). ``original_size`` always reports
    the full-resolution upright size so face sizes can be stated in real pixels.
    """
    if not data:
        raise EmptyFileError("That file is empty (0 bytes). Please attach the photo again.")
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    kind = _sniff(data)
    if kind is None:
        what = _describe_unknown(data)
        opening = "I can't read that file as a photo."
        if what:
            opening = f"That file is {what}, not a photo I can read."
        raise UnsupportedFormatError(f"{opening} Please send a JPEG, PNG, WebP or HEIC photo.")
    if kind == "GIF" and not allow_animation_first_frame:
        raise UnsupportedFormatError("GIFs aren't supported. Please send a JPEG, PNG, WebP or HEIC photo.")
    if kind == "HEIF":
        _register_heif()

    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the authority; Pillow's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[kind])
            width, height = im.size
            if width <= 0 or height <= 0:
                raise CorruptImageError("That image has no pixels. Please send the photo again.")
            if width * height > max_pixels:
                raise TooManyPixelsError(
                    f"That image claims {width}×{height} pixels ({width * height / 1e6:.0f} MP); "
                    f"the limit is {max_pixels / 1e6:.0f} MP. Send a normal camera photo.",
                )
            frames = getattr(im, "n_frames", 1)
            if im.format == "MPO":
                # A multi-picture JPEG (stereo cameras; phones that add a depth or gain map) is a
                # still photo whose first picture is the main one, not an animation.
                im.seek(0)
                if frames > 1:
                    notes.append("used the main picture of a multi-picture JPEG")
            elif frames > 1 or getattr(im, "is_animated", False):
                if not allow_animation_first_frame:
                    raise AnimatedImageError(
                        "That's an animation. Please send a still photo (JPEG, PNG, WebP or HEIC)."
                    )
                im.seek(0)
                notes.append("used the first frame of the animation")
            quantization = None
            if kind == "JPEG":
                tables = getattr(im, "quantization", None) or {}
                quantization = {k: tuple(int(v) for v in t) for k, t in tables.items()}
                if max_side and max(width, height) > max_side:
                    # DCT scaling only halves. Accept a working copy down to 3/4 of max_side, so a
                    # 4000-px photo decodes at 2000 px (1/2) rather than at full size to reach 2048.
                    ratio = 0.75 * max_side / max(width, height)
                    target = (math.ceil(width * ratio), math.ceil(height * ratio))
                    im.draft("RGB" if im.mode in ("RGB", "YCbCr") else im.mode, target)
            im.load()
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # malformed EXIF: keep the pixels as stored
                orientation = 1
                notes.append("ignored damaged EXIF data")
            if orientation in (2, 3, 4, 5, 6, 7, 8):
                im = ImageOps.exif_transpose(im)
                notes.append("rotated upright using the photo's EXIF orientation")
            # exif_transpose can swap the axes; the original size follows the upright image.
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            rgb = _to_rgb(im, notes)
            if max_side and max(rgb.size) > max_side:
                ratio = max_side / max(rgb.size)
                new_size = (max(1, round(rgb.size[0] * ratio)), max(1, round(rgb.size[1] * ratio)))
                rgb = rgb.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            pixels = np.asarray(rgb, dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses more than twice its own limit before we can read the size; say what it claimed.
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"claims {int(claimed.group(1)) / 1e6:.0f} MP" if claimed else "is far too large to open safely"
        raise TooManyPixelsError(
            f"That image {what}; the limit is {max_pixels / 1e6:.0f} MP. Send a normal camera photo.", str(exc)
        ) from None
    except MemoryError:
        raise TooManyPixelsError("That image is too large to open. Send a normal camera photo.") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, EOFError...
        raise CorruptImageError(
            "That photo is damaged or incomplete (maybe the upload was cut off). Please send it again.",
            f"{type(exc).__name__}: {exc}",
        ) from None
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise CorruptImageError("That image could not be converted to colour. Please send another photo.")
    return LoadedImage(
        pixels=pixels,
        original_size=(width, height),
        format=kind,
        file_bytes=len(data),
        jpeg_quantization=quantization,
        notes=tuple(notes),
        source=data if pixels.shape[1] != width else None,
        allow_animation_first_frame=allow_animation_first_frame,
    )


def full_resolution(image: LoadedImage) -> np.ndarray | None:
    """The upright full-size pixels of an image whose working copy was reduced, else None.

    The file already passed every check once, so this decode cannot be refused for size or type.
    """
    if image.source is None:
        return None
    full = load_image(
        image.source,
        max_bytes=len(image.source),
        max_pixels=image.original_size[0] * image.original_size[1],
        allow_animation_first_frame=image.allow_animation_first_frame,
    )
    return full.pixels


def load_image_file(path: str | Path, *, max_bytes: int = 25 * 1024 * 1024, **kwargs: object) -> LoadedImage:
    """Like :func:`load_image`, but refuses an oversized file before reading it into memory."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        data = path.read_bytes()
    except ImageError:
        raise
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, not a photo.") from None
    except OSError as exc:
        raise ImageError(f"Could not read {path}: {exc.strerror or exc}.") from None
    return load_image(data, max_bytes=max_bytes, **kwargs)  # type: ignore[arg-type]


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode an RGB array as PNG (used for previews and crops)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def encode_jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    """Encode an RGB array as JPEG (used for crops sent back to people and to the generator)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()
