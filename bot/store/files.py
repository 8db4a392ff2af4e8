"""The content-addressed files: ``photos/<sha256>.<ext>`` and ``results/<sha256>.png`` under the data folder.

The same bytes stored twice share one file. Writes are atomic (a temp file renamed into place), files are
0o600 and folders 0o700 because they hold people's faces. This module knows nothing about rows: deciding
which hashes are still in use is the caller's job (see ``core.StoreCore._release``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Container
from pathlib import Path
from typing import TypeGuard

from bot.store.errors import NotFound

PHOTO_EXTS = ("jpg", "png", "webp", "gif", "heic", "bin")
TMP_PREFIX = ".tmp-"
# Temp files younger than this may belong to a write in progress (say, a second process by mistake).
TEMP_GRACE_S = 600.0
_SHA = re.compile(r"[0-9a-f]{64}")


def photo_ext(data: bytes) -> str:
    """File extension from the bytes' magic; names and MIME types from Discord are not trusted."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[4:8] == b"ftyp" and data[8:12] in (
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
    ):
        return "heic"
    return "bin"


def is_sha(sha: object) -> TypeGuard[str]:
    """Hashes may come from a button's custom_id: only 64 lowercase hex digits ever reach a path."""
    return isinstance(sha, str) and _SHA.fullmatch(sha) is not None


def sha_of(name: str) -> str | None:
    """The hash a stored file's name carries; None for a name that is not one of ours."""
    stem = name.split(".", 1)[0]
    return stem if is_sha(stem) else None


class FileStore:
    """The photo and result folders of one data folder. Not thread-safe: the store calls it from its thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.photos_dir = data_dir / "photos"
        self.results_dir = data_dir / "results"

    def prepare(self) -> None:
        """Create the folders if need be; make them private whatever the umask."""
        for folder in (self.data_dir, self.photos_dir, self.results_dir):
            if not folder.is_dir():
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                folder.chmod(0o700)  # whatever the umask: these folders hold people's faces
        self.photos_dir.chmod(0o700)
        self.results_dir.chmod(0o700)

    @staticmethod
    def write(folder: Path, name: str, data: bytes) -> None:
        """Atomic: readers see the whole file or none. An existing file already holds these bytes."""
        target = folder / name
        if target.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)  # mode 0o600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ photos

    def find_photo(self, sha: str) -> Path | None:
        if not is_sha(sha):
            return None
        for ext in PHOTO_EXTS:
            path = self.photos_dir / f"{sha}.{ext}"
            if path.is_file():
                return path
        return None

    def read_photo(self, sha: str) -> bytes:
        path = self.find_photo(sha)
        if path is None:
            raise NotFound("That photo is no longer stored.")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound("That photo is no longer stored.") from None

    def put_photo(self, data: bytes, sha: str | None = None) -> str:
        """Store a photo (once per content) and return its sha256; pass ``sha`` when the caller already has it."""
        sha = sha or hashlib.sha256(data).hexdigest()
        if self.find_photo(sha) is None:
            self.write(self.photos_dir, f"{sha}.{photo_ext(data)}", data)
        return sha

    # ------------------------------------------------------------------ results

    def put_result(self, png: bytes) -> str:
        """Store a result image (once per content) and return its sha256."""
        sha = hashlib.sha256(png).hexdigest()
        self.write(self.results_dir, f"{sha}.png", png)
        return sha

    def read_result(self, sha: str) -> bytes:
        if not is_sha(sha):
            raise NotFound("That image is no longer stored.")
        try:
            return (self.results_dir / f"{sha}.png").read_bytes()
        except FileNotFoundError:
            raise NotFound("That image is no longer stored.") from None

    # ------------------------------------------------------------------ removal

    def unlink(self, sha: str) -> int:
        """Remove every file of this hash (photo under any extension, result); returns how many went."""
        removed = 0
        paths = [self.photos_dir / f"{sha}.{ext}" for ext in PHOTO_EXTS] + [self.results_dir / f"{sha}.png"]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    def sweep(self, now: float, keep: Container[str]) -> int:
        """Unlink files whose hash is not in ``keep`` and temp files a crash left behind; returns how many."""
        removed = 0
        for folder in (self.photos_dir, self.results_dir):
            for path in folder.iterdir():
                if path.name.startswith(TMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        if path.stat().st_mtime < now - TEMP_GRACE_S:
                            path.unlink()
                            removed += 1
                    continue
                sha = sha_of(path.name)
                if sha is None or sha in keep or not path.is_file():
                    continue  # not ours, still used, or about to be
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed
