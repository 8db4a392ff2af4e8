"""Choosing the face backend from config; every root here is a tmp_path, never ~/.insightface."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import pytest
from tiny_onnx import make_pack

from generation.config import FacesConfig
from generation.faces.dlib_backend import DlibAnalyzer
from generation.faces.factory import create_analyzer
from generation.faces.insightface_backend import InsightFaceAnalyzer
from generation.faces.types import FaceModelMissingError

FACTORY_LOGGER = "generation.faces.factory"


def faces_config(root: Path, **overrides: object) -> FacesConfig:
    return dataclasses.replace(FacesConfig(), insightface_root=str(root), **overrides)  # type: ignore[arg-type]


def factory_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == FACTORY_LOGGER and r.levelno == logging.INFO]


@pytest.fixture(autouse=True)
def no_real_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a stray "~" in a config resolves inside the test's folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_auto_with_empty_root_uses_dlib_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FACTORY_LOGGER)
    root = tmp_path / "insightface"
    analyzer = create_analyzer(faces_config(root, backend="auto"))
    assert isinstance(analyzer, DlibAnalyzer)
    assert analyzer.name == "dlib"
    messages = factory_messages(caplog)
    assert len(messages) == 1
    assert "dlib" in messages[0]
    assert "no insightface pack 'buffalo_l'" in messages[0]
    assert str(root) in messages[0]
    assert not root.exists()  # auto never downloads or creates anything


def test_auto_passes_dlib_settings_on(tmp_path: Path) -> None:
    analyzer = create_analyzer(faces_config(tmp_path, detect_max_side=640, dlib_upsample_retry=False))
    assert isinstance(analyzer, DlibAnalyzer)
    assert analyzer.detect_max_side == 640
    assert analyzer.upsample_retry is False


def test_auto_with_a_pack_on_disk_uses_insightface(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FACTORY_LOGGER)
    pack_dir = make_pack(tmp_path / "models" / "buffalo_l")
    analyzer = create_analyzer(faces_config(tmp_path, backend="auto", insightface_download=False))
    assert isinstance(analyzer, InsightFaceAnalyzer)
    assert analyzer.pack == "buffalo_l"
    assert analyzer.folder == pack_dir
    messages = factory_messages(caplog)
    assert len(messages) == 1
    assert "insightface" in messages[0]
    assert "buffalo_l" in messages[0]
    assert str(pack_dir) in messages[0]


def test_auto_finds_the_nested_antelopev2_layout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FACTORY_LOGGER)
    pack_dir = make_pack(tmp_path / "models" / "antelopev2" / "antelopev2", pack="antelopev2")
    analyzer = create_analyzer(faces_config(tmp_path, insightface_pack="antelopev2", insightface_download=False))
    assert isinstance(analyzer, InsightFaceAnalyzer)
    assert analyzer.folder == pack_dir
    assert "antelopev2" in factory_messages(caplog)[0]


def test_auto_looks_only_for_the_configured_pack(tmp_path: Path) -> None:
    make_pack(tmp_path / "models" / "antelopev2", pack="antelopev2")
    analyzer = create_analyzer(faces_config(tmp_path, insightface_pack="buffalo_l"))
    assert isinstance(analyzer, DlibAnalyzer)


@pytest.mark.parametrize("module", ["insightface", "onnxruntime", "skimage"])
def test_auto_without_the_insightface_packages_uses_dlib_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    caplog.set_level(logging.INFO, logger=FACTORY_LOGGER)
    make_pack(tmp_path / "models" / "buffalo_l")
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` fail, as when it is not installed
    analyzer = create_analyzer(faces_config(tmp_path))
    assert isinstance(analyzer, DlibAnalyzer)
    messages = factory_messages(caplog)
    assert len(messages) == 1
    assert "dlib" in messages[0]
    assert f"{module} not installed" in messages[0]


@pytest.mark.parametrize("module", ["insightface", "onnxruntime", "skimage"])
def test_explicit_insightface_without_its_packages_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    make_pack(tmp_path / "models" / "buffalo_l")
    for name in [n for n in sys.modules if n == "insightface" or n.startswith("insightface.")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, so a missing dependency shows
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(FaceModelMissingError) as info:
        create_analyzer(faces_config(tmp_path, backend="insightface", insightface_download=False))
    message = str(info.value)
    assert "pip install 'closeup[insightface]'" in message
    assert "the insightface package" in message and (module == "insightface" or f"'{module}'" in message)


def test_explicit_insightface_without_pack_names_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "insightface"
    with pytest.raises(FaceModelMissingError) as info:
        create_analyzer(faces_config(root, backend="insightface", insightface_download=False))
    message = str(info.value)
    assert str(root / "models" / "buffalo_l") in message
    assert "buffalo_l" in message
    assert "download disabled" in message


def test_explicit_insightface_with_pack(tmp_path: Path) -> None:
    make_pack(tmp_path / "models" / "buffalo_l")
    analyzer = create_analyzer(faces_config(tmp_path, backend="insightface", insightface_download=False))
    assert isinstance(analyzer, InsightFaceAnalyzer)


def test_explicit_dlib(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FACTORY_LOGGER)
    make_pack(tmp_path / "models" / "buffalo_l")  # present, but not asked for
    analyzer = create_analyzer(faces_config(tmp_path, backend="dlib"))
    assert isinstance(analyzer, DlibAnalyzer)
    assert factory_messages(caplog) == []  # no "auto" decision to report


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    # FacesConfig itself does not validate (load_config does), so the factory guards as well.
    with pytest.raises(FaceModelMissingError, match="gpu"):
        create_analyzer(faces_config(tmp_path, backend="gpu"))
