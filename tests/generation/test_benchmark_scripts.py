"""The benchmark scripts of issues 14 and 16 on what this machine can run.

* benchmarks/full_size_editors.py builds FLUX.2 [klein] 4B and Qwen-Image-Edit-2511 from their public config
  numbers; on the meta device (nothing allocated) the parameter counts must match the published model sizes,
  which a wrong layer count, width or vocabulary would miss by far more than the tolerance.
* benchmarks/eval_likeness.py runs end to end on the tiny InstantID and FLUX.2 [klein] models and the tiny
  OpenCV / insightface ONNX models: the rows, the summary and the contact sheet are checked, and the scorer is
  checked against an embedding computed here (numbers from random generators mean nothing).
* benchmarks/bench_check_backends.py times `closeup check`'s per-photo work on the dlib and insightface backends.
"""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import tiny_onnx
import tiny_opencv_onnx

from generation.faces.align import arcface_crop
from generation.models import EDITOR_MODELS


def test_full_size_editors_have_the_published_sizes() -> None:
    editors = importlib.import_module("full_size_editors")
    assert list(editors.EDITORS) == list(EDITOR_MODELS)  # every editor closeup runs can be benchmarked
    klein = editors.klein_parts(torch.bfloat16, "meta")
    qwen = editors.qwen_parts(torch.bfloat16, "meta")
    measured = {"klein.transformer": klein["transformer"], "klein.text_encoder": klein["text_encoder"],
                "qwen.transformer": qwen["transformer"], "qwen.text_encoder": qwen["text_encoder"]}
    for name, module in measured.items():
        assert editors.billions(module) == pytest.approx(editors.PUBLISHED_BILLIONS[name], rel=0.03), name
        assert next(module.parameters()).dtype == torch.bfloat16  # built in the target precision
    # The transformer reads what the text encoder and the VAE give it.
    assert klein["transformer"].config.joint_attention_dim == 3 * klein["text_encoder"].config.hidden_size
    assert klein["transformer"].config.in_channels == klein["vae"].config.latent_channels * 4  # 2×2 patches
    assert qwen["transformer"].config.joint_attention_dim == qwen["text_encoder"].config.text_config.hidden_size
    assert qwen["transformer"].config.in_channels == qwen["vae"].config.z_dim * 4


@pytest.fixture()
def eval_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_instantid: dict[str, Path],
             tiny_flux2_klein: Path) -> Path:
    import generation.faces.opencv_backend as opencv_backend

    for key in list(__import__("os").environ):
        if key.startswith("CLOSEUP_"):
            monkeypatch.delenv(key)
    for name in ("DETECTOR", "RECOGNIZER"):  # the tiny files are below the real ones' size floor
        model = getattr(opencv_backend, name)
        monkeypatch.setattr(opencv_backend, name, opencv_backend.ZooModel(model.file, model.url, model.licence, 100))
    opencv = tiny_opencv_onnx.build_models(tmp_path / "opencv")
    insightface = tmp_path / "insightface"
    for pack in ("antelopev2", "buffalo_l"):
        tiny_onnx.make_pack(insightface / "models" / pack, pack=pack)
    (tmp_path / "closeup.toml").write_text(f"""
[generation]
offline = true
device = "cpu"
width = 64
height = 64
steps = 2
[faces]
backend = "opencv"
opencv_root = "{opencv}"
opencv_download = false
insightface_root = "{insightface}"
insightface_download = false
[models]
base_path = "{tiny_instantid['base']}"
instantid_path = "{tiny_instantid['identitynet'].parent}"
flux2_klein_path = "{tiny_flux2_klein}"
""")
    square = np.zeros((320, 320, 3), np.uint8)  # one 64-px "face" on the detectors' 32-px grid
    square[128:192, 128:192] = 255
    Image.fromarray(square).save(tmp_path / "square.png")
    Image.new("RGB", (320, 320)).save(tmp_path / "blank.png")
    return tmp_path


def _evaluate(env: Path, *extra: str) -> int:
    eval_likeness = importlib.import_module("eval_likeness")
    return eval_likeness.main(["--config", str(env / "closeup.toml"), "--prompts", "a studio portrait",
                               "--seeds", "1", "--out", str(env / "out"), *extra])


