"""What the diffusers backends share: step reporting, image conversion, the fast presets, the
face-embedding check and the translation of the device's out-of-memory error."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from generation.config import GenerationConfig, ModelsConfig
from generation.models import LIGHTNING_FILE, ModelFileError, explain_missing, hub_kwargs, model_ref
from generation.pipelines.types import GenerationError, OutOfMemory, StepCallback

log = logging.getLogger(__name__)
T = TypeVar("T")

def step_callback(on_step: StepCallback | None, total: int) -> Any:
    """A diffusers callback_on_step_end that reports (step, total) and lets on_step cancel."""

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step + 1, total)
        return tensors

    return callback


def to_uint8(image: np.ndarray) -> np.ndarray:
    """diffusers' float 0-1 output as the RGB uint8 arrays everything else uses.

    A model whose numbers overflowed returns NaN (float16 on some GPUs; also seen here from Qwen-Image-Edit's
    scheduler given a single step): cast to uint8 that is a black or noise picture sent as a portrait, so it
    is refused here with what to change.
    """
    if not np.all(np.isfinite(image)):
        raise GenerationError(
            "The image model returned an empty picture (its numbers overflowed). Try again; if it keeps "
            "happening, the server owner should set generation.dtype = \"float32\" (the safest; slower and "
            "twice the memory).")
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


class _EmptyFloat32ListFilter(logging.Filter):
    """diffusers warns "modules that should be kept in float32: []" on every dtype cast of a component,
    even when that list is empty (eight lines a start, one more per re-render pipeline): drop those, keep the
    warning when the list names something."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_EmptyFloat32ListFilter())


def finish_loading(pipe: Any, generation: GenerationConfig, models: ModelsConfig, device: str, dtype: Any,
                   name: str) -> None:
    """The steps every backend takes after loading: device and dtype, quiet progress, fast preset, compile."""
    import torch

    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    apply_preset(pipe, generation, models)
    if generation.compile and device == "cuda":
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=False)
    log.info("%s backend ready on %s (%s), preset %s, LoRA adapters in effect: %s", name, device,
             str(dtype).removeprefix("torch."), generation.preset, ", ".join(active_adapters(pipe)) or "none")


def settle(pipe: Any, img2img_class: Any, device: str, dtype: Any, **components: Any) -> Any:
    """The img2img twin of ``pipe`` for the re-render pass, sharing every module (no second copy).

    from_pipe casts to float32 unless told the dtype, and load_ip_adapter builds the face-token
    projection and IP attention layers in float32: so cast the UNet as a whole, last.
    """
    img2img = img2img_class.from_pipe(pipe, dtype=dtype, **components)
    img2img.set_progress_bar_config(disable=True)
    pipe.unet.to(device, dtype)
    pipe.unet.encoder_hid_proj.eval()
    return img2img


def is_guided(pipe: Any, guidance_scale: float) -> bool:
    """Whether the pipeline will run classifier-free guidance (and so double its batch)."""
    return guidance_scale > 1.0 and pipe.unet.config.time_cond_proj_dim is None


def lora_state(unet: Any) -> dict[str, tuple[set[str], set[str], set[str]]]:
    """Per LoRA-wrapped UNet layer: (adapters loaded, adapters active, adapters fused into the weight)."""
    state = {}
    for name, module in unet.named_modules():
        loaded = getattr(module, "lora_A", None)
        if loaded is None or not len(loaded):
            continue
        state[name] = (set(loaded.keys()), set(module.active_adapters), set(getattr(module, "merged_adapters", ())))
    return state


def check_adapters(unet: Any, expected: list[str], what: str) -> None:
    """Every adapter in ``expected`` is active (and fused, where any is fused) on every layer it wraps.

    peft skips every unfused adapter on a layer where one was fused, so a LoRA that is loaded but not
    in the fused set silently stops acting: this is the check that catches it.
    """
    state = lora_state(unet)
    for adapter in expected:
        layers = [name for name, (loaded, _, _) in state.items() if adapter in loaded]
        if not layers:
            raise ModelFileError(f"{what}: the LoRA {adapter!r} put no weights into the UNet; its file does not "
                                 "match this SDXL model.")
        for name in layers:
            _, active, merged = state[name]
            if adapter not in active or (merged and adapter not in merged):
                raise ModelFileError(f"{what}: the LoRA {adapter!r} is loaded but not in effect on {name} "
                                     f"(active {sorted(active)}, fused {sorted(merged)}).")


