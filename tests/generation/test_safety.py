"""The output safety checker, loaded by the production code from a tiny model in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safety_model import build_safety_checker

from generation.config import GenerationConfig, ModelsConfig
from generation.models import ModelMissingError
from generation.safety import SafetyChecker

IMAGES = [np.full((64, 64, 3), value, np.uint8) for value in (0, 128, 255)]


def _load(folder: Path) -> SafetyChecker:
    return SafetyChecker.load(GenerationConfig(device="cpu", offline=True), ModelsConfig(
        safety_checker_path=str(folder)))


def test_flags_every_image_when_the_thresholds_say_so(tmp_path: Path) -> None:
    checker = _load(build_safety_checker(tmp_path / "strict", flag_everything=True))
    assert checker.flagged(IMAGES) == [True, True, True]


def test_passes_every_image_when_the_thresholds_say_so(tmp_path: Path) -> None:
    checker = _load(build_safety_checker(tmp_path / "lenient", flag_everything=False))
    assert checker.flagged(IMAGES) == [False, False, False]
    assert checker.flagged([]) == []


def test_the_callers_images_are_never_modified(tmp_path: Path) -> None:
    checker = _load(build_safety_checker(tmp_path / "strict", flag_everything=True))
    image = np.full((32, 32, 3), 200, np.uint8)
    checker.flagged([image])
    assert int(image.min()) == 200


def test_a_missing_model_says_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="safety"):
        _load(tmp_path / "nowhere")
