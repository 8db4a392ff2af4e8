"""Tiny InstantID checkpoints in the real layouts, built once per session, and a loaded backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_sdxl
import torch

from generation.config import GenerationConfig, ModelsConfig

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_instantid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_sdxl.build_instantid(tmp_path_factory.mktemp("tiny-instantid"))


@pytest.fixture(scope="session")
def tiny_configs(tiny_instantid: dict[str, Path]) -> tuple[GenerationConfig, ModelsConfig]:
    generation = GenerationConfig(offline=True, width=64, height=64, steps=4, device="cpu")
    models = ModelsConfig(base_path=str(tiny_instantid["base"]),
                          instantid_path=str(tiny_instantid["identitynet"].parent))
    return generation, models


@pytest.fixture(scope="session")
def instantid_backend(tiny_configs: tuple[GenerationConfig, ModelsConfig]):
    from generation.pipelines.instantid import InstantIDBackend

    return InstantIDBackend.load(*tiny_configs)


@pytest.fixture(scope="session")
def tiny_faceid(tmp_path_factory: pytest.TempPathFactory, tiny_instantid: dict[str, Path]) -> dict[str, Path]:
    paths = tiny_sdxl.build_faceid(tmp_path_factory.mktemp("tiny-faceid"))
    return {**paths, "base": tiny_instantid["base"]}


@pytest.fixture(scope="session")
def faceid_configs(tiny_faceid: dict[str, Path]) -> tuple[GenerationConfig, ModelsConfig]:
    generation = GenerationConfig(offline=True, width=64, height=64, steps=3, device="cpu", backend="faceid")
    models = ModelsConfig(base_path=str(tiny_faceid["base"]), faceid_path=str(tiny_faceid["adapter"].parent),
                          image_encoder_path=str(tiny_faceid["image_encoder"]))
    return generation, models


@pytest.fixture(scope="session")
def faceid_backend(faceid_configs: tuple[GenerationConfig, ModelsConfig]):
    from generation.pipelines.faceid import FaceIDBackend

    return FaceIDBackend.load(*faceid_configs)


@pytest.fixture(scope="session")
def tiny_flux2_klein(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tiny_editors

    return tiny_editors.build_flux2_klein(tmp_path_factory.mktemp("tiny-flux2-klein"))


@pytest.fixture(scope="session")
def edit_configs(tiny_flux2_klein: Path) -> tuple[GenerationConfig, ModelsConfig]:
    generation = GenerationConfig(offline=True, width=64, height=64, device="cpu", backend="edit")
    return generation, ModelsConfig(flux2_klein_path=str(tiny_flux2_klein))


@pytest.fixture(scope="session")
def edit_backend(edit_configs: tuple[GenerationConfig, ModelsConfig]):
    from generation.pipelines.edit import EditBackend

    return EditBackend.load(*edit_configs)
