"""Backend ``edit``: Apache-2.0 reference-image editors that take the selfie's face crop itself.

No face encoder and no identity adapter: the editor sees the person's face-centred crops (the quality
gate's crop of the best 1-3 photos, never the raw photo) as reference images, and an instruction that
says what to make of them. So the commercially clean stack keeps the product's idea: a large, clear face
goes in, the framing is asked for in words and by the canvas shape, a face that came out small is
re-rendered locally with the crop as reference and pasted back, and every image is scored for likeness.

Two editors, both in diffusers (settings from their model cards):

- FLUX.2 [klein] 4B (``Flux2KleinPipeline``): step-distilled, 4 steps, guidance 1.0 (ignored), up to 3
  reference images as "image 1..3". The re-render pass is ``Flux2KleinInpaintPipeline`` on the same
  modules: the face ellipse of the upscaled crop is repainted with the best crop as reference.
- Qwen-Image-Edit-2511 (``QwenImageEditPlusPipeline``): 40 steps, true CFG 4.0 with a negative prompt,
  references named "Picture 1..3" in the prompt (the pipeline puts them there in that order). One image
  per call (the pipeline takes one prompt at a time); its re-render is an edit of the crop ("Picture 1")
  towards the reference face ("Picture 2").
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from generation.config import GenerationConfig, ModelsConfig
from generation.models import (
    EDITOR_MODELS,
    ModelMissingError,
    explain_missing,
    hub_kwargs,
    model_ref,
    pick_device,
    pick_dtype,
)
from generation.pipelines.diffusers_common import run_on_device, step_callback, to_uint8
from generation.pipelines.refine import redenoise_steps
from generation.pipelines.types import (
    EDITOR_REFERENCES,
    GenerationError,
    GenerationRequest,
    Img2ImgRequest,
    StepCallback,
)
from generation.stack import needs_torchvision, torchvision_fits, torchvision_for

log = logging.getLogger(__name__)

# Both pipelines work in 16-px blocks (VAE 8× and 2×2 patches) and are trained around one megapixel.
CANVAS_MULTIPLE = 16
MAX_PROMPT_TOKENS = 400  # of the 512 the text encoders read, leaving room for the instruction around it

# Framing with an editor: no keypoint control, so the canvas shape and the words carry it.
FRAMING_WORDS = {
    "close-up": "A close-up portrait, the face filling most of the frame,",
    "head-and-shoulders": "A head-and-shoulders portrait",
    "half-body": "A half-body portrait from the waist up",
    "full-body": "A full-body photo showing the whole person from head to feet",
}
FRAMING_ASPECT = {  # width / height of the canvas
    "close-up": 1.0,
    "head-and-shoulders": 4 / 5,
    "half-body": 3 / 4,
    "full-body": 9 / 16,
}
KEEP_IDENTITY = ("Keep their face exactly as in the reference: the same person, the same facial features, "
                 "skin tone, age and hairline. Only this one person is in the picture.")


@dataclass(frozen=True)
class EditorRecipe:
    """What one editor's model card prescribes, and how its prompts name the reference images."""

    name: str  # generation.editor
    steps: int
    guidance_scale: float  # the pipeline's guidance_scale (distilled / embedded guidance)
    true_cfg_scale: float | None  # Qwen's real classifier-free guidance; None: the editor has none
    image_word: str  # "image" (FLUX.2) or "Picture" (Qwen's own prompt template)

    def images(self, count: int) -> str:
        if count <= 1:
            return f"{self.image_word} 1"
        return f"{self.image_word}s 1 to {count}" if self.image_word == "Picture" else f"images 1 to {count}"


RECIPES = {
    "flux2-klein": EditorRecipe("flux2-klein", steps=4, guidance_scale=1.0, true_cfg_scale=None, image_word="image"),
    "qwen-image-edit": EditorRecipe("qwen-image-edit", steps=40, guidance_scale=1.0, true_cfg_scale=4.0,
                                    image_word="Picture"),
}


def editor_canvas(framing: str, width: int, height: int) -> tuple[int, int]:
    """The output size for ``framing``: the preset's shape at the configured canvas's area, in 16-px blocks."""
    if framing not in FRAMING_ASPECT:
        raise ValueError(f"unknown framing {framing!r}; choose one of: {', '.join(FRAMING_ASPECT)}")
    aspect, area = FRAMING_ASPECT[framing], width * height
    new_w = max(CANVAS_MULTIPLE, round(math.sqrt(area * aspect) / CANVAS_MULTIPLE) * CANVAS_MULTIPLE)
    new_h = max(CANVAS_MULTIPLE, round(math.sqrt(area / aspect) / CANVAS_MULTIPLE) * CANVAS_MULTIPLE)
    return new_w, new_h


