"""What the identity adapters actually receive, against what their published methods prescribe.

The reference is measured by the real insightface analyzer code on tiny packs in the real
signatures; their recogniser gives raw vectors of norm ≈ 25-30, the scale of real ArcFace
embeddings, so a raw vector fed where the unit one belongs (or the reverse) is caught. Each test
computes the prescribed input on its own (normalisation, zero negatives, the aligned crop, CLIP's
preprocessing through transformers' own image processor) and compares it with what hooks on the
projection and attention layers of the tiny pipelines see during a real engine run.

- InstantID (InstantX): the raw antelopev2 ``embedding`` → Resampler; zeros as the negative; the
  IdentityNet's encoder_hidden_states are the face tokens, not the text.
- IP-Adapter FaceID-Plus-v2 (h94): buffalo_l's ``normed_embedding``; zeros as the negative; CLIP
  hidden states (penultimate layer) of the 224-px aligned crop, and of a zero tensor *after*
  normalisation as the negative.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import tiny_onnx
import torch
from PIL import Image

from generation.config import GenerationConfig
from generation.engine import FACE_CROP_SIZE, Engine, Reference, build_reference
from generation.faces.dlib_backend import DlibAnalyzer
from generation.faces.insightface_backend import InsightFaceAnalyzer
from generation.faces.types import Face
from generation.images import LoadedImage, load_image
from generation.jobs import PortraitJob
from generation.pipelines.types import GenerationError, IdentityEmbedding

# Where ArcFace wants the five points in its 112-px crop (insightface's arcface_dst), written out here
# so the test does not read the template from the code under test.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])


def square_photo() -> LoadedImage:
    """A white square on black: the "face" the tiny SCRFD-shaped detector finds."""
    pixels = np.zeros((600, 800, 3), np.uint8)
    pixels[200:400, 300:500] = 255
    pixels[260:300, 340:380] = (255, 120, 40)  # some structure, so the crop is not uniform
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return load_image(buffer.getvalue())


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("insightface")
    for pack in ("antelopev2", "buffalo_l"):
        tiny_onnx.make_pack(root / "models" / pack, pack=pack)
    return root


def measured(pack_root: Path, pack: str) -> tuple[Reference, Face, LoadedImage]:
    analyzer = InsightFaceAnalyzer(root=str(pack_root), pack=pack, download=False)
    photo = square_photo()
    face = analyzer.analyze(photo.pixels, embeddings=True)[0]
    return build_reference([photo], analyzer, DlibAnalyzer()), face, photo


def engine_config(**changes: object) -> GenerationConfig:
    values = dict(offline=True, device="cpu", width=64, height=64, steps=2, retry_attempts=0,
                  likeness_threshold=0.0, refine_min_eye_distance=0)
    values.update(changes)
    return GenerationConfig(**values)  # type: ignore[arg-type]


class Recorder:
    """Forward pre-hooks that keep what a module was called with (detached copies)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def watch(self, module: torch.nn.Module, grab) -> None:
        def hook(mod, args, kwargs):
            self.calls.append(grab(mod, args, kwargs))

        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def test_tiny_recogniser_gives_real_scale_embeddings(pack_root: Path) -> None:
    for pack in ("antelopev2", "buffalo_l"):
        _, face, _ = measured(pack_root, pack)
        assert 15 < np.linalg.norm(face.embedding) < 40  # like real ArcFace vectors, not unit vectors


def test_instantid_gets_the_raw_embedding_and_zero_negatives(pack_root: Path, instantid_backend) -> None:
    reference, face, _ = measured(pack_root, "antelopev2")
    raw = torch.from_numpy(face.embedding.astype(np.float32))  # insightface's `embedding`, not normalised
    pipe = instantid_backend.pipe
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    with torch.no_grad():  # the method's tokens, from the method's input
        expected_positive = projection(raw.reshape(1, 1, -1))
        expected_negative = projection(torch.zeros(1, 1, raw.numel()))

    recorder = Recorder()
    recorder.watch(projection, lambda m, a, k: {"input": a[0].detach().clone().reshape(-1, a[0].shape[-1])})
    controlnet_attn = next(m for n, m in pipe.controlnet.named_modules() if n.endswith("attn2"))
    unet_attn = next(m for n, m in pipe.unet.named_modules() if n.endswith("attn2"))
    recorder.watch(controlnet_attn, lambda m, a, k: {"controlnet": k["encoder_hidden_states"].detach().clone()})
    recorder.watch(unet_attn, lambda m, a, k: {"unet": k["encoder_hidden_states"]})
    try:
        Engine(instantid_backend, DlibAnalyzer(), engine_config()).run(PortraitJob(count=2, seed=4), reference)
    finally:
        recorder.close()

    inputs = torch.cat([c["input"] for c in recorder.calls if "input" in c])
    assert len(inputs) >= 2
    is_raw = torch.isclose(inputs, raw, atol=1e-5).all(dim=1)
    is_zero = (inputs == 0).all(dim=1)
    assert bool((is_raw | is_zero).all()) and bool(is_raw.any()) and bool(is_zero.any())
    assert float(inputs[is_raw][0].norm()) > 15  # the raw scale reached the Resampler

    # The IdentityNet sees the face tokens in place of the text: [negative × 2, positive × 2] under CFG.
    expected = torch.cat([expected_negative.expand(2, -1, -1), expected_positive.expand(2, -1, -1)])
    seen = [c["controlnet"] for c in recorder.calls if "controlnet" in c]
    assert seen and all(torch.allclose(s, expected, atol=1e-5) for s in seen)
    # The UNet's IP-Adapter attention gets the same tokens next to the text.
    unet_seen = [c["unet"] for c in recorder.calls if "unet" in c]
    assert unet_seen and all(isinstance(s, tuple) for s in unet_seen)
    text, (tokens,) = unet_seen[0]
    assert torch.allclose(tokens.reshape(expected.shape), expected, atol=1e-5)
    assert text.shape[:2] == (4, 77)  # the prompt's tokens, kept apart from the 16 face tokens


