"""The licence verdict: each part of the configured stack with its licence, whether a host may use it
commercially, and the setting that refuses to start a stack that is not cleared."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from generation.config import Config, FacesConfig, GenerationConfig, ModelsConfig, QueueConfig, StoreConfig
from generation.doctor import run_doctor
from generation.licences import MODEL_TERMS, Part, refusal, stack, verdict

PHOTO = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "obama.jpg"


def config_in(tmp_path: Path, **generation: object) -> Config:
    return Config(faces=FacesConfig(insightface_root=str(tmp_path / "if"), insightface_download=False),
                  generation=GenerationConfig(cache_dir=str(tmp_path / "hf"), **generation),  # type: ignore[arg-type]
                  queue=QueueConfig(path=str(tmp_path / "q.db")), store=StoreConfig(data_dir=str(tmp_path / "d")))


def rows(config: Config) -> dict[str, object]:
    return {check.name: check for check in run_doctor(config, online=False) if check.name.startswith("licence")}


def test_the_default_stack_lists_every_part_and_says_why_it_is_not_cleared(tmp_path: Path) -> None:
    found = rows(config_in(tmp_path))
    names = " | ".join(found)
    for part in ("SDXL base model", "InstantID", "insightface antelopev2", "dlib face models"):
        assert part in names, names
    assert all(check.status == "ok" for name, check in found.items() if name != "licence verdict")
    verdict_row = found["licence verdict"]
    assert verdict_row.status == "warn"
    assert verdict_row.detail.startswith("commercial use: not allowed, because of")
    for blocker in ("InstantID", "insightface", "dlib"):
        assert blocker in verdict_row.detail
    assert "SDXL" not in verdict_row.detail.split("because of", 1)[1]  # RAIL++-M allows commercial use


def test_faceid_names_its_own_parts(tmp_path: Path) -> None:
    parts = {part.name: part for part in stack(config_in(tmp_path, backend="faceid"))}
    encoder = next(part for name, part in parts.items() if "CLIP" in name)
    faceid = next(part for name, part in parts.items() if "FaceID" in name)
    assert encoder.terms.commercial and encoder.terms.licence == "MIT"
    assert not faceid.terms.commercial
    assert "insightface buffalo_l" in parts


def test_a_model_from_another_repository_is_unknown_and_not_cleared(tmp_path: Path) -> None:
    config = dataclasses.replace(config_in(tmp_path), models=ModelsConfig(base="someone/sdxl-finetune"))
    base = next(part for part in stack(config) if "SDXL" in part.name)
    assert "unknown" in base.terms.licence and not base.terms.commercial


def test_verdict_of_a_cleared_stack() -> None:
    parts = [Part("SDXL", "generation", MODEL_TERMS["base"]), Part("CLIP", "generation", MODEL_TERMS["image_encoder"])]
    assert verdict(parts).startswith("commercial use: allowed")


def test_requiring_a_commercial_licence_fails_the_doctor_and_refuses_every_way_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = config_in(tmp_path, require_commercial_licence=True)
    found = rows(strict)
    assert found["licence verdict"].status == "fail"
    assert next(check for name, check in found.items() if "InstantID" in name).status == "fail"
    assert next(check for name, check in found.items() if "SDXL" in name).status == "ok"
    message = refusal(strict)
    assert message and "InstantID" in message and "dlib" in message
    assert refusal(config_in(tmp_path)) is None  # not asked for: nothing refused

    for var in list(os.environ):
        if var.startswith("CLOSEUP_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("CLOSEUP_GENERATION__REQUIRE_COMMERCIAL_LICENCE", "true")
    monkeypatch.setenv("CLOSEUP_FACES__INSIGHTFACE_ROOT", str(tmp_path / "if"))
    from generation.cli import main

    assert main(["generate", str(PHOTO), "--out", str(tmp_path / "out")]) == 2
    assert "require_commercial_licence" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything loaded or was written
    monkeypatch.setenv("CLOSEUP_QUEUE__BACKEND", "redis")
    assert main(["worker"]) == 2
    assert "not cleared for commercial use" in capsys.readouterr().err

    from bot.run import EXIT_SETUP, run_bot
    from generation.config import DiscordConfig

    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
    assert run_bot(dataclasses.replace(strict, discord=DiscordConfig(token=token))) == EXIT_SETUP
    assert "cannot start the bot: generation.require_commercial_licence" in capsys.readouterr().err


def permissive(tmp_path: Path, editor_path: str = "", **generation: object) -> Config:
    config = config_in(tmp_path, backend="edit", **generation)
    return dataclasses.replace(
        config, faces=FacesConfig(backend="opencv", opencv_root=str(tmp_path / "ocv"), opencv_download=False),
        models=ModelsConfig(flux2_klein_path=editor_path))


def test_the_edit_backend_with_opencv_faces_is_cleared_and_starts_under_the_setting(tmp_path: Path) -> None:
    parts = stack(permissive(tmp_path))
    names = " | ".join(part.name for part in parts)
    assert "FLUX.2 [klein] 4B editor" in names and "YuNet" in names and "SFace" in names
    assert "insightface" not in names and "dlib" not in names and "SDXL" not in names
    assert verdict(parts).startswith("commercial use: allowed")
    assert refusal(permissive(tmp_path, require_commercial_licence=True)) is None
    # The same editor with the default faces backend: dlib's 68-point model is named as the one blocker.
    mixed = dataclasses.replace(permissive(tmp_path), faces=FacesConfig(backend="dlib"))
    assert [part.name for part in stack(mixed) if not part.terms.commercial] == [
        "dlib face models (face_recognition_models)"]


def test_an_editor_folder_is_cleared_only_by_its_licence_file(tmp_path: Path) -> None:
    folder = tmp_path / "klein"
    folder.mkdir()
    (editor,) = [p for p in stack(permissive(tmp_path, str(folder))) if "editor" in p.name]
    assert not editor.terms.commercial and "no LICENSE file" in editor.terms.licence
    why = refusal(permissive(tmp_path, str(folder), require_commercial_licence=True))
    assert why is not None and "no LICENSE file" in why and str(folder) in why
    (folder / "LICENSE.md").write_text("FLUX Non-Commercial License v2.0 ...")
    (editor,) = [p for p in stack(permissive(tmp_path, str(folder))) if "editor" in p.name]
    assert not editor.terms.commercial and "not the Apache License" in editor.terms.licence
    (folder / "LICENSE.md").write_text("                                 Apache License\n Version 2.0, January 2004")
    (editor,) = [p for p in stack(permissive(tmp_path, str(folder))) if "editor" in p.name]
    assert editor.terms == MODEL_TERMS["flux2_klein"] and editor.terms.commercial