def edit_instruction(styled_prompt: str, framing: str, references: int, recipe: EditorRecipe) -> str:
    """The prompt form: framing words, who (the person in the reference images), the styled prompt, and the
    instruction to keep the face. The user's words stay in the middle, unchanged."""
    if references < 1:
        raise GenerationError("The editor needs at least one reference photo of the face.")
    who = f"the person in {recipe.images(references)}"
    if references > 1:
        who += " (the same person in each)"
    subject = styled_prompt.strip().rstrip(".")
    return f"{FRAMING_WORDS[framing]} of {who}. {subject}. {KEEP_IDENTITY}"


def refine_instruction(styled_prompt: str, recipe: EditorRecipe) -> str:
    """The re-render pass's prompt: the face of the reference, the scene of the crop left as it is."""
    if recipe.true_cfg_scale is None:  # FLUX.2 inpainting: the mask says where, the reference says who
        return (f"The face of the person in the reference image, sharp and detailed, matching the scene: "
                f"{styled_prompt.strip().rstrip('.')}.")
    return ("Replace the face in Picture 1 with the face of the person in Picture 2: the same person, the same "
            "facial features and skin tone. Keep Picture 1's head pose, expression, light, hair and everything "
            "else unchanged.")


def face_mask(size: int, keypoints: np.ndarray) -> np.ndarray:
    """White where the re-render may repaint: an ellipse over the face the keypoints mark (L mode, uint8)."""
    points = np.asarray(keypoints, dtype=np.float64)
    ied = float(np.hypot(*(points[1] - points[0])))
    centre = points.mean(axis=0)
    axes = (max(2, round(1.4 * ied)), max(2, round(1.9 * ied)))
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, 0.0, 0, 360, 255, -1)
    return mask


def _pil(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(rgb))


def _references(request: GenerationRequest) -> list[Image.Image]:
    if not request.references:
        raise GenerationError("The editor got no reference face crop; the reference photos could not be cropped.")
    return [_pil(crop) for crop in request.references[:EDITOR_REFERENCES]]


def _require_torchvision(generation: GenerationConfig) -> None:
    """Missing, or built for another torch (which fails deep inside loading with "operator torchvision::nms does
    not exist"): say so before loading, with the series this torch takes. Read from the metadata, not imported."""
    if not needs_torchvision(generation):
        return
    series = torchvision_for(torch.__version__)
    wanted = f"torchvision {series}.x for torch {torch.__version__}" if series else "torchvision"
    how = f"Install {wanted}, from the index your torch came from, or set generation.editor = 'flux2-klein'."
    if importlib.util.find_spec("torchvision") is None:
        raise ModelMissingError(
            f"Qwen-Image-Edit needs torchvision (its Qwen2.5-VL processor cannot be built without it). {how}")
    try:
        installed = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        return
    if not torchvision_fits(torch.__version__, installed):
        raise ModelMissingError(f"Qwen-Image-Edit needs torchvision, and torchvision {installed} is built for "
                                f"another torch than torch {torch.__version__}: it fails at import. {how}")


