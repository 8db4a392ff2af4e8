"""Where model weights come from, and the device and dtype they run on.

Every model is a Hugging Face id with a revision pin, or a local folder that replaces it. Loading
goes through diffusers' and transformers' own ``from_pretrained`` with the Hugging Face cache; when
a model is missing and downloads are off (or impossible), the error names the model, the setting
to change and the command that fetches it, instead of a stack of hub internals.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from generation.config import GenerationConfig, ModelsConfig

ROLES = {
    "base": "SDXL base model",
    "instantid": "InstantID (IdentityNet ControlNet + IP-Adapter)",
    "faceid": "IP-Adapter FaceID",
    "image_encoder": "CLIP ViT-H image encoder",
    "lightning": "SDXL-Lightning LoRA",
    "lcm": "LCM-LoRA for SDXL",
    "safety_checker": "Stable Diffusion safety checker",
    "flux2_klein": "FLUX.2 [klein] 4B editor",
    "qwen_edit": "Qwen-Image-Edit-2511 editor",
}
# generation.editor -> the ModelsConfig key of its weights.
EDITOR_MODELS = {"flux2-klein": "flux2_klein", "qwen-image-edit": "qwen_edit"}


class ModelMissingError(RuntimeError):
    """A model could not be found or fetched; the message says what to download and where to put it."""


class ModelFileError(ModelMissingError):
    """A model file is there but is not what its setting names (wrong layout, damaged, another model)."""


@dataclass(frozen=True)
class ModelRef:
    key: str  # the config name, e.g. "base" (settings models.base, models.base_revision, models.base_path)
    repo_id: str
    revision: str
    local_path: str
    variant: str = ""  # weight-file variant to load ("fp16"), the base model only

    @property
    def role(self) -> str:
        return ROLES.get(self.key, self.key)

    @property
    def source(self) -> str:
        """What from_pretrained gets: the local folder when one is configured, else the hub id."""
        return self.local_path or self.repo_id

    def check_local(self) -> None:
        if self.local_path and not Path(self.local_path).expanduser().exists():
            raise ModelMissingError(
                f"models.{self.key}_path = {self.local_path!r} does not exist. Put the {self.role} there "
                f"(a download of {self.repo_id!r}) or clear the setting to use the Hugging Face cache."
            )


def model_ref(models: ModelsConfig, key: str) -> ModelRef:
    if key not in ROLES:
        raise KeyError(f"unknown model {key!r}; known: {', '.join(ROLES)}")
    return ModelRef(
        key=key,
        repo_id=getattr(models, key),
        revision=getattr(models, f"{key}_revision"),
        local_path=str(Path(getattr(models, f"{key}_path")).expanduser()) if getattr(models, f"{key}_path") else "",
        variant=getattr(models, f"{key}_variant", ""),
    )


def variant_kwargs(ref: ModelRef, generation: GenerationConfig) -> dict[str, Any]:
    """``variant=`` for from_pretrained, when those weight files are there or will be downloaded: a local
    folder or a cache holding only the full-precision files (a download from before the fp16 setting) loads
    what it has instead of failing."""
    if not ref.variant:
        return {}
    if ref.local_path:
        return {"variant": ref.variant} if any(Path(ref.local_path).glob(f"*/*.{ref.variant}.safetensors")) else {}
    with_variant, without = (model_files(ref.key, variant).markers for variant in (ref.variant, ""))
    try:
        cache = hf_cache_dir(generation)
        has_variant = not cached_snapshot(ref, with_variant, cache)[1]
        has_full = not cached_snapshot(ref, without, cache)[1]
    except ImportError:
        return {"variant": ref.variant}
    return {} if has_full and not has_variant else {"variant": ref.variant}


# The fast preset's LoRA file in ByteDance/SDXL-Lightning (the loader and `closeup models pull` read this name).
LIGHTNING_FILE = "sdxl_lightning_4step_lora.safetensors"


@dataclass(frozen=True)
class ModelFiles:
    """What closeup's loaders read from a model: ``markers`` must exist; ``fetch`` globs are what they download."""

    markers: tuple[str, ...]
    fetch: tuple[str, ...]
    licence: str  # for the default repository only


