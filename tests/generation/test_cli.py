"""`closeup check`, run through its real entry point: in-process via main() and once as the installed script.

The face backend is pinned to dlib through the environment (or --backend) and the insightface
root points into tmp_path, so a developer's own ~/.insightface cannot change the results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from generation.cli import main

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
OBAMA = FACES / "obama.jpg"  # pass (or warn): one well-lit frontal face
ASTRONAUT = FACES / "astronaut.png"  # pass or warn (small image)
CAMERA = FACES / "camera.png"  # no face: fail
PARTIAL = FACES / "obama_partial_face.jpg"  # side of the head cut off: fail
PASS_OR_WARN = {"pass": 0, "warn": 1}


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited settings, no real home folder, dlib unless a test says otherwise, no downloads."""
    for var in list(os.environ):
        if var.startswith("CLOSEUP_") or var == "DISCORD_TOKEN":
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOSEUP_FACES__INSIGHTFACE_ROOT", str(tmp_path / "insightface"))
    monkeypatch.setenv("CLOSEUP_FACES__INSIGHTFACE_DOWNLOAD", "false")
    monkeypatch.setenv("CLOSEUP_FACES__BACKEND", "dlib")


@pytest.fixture
def not_an_image(tmp_path: Path) -> Path:
    path = tmp_path / "holiday.jpg"
    path.write_text("this is a text file, not a photo\n", encoding="utf-8")
    return path


def run_check(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, object, str]:
    code, out, err = run_check(capsys, "--json", *args)
    return code, json.loads(out), err


# --------------------------------------------------------------------------- exit codes and text output


@pytest.mark.parametrize("photo", [OBAMA, ASTRONAUT], ids=lambda p: p.name)
def test_good_photo_passes_or_warns(capsys: pytest.CaptureFixture[str], photo: Path) -> None:
    code, out, err = run_check(capsys, photo)
    assert code in (0, 1)
    verdict = "PASS" if code == 0 else "WARN"
    assert out.startswith(f"{photo}: {verdict}")
    assert "backend dlib" in out
    assert "face_found" in out and "resolution" in out
    assert "Traceback" not in err


def test_no_face_fails_with_advice(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_check(capsys, CAMERA)
    assert code == 2
    assert f"{CAMERA}: FAIL" in out
    assert "0 face(s)" in out
    assert "couldn't find a face" in out


def test_cut_off_face_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_check(capsys, PARTIAL)
    assert code == 2
    assert f"{PARTIAL}: FAIL" in out


def test_unreadable_file_is_exit_3_with_a_friendly_message(
    capsys: pytest.CaptureFixture[str], not_an_image: Path
) -> None:
    code, out, err = run_check(capsys, not_an_image)
    assert code == 3
    assert f"{not_an_image}: UNREADABLE" in out
    assert "text file, not a photo" in out
    assert "Traceback" not in out + err


def test_missing_file_is_exit_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    code, out, err = run_check(capsys, missing)
    assert code == 3
    assert "UNREADABLE" in out
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("photos", "expected"),
    [
        ((OBAMA, CAMERA), 2),
        ((OBAMA, "not_an_image"), 3),
        (("not_an_image", CAMERA, OBAMA), 3),
    ],
    ids=["good+noface", "good+unreadable", "unreadable+noface+good"],
)
def test_several_photos_give_the_worst_code(
    capsys: pytest.CaptureFixture[str], not_an_image: Path, photos: tuple[object, ...], expected: int
) -> None:
    paths = [not_an_image if p == "not_an_image" else p for p in photos]
    code, out, _ = run_check(capsys, *paths)
    assert code == expected
    for path in paths:
        assert f"{path}: " in out  # every photo is reported, even after a bad one


def test_several_good_photos_give_the_worse_of_pass_and_warn(capsys: pytest.CaptureFixture[str]) -> None:
    code, reports, _ = run_json(capsys, OBAMA, ASTRONAUT)
    assert isinstance(reports, list)
    assert code == max(PASS_OR_WARN[r["verdict"]] for r in reports)


# --------------------------------------------------------------------------- --json


def test_json_single_photo_is_an_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = run_json(capsys, OBAMA)
    assert isinstance(report, dict)
    assert report["photo"] == str(OBAMA)
    assert report["verdict"] in PASS_OR_WARN
    assert code == PASS_OR_WARN[report["verdict"]]
    assert isinstance(report["messages"], list)
    assert report["backend"] == "dlib"
    assert report["faces_found"] == 1
    names = [check["name"] for check in report["checks"]]
    assert "face_found" in names and "blur" in names
    for check in report["checks"]:
        assert {"name", "tier", "value", "detail"} <= set(check)
    assert report["crop"] is not None