class EditBackend:
    """A reference-image editor, loaded once and kept warm."""

    name = "edit"
    places_face = False  # no keypoint control: the re-render pass looks for the face with the analyzer
    max_prompt_tokens = MAX_PROMPT_TOKENS

    def __init__(self, pipe: Any, recipe: EditorRecipe, device: str, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.recipe = recipe
        self.device = device
        self.dtype = dtype
        self.inpaint = None
        if recipe.true_cfg_scale is None:
            from diffusers import Flux2KleinInpaintPipeline

            self.inpaint = Flux2KleinInpaintPipeline.from_pipe(pipe, dtype=dtype)
            self.inpaint.set_progress_bar_config(disable=True)

    @property
    def sampling(self) -> tuple[int, float]:
        """Steps and guidance from the model card (generation.steps is the SDXL quality preset's)."""
        return self.recipe.steps, self.recipe.guidance_scale

    def canvas(self, framing: str, width: int, height: int) -> tuple[int, int]:
        return editor_canvas(framing, width, height)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, generation: GenerationConfig, models: ModelsConfig) -> EditBackend:
        _require_torchvision(generation)
        from diffusers import Flux2KleinPipeline, QwenImageEditPlusPipeline

        recipe = RECIPES[generation.editor]
        pipeline_class = Flux2KleinPipeline if generation.editor == "flux2-klein" else QwenImageEditPlusPipeline
        device = pick_device(generation.device)
        dtype = pick_dtype(generation.dtype, device, half="bfloat16")
        ref = model_ref(models, EDITOR_MODELS[generation.editor])
        with explain_missing(ref, generation, checks_layout=True):
            pipe = pipeline_class.from_pretrained(ref.source, dtype=dtype, **hub_kwargs(ref, generation))
        if not isinstance(pipe, pipeline_class):
            raise ModelMissingError(f"models.{ref.key} ({ref.source}) holds a {type(pipe).__name__}, not the "
                                    f"{pipeline_class.__name__} generation.editor = {generation.editor!r} needs.")
        pipe.to(device=device, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        log.info("edit backend ready on %s (%s): %s from %s, %d steps", device, str(dtype).removeprefix("torch."),
                 generation.editor, ref.source, recipe.steps)
        return cls(pipe, recipe, device, dtype)

    # ------------------------------------------------------------------ prompts

    def count_tokens(self, text: str) -> int:
        """Tokens the editor's text encoder reads of ``text`` (the linter keeps prompts within budget)."""
        return len(self.pipe.tokenizer(text).input_ids)

    def instruction(self, request: GenerationRequest) -> str:
        return edit_instruction(request.prompt, request.framing, len(_references(request)), self.recipe)

    # ------------------------------------------------------------------ generation

    def _call(self, what: str, **kwargs: Any) -> list[np.ndarray]:
        output = run_on_device(self.device, what, lambda: self.pipe(output_type="np", **kwargs))
        return [to_uint8(image) for image in output.images]

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> list[np.ndarray]:
        references = _references(request)
        prompt = self.instruction(request)
        common = {"image": references, "prompt": prompt, "width": request.width, "height": request.height,
                  "num_inference_steps": request.steps, "callback_on_step_end": step_callback(on_step, request.steps)}
        if self.recipe.true_cfg_scale is None:
            generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in request.seeds]
            return self._call(f"generating {len(request.seeds)} image(s)", num_images_per_prompt=len(request.seeds),
                              generator=generators, guidance_scale=request.guidance_scale, **common)
        images = []
        # Qwen: one prompt per call, and no guidance_scale (its transformer has no guidance embedding; diffusers
        # warns on every call that it is ignored).
        for seed in request.seeds:
            images += self._call("generating an image", negative_prompt=request.negative_prompt or " ",
                                 true_cfg_scale=self.recipe.true_cfg_scale,
                                 generator=torch.Generator(device="cpu").manual_seed(int(seed)), **common)
        return images

    def redenoise(self, request: Img2ImgRequest, on_step: StepCallback | None = None) -> np.ndarray:
        """The local face edit: the upscaled crop of a small face, repainted towards the reference face."""
        base = request.base
        size = request.image.shape[0]
        reference = _references(base)[0]
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        prompt = refine_instruction(base.prompt, self.recipe)
        if self.inpaint is not None:
            mask = face_mask(size, base.keypoints)
            output = run_on_device(self.device, "re-rendering a face", lambda: self.inpaint(
                prompt=prompt, image=_pil(request.image), mask_image=Image.fromarray(mask), image_reference=reference,
                strength=request.strength, width=size, height=size, num_inference_steps=base.steps,
                guidance_scale=base.guidance_scale, generator=generator, output_type="np",
                callback_on_step_end=step_callback(on_step, redenoise_steps(base.steps, request.strength)),
            ))
            image = to_uint8(output.images[0])
        else:
            image = self._call("re-rendering a face", image=[_pil(request.image), reference], prompt=prompt,
                               negative_prompt=base.negative_prompt or " ", true_cfg_scale=self.recipe.true_cfg_scale,
                               width=size, height=size, num_inference_steps=base.steps, generator=generator,
                               callback_on_step_end=step_callback(on_step, base.steps))[0]
        if image.shape[:2] != (size, size):  # an editor rounds to its block size: back to the crop's
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
        return image
