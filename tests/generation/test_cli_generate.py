"""`closeup generate` end to end on tiny models: the real loading code, engine and outputs.

The reference photo is a bright square, the "face" the tiny SCRFD-shaped detector finds (see
testkit/tiny_onnx.py); the tiny SDXL draws noise, so no output has a face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_onnx
from PIL import Image

from generation.cli import main

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture
def tiny_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_instantid: dict[str, Path]) -> Path:
    insightface = tmp_path / "insightface"
    tiny_onnx.make_pack(insightface / "models" / "antelopev2", pack="antelopev2")
    for key in list(__import__("os").environ):
        if key.startswith("CLOSEUP_"):
            monkeypatch.delenv(key)
    settings = {
        "FACES__INSIGHTFACE_ROOT": str(insightface), "FACES__INSIGHTFACE_DOWNLOAD": "false",
        "GENERATION__OFFLINE": "true", "GENERATION__DEVICE": "cpu", "GENERATION__WIDTH": "64",
        "GENERATION__HEIGHT": "64", "GENERATION__STEPS": "2", "GENERATION__RETRY_ATTEMPTS": "0",
        "MODELS__BASE_PATH": str(tiny_instantid["base"]),
        "MODELS__INSTANTID_PATH": str(tiny_instantid["identitynet"].parent),
    }
    for key, value in settings.items():
        monkeypatch.setenv(f"CLOSEUP_{key}", value)
    square = np.zeros((600, 800, 3), np.uint8)
    square[200:400, 300:500] = 255
    Image.fromarray(square).save(tmp_path / "square.png")
    return tmp_path


def test_generate_writes_portraits_and_a_contact_sheet(tiny_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tiny_env / "out"
    code = main(["generate", str(tiny_env / "square.png"), "--prompt", "a portrait", "--n", "2", "--seed", "4",
                 "--out", str(out), "--quiet"])
    printed = capsys.readouterr()
    assert code == 1, printed.err  # finished, but random weights draw no face, so below the likeness target
    portraits = sorted(out.glob("portrait-*.png"))
    assert len(portraits) == 2 and all(Image.open(p).size == (64, 64) for p in portraits)
    assert {p.name.split("seed")[1] for p in portraits} == {"4.png", "5.png"}
    assert "no face found" in printed.out
    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.width > 64 * 2
    assert "Likeness falls back" in printed.err  # dlib sees no face in a white square


def test_reference_without_a_face_is_refused(tiny_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = tiny_env / "blank.png"
    Image.new("RGB", (300, 300)).save(blank)
    code = main(["generate", str(blank), "--out", str(tiny_env / "out"), "--quiet"])
    assert code == 2
    assert "face" in capsys.readouterr().err.lower()
    assert not (tiny_env / "out").exists()


def test_missing_models_exit_4_with_the_setting(tiny_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLOSEUP_MODELS__BASE_PATH", str(tiny_env / "no-such-folder"))
    code = main(["generate", str(tiny_env / "square.png"), "--out", str(tiny_env / "out"), "--quiet"])
    assert code == 4
    assert "models.base_path" in capsys.readouterr().err


def test_unreadable_photo_and_refused_prompt(tiny_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tiny_env / "note.jpg"
    text.write_text("not a photo")
    assert main(["generate", str(text), "--quiet"]) == 3
    assert "JPEG, PNG, WebP or HEIC" in capsys.readouterr().err
    code = main(["generate", str(tiny_env / "square.png"), "--prompt", "nude", "--out", str(tiny_env / "o"),
                 "--quiet"])
    assert code == 2


def test_unknown_style_is_a_usage_error(tiny_env: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(tiny_env / "square.png"), "--style", "vaporwave"])
    assert exit_info.value.code == 64


def test_faceid_backend_from_config(tiny_env: Path, monkeypatch: pytest.MonkeyPatch, tiny_faceid: dict[str, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    tiny_onnx.make_pack(tiny_env / "insightface" / "models" / "buffalo_l", pack="buffalo_l")
    monkeypatch.setenv("CLOSEUP_GENERATION__BACKEND", "faceid")
    monkeypatch.setenv("CLOSEUP_MODELS__FACEID_PATH", str(tiny_faceid["adapter"].parent))
    monkeypatch.setenv("CLOSEUP_MODELS__IMAGE_ENCODER_PATH", str(tiny_faceid["image_encoder"]))
    out = tiny_env / "faceid-out"
    code = main(["generate", str(tiny_env / "square.png"), "--seed", "9", "--out", str(out), "--quiet"])
    assert code == 1, capsys.readouterr().err
    assert (out / "portrait-1-seed9.png").exists() and (out / "contact-sheet.png").exists()
