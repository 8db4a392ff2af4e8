"""IP-Adapter FaceID-Plus-v2 on SDXL, entirely through diffusers' own IP-Adapter loading.

The identity reaches the UNet two ways: the buffalo_l ArcFace embedding becomes 4 face tokens, and
a CLIP ViT-H reading of the aligned 224-px face crop refines them (the "Plus" path; v2 adds the ID
tokens back as a shortcut). The checkpoint also carries LoRA weights for the UNet, which diffusers
loads only when ``peft`` is installed — without them likeness silently drops, so loading checks.
There is no IdentityNet here: framing comes from the prompt, not from keypoints.

What the method feeds the model (h94/IP-Adapter-FaceID, FaceID-Plus-v2): the **normalised**
ArcFace embedding (insightface's ``normed_embedding``), zeros for the unconditional half, and for
the CLIP path the hidden states of the CLIP-normalised crop, with a tensor of zeros *after*
normalisation as the unconditional image (not a black picture, which normalises to −mean/std).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from PIL import Image

from generation.config import GenerationConfig, ModelsConfig
from generation.models import (
    ModelFileError,
    explain_missing,
    hub_kwargs,
    model_ref,
    pick_device,
    pick_dtype,
    variant_kwargs,
)
from generation.pipelines.diffusers_common import (
    check_adapters,
    checked_identity,
    finish_loading,
    is_guided,
    run_on_device,
    settle,
    step_callback,
    to_uint8,
)
from generation.pipelines.refine import redenoise_steps
from generation.pipelines.types import GenerationRequest, Img2ImgRequest, StepCallback

log = logging.getLogger(__name__)

ADAPTER_FILE = "ip-adapter-faceid-plusv2_sdxl.bin"
CLIP_SIZE = 224
# OpenAI CLIP preprocessing constants (ViT-H/14 laion2B uses the same).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
# v2's shortcut weight: how much of the plain ID tokens is added back to the CLIP-refined ones.
SHORTCUT_SCALE = 1.0


class FaceIDBackend:
    """SDXL + IP-Adapter FaceID-Plus-v2, loaded once and kept warm."""

    name = "faceid"
    places_face = False  # no keypoint control: the face lands where the prompt puts it

    def __init__(self, pipe: StableDiffusionXLPipeline, image_encoder: Any, device: str, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.image_encoder = image_encoder
        self.device = device
        self.dtype = dtype
        self.img2img = settle(pipe, StableDiffusionXLImg2ImgPipeline, device, dtype)

    @classmethod
    def load(cls, generation: GenerationConfig, models: ModelsConfig) -> FaceIDBackend:
        from transformers import CLIPVisionModelWithProjection

        device = pick_device(generation.device)
        dtype = pick_dtype(generation.dtype, device)
        base, faceid = model_ref(models, "base"), model_ref(models, "faceid")
        encoder = model_ref(models, "image_encoder")
        with explain_missing(base, generation):
            pipe = StableDiffusionXLPipeline.from_pretrained(base.source, dtype=dtype, **hub_kwargs(base, generation),
                                                       **variant_kwargs(base, generation))
        with explain_missing(encoder, generation):
            image_encoder = CLIPVisionModelWithProjection.from_pretrained(
                encoder.source, dtype=dtype, **hub_kwargs(encoder, generation)
            )
        with explain_missing(faceid, generation, ADAPTER_FILE, checks_layout=True):
            pipe.load_ip_adapter(faceid.source, subfolder="", weight_name=ADAPTER_FILE, image_encoder_folder=None,
                                 **hub_kwargs(faceid, generation))
        projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
        if type(projection).__name__ != "IPAdapterFaceIDPlusImageProjection":
            raise ModelFileError(
                f"{ADAPTER_FILE} from {faceid.source} is not a FaceID-Plus adapter (its projection is "
                f"{type(projection).__name__}); models.faceid must name h94/IP-Adapter-FaceID."
            )
        lora = [name for name in pipe.get_list_adapters().get("unet", []) if name.startswith("faceid")]
        if not lora:
            raise ModelFileError(
                f"{ADAPTER_FILE} loaded without its LoRA weights: install peft (`pip install 'closeup[gpu]'`), "
                "or FaceID likeness drops sharply."
            )
        check_adapters(pipe.unet, lora, ADAPTER_FILE)
        image_encoder.to(device=device, dtype=dtype).eval()
        finish_loading(pipe, generation, models, device, dtype, cls.name)
        return cls(pipe, image_encoder, device, dtype)

    def count_tokens(self, text: str) -> int:
        return len(self.pipe.tokenizer(text, truncation=False).input_ids)

    # ------------------------------------------------------------------ conditioning

    @property
    def identity_dims(self) -> int:
        """What the face-token projection takes: 512 for buffalo_l's ArcFace."""
        projection = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        return int(projection.proj.net[0].proj.in_features)

    @staticmethod
    def clip_pixels(crop: np.ndarray) -> np.ndarray:
        """The 224-px face crop as CLIP reads it: (3, 224, 224) float32, scaled to 0-1 and normalised."""
        if crop.shape[:2] != (CLIP_SIZE, CLIP_SIZE):
            crop = np.asarray(Image.fromarray(crop).resize((CLIP_SIZE, CLIP_SIZE), Image.Resampling.BICUBIC))
        return ((crop.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)

    @torch.no_grad()
    def _clip_hidden(self, crop: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate CLIP hidden states (what FaceID-Plus was trained on) of the crop and of the
        unconditional input, zeros on the normalised tensor; one encoder call for both."""
        pixels = torch.from_numpy(self.clip_pixels(crop)[None]).to(self.device, dtype=self.dtype)
        hidden = self.image_encoder(torch.cat([pixels, torch.zeros_like(pixels)]),
                                    output_hidden_states=True).hidden_states[-2]
        return hidden[:1], hidden[1:]

    def _conditioning(self, request: GenerationRequest, images: int, guided: bool) -> dict[str, Any]:
        if request.face_crop is None:
            raise ValueError("the faceid backend needs the aligned face crop (GenerationRequest.face_crop)")
        identity = checked_identity(request.identity.normed, self.identity_dims, request.identity.model,
                                    self.name, "models.faceid")
        positive, negative = self._clip_hidden(request.face_crop)
        parts = [negative.expand(images, -1, -1), positive.expand(images, -1, -1)] if guided else [
            positive.expand(images, -1, -1)]
        projection = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        projection.clip_embeds = torch.cat(parts)[:, None]  # (batch, 1 image, tokens, width)
        projection.shortcut = True
        projection.shortcut_scale = SHORTCUT_SCALE
        self.pipe.set_ip_adapter_scale(float(request.identity_scale))
        face = torch.from_numpy(identity).reshape(1, 1, 1, -1)
        embeds = torch.cat([torch.zeros_like(face), face]) if guided else face
        return {"ip_adapter_image_embeds": [embeds.to(self.device, dtype=self.dtype)]}

    # ------------------------------------------------------------------ generation

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> list[np.ndarray]:
        guided = is_guided(self.pipe, request.guidance_scale)
        output = run_on_device(self.device, f"generating {len(request.seeds)} image(s)", lambda: self.pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=len(request.seeds),
            generator=[torch.Generator(device="cpu").manual_seed(int(seed)) for seed in request.seeds],
            output_type="np",
            callback_on_step_end=step_callback(on_step, request.steps),
            **self._conditioning(request, len(request.seeds), guided),
        ))
        return [to_uint8(image) for image in output.images]

    def redenoise(self, request: Img2ImgRequest, on_step: StepCallback | None = None) -> np.ndarray:
        base = request.base
        guided = is_guided(self.pipe, base.guidance_scale)
        output = run_on_device(self.device, "re-rendering a face", lambda: self.img2img(
            prompt=base.prompt,
            negative_prompt=base.negative_prompt or None,
            image=Image.fromarray(np.ascontiguousarray(request.image)),
            strength=request.strength,
            num_inference_steps=base.steps,
            guidance_scale=base.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(int(request.seed)),
            output_type="np",
            callback_on_step_end=step_callback(on_step, redenoise_steps(base.steps, request.strength)),
            **self._conditioning(base, 1, guided),
        ))
        return to_uint8(output.images[0])