# File names as generation/pipelines/*.py load them (tests/generation/test_doctor.py checks they agree);
# repeated here because importing those modules imports torch and diffusers. `closeup doctor` looks for the
# markers, `closeup models pull` fetches the patterns, the loaders prefer the cache when the markers are there.
MODEL_FILES = {
    "base": ModelFiles(
        ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"),
        ("model_index.json", "scheduler/*", "tokenizer*/*", "*/config.json", "text_encoder*/model.safetensors",
         "*/diffusion_pytorch_model.safetensors"),
        "CreativeML Open RAIL++-M"),
    "instantid": ModelFiles(("ControlNetModel/config.json", "ip-adapter.bin"), ("ControlNetModel/*", "ip-adapter.bin"),
                            "non-commercial / research use only (built on insightface's antelopev2)"),
    "faceid": ModelFiles(("ip-adapter-faceid-plusv2_sdxl.bin",), ("ip-adapter-faceid-plusv2_sdxl.bin",),
                         "non-commercial / research use only (built on insightface face embeddings)"),
    "image_encoder": ModelFiles(("config.json",), ("config.json", "model.safetensors"), "MIT"),
    "lightning": ModelFiles((), (), "CreativeML Open RAIL++-M"),  # the one file: LIGHTNING_FILE
    "lcm": ModelFiles(("pytorch_lora_weights.safetensors",), ("pytorch_lora_weights.safetensors",),
                      "CreativeML Open RAIL++-M"),
    # Editors: one diffusers pipeline folder each (the text encoder's weights may be sharded).
    "flux2_klein": ModelFiles(
        ("model_index.json", "transformer/config.json", "text_encoder/config.json", "vae/config.json"),
        ("model_index.json", "scheduler/*", "tokenizer/*", "*/config.json", "text_encoder/*.safetensors*",
         "*/diffusion_pytorch_model*.safetensors*", "LICENSE*"),
        "Apache-2.0"),
    "qwen_edit": ModelFiles(
        ("model_index.json", "transformer/config.json", "text_encoder/config.json", "processor/tokenizer_config.json"),
        ("model_index.json", "scheduler/*", "tokenizer/*", "processor/*", "*/config.json", "*/generation_config.json",
         "text_encoder/*.safetensors*", "*/diffusion_pytorch_model*.safetensors*", "LICENSE*"),
        "Apache-2.0"),
    "safety_checker": ModelFiles(("config.json", "preprocessor_config.json"),
                                 ("config.json", "preprocessor_config.json", "*.safetensors"),
                                 "CreativeML OpenRAIL-M (CompVis)"),
}


