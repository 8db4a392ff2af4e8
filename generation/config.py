"""Configuration: a TOML file, then environment overrides, validated once at start.

Every setting has a default embedded here, so `closeup` runs with no file at all. Validation
names the bad key (``faces.backend``) and says what was expected, because a server owner reading
a start-up error should not need to read code.

Environment overrides: ``DISCORD_TOKEN`` sets ``discord.token``; any setting can be overridden
as ``CLOSEUP_<SECTION>__<KEY>`` (for example ``CLOSEUP_FACES__BACKEND=dlib``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is missing, unknown or has a bad value; the message names the key."""


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)

    return check


def _at_least(low: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value >= low else f"a number >= {low}"

    return check


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"a number between {low} and {high}"

    return check


def _multiple_of(step: int, low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = low <= value <= high and value % step == 0
        return None if ok else f"a multiple of {step} between {low} and {high} (the model works in {step}-px blocks)"

    return check


def _non_empty(value: Any) -> str | None:
    return None if str(value).strip() else "a path (it is empty)"


def _redis_url(value: Any) -> str | None:
    schemes = ("redis://", "rediss://", "unix://")
    return None if str(value).startswith(schemes) else "a URL starting with " + ", ".join(schemes)


def _setting(default: Any, check: Callable[[Any], str | None] | None = None, secret: bool = False,
             normalize: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field carrying its validator; ``secret`` keeps the value out of logs; ``normalize``
    turns an accepted spelling into the canonical one before the check (``info`` → ``INFO``)."""
    metadata = {"check": check, "secret": secret, "normalize": normalize}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DiscordConfig:
    token: str = _setting("", secret=True)


@dataclass(frozen=True)
class ImagesConfig:
    # Discord's own upload cap for most servers is 10 MiB; 25 MiB leaves room for boosted servers.
    max_bytes: int = _setting(25 * 1024 * 1024, _at_least(1024))
    # 40 MP covers every phone camera; decompression bombs claim far more.
    max_pixels: int = _setting(40_000_000, _at_least(10_000))
    # Animated GIF/WebP/APNG: refuse by default, or take the first frame when true.
    allow_animation_first_frame: bool = _setting(False)
    # Long side of the working copy the checks run on; large JPEGs decode at reduced size.
    analysis_max_side: int = _setting(2048, _between(256, 8192))

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments for generation.images.load_image / load_image_file."""
        return {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels,
                "allow_animation_first_frame": self.allow_animation_first_frame,
                "max_side": self.analysis_max_side}


@dataclass(frozen=True)
class FacesConfig:
    # opencv: YuNet + SFace (MIT / Apache-2.0), downloaded on first use; the one choice cleared for commercial use.
    backend: str = _setting("auto", _one_of("auto", "dlib", "insightface", "opencv"))
    # Folder holding insightface model packs (<dir>/models/<pack>/*.onnx).
    insightface_root: str = _setting("~/.insightface")
    # buffalo_l for checks and likeness; antelopev2 is what InstantID expects.
    insightface_pack: str = _setting("buffalo_l", _one_of("buffalo_l", "antelopev2"))
    # Download the pack on first use when it is missing (needs internet).
    insightface_download: bool = _setting(True)
    # Folder for the OpenCV Zoo face models (faces.backend = "opencv"), downloaded there on first use.
    opencv_root: str = _setting("~/.closeup/opencv-models")
    opencv_download: bool = _setting(True)
    # Long side of the copy the detector sees.
    detect_max_side: int = _setting(800, _between(160, 4096))
    # dlib HOG: upsample once more when nothing is found (finds faces down to ~12-16 px between eyes).
    dlib_upsample_retry: bool = _setting(True)
    # Compute identity embeddings during checks (needed for likeness and multi-photo sets).
    embeddings: bool = _setting(False)


@dataclass(frozen=True)
class GenerationConfig:
    # instantid / faceid: SDXL with a face-embedding adapter (non-commercial weights); edit: an Apache-2.0
    # reference-image editor that takes the selfie's face crop itself (see editor).
    backend: str = _setting("instantid", _one_of("instantid", "faceid", "edit"))
    # The editor of backend "edit": FLUX.2 [klein] 4B (fast, ~13 GB), or Qwen-Image-Edit-2511 (20B, large GPUs).
    editor: str = _setting("flux2-klein", _one_of("flux2-klein", "qwen-image-edit"))
    # auto: cuda, then mps, then cpu.
    device: str = _setting("auto", _one_of("auto", "cuda", "mps", "cpu"))
    # auto: float16 on cuda/mps, float32 on cpu.
    dtype: str = _setting("auto", _one_of("auto", "float16", "bfloat16", "float32"))
    # torch.compile the UNet once at load (slower first image, faster after; cuda only).
    compile: bool = _setting(False)
    # quality: 30 steps; lightning: SDXL-Lightning LoRA, 4 steps; lcm: LCM-LoRA, 6 steps.
    preset: str = _setting("quality", _one_of("quality", "lightning", "lcm"))
    width: int = _setting(1024, _multiple_of(8, 64, 2048))
    height: int = _setting(1024, _multiple_of(8, 64, 2048))
    # Denoising steps for the quality preset (the fast presets set their own).
    steps: int = _setting(30, _between(1, 150))
    # Images per job, at most (the bot offers 1-4).
    max_images: int = _setting(4, _between(1, 8))
    # Output faces with fewer pixels between the eyes are re-rendered (0 turns the pass off).
    refine_min_eye_distance: int = _setting(64, _between(0, 1024))
    refine_strength: float = _setting(0.4, _between(0.05, 1.0))
    # Likeness (0-1) below which a job is retried with new seeds, at most retry_attempts extra times.
    likeness_threshold: float = _setting(0.5, _between(0.0, 1.0))
    retry_attempts: int = _setting(1, _between(0, 5))
    # Prompts with explicit wording: "block" refuses the job, "warn" strips the words, "allow".
    nsfw_policy: str = _setting("block", _one_of("block", "warn", "allow"))
    # Check every output with the Stable Diffusion safety checker; flagged images are withheld.
    safety_checker: bool = _setting(False)
    # Never download: load models only from the Hugging Face cache or the local paths below.
    offline: bool = _setting(False)
    # Refuse to start (bot, worker, generate) when a part of the configured stack does not allow commercial
    # use; `closeup doctor` lists each part's licence either way.
    require_commercial_licence: bool = _setting(False)
    # The embedded worker loads the models when the bot starts, not at the first /portrait (which would
    # wait minutes); /queue says "warming up" meanwhile.
    warm_up: bool = _setting(True)
    # Hugging Face cache folder; empty = the default (~/.cache/huggingface/hub or $HF_HOME).
    cache_dir: str = _setting("")


@dataclass(frozen=True)
class ModelsConfig:
    """Hugging Face ids with revision pins; a *_path setting replaces the download with a local folder."""

    base: str = _setting("stabilityai/stable-diffusion-xl-base-1.0")
    base_revision: str = _setting("main")
    base_path: str = _setting("")
    # Weight files of this precision variant (diffusion_pytorch_model.fp16.safetensors): half the download of
    # the full-precision files, and what a GPU runs anyway. Empty: the full-precision files.
    base_variant: str = _setting("fp16", _one_of("", "fp16", "bf16"))
    instantid: str = _setting("InstantX/InstantID")
    instantid_revision: str = _setting("main")
    instantid_path: str = _setting("")
    faceid: str = _setting("h94/IP-Adapter-FaceID")
    faceid_revision: str = _setting("main")
    faceid_path: str = _setting("")
    image_encoder: str = _setting("laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    image_encoder_revision: str = _setting("main")
    image_encoder_path: str = _setting("")
    lightning: str = _setting("ByteDance/SDXL-Lightning")
    lightning_revision: str = _setting("main")
    lightning_path: str = _setting("")
    lcm: str = _setting("latent-consistency/lcm-lora-sdxl")
    lcm_revision: str = _setting("main")
    lcm_path: str = _setting("")
    flux2_klein: str = _setting("black-forest-labs/FLUX.2-klein-4B")
    flux2_klein_revision: str = _setting("main")
    flux2_klein_path: str = _setting("")
    qwen_edit: str = _setting("Qwen/Qwen-Image-Edit-2511")
    qwen_edit_revision: str = _setting("main")
    qwen_edit_path: str = _setting("")
    safety_checker: str = _setting("CompVis/stable-diffusion-safety-checker")
    safety_checker_revision: str = _setting("main")
    safety_checker_path: str = _setting("")


@dataclass(frozen=True)
class QueueConfig:
    # "local": embedded (SQLite journal, one GPU worker in this process); "redis": scale out.
    backend: str = _setting("local", _one_of("local", "redis"))
    # The embedded queue's journal.
    path: str = _setting("data/queue.db", _non_empty)
    # Redis (backend = "redis"); put the password in CLOSEUP_QUEUE__REDIS_URL, not in this file.
    redis_url: str = _setting("redis://127.0.0.1:6379/0", _redis_url, secret=True)
    # Key prefix, so several bots can share one Redis.
    redis_prefix: str = _setting("closeup:")
    # Queued + running jobs per person and per server.
    per_user: int = _setting(3, _between(1, 1000))
    per_guild: int = _setting(20, _between(1, 100000))
    # A job running longer than this is stopped.
    job_timeout_s: float = _setting(900.0, _between(10.0, 86400.0))
    # Jobs that crash this many times are set aside with their reason.
    max_failures: int = _setting(3, _between(1, 20))
    # Redis workers: heartbeat interval, and silence after which a worker's job is reclaimed.
    heartbeat_s: float = _setting(2.0, _between(0.1, 60.0))
    dead_after_s: float = _setting(15.0, _between(1.0, 600.0))
    # Finished jobs stay this long (Redis TTL; the local journal's retention), never longer than the
    # store keeps them (store.retention_days); their portraits leave the queue as soon as they are delivered.
    keep_finished_s: float = _setting(7 * 86400.0, _between(60.0, 365 * 86400.0))
    # Redis: events kept in the events stream (small: events carry no images; results wait in the job).
    events_maxlen: int = _setting(10_000, _between(100, 10_000_000))


@dataclass(frozen=True)
class BotConfig:
    # Slash commands one person may run per period (further ones get a polite "slow down").
    command_rate: int = _setting(6, _between(1, 1000))
    command_period_s: float = _setting(60.0, _between(1.0, 86400.0))
    # Seconds between two edits of one progress message (Discord rate-limits message edits).
    edit_interval_s: float = _setting(1.5, _between(0.2, 60.0))
    # Message edits per second across the whole bot; progress updates beyond it are skipped.
    edits_per_s: float = _setting(10.0, _between(0.5, 50.0))
    # Register slash commands with Discord at start when they changed (200 creates/day/server).
    sync_commands: bool = _setting(True)
    # Answer /portrait in direct messages too.
    allow_dms: bool = _setting(True)
    # A checked photo waiting for its Generate button is kept this long.
    draft_ttl_s: float = _setting(3600.0, _between(60.0, 7 * 86400.0))
    # Photos downloaded, checked or prepared for a job at once (each may be 25 MB): bounds memory in a burst.
    concurrent_photos: int = _setting(4, _between(1, 64))


@dataclass(frozen=True)
class StoreConfig:
    # Folder for the bot's SQLite store, reference photos and results (content-hash file names).
    data_dir: str = _setting("data", _non_empty)
    # Jobs, results and references unused for this many days are deleted by the periodic sweep.
    retention_days: float = _setting(30.0, _between(0.01, 3650.0))
    # How often the sweep runs.
    sweep_interval_s: float = _setting(3600.0, _between(10.0, 86400.0))


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _setting("INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR"), normalize=str.upper)
    # "text" for people, "json" for log collectors.
    format: str = _setting("text", _one_of("text", "json"), normalize=str.lower)


@dataclass(frozen=True)
class MetricsConfig:
    # Serve GET /metrics (Prometheus) and GET /healthz from the bot process.
    enabled: bool = _setting(True)
    # Loopback by default: the endpoints are unauthenticated. Inside Docker use 0.0.0.0.
    host: str = _setting("127.0.0.1")
    # 0 picks a free port (tests).
    port: int = _setting(9464, _between(0, 65535))


@dataclass(frozen=True)
class Config:
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def queue_retention_s(self) -> float:
        """How long the queue keeps finished jobs: its own setting, capped by the store's retention."""
        return min(self.queue.keep_finished_s, self.store.retention_days * 86400.0)

    def redacted(self) -> dict[str, dict[str, Any]]:
        """All settings as a dict with secrets masked, safe to log or print."""
        out: dict[str, dict[str, Any]] = {}
        for section in dataclasses.fields(self):
            values = getattr(self, section.name)
            out[section.name] = {
                f.name: ("***" if f.metadata.get("secret") and getattr(values, f.name) else getattr(values, f.name))
                for f in dataclasses.fields(values)
            }
        return out


ENV_PREFIX = "CLOSEUP_"
ENV_ALIASES = {"DISCORD_TOKEN": ("discord", "token")}


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, raw: Any, tp: Any, from_env: bool) -> Any:
    """Check (and for environment strings, parse) one value against the field's type."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(t for t in typing.get_args(tp) if t is not type(None))
    if from_env and isinstance(raw, str):
        try:
            if tp is bool:
                lowered = raw.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                return lowered in ("1", "true", "yes", "on")
            if tp is int:
                return int(raw)
            if tp is float:
                return float(raw)
        except ValueError:
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {raw!r}") from None
        return raw
    if tp is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if (tp is int and isinstance(raw, bool)) or not isinstance(raw, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {raw!r} ({type(raw).__name__})")
    return raw


def _build_section(name: str, cls: type, values: Mapping[str, Any], from_env: set[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {name}.{close[0]}?)" if close else ""
            raise ConfigError(f"{name}.{key}: unknown setting{hint}; known: {', '.join(sorted(known))}")
        value = _coerce(f"{name}.{key}", raw, hints[key], key in from_env)
        normalize = known[key].metadata.get("normalize")
        if normalize is not None:
            value = normalize(value)
        check = known[key].metadata.get("check")
        problem = check(value) if check else None
        if problem:
            shown = "a value that is not shown (it is secret)" if known[key].metadata.get("secret") else repr(value)
            raise ConfigError(f"{name}.{key}: expected {problem}, got {shown}")
        kwargs[key] = value
    return cls(**kwargs)


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for var, value in environ.items():
        if var.startswith(ENV_PREFIX) and "__" in var:
            section, _, key = var[len(ENV_PREFIX) :].partition("__")
            found[(section.lower(), key.lower())] = value
    # The well-known names win over the generic form, whatever the environment's order.
    for var, target in ENV_ALIASES.items():
        if var in environ:
            found[target] = environ[var]
    return found


def _cross_check(config: Config) -> None:
    """Settings that are fine alone but not together: caught at load, not after the models loaded. (The
    heartbeat settings matter only to the Redis queue's workers.)"""
    queue = config.queue
    if queue.backend != "redis":
        return
    if queue.dead_after_s <= 2 * queue.heartbeat_s:
        raise ConfigError(f"queue.dead_after_s ({queue.dead_after_s:g}) must be more than twice queue.heartbeat_s "
                          f"({queue.heartbeat_s:g}), or a live worker that misses one beat looks dead")
    if queue.job_timeout_s <= queue.dead_after_s:
        raise ConfigError(f"queue.job_timeout_s ({queue.job_timeout_s:g}) must be longer than queue.dead_after_s "
                          f"({queue.dead_after_s:g})")


def unused_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """``CLOSEUP_`` variables that set nothing (``CLOSEUP_QUEUE_BACKEND``: one underscore where two
    belong), each with what was probably meant; the caller warns, since they are silently ignored."""
    environ = os.environ if environ is None else environ
    keys = {f"{ENV_PREFIX}{name.upper()}__{f.name.upper()}"
            for name, section in typing.get_type_hints(Config).items() for f in dataclasses.fields(section)}
    out = []
    for var in sorted(environ):
        if var.startswith(ENV_PREFIX) and "__" not in var:
            close = difflib.get_close_matches(var.upper(), keys, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(f"environment variable {var} sets nothing: settings are {ENV_PREFIX}<SECTION>__<KEY>, "
                       f"with two underscores{hint}")
    return out


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (optional), apply environment overrides, validate, return a frozen Config."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist (copy config.example.toml to start)") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    section_types = typing.get_type_hints(Config)
    for name, value in data.items():
        if name not in sections:
            close = difflib.get_close_matches(name, sections, n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            raise ConfigError(f"[{name}]: unknown section{hint}; known: {', '.join(sections)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a [{name}] table, got {value!r}")
    from_env: dict[str, set[str]] = {}
    for (section, key), value in _env_overrides(os.environ if environ is None else environ).items():
        if section not in sections:
            raise ConfigError(f"environment override for {section}.{key}: unknown section [{section}]")
        data.setdefault(section, {})[key] = value
        from_env.setdefault(section, set()).add(key)
    built = {
        name: _build_section(name, section_types[name], data.get(name, {}), from_env.get(name, set()))
        for name in sections
    }
    config = Config(**built)
    _cross_check(config)
    return config