def test_eval_likeness_end_to_end_on_tiny_models(eval_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _evaluate(eval_env, "--photos", str(eval_env / "square.png"), "--backends", "instantid",
                     "edit:flux2-klein", "--framings", "close-up", "full-body")
    printed = capsys.readouterr()
    assert code == 0, printed.err
    with (eval_env / "out" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # 2 backends × 2 framings × 1 prompt × 1 photo × 1 seed, each scored without and with the re-render pass
    assert len(rows) == 8
    assert {(r["backend"], r["framing"], r["rerender"]) for r in rows} == {
        (b, f, r) for b in ("instantid", "edit:flux2-klein") for f in ("close-up", "full-body") for r in ("0", "1")}
    assert set(rows[0]) >= {"sface", "arcface", "refined", "seed", "photo", "prompt"}
    # InstantID puts the face on the framing keypoints: on a 64-px canvas it is small, so the pass re-renders it
    # whenever it is on, and never when it is off.
    instantid = [r for r in rows if r["backend"] == "instantid"]
    assert {(r["rerender"], r["refined"]) for r in instantid} == {("0", "0"), ("1", "1")}
    summary = (eval_env / "out" / "summary.md").read_text()
    assert summary in printed.out
    assert summary.count("\n") == 2 + 8 // 2 * 2  # header, rule, one line per backend × framing × re-render
    assert "sface cosine" in summary and "arcface cosine" in summary
    sheet = Image.open(eval_env / "out" / "contact-sheet.png")
    assert sheet.size == (3 * 192, 4 * (192 + 24))  # one line per portrait: reference, plain, re-rendered


def test_the_scorer_compares_with_the_reference_photo_s_own_embedding(eval_env: Path) -> None:
    """The SFace column is the cosine to the recogniser's embedding of the reference photo: the photo scored
    against itself is 1, and the value matches an embedding computed here from OpenCV's aligned crop."""
    eval_likeness = importlib.import_module("eval_likeness")
    from generation.config import load_config
    from generation.images import load_image_file

    config = load_config(eval_env / "closeup.toml")
    photo = load_image_file(eval_env / "square.png")
    sface, arcface = eval_likeness.make_scorers(config, {"square.png": photo})
    assert (sface.name, arcface.name) == ("sface", "arcface")
    assert sface.cosine(photo.pixels, "square.png") == pytest.approx(1.0, abs=1e-5)
    moved = np.zeros_like(photo.pixels)
    moved[64:96, 192:224] = 255  # one detector cell elsewhere, with a dark stripe: still bright enough to be
    moved[64:96, 200:204] = 0  # found, but a different crop, so a different embedding
    face = sface.analyzer.analyze(moved)[0]
    matrix = tiny_opencv_onnx.recognizer_matrix()

    def embed(pixels: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crop = arcface_crop(pixels, landmarks).astype(np.float32).transpose(2, 0, 1)  # RGB, raw 0-255
        return crop.reshape(3, 14, 8, 14, 8).mean(axis=(2, 4)).reshape(-1) @ matrix

    reference = sface.analyzer.analyze(photo.pixels)[0]
    a, b = embed(photo.pixels, reference.landmarks5), embed(moved, face.landmarks5)
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert expected < 0.98
    assert sface.cosine(moved, "square.png") == pytest.approx(expected, abs=1e-4)
    assert sface.cosine(np.zeros_like(photo.pixels), "square.png") is None  # no face: a miss, not a zero


def test_bad_photos_and_missing_models_are_clear(eval_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _evaluate(eval_env, "--photos", str(eval_env / "blank.png"), "--backends", "edit:flux2-klein",
                     "--framings", "close-up")
    err = capsys.readouterr().err
    assert code == 2 and "no face" in err.lower() and not (eval_env / "out").exists()
    text = eval_env / "note.jpg"
    text.write_text("not a photo")
    assert _evaluate(eval_env, "--photos", str(text)) == 3
    assert "JPEG, PNG" in capsys.readouterr().err
    for model in (eval_env / "opencv").iterdir():
        model.unlink()
    assert _evaluate(eval_env, "--photos", str(eval_env / "square.png"), "--backends", "edit:flux2-klein") == 4
    assert "opencv" in capsys.readouterr().err.lower()


def test_bench_check_backends_runs_on_the_tiny_packs() -> None:
    """The issue-16 figures' script: both backends timed on both photos, the package and the footprint named."""
    import subprocess

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_check_backends.py"
    done = subprocess.run([sys.executable, str(script), "--runs", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in done.stdout.splitlines()
            if line.split()[:1] in (["dlib"], ["insightface"]) and len(line.split()) == 5}
    assert set(rows) == {(backend, photo) for backend in ("dlib", "insightface")
                         for photo in ("portrait-1024", "square-800x600")}
    assert all(float(value) > 0 for values in rows.values() for value in values)
    assert rows[("dlib", "portrait-1024")][2] == "1.00"
    assert "insightface package: 2." in done.stdout and "opencv-python " in done.stdout


def test_gpu_figures_script_says_what_to_do_without_wheels_or_a_mode(tmp_path: Path) -> None:
    """benchmarks/gpu_figures.sh runs on a lent GPU machine that cannot download: without the carried wheels
    it stops before doing anything, naming the step that makes them."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[2]
    copy = tmp_path / "repo"
    (copy / "benchmarks").mkdir(parents=True)
    shutil.copy(root / "benchmarks" / "gpu_figures.sh", copy / "benchmarks")
    script = str(copy / "benchmarks" / "gpu_figures.sh")
    usage = subprocess.run(["bash", script], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "fetch | run" in usage.stderr
    no_wheels = subprocess.run(["bash", script, "run"], capture_output=True, text=True, timeout=30)
    assert no_wheels.returncode == 2 and "gpu_figures.sh fetch" in no_wheels.stderr