def independent_crop(photo: np.ndarray, landmarks5: np.ndarray, size: int) -> np.ndarray:
    """The ArcFace crop by plain linear least squares for x' = a·x − b·y + tx, y' = b·x + a·y + ty."""
    target = ARCFACE_112 * (size / 112.0)
    rows, rhs = [], []
    for (x, y), (u, v) in zip(landmarks5, target, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    matrix = np.array([[a, -b, tx], [b, a, ty]])
    return cv2.warpAffine(photo, matrix, (size, size), borderValue=0.0)


def test_faceid_gets_the_normed_embedding_zero_negatives_and_clip_of_the_crop(pack_root: Path,
                                                                              faceid_backend) -> None:
    from transformers import CLIPImageProcessor

    reference, face, photo = measured(pack_root, "buffalo_l")
    normed = face.embedding / np.linalg.norm(face.embedding)  # insightface's `normed_embedding`

    crop = independent_crop(photo.pixels, face.landmarks5, FACE_CROP_SIZE)
    assert np.abs(crop.astype(int) - reference.face_crop.astype(int)).max() <= 1
    processor = CLIPImageProcessor(do_resize=False, do_center_crop=False)  # OpenAI CLIP mean/std by default
    pixels = processor(images=crop, return_tensors="pt").pixel_values
    encoder = faceid_backend.image_encoder
    with torch.no_grad():
        positive_clip = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        negative_clip = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        black = processor(images=np.zeros_like(crop), return_tensors="pt").pixel_values
        black_clip = encoder(black, output_hidden_states=True).hidden_states[-2]
    assert not torch.allclose(negative_clip, black_clip, atol=1e-3)  # the two negatives are distinguishable

    projection = faceid_backend.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    recorder = Recorder()
    recorder.watch(projection, lambda m, a, k: {"id": a[0].detach().clone(), "clip": m.clip_embeds.detach().clone(),
                                                "shortcut": m.shortcut})
    try:
        Engine(faceid_backend, DlibAnalyzer(), engine_config()).run(PortraitJob(count=2, seed=4), reference)
    finally:
        recorder.close()

    call = recorder.calls[0]
    ids = call["id"].reshape(-1, normed.shape[0])
    assert ids.shape[0] == 4  # [negative × 2, positive × 2]
    assert torch.all(ids[:2] == 0)
    np.testing.assert_allclose(ids[2:].numpy(), np.stack([normed] * 2), atol=1e-5)
    assert float(ids[2].norm()) == pytest.approx(1.0, abs=1e-4)
    clip = call["clip"].reshape(4, *positive_clip.shape[1:])
    assert torch.allclose(clip[:2], negative_clip.expand(2, -1, -1), atol=1e-4)
    assert torch.allclose(clip[2:], positive_clip.expand(2, -1, -1), atol=1e-4)
    assert call["shortcut"] is True  # Plus-v2: the ID tokens are added back


def test_each_backend_refuses_an_embedding_it_was_not_trained_on(pack_root: Path, instantid_backend,
                                                                 faceid_backend) -> None:
    import dataclasses

    reference, _, _ = measured(pack_root, "antelopev2")
    engine = Engine(instantid_backend, DlibAnalyzer(), engine_config())
    good = engine.request_for(PortraitJob(seed=1), reference, __import__("generation.prompts").prompts.lint_prompt(""),
                              1)
    dlib_sized = IdentityEmbedding.of_one_face(np.ones(128), model="dlib-resnet-128")
    with pytest.raises(GenerationError, match=r"dlib-resnet-128.*models\.instantid.*512"):
        instantid_backend.generate(dataclasses.replace(good, identity=dlib_sized))
    broken = IdentityEmbedding(raw=np.full(512, np.nan, np.float32), normed=np.full(512, np.nan, np.float32),
                               model="arcface-buffalo_l")
    with pytest.raises(GenerationError, match=r"arcface-buffalo_l.*not finite"):
        faceid_backend.generate(dataclasses.replace(good, identity=broken, face_crop=reference.face_crop))
    with pytest.raises(GenerationError, match="empty"):
        instantid_backend.generate(dataclasses.replace(good, identity=IdentityEmbedding.of_one_face(np.zeros(512))))
