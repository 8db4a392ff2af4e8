"""`closeup models list` and `closeup models pull`: the weights generation needs, fetched ahead of time.

Without this the first /portrait downloads them (about 10 GB) inside the job's timeout. Downloads go
through huggingface_hub's ``snapshot_download`` into the cache the loaders read, limited to the files the
loaders open (the same patterns `closeup doctor` prints), with its progress bars and its resume of files
cut short; a folder set in ``models.<key>_path`` is used as it is and never downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from generation.config import Config, GenerationConfig
from generation.doctor import licence_note, size_on_disk
from generation.models import ModelMissingError, ModelRef, cached_snapshot, hf_cache_dir, model_files, model_ref
from generation.stack import SELFIE_CHECKS, needed_models, pack_uses


@dataclass(frozen=True)
class ModelState:
    ref: ModelRef
    state: str  # "cached", "partial", "missing", "local", "local folder missing"
    size: int  # bytes on disk (the cached snapshot or the local folder)
    licence: str

    @property
    def ready(self) -> bool:
        return self.state in ("cached", "local")


def needed_refs(config: Config, backend: str | None = None, preset: str | None = None) -> list[ModelRef]:
    """The models the configured (or the given) backend and preset load, in loading order."""
    generation = config.generation
    if backend:
        generation = replace(generation, backend=backend)
    if preset:
        generation = replace(generation, preset=preset)
    return [model_ref(config.models, key) for key in needed_models(generation)]


def state_of(ref: ModelRef, generation: GenerationConfig) -> ModelState:
    files, licence = model_files(ref.key, ref.variant), licence_note(ref)
    if ref.local_path:
        folder = Path(ref.local_path)
        if not folder.is_dir():
            return ModelState(ref, "local folder missing", 0, licence)
        return ModelState(ref, "local", size_on_disk(folder), licence)
    snapshot, lacking = cached_snapshot(ref, files.markers, hf_cache_dir(generation))
    if snapshot is None:
        return ModelState(ref, "missing", 0, licence)
    return ModelState(ref, "partial" if lacking else "cached", size_on_disk(snapshot), licence)


def pull(ref: ModelRef, generation: GenerationConfig, *, endpoint: str | None = None) -> ModelState:
    """Download what the loaders read of ``ref`` into the cache (resuming files a cut connection left
    half done); ModelMissingError with what to do when the hub cannot be reached or refuses."""
    if ref.local_path:
        return state_of(ref, generation)
    if generation.offline:
        raise ModelMissingError(f"{ref.role} ({ref.repo_id}) cannot be downloaded: generation.offline = true. "
                                "Set it to false for the download, or copy the files and set "
                                f"models.{ref.key}_path")
    from huggingface_hub import snapshot_download

    files = model_files(ref.key, ref.variant)
    try:
        snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=list(files.fetch) or None,
                          cache_dir=hf_cache_dir(generation), endpoint=endpoint)
    except Exception as exc:  # hub, HTTP and network errors alike end as one line for the host
        raise ModelMissingError(f"{ref.role} ({ref.repo_id}@{ref.revision}) could not be downloaded: "
                                f"{type(exc).__name__}: {_first_line(str(exc))}") from None
    state = state_of(ref, generation)
    if not state.ready:
        raise ModelMissingError(f"{ref.role} ({ref.repo_id}@{ref.revision}) downloaded, but the files the loader "
                                f"opens ({', '.join(files.markers)}) are not all there: is it the right repository?")
    return state


def pull_packs(config: Config, backend: str | None = None) -> list[tuple[str, Path | Exception]]:
    """The insightface packs generation (and insightface selfie checks) use: each one's folder, fetched if
    missing, or the FaceModelMissingError saying why it could not be."""
    from generation.faces import FaceModelMissingError
    from generation.faces.insightface_packs import ensure_pack

    generation = replace(config.generation, backend=backend) if backend else config.generation
    out: list[tuple[str, Path | Exception]] = []
    for pack, uses in pack_uses(config.faces, generation).items():
        if uses == [SELFIE_CHECKS] and config.faces.backend == "dlib":
            continue
        try:
            out.append((pack, ensure_pack(config.faces.insightface_root, pack, download=True)))
        except FaceModelMissingError as exc:
            out.append((pack, exc))
    return out


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no message"


def human_size(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def format_states(states: Sequence[ModelState]) -> str:
    """One row per model: what, where, state, size on disk, licence; a total last."""
    rows = [("MODEL", "SOURCE", "STATE", "SIZE", "LICENCE")]
    for item in states:
        source = item.ref.local_path or f"{item.ref.repo_id}@{item.ref.revision}"
        rows.append((item.ref.key, source, item.state, human_size(item.size) if item.size else "-", item.licence))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in rows]
    total = sum(item.size for item in states)
    ready = sum(item.ready for item in states)
    lines.append(f"\n{ready} of {len(states)} ready, {human_size(total)} on disk")
    return "\n".join(lines)
