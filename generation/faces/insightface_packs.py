"""insightface model packs on disk: finding a pack's folder, and downloading it on first use.

A pack (buffalo_l; antelopev2 for InstantID) is a zip of ONNX files unpacked into
``<root>/models/<pack>``, the layout the insightface package itself uses. closeup downloads it with its
own code rather than ``insightface.utils.storage``: that one has no timeout (a stalled connection hangs
the bot), no resume, no lock between a bot and a worker sharing the folder, prints to stdout, and
creates the pack's folder before unpacking, so a cut download is taken for a complete pack ever after.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import zipfile
from pathlib import Path, PurePosixPath

from generation.faces.download import exclusive, fetch
from generation.faces.types import FaceModelMissingError

DEFAULT_ROOT = "~/.insightface"
DEFAULT_PACK = "buffalo_l"
DEFAULT_URL_BASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"


def _has_onnx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))


def find_pack_dir(root: str | Path, pack: str) -> Path | None:
    """The folder holding ``pack``'s .onnx files under ``<root>/models``, or None.

    Looks one level down as well: the antelopev2 archive unpacks into ``antelopev2/antelopev2/``.
    """
    base = Path(root).expanduser() / "models" / pack
    if _has_onnx(base):
        return base
    if not base.is_dir():
        return None
    nested = sorted(sub for sub in base.iterdir() if _has_onnx(sub))
    for sub in nested:
        if sub.name == pack:
            return sub
    return nested[0] if nested else None


def _missing_pack_message(root: Path, pack: str, url: str, reason: str) -> str:
    return (
        f"insightface model pack '{pack}' is missing ({reason}). Put its .onnx files in "
        f"{root / 'models' / pack} (download {url} and unzip it there)."
    )


def _safe_members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every file member with a relative path that stays inside the folder (zip-slip guard)."""
    members = []
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        path = PurePosixPath(name)
        if name.startswith("/") or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise FaceModelMissingError(f"refusing the model archive: unsafe member path {info.filename!r}")
        if not info.is_dir():
            members.append((info, path))
    return members


def _extract_zip(zip_path: Path, dest: Path) -> None:
    """Unpack into ``dest``, all or nothing, after checking every member path."""
    with zipfile.ZipFile(zip_path) as archive:
        members = _safe_members(archive)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            for info, rel in members:
                target = staging.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(staging.resolve()):
                    raise FaceModelMissingError(
                        f"refusing the model archive: unsafe member {info.filename!r}"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
            if not dest.exists():
                staging.rename(dest)
                return
            for child in staging.iterdir():
                target = dest / child.name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                child.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _download_and_extract(url: str, part: Path, pack: str, models: Path) -> None:
    fetch(url, part, f"insightface {pack}")
    _extract_zip(part, models / pack)  # reading every member checks its CRC: a damaged download fails here
    part.unlink(missing_ok=True)


def ensure_pack(root: str | Path, pack: str, download: bool, url_base: str = DEFAULT_URL_BASE) -> Path:
    """The pack's folder, downloading ``<url_base>/<pack>.zip`` into ``<root>/models/<pack>`` if allowed.

    Raises FaceModelMissingError (saying where to put the files) when it is absent and cannot be
    fetched, so a caller can fall back to another backend with a useful log line.
    """
    found = find_pack_dir(root, pack)
    if found is not None:
        return found
    root = Path(root).expanduser()
    url = f"{url_base.rstrip('/')}/{pack}.zip"
    if not download:
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, "download disabled"))
    models = root / "models"
    part = models / f".{pack}.zip.part"  # kept when a download is cut, so the next try resumes it
    try:
        models.mkdir(parents=True, exist_ok=True)
        with exclusive(root / f".{pack}.download.lock"):  # a bot and a worker sharing the folder: one downloads
            found = find_pack_dir(root, pack)
            if found is not None:
                return found
            _download_and_extract(url, part, pack, models)
    except FaceModelMissingError as exc:
        part.unlink(missing_ok=True)
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, str(exc))) from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"download failed: HTTP {exc.code} {exc.reason}"
        elif isinstance(exc, zipfile.BadZipFile):
            reason = f"download failed: the file is damaged or not a zip ({exc})"
        else:
            reason = f"download failed: {getattr(exc, 'reason', None) or exc}"
        if isinstance(exc, zipfile.BadZipFile | urllib.error.HTTPError) or not part.exists() or \
                part.stat().st_size == 0:
            part.unlink(missing_ok=True)  # nothing worth resuming
        else:
            reason += f"; {part.stat().st_size / 1e6:.0f} MB kept, the next try resumes"
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, reason)) from None
    found = find_pack_dir(root, pack)
    if found is None:
        raise FaceModelMissingError(_missing_pack_message(root, pack, url, "the archive held no .onnx files"))
    return found