def active_adapters(pipe: Any) -> list[str]:
    """The UNet's LoRA adapters that act on its output (printed by the benchmark, logged at load)."""
    names: set[str] = set()
    for _, active, merged in lora_state(pipe.unet).values():
        names |= merged or active
    return sorted(names)


def apply_preset(pipe: Any, generation: GenerationConfig, models: ModelsConfig) -> None:
    """Fast presets: a distilled LoRA fused into the UNet plus the scheduler it was trained for.

    A LoRA already on the UNet (IP-Adapter FaceID's own) stays in effect: loading a second adapter
    makes it the only active one, and peft ignores unfused adapters once any is fused, so both are
    made active at full weight and fused together, then checked.
    """
    from diffusers import EulerDiscreteScheduler, LCMScheduler

    if generation.preset == "quality":
        return
    ref = model_ref(models, generation.preset)
    weight = LIGHTNING_FILE if generation.preset == "lightning" else None
    kept = list(pipe.get_active_adapters())
    with explain_missing(ref, generation, weight or "LoRA", checks_layout=True):
        kwargs = hub_kwargs(ref, generation)
        if weight:
            kwargs["weight_name"] = weight
        pipe.load_lora_weights(ref.source, adapter_name=generation.preset, **kwargs)
    if generation.preset not in pipe.get_list_adapters().get("unet", []):
        raise ModelFileError(f"The {ref.role} ({ref.source}) loaded no weights into the UNet: its file does not "
                             f"match an SDXL UNet. Check models.{ref.key} / models.{ref.key}_path.")
    adapters = [*kept, generation.preset]
    pipe.set_adapters(adapters, adapter_weights=[1.0] * len(adapters))
    pipe.fuse_lora(components=["unet"], adapter_names=adapters)
    check_adapters(pipe.unet, adapters, f"The {generation.preset} preset")
    if generation.preset == "lightning":
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    else:
        pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)


# --------------------------------------------------------------------------- the face embedding


def checked_identity(vector: np.ndarray, dims: int, model: str, backend: str, setting: str) -> np.ndarray:
    """``vector`` as float32 when it is what the adapter takes; otherwise a GenerationError that names
    the face model and the settings involved, before any GPU work."""
    values = np.asarray(vector, dtype=np.float32)
    if values.ndim != 1 or values.shape[0] != dims:
        raise GenerationError(
            f"The reference face embedding ({model}) has shape {values.shape}, but the {backend} adapter "
            f"({setting}) takes {dims} values. The conditioning face model does not match generation.backend "
            f"= {backend!r}: check faces.insightface_root and the pack it holds."
        )
    if not np.all(np.isfinite(values)) or not np.any(values):
        raise GenerationError(
            f"The reference face embedding ({model}) is {'empty' if np.all(values == 0) else 'not finite'}: "
            "the face model gave no usable identity. Its files may be damaged; download the pack again "
            "(faces.insightface_root)."
        )
    return values


# --------------------------------------------------------------------------- out of device memory


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA, and MPS in current torch) or an allocator's RuntimeError saying so."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "alloc_failed" in text)


def free_device_memory(device: str) -> None:
    """Hand the memory of a failed call back: collect the dead tensors, then empty the allocator's cache."""
    import torch

    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def run_on_device(device: str, what: str, call: Callable[[], T]) -> T:
    """``call()``, with the device running out of memory turned into :class:`OutOfMemory`.

    A plain function, not a context manager, on purpose: the memory is freed *after* the ``except``
    clause has ended, when nothing refers to torch's exception any more. Until then its traceback
    keeps the failed call's activations alive (a ``with`` block's ``__exit__`` would hold it too),
    and emptying the cache would free nothing.
    """
    try:
        return call()
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    free_device_memory(device)
    log.warning("out of device memory while %s: %s", what, reason)
    raise OutOfMemory(f"out of device memory while {what}: {reason}")