def model_files(key: str, variant: str = "") -> ModelFiles:
    """What the loaders read of model ``key``; with a ``variant`` ("fp16"), its weight files instead of the
    full-precision ones (diffusers names them <name>.<variant>.safetensors)."""
    files = MODEL_FILES[key]
    if key == "lightning":
        name = LIGHTNING_FILE
        return replace(files, markers=(name,), fetch=(name,))
    if variant:
        def of_variant(names: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(name.replace(".safetensors", f".{variant}.safetensors")
                         if name.endswith("model.safetensors") else name for name in names)

        return replace(files, markers=of_variant(files.markers), fetch=of_variant(files.fetch))
    return files


def hub_kwargs(ref: ModelRef, generation: GenerationConfig) -> dict[str, Any]:
    """Keyword arguments for from_pretrained / load_ip_adapter / load_lora_weights.

    A model whose files are all in the cache loads from it without asking the hub (no start-up that hangs
    on a network that is down); one that is not may be downloaded, unless downloads are off."""
    cached = not ref.local_path and not generation.offline and loadable_from_cache(ref, generation)
    kwargs: dict[str, Any] = {"local_files_only": generation.offline or bool(ref.local_path) or cached}
    if not ref.local_path:
        kwargs["revision"] = ref.revision
        if generation.cache_dir:
            kwargs["cache_dir"] = str(Path(generation.cache_dir).expanduser())
    return kwargs


def hf_cache_dir(generation: GenerationConfig) -> Path:
    if generation.cache_dir:
        return Path(generation.cache_dir).expanduser()
    try:
        from huggingface_hub import constants
    except ImportError:
        return Path("~/.cache/huggingface/hub").expanduser()
    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(ref: ModelRef, markers: Sequence[str], cache: Path) -> tuple[Path | None, list[str]]:
    """The cached snapshot folder for the pinned revision (None if absent), and the markers it lacks."""
    from huggingface_hub import try_to_load_from_cache

    snapshot, lacking = None, []
    for marker in markers:
        hit = try_to_load_from_cache(ref.repo_id, marker, cache_dir=cache, revision=ref.revision)
        if isinstance(hit, str):
            snapshot = snapshot or Path(hit).parents[len(Path(marker).parts) - 1]
        else:
            lacking.append(marker)
    return snapshot, lacking


def is_cached(ref: ModelRef, generation: GenerationConfig) -> bool:
    """Every file the loaders open of ``ref`` is in the cache for its revision."""
    try:
        snapshot, lacking = cached_snapshot(ref, model_files(ref.key, ref.variant).markers, hf_cache_dir(generation))
    except ImportError:
        return False
    return snapshot is not None and not lacking


HUB_PROBE_TIMEOUT_S = 3.0
_hub_probe: dict[str, tuple[float, bool]] = {}  # endpoint -> (when, reachable), so one start-up asks once


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable(endpoint: str | None = None, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Does the hub answer at all within a few seconds (any HTTP status counts)? Remembered for a minute."""
    endpoint = endpoint or hub_endpoint()
    seen = _hub_probe.get(endpoint)
    if seen is not None and time.monotonic() - seen[0] < 60.0:
        return seen[1]
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s):
            reachable = True
    except urllib.error.HTTPError:
        reachable = True  # it answered
    except (OSError, ValueError):
        reachable = False
    _hub_probe[endpoint] = (time.monotonic(), reachable)
    return reachable


def loadable_from_cache(ref: ModelRef, generation: GenerationConfig) -> bool:
    """Everything the loader will open is cached: the variant's files, or (from an older download) the
    full-precision ones it then loads instead."""
    return is_cached(ref, generation) or (ref.variant != "" and not variant_kwargs(ref, generation))


@contextmanager
def explain_missing(ref: ModelRef, generation: GenerationConfig, what: str = "", *,
                    checks_layout: bool = False) -> Iterator[None]:
    """Turn the hub's not-found and offline errors into one ModelMissingError that says what to do.

    With ``checks_layout`` (adapter and LoRA files, whose loaders fail with KeyErrors and shape
    mismatches on a file of another model) any other loading error becomes a ModelFileError naming
    the file and the setting.
    """
    ref.check_local()
    if not ref.local_path and not generation.offline and not loadable_from_cache(ref, generation) and \
            not hub_reachable():
        # Fail now with what to do, instead of after the hub client's retries (half a minute, twice).
        raise ModelMissingError(
            f"The {ref.role} {ref.repo_id!r} (revision {ref.revision}) is not in the Hugging Face cache at "
            f"{hf_cache_dir(generation)} and the hub ({hub_endpoint()}) cannot be reached from here. Run "
            f"`closeup models pull` where there is internet (and copy the cache over), or set "
            f"models.{ref.key}_path to a downloaded folder."
        )
    try:
        yield
    except ModelMissingError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        text = str(exc)
        item = f" ({what})" if what else ""
        if not _looks_missing(exc, text):
            if not checks_layout or "out of memory" in text.lower():
                raise
            where = f"models.{ref.key}_path = {ref.local_path!r}" if ref.local_path else f"{ref.repo_id!r}"
            raise ModelFileError(
                f"The {ref.role}{item} from {where} could not be loaded: {type(exc).__name__}: {_first_line(text)}. "
                f"It does not have the layout of {ref.repo_id!r}; download it again, or point models.{ref.key} / "
                f"models.{ref.key}_path at the right files."
            ) from None
        if not isinstance(exc, OSError | ValueError):  # not a hub error: a real KeyError etc.
            raise
        if ref.local_path:
            raise ModelMissingError(
                f"The {ref.role}{item} could not be loaded from models.{ref.key}_path = {ref.local_path!r}: "
                f"{_first_line(text)}. That folder must hold a download of {ref.repo_id!r}."
            ) from None
        why = ("downloads are off (generation.offline = true)" if generation.offline
               else "it could not be downloaded (no internet?)")
        raise ModelMissingError(
            f"The {ref.role} {ref.repo_id!r} (revision {ref.revision}){item} is not in the Hugging Face "
            f"cache at {hf_cache_dir(generation)} and {why}. Run `closeup models pull` (it fetches only the "
            f"files closeup loads) on this machine, or on one with internet and copy the cache over; or download "
            f"it anywhere and set models.{ref.key}_path to that folder. `closeup doctor` prints the exact "
            f"`hf download` command."
        ) from None


def _looks_missing(exc: BaseException, text: str) -> bool:
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    hub_errors = {"LocalEntryNotFoundError", "EntryNotFoundError", "RepositoryNotFoundError",
                  "RevisionNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError", "FileNotFoundError"}
    if names & hub_errors:
        return True
    lowered = text.lower()
    return any(phrase in lowered for phrase in (
        "does not appear to have", "no file named", "couldn't connect", "cannot find", "can't find",
        "not found", "no such file", "offline", "local_files_only", "outgoing traffic has been disabled",
    ))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "not found"


def pick_device(setting: str) -> str:
    """cuda, then Apple's mps, then cpu, unless config names one."""
    import torch

    if setting != "auto":
        if setting == "cuda" and not torch.cuda.is_available():
            raise ModelMissingError("generation.device = 'cuda' but no CUDA device is visible to torch.")
        return setting
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(setting: str, device: str, half: str = "float16") -> Any:
    """Half precision on accelerators, float32 on the CPU (CPU half kernels are slow or missing). ``half``:
    which half precision the model was trained for (FLUX.2 and Qwen-Image overflow in float16: bfloat16)."""
    import torch

    if setting == "auto":
        return getattr(torch, half) if device in ("cuda", "mps") else torch.float32
    return getattr(torch, setting)
