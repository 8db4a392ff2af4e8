"""InstantID on diffusers' SDXL ControlNet pipelines.

InstantID has two halves that share one set of face tokens (a Resampler turns the 512-d
antelopev2 embedding into 16 tokens):

- its IP-Adapter feeds the tokens into the UNet's cross-attention. The checkpoint has the IP-Adapter
  Plus layout, so diffusers' own ``load_ip_adapter`` loads it, and the UNet's SDPA IP-Adapter
  attention processors run it;
- its IdentityNet is a ControlNet that sees the face tokens *instead of the text* as its
  encoder_hidden_states, plus an image of five coloured keypoints that decides where the face goes,
  how big it is and its angle. :class:`IdentityNet` is the stock ControlNet with that one change.

What the method feeds the model: the **raw** antelopev2 embedding (insightface's ``embedding``,
norm ≈ 20-30, not ``normed_embedding``) to the Resampler, and zeros for the unconditional half.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetPipeline,
)
from PIL import Image

from generation.config import GenerationConfig, ModelsConfig
from generation.models import explain_missing, hub_kwargs, model_ref, pick_device, pick_dtype, variant_kwargs
from generation.pipelines.diffusers_common import (
    checked_identity,
    finish_loading,
    is_guided,
    run_on_device,
    settle,
    step_callback,
    to_uint8,
)
from generation.pipelines.framing import draw_keypoints
from generation.pipelines.refine import redenoise_steps
from generation.pipelines.types import GenerationRequest, Img2ImgRequest, StepCallback

log = logging.getLogger(__name__)

IDENTITYNET_SUBFOLDER = "ControlNetModel"
ADAPTER_FILE = "ip-adapter.bin"


class IdentityNet(ControlNetModel):
    """A ControlNet conditioned on face tokens rather than on the prompt.

    The pipeline calls every ControlNet with the text embeddings; this one swaps them for the
    tokens set by :meth:`use_face_tokens` (negative half first, as classifier-free guidance orders
    its batch).
    """

    _face_tokens: tuple[torch.Tensor, torch.Tensor] | None = None

    def use_face_tokens(self, positive: torch.Tensor, negative: torch.Tensor) -> None:
        self._face_tokens = (positive, negative)

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                *args: Any, **kwargs: Any) -> Any:
        if self._face_tokens is None:
            raise RuntimeError("IdentityNet needs face tokens: call use_face_tokens() before generating")
        positive, negative = self._face_tokens
        batch = sample.shape[0]
        text_batch = encoder_hidden_states.shape[0]
        if text_batch != batch:  # should not happen; the pipeline keeps them equal
            raise RuntimeError(f"IdentityNet: batch {batch} but {text_batch} text embeddings")
        tokens = self._batch(positive, negative, encoder_hidden_states)
        return super().forward(sample, timestep, tokens.to(sample.dtype), *args, **kwargs)

    def _batch(self, positive: torch.Tensor, negative: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        # Under guidance the pipeline doubles the batch: [negative × n, positive × n].
        guided = getattr(self, "_guided", True)
        batch = text.shape[0]
        if guided:
            half = batch // 2
            return torch.cat([negative.expand(half, -1, -1), positive.expand(half, -1, -1)])
        return positive.expand(batch, -1, -1)


def _to_pil(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(rgb))


class InstantIDBackend:
    """SDXL + IdentityNet + InstantID IP-Adapter, loaded once and kept warm."""

    name = "instantid"
    places_face = True  # the IdentityNet puts the face on the request's keypoints

    def __init__(self, pipe: StableDiffusionXLControlNetPipeline, device: str, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.img2img = settle(pipe, StableDiffusionXLControlNetImg2ImgPipeline, device, dtype,
                              controlnet=pipe.controlnet)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, generation: GenerationConfig, models: ModelsConfig) -> InstantIDBackend:
        device = pick_device(generation.device)
        dtype = pick_dtype(generation.dtype, device)
        base, instantid = model_ref(models, "base"), model_ref(models, "instantid")
        with explain_missing(instantid, generation, f"{IDENTITYNET_SUBFOLDER}/", checks_layout=True):
            identitynet = IdentityNet.from_pretrained(
                instantid.source, subfolder=IDENTITYNET_SUBFOLDER, dtype=dtype,
                **hub_kwargs(instantid, generation),
            )
        with explain_missing(base, generation):
            pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
                base.source, controlnet=identitynet, dtype=dtype, **hub_kwargs(base, generation),
                **variant_kwargs(base, generation),
            )
        with explain_missing(instantid, generation, ADAPTER_FILE, checks_layout=True):
            pipe.load_ip_adapter(
                instantid.source, subfolder="", weight_name=ADAPTER_FILE, image_encoder_folder=None,
                **hub_kwargs(instantid, generation),
            )
        finish_loading(pipe, generation, models, device, dtype, cls.name)
        return cls(pipe, device, dtype)

    # ------------------------------------------------------------------ conditioning

    @property
    def identity_dims(self) -> int:
        """What the Resampler takes: 512 for antelopev2's ArcFace."""
        return int(self.pipe.unet.encoder_hid_proj.image_projection_layers[0].proj_in.in_features)

    @torch.no_grad()
    def face_tokens(self, embedding: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) face tokens, each (1, 16, cross_attention_dim); negative = zero face."""
        projection = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        face = torch.as_tensor(np.asarray(embedding, dtype=np.float32)).reshape(1, 1, -1)
        face = face.to(self.device, dtype=self.dtype)
        tokens = projection(torch.cat([face, torch.zeros_like(face)]))
        return tokens[:1], tokens[1:]

    def _conditioning(self, request: GenerationRequest, guided: bool) -> dict[str, Any]:
        identity = checked_identity(request.identity.raw, self.identity_dims, request.identity.model, self.name,
                                    "models.instantid")
        positive, negative = self.face_tokens(identity)
        identitynet: IdentityNet = self.pipe.controlnet  # type: ignore[assignment]
        identitynet.use_face_tokens(positive, negative)
        identitynet._guided = guided  # type: ignore[attr-defined]
        self.pipe.set_ip_adapter_scale(float(request.identity_scale))
        face = torch.from_numpy(identity).reshape(1, 1, 1, -1)
        embeds = torch.cat([torch.zeros_like(face), face]) if guided else face
        return {
            "ip_adapter_image_embeds": [embeds.to(self.device, dtype=self.dtype)],
            "controlnet_conditioning_scale": float(request.controlnet_scale),
        }

    def count_tokens(self, text: str) -> int:
        """Tokens the CLIP text encoders will see (start and end included), for the prompt linter."""
        return len(self.pipe.tokenizer(text, truncation=False).input_ids)

    # ------------------------------------------------------------------ generation

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> list[np.ndarray]:
        guided = is_guided(self.pipe, request.guidance_scale)
        control = draw_keypoints(request.keypoints, request.width, request.height)
        generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in request.seeds]
        output = run_on_device(self.device, f"generating {len(request.seeds)} image(s)", lambda: self.pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            image=_to_pil(control),
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=len(request.seeds),
            generator=generators,
            output_type="np",
            callback_on_step_end=step_callback(on_step, request.steps),
            **self._conditioning(request, guided),
        ))
        return [to_uint8(image) for image in output.images]

    def redenoise(self, request: Img2ImgRequest, on_step: StepCallback | None = None) -> np.ndarray:
        base = request.base
        height, width = request.image.shape[:2]
        guided = is_guided(self.pipe, base.guidance_scale)
        control = draw_keypoints(base.keypoints, width, height)
        output = run_on_device(self.device, "re-rendering a face", lambda: self.img2img(
            prompt=base.prompt,
            negative_prompt=base.negative_prompt or None,
            image=_to_pil(request.image),
            control_image=_to_pil(control),
            strength=request.strength,
            width=width,
            height=height,
            num_inference_steps=base.steps,
            guidance_scale=base.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(int(request.seed)),
            output_type="np",
            callback_on_step_end=step_callback(on_step, redenoise_steps(base.steps, request.strength)),
            **self._conditioning(base, guided),
        ))
        return to_uint8(output.images[0])
