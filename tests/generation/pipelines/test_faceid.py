"""The FaceID-Plus-v2 backend on tiny random checkpoints, loaded through diffusers' load_ip_adapter."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from generation.config import GenerationConfig, ModelsConfig
from generation.models import ModelMissingError
from generation.pipelines.faceid import FaceIDBackend
from generation.pipelines.types import GenerationRequest, IdentityEmbedding, Img2ImgRequest

CROP = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)


def request(**changes: object) -> GenerationRequest:
    base = GenerationRequest(
        prompt="a studio portrait", negative_prompt="blurry",
        identity=IdentityEmbedding.of_one_face(np.random.default_rng(0).normal(size=512) * 20),
        keypoints=np.zeros((5, 2)), seeds=(1,), width=64, height=64, steps=3, guidance_scale=5.0, face_crop=CROP,
    )
    return dataclasses.replace(base, **changes)


def test_loads_plus_projection_and_its_lora(faceid_backend: FaceIDBackend) -> None:
    projection = faceid_backend.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert type(projection).__name__ == "IPAdapterFaceIDPlusImageProjection"
    assert any(name.startswith("faceid") for name in faceid_backend.pipe.get_list_adapters()["unet"])


def test_batch_shapes_determinism_and_v2_shortcut(faceid_backend: FaceIDBackend) -> None:
    first = faceid_backend.generate(request(seeds=(1, 2)))
    assert [image.shape for image in first] == [(64, 64, 3)] * 2
    again = faceid_backend.generate(request(seeds=(1, 2)))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])
    projection = faceid_backend.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert projection.shortcut is True


def test_identity_and_face_crop_and_scale_matter(faceid_backend: FaceIDBackend) -> None:
    base = faceid_backend.generate(request())[0]
    other_face = faceid_backend.generate(request(identity=IdentityEmbedding.of_one_face(np.ones(512))))[0]
    other_crop = faceid_backend.generate(request(face_crop=np.zeros_like(CROP)))[0]
    assert not np.array_equal(base, other_face)
    assert not np.array_equal(base, other_crop)
    off = faceid_backend.generate(request(identity_scale=0.0))[0]
    ones = IdentityEmbedding.of_one_face(np.ones(512))
    off_other = faceid_backend.generate(request(identity_scale=0.0, identity=ones))[0]
    assert np.array_equal(off, off_other)  # scale 0: the identity no longer reaches the image
    assert not np.array_equal(off, base)


def test_without_guidance_and_redenoise(faceid_backend: FaceIDBackend) -> None:
    image = faceid_backend.generate(request(guidance_scale=1.0))[0]
    out = faceid_backend.redenoise(Img2ImgRequest(image=image, base=request(), strength=0.5, seed=2))
    assert out.shape == image.shape


def test_face_crop_is_required(faceid_backend: FaceIDBackend) -> None:
    with pytest.raises(ValueError, match="face crop"):
        faceid_backend.generate(request(face_crop=None))


def test_missing_image_encoder_is_explained(tmp_path: Path, faceid_configs: tuple[GenerationConfig, ModelsConfig],
                                            tiny_faceid: dict[str, Path]) -> None:
    generation, models = faceid_configs
    offline = dataclasses.replace(generation, cache_dir=str(tmp_path / "empty"))
    with pytest.raises(ModelMissingError, match=r"CLIP-ViT-H.*models\.image_encoder_path"):
        FaceIDBackend.load(offline, dataclasses.replace(models, image_encoder_path=""))
    folder = tmp_path / "faceid-without-file"
    folder.mkdir()
    shutil.copy(tiny_faceid["adapter"], folder / "other-name.bin")
    with pytest.raises(ModelMissingError, match=r"ip-adapter-faceid-plusv2_sdxl\.bin"):
        FaceIDBackend.load(generation, dataclasses.replace(models, faceid_path=str(folder)))
