"""Tiny InstantID checkpoints in the real layouts, built once per session, and a loaded backend."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "pipelines"))

import tiny_sdxl

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