def test_json_several_photos_is_a_list_in_order(capsys: pytest.CaptureFixture[str], not_an_image: Path) -> None:
    code, reports, _ = run_json(capsys, OBAMA, CAMERA, not_an_image)
    assert code == 3
    assert isinstance(reports, list)
    assert [r["photo"] for r in reports] == [str(OBAMA), str(CAMERA), str(not_an_image)]
    assert reports[0]["verdict"] in PASS_OR_WARN
    assert reports[1]["verdict"] == "fail"
    assert reports[1]["faces_found"] == 0
    assert reports[1]["messages"]
    assert reports[1]["checks"]
    assert reports[2]["verdict"] == "unreadable"
    assert reports[2]["error"] == "unsupported_format"
    assert "text file" in reports[2]["message"]


def test_json_output_is_only_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_check(capsys, "--json", CAMERA)
    assert json.loads(out)["verdict"] == "fail"  # no text report mixed into stdout


# --------------------------------------------------------------------------- --annotate and --crop


def test_annotate_writes_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "preview.png"
    code, report, _ = run_json(capsys, "--annotate", out_path, OBAMA)
    assert code in (0, 1)
    assert report["preview"] == str(out_path)
    with Image.open(out_path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(out_path) as image:
        image.load()
        assert image.width > 100 and image.height > 100


def test_annotate_also_for_a_photo_without_a_face(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "preview.png"
    code, _, _ = run_check(capsys, "--annotate", out_path, CAMERA)
    assert code == 2
    with Image.open(out_path) as image:
        assert image.format == "PNG"


def test_annotate_several_photos_writes_one_file_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, not_an_image: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _, reports, _ = run_json(capsys, "--annotate", out_dir / "preview.png", OBAMA, ASTRONAUT, not_an_image)
    expected = {out_dir / "preview-obama.png", out_dir / "preview-astronaut.png"}
    assert set(out_dir.iterdir()) == expected  # nothing for the unreadable file, no bare preview.png
    assert {reports[0]["preview"], reports[1]["preview"]} == {str(p) for p in expected}
    sizes = set()
    for path in expected:
        with Image.open(path) as image:
            assert image.format == "PNG"
            sizes.add(image.size)
    assert len(sizes) == 2  # really two different previews


def test_annotate_photos_with_the_same_name_do_not_overwrite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = tmp_path / "a" / "me.jpg", tmp_path / "b" / "me.png"
    first.parent.mkdir()
    second.parent.mkdir()
    shutil.copy(OBAMA, first)
    shutil.copy(ASTRONAUT, second)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _, reports, _ = run_json(capsys, "--annotate", out_dir / "p.png", first, second)
    previews = [Path(r["preview"]) for r in reports]
    assert len(set(previews)) == 2
    assert sorted(out_dir.iterdir()) == sorted(previews)
    sizes = set()
    for path in previews:
        with Image.open(path) as image:
            sizes.add(image.size)
    assert len(sizes) == 2


def test_crop_writes_a_square_jpeg_of_at_most_1024(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "crop.jpg"
    code, report, _ = run_json(capsys, "--crop", out_path, OBAMA)
    assert code in (0, 1)
    assert report["crop_file"] == str(out_path)
    with Image.open(out_path) as image:
        assert image.format == "JPEG"
        assert image.width == image.height
        assert 256 <= image.width <= 1024


def test_crop_several_photos(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _, reports, _ = run_json(capsys, "--crop", out_dir / "crop.jpg", OBAMA, ASTRONAUT, CAMERA)
    # no face, no crop: the camera photo writes nothing
    assert set(out_dir.iterdir()) == {out_dir / "crop-obama.jpg", out_dir / "crop-astronaut.jpg"}
    assert "crop_file" not in reports[2]
    for path in out_dir.iterdir():
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.width == image.height <= 1024


def test_crop_as_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "crop.png"
    run_check(capsys, "--crop", out_path, OBAMA)
    with Image.open(out_path) as image:
        assert image.format == "PNG"
        assert image.width == image.height <= 1024


# --------------------------------------------------------------------------- config and backend


def test_config_with_a_bad_key_is_exit_3_naming_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "closeup.toml"
    config.write_text('[faces]\nbacknd = "dlib"\n', encoding="utf-8")
    code = main(["--config", str(config), "check", str(OBAMA)])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert "config error" in err
    assert "faces.backnd" in err
    assert "faces.backend" in err  # the suggestion
    assert "Traceback" not in err


def test_config_file_missing_is_exit_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["--config", str(tmp_path / "nope.toml"), "check", str(OBAMA)])
    assert code == 3
    assert "nope.toml" in capsys.readouterr().err


def test_config_file_is_used(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "closeup.toml"
    config.write_text('[logging]\nformat = "json"\n[images]\nmax_bytes = 2048\n', encoding="utf-8")
    code = main(["--config", str(config), "check", str(OBAMA)])
    out, _ = capsys.readouterr()
    assert code == 3  # obama.jpg is larger than 2 KiB
    assert "UNREADABLE" in out


def test_bad_environment_value_is_exit_3(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSEUP_FACES__BACKEND", "gpu")
    code = main(["check", str(OBAMA)])
    assert code == 3
    assert "faces.backend" in capsys.readouterr().err


def test_backend_dlib_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSEUP_FACES__BACKEND")
    code, report, _ = run_json(capsys, "--backend", "dlib", OBAMA)
    assert code in (0, 1)
    assert report["backend"] == "dlib"


def test_backend_option_beats_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # insightface with no pack under the (empty) tmp root and downloads off cannot start ...
    monkeypatch.setenv("CLOSEUP_FACES__BACKEND", "insightface")
    code, out, err = run_check(capsys, OBAMA)
    assert code == 3
    assert out == ""
    assert str(tmp_path / "insightface" / "models" / "buffalo_l") in err
    assert "Traceback" not in err
    # ... and --backend dlib overrides it.
    code, report, _ = run_json(capsys, "--backend", "dlib", OBAMA)
    assert code in (0, 1)
    assert report["backend"] == "dlib"


def test_backend_auto_without_a_pack_falls_back_to_dlib(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSEUP_FACES__BACKEND", "auto")
    code, report, err = run_json(capsys, OBAMA)
    assert code in (0, 1)
    assert report["backend"] == "dlib"
    assert "using bundled dlib models" in err  # the INFO log line says which and why


def test_usage_errors_exit_through_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--backend", "gpu", str(OBAMA)])
    assert info.value.code != 0
    assert "invalid choice" in capsys.readouterr().err


# --------------------------------------------------------------------------- the installed console script


def console_script() -> Path | None:
    beside = Path(sys.executable).parent / ("closeup.exe" if os.name == "nt" else "closeup")
    if beside.is_file():
        return beside
    found = shutil.which("closeup")
    return Path(found) if found else None


def test_installed_console_script(tmp_path: Path, not_an_image: Path) -> None:
    script = console_script()
    if script is None:
        pytest.skip("the closeup console script is not installed (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEUP_") and k != "DISCORD_TOKEN"}
    env.update(
        HOME=str(tmp_path / "home"),
        CLOSEUP_FACES__BACKEND="dlib",
        CLOSEUP_FACES__INSIGHTFACE_ROOT=str(tmp_path / "insightface"),
        CLOSEUP_FACES__INSIGHTFACE_DOWNLOAD="false",
    )
    preview = tmp_path / "preview.png"
    result = subprocess.run(
        [str(script), "check", "--json", "--annotate", str(preview), str(OBAMA), str(CAMERA), str(not_an_image)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 3, result.stderr
    reports = json.loads(result.stdout)
    assert [r["verdict"] for r in reports][1:] == ["fail", "unreadable"]
    assert reports[0]["verdict"] in PASS_OR_WARN
    assert reports[0]["backend"] == "dlib"
    with Image.open(tmp_path / "preview-obama.png") as image:
        assert image.format == "PNG"


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"closeup {version('closeup')}"


@pytest.mark.parametrize("count", ["0", "5", "two"])
def test_image_count_out_of_range_is_refused_when_the_command_line_is_read(
    count: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import generation.cli as cli

    monkeypatch.setattr(cli, "cmd_generate", lambda *a: pytest.fail("models would load"))
    with pytest.raises(SystemExit) as stop:
        main(["generate", str(OBAMA), "--n", count])
    assert stop.value.code == 64
    assert "--n" in capsys.readouterr().err


def test_a_closeup_variable_that_sets_nothing_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLOSEUP_FACES_BACKEND", "insightface")  # one underscore: silently ignored before
    assert main(["check", str(OBAMA)]) in PASS_OR_WARN.values()
    warning = [line for line in capsys.readouterr().err.splitlines() if "CLOSEUP_FACES_BACKEND" in line]
    assert len(warning) == 1 and "WARNING" in warning[0] and "did you mean CLOSEUP_FACES__BACKEND?" in warning[0]
