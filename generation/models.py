"""Where model weights come from, and the device and dtype they run on.

Every model is a Hugging Face id with a revision pin, or a local folder that replaces it. Loading
goes through diffusers' and transformers' own ``from_pretrained`` with the Hugging Face cache; when
a model is missing and downloads are off (or impossible), the error names the model, the setting
to change and the command that fetches it, instead of a stack of hub internals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
}


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
    )


def hub_kwargs(ref: ModelRef, generation: GenerationConfig) -> dict[str, Any]:
    """Keyword arguments for from_pretrained / load_ip_adapter / load_lora_weights."""
    kwargs: dict[str, Any] = {"local_files_only": generation.offline or bool(ref.local_path)}
    if not ref.local_path:
        kwargs["revision"] = ref.revision
        if generation.cache_dir:
            kwargs["cache_dir"] = str(Path(generation.cache_dir).expanduser())
    return kwargs


def _cache_location(generation: GenerationConfig) -> str:
    if generation.cache_dir:
        return str(Path(generation.cache_dir).expanduser())
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


@contextmanager
def explain_missing(ref: ModelRef, generation: GenerationConfig, what: str = "", *,
                    checks_layout: bool = False) -> Iterator[None]:
    """Turn the hub's not-found and offline errors into one ModelMissingError that says what to do.

    With ``checks_layout`` (adapter and LoRA files, whose loaders fail with KeyErrors and shape
    mismatches on a file of another model) any other loading error becomes a ModelFileError naming
    the file and the setting.
    """
    ref.check_local()
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
            f"cache at {_cache_location(generation)} and {why}. On a machine with internet run "
            f"`hf download {ref.repo_id} --revision {ref.revision}` and copy the cache over, or download it "
            f"anywhere and set models.{ref.key}_path to that folder."
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


def pick_dtype(setting: str, device: str) -> Any:
    """Half precision on accelerators, float32 on the CPU (CPU half kernels are slow or missing)."""
    import torch

    if setting == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return getattr(torch, setting)
