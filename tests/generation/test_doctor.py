"""`closeup doctor` on real folders, a real Redis (or a closed port) and local stand-ins for Discord and the hub.

Every config points into tmp_path, so a developer's own caches, packs and token cannot change the results.
"""

from __future__ import annotations

import ast
import base64
import importlib.metadata
import importlib.util
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fake_dists import fake_dist

from generation.cli import main
from generation.config import (
    Config,
    DiscordConfig,
    FacesConfig,
    GenerationConfig,
    ModelsConfig,
    QueueConfig,
    StoreConfig,
)
from generation.doctor import (
    AREAS,
    MODEL_FILES,
    STATUSES,
    Check,
    Endpoints,
    _guarded,
    driver_supports,
    format_table,
    run_doctor,
    to_json,
)

ROOT = Path(__file__).resolve().parents[2]
BOT_ID = "1234567890123456789"
FAKE_TOKEN = base64.urlsafe_b64encode(BOT_ID.encode()).decode().rstrip("=") + ".GkTz9a.Xq3vN8pL2mR7sT1uW4yZ6bD0fH5jK9cE"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited settings or token, no real home folder, and relative paths land in tmp_path."""
    for var in list(os.environ):
        if var.startswith("CLOSEUP_") or var == "DISCORD_TOKEN":
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def make_config(tmp_path: Path, **sections: Any) -> Config:
    """Defaults with every folder under tmp_path; keyword arguments replace whole sections."""
    config = Config(
        faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False),
        generation=GenerationConfig(cache_dir=str(tmp_path / "hf")),
        queue=QueueConfig(path=str(tmp_path / "data" / "queue.db")),
        store=StoreConfig(data_dir=str(tmp_path / "data")),
    )
    return replace(config, **sections)


def row(checks: list[Check], name: str) -> Check:
    found = [check for check in checks if check.name == name]
    assert len(found) == 1, f"{name!r} not in {[check.name for check in checks]}"
    return found[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- the whole table


def test_default_config_gives_a_row_per_area_and_a_fix_for_each_problem(tmp_path: Path) -> None:
    checks = run_doctor(make_config(tmp_path), online=False)
    assert {check.name.split()[0] for check in checks} == set(AREAS)
    assert all(check.status in STATUSES for check in checks)
    assert all(check.fix for check in checks if check.status in ("warn", "fail"))
    assert row(checks, "python").status == "ok"
    assert row(checks, "package numpy").status == "ok"
    assert row(checks, "package face_recognition_models").status == "ok"
    assert row(checks, "redis").status == "skip"
    assert row(checks, "huggingface").status == "skip"
    assert row(checks, "data store.data_dir + queue.path").status == "ok"
    assert row(checks, "disk data").status in ("ok", "warn", "fail")
    table = format_table(checks)
    assert table.splitlines()[0].split() == ["STATUS", "CHECK", "DETAIL"]
    assert "not ready" in table  # no token


def test_a_crashing_check_becomes_a_fail_row() -> None:
    rows = _guarded("gpu", lambda: {}["cuda"])
    assert rows == [Check("gpu", "fail", "the check crashed: KeyError: 'cuda'", rows[0].fix)]
    assert "bug" in rows[0].fix



def test_the_insightface_package_is_reported_with_its_version(tmp_path: Path) -> None:
    import importlib.metadata

    checks = run_doctor(make_config(tmp_path), online=False)
    found = row(checks, "package insightface")
    assert (found.status, found.detail) == ("ok", f"insightface {importlib.metadata.version('insightface')}")
    assert row(checks, "package opencv").detail.startswith("opencv-python ")
    assert "package opencv wheels" not in [check.name for check in checks]  # one OpenCV wheel here


def test_a_second_opencv_wheel_is_flagged_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an upgrade from a closeup that used the headless wheel leaves: two wheels sharing cv2/."""
    site = tmp_path / "site"
    fake_dist(site, "opencv-python-headless", "4.10.0.84")
    monkeypatch.syspath_prepend(str(site))
    checks = run_doctor(make_config(tmp_path), online=False)
    clash = row(checks, "package opencv wheels")
    assert clash.status == "warn"
    assert "opencv-python and opencv-python-headless" in clash.detail and "cv2" in clash.detail
    assert clash.fix == "pip uninstall -y opencv-python opencv-python-headless && pip install 'opencv-python>=4.9,<6'"


def _qwen(tmp_path: Path) -> Config:
    return make_config(tmp_path, generation=GenerationConfig(cache_dir=str(tmp_path / "hf"), backend="edit",
                                                             editor="qwen-image-edit"))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_qwen_without_torchvision_fails_with_the_series_for_this_torch(tmp_path: Path) -> None:
    torch_version = importlib.metadata.version("torch")
    series = f"0.{int(torch_version.split('.')[1]) + 15}"  # torchvision pairs with torch minor + 15
    found = row(run_doctor(_qwen(tmp_path), online=False), "package torchvision")
    assert found.status == "fail" and "qwen-image-edit" in found.detail
    assert f"pip install 'torchvision=={series}.*'" in found.fix and "flux2-klein" in found.fix
    # Other stacks never need it: no row.
    assert "package torchvision" not in [c.name for c in run_doctor(make_config(tmp_path), online=False)]


@pytest.mark.parametrize("minor_offset, status", [(15, "ok"), (16, "fail"), (14, "fail")])
def test_a_torchvision_for_another_torch_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    minor_offset: int, status: str) -> None:
    torch_minor = int(importlib.metadata.version("torch").split(".")[1])
    version = f"0.{torch_minor + minor_offset}.1"
    fake_dist(tmp_path / "site", "torchvision", version, module="torchvision")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    found = row(run_doctor(_qwen(tmp_path), online=False), "package torchvision")
    assert found.status == status
    if status == "ok":
        assert found.detail == f"torchvision {version} (for Qwen-Image-Edit)"
    else:
        assert f"torchvision {version} is built for another torch" in found.detail and "fails at import" in found.detail


def test_torchvision_series_per_torch_release() -> None:
    from generation.stack import torchvision_for

    assert torchvision_for("2.13.0") == "0.28"
    assert torchvision_for("2.14.1+cu128") == "0.29"
    assert torchvision_for("2.9.1") == "0.24"
    assert torchvision_for("1.13.1") is None and torchvision_for("nightly") is None


# --------------------------------------------------------------------------- data folders


def test_data_folder_behind_a_regular_file_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("in the way\n")
    config = make_config(tmp_path, store=StoreConfig(data_dir=str(blocker / "data")))
    checks = run_doctor(config, online=False)
    failed = row(checks, "data store.data_dir")
    assert failed.status == "fail"
    assert str(blocker / "data") in failed.detail
    assert row(checks, "data queue.path").status == "ok"
    assert list((tmp_path / "data").iterdir()) == []  # the probe file is gone


# --------------------------------------------------------------------------- Redis


def test_redis_on_a_closed_port_fails_without_showing_the_password(tmp_path: Path) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    checks = run_doctor(make_config(tmp_path, queue=QueueConfig(backend="redis", redis_url=url)), online=False)
    redis_row = row(checks, "redis")
    assert redis_row.status == "fail"
    assert "cannot reach Redis" in redis_row.detail and "***" in redis_row.detail
    assert "secret" not in format_table(checks) + to_json(checks)
    assert row(checks, "package redis").status == "ok"


def test_redis_that_answers_is_ok(tmp_path: Path) -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    queue = QueueConfig(backend="redis", redis_url="redis://127.0.0.1:6379/0")
    checks = run_doctor(make_config(tmp_path, queue=queue), online=False)
    assert row(checks, "redis").status == "ok"
    assert "answers PING" in row(checks, "redis").detail
    assert [check.name for check in checks if check.name.startswith("data")] == ["data store.data_dir"]


# --------------------------------------------------------------------------- models


def test_model_paths_present_and_missing(tmp_path: Path) -> None:
    base = tmp_path / "sdxl"
    (base / "unet").mkdir(parents=True)
    (base / "model_index.json").write_text("{}")
    (base / "unet" / "config.json").write_text("{}")
    (base / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"0")  # full precision: loads too
    models = ModelsConfig(base_path=str(base), instantid_path=str(tmp_path / "nowhere"))
    checks = run_doctor(make_config(tmp_path, models=models), online=False)
    assert row(checks, "model base").status == "ok"
    assert "CreativeML Open RAIL++-M" in row(checks, "model base").detail
    missing = row(checks, "model instantid")
    assert missing.status == "fail" and "does not exist" in missing.detail
    assert "non-commercial" in missing.detail
    assert "models.instantid_path" in missing.fix


def test_models_in_the_hugging_face_cache(tmp_path: Path) -> None:
    """A real cache layout: refs/main names a snapshot holding the files the loaders read."""
    from generation.pipelines.diffusers_common import LIGHTNING_FILE

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "models--ByteDance--SDXL-Lightning"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / LIGHTNING_FILE).write_bytes(b"0" * 1000)
    generation = GenerationConfig(cache_dir=str(tmp_path / "hf"), preset="lightning", backend="faceid", offline=True)
    checks = run_doctor(make_config(tmp_path, generation=generation), online=False)
    assert [check.name for check in checks if check.name.startswith("model")] == [
        "model base", "model faceid", "model image_encoder", "model lightning"]
    assert row(checks, "model lightning").status == "ok"
    base = row(checks, "model base")
    assert base.status == "fail"  # offline, embedded queue: generation could not start
    assert "size unknown offline" in base.detail and "hf download stabilityai/" in base.fix
    assert f"--cache-dir {tmp_path / 'hf'}" in base.fix


def test_missing_models_only_warn_on_a_bot_host_with_redis_workers(tmp_path: Path) -> None:
    config = make_config(tmp_path, generation=GenerationConfig(cache_dir=str(tmp_path / "hf"), offline=True),
                         queue=QueueConfig(backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    checks = run_doctor(config, online=False)
    assert row(checks, "model base").status == "warn"
    assert "closeup worker" in row(checks, "model base").detail
    worker = run_doctor(config, online=False, worker=True)
    assert row(worker, "model base").status == "fail"
    assert row(worker, "discord token").status == "skip"


def test_model_file_names_match_what_the_pipelines_load() -> None:
    """doctor repeats the pipelines' file names (importing them costs torch + diffusers); keep them equal."""
    def constants(module: str) -> dict[str, str]:
        tree = ast.parse((ROOT / "generation" / "pipelines" / f"{module}.py").read_text(encoding="utf-8"))
        return {node.targets[0].id: node.value.value for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}

    instantid, faceid = constants("instantid"), constants("faceid")
    assert MODEL_FILES["instantid"].markers == (f"{instantid['IDENTITYNET_SUBFOLDER']}/config.json",
                                                instantid["ADAPTER_FILE"])
    assert MODEL_FILES["faceid"].markers == (faceid["ADAPTER_FILE"],)


def test_download_size_counts_only_what_the_loaders_fetch(tmp_path: Path, hub: str) -> None:
    config = make_config(tmp_path, models=ModelsConfig(instantid="acme/instantid"))
    checks = run_doctor(config, online=True, endpoints=Endpoints(discord_api=hub, huggingface=hub))
    assert "download about 3.0 GB" in row(checks, "model instantid").detail  # not the 50 GB checkpoint
    assert "see https://huggingface.co/acme/instantid" in row(checks, "model instantid").detail
    assert row(checks, "huggingface").status == "fail"  # the stand-in hub has no SDXL base


# --------------------------------------------------------------------------- insightface packs


def test_insightface_packs(tmp_path: Path) -> None:
    pack = tmp_path / "insightface" / "models" / "antelopev2"
    pack.mkdir(parents=True)
    (pack / "scrfd_10g_bnkps.onnx").write_bytes(b"onnx")
    checks = run_doctor(make_config(tmp_path), online=False)
    assert row(checks, "insightface antelopev2").status == "ok"
    buffalo = row(checks, "insightface buffalo_l")
    assert buffalo.status == "warn" and "dlib" in buffalo.detail  # auto: checks fall back to dlib
    faceid = make_config(tmp_path, generation=GenerationConfig(cache_dir=str(tmp_path / "hf"), backend="faceid"))
    missing = row(run_doctor(faceid, online=False), "insightface buffalo_l")
    assert missing.status == "fail"  # generation needs it here and downloads are off
    assert "buffalo_l.zip" in missing.fix


# --------------------------------------------------------------------------- Discord token


@pytest.mark.parametrize(("token", "status"), [("", "fail"), ("Bot " + FAKE_TOKEN, "fail"), ("abc.def", "fail"),
                                               (FAKE_TOKEN, "ok"), (f"  {FAKE_TOKEN}\n", "ok")])
def test_token_offline(tmp_path: Path, token: str, status: str) -> None:
    checks = run_doctor(make_config(tmp_path, discord=DiscordConfig(token=token)), online=False)
    token_row = row(checks, "discord token")
    assert token_row.status == status
    if status == "ok":
        assert f"bot id {BOT_ID}" in token_row.detail
    if token.strip():
        assert token.strip() not in format_table(checks) + to_json(checks)


def test_token_online(tmp_path: Path, hub: str) -> None:
    accepted = run_doctor(make_config(tmp_path, discord=DiscordConfig(token=FAKE_TOKEN)), online=True,
                          endpoints=Endpoints(discord_api=hub, huggingface=hub))
    assert row(accepted, "discord token") == Check("discord token", "ok",
                                                   f"Discord accepts it: bot closeup-test (id {BOT_ID})")
    other = FAKE_TOKEN[:-4] + "abcd"
    refused = run_doctor(make_config(tmp_path, discord=DiscordConfig(token=other)), online=True,
                         endpoints=Endpoints(discord_api=hub, huggingface=hub))
    assert row(refused, "discord token").status == "fail"
    assert "refused" in row(refused, "discord token").detail
    closed = run_doctor(make_config(tmp_path, discord=DiscordConfig(token=FAKE_TOKEN)), online=True,
                        endpoints=Endpoints(discord_api=f"http://127.0.0.1:{free_port()}", huggingface=hub))
    assert row(closed, "discord token").status == "warn"
    for checks in (accepted, refused, closed):
        assert FAKE_TOKEN not in to_json(checks) and other not in format_table(checks)


# --------------------------------------------------------------------------- GPU


def test_driver_versions() -> None:
    assert driver_supports("570.86.15", "12.8", "linux") is True
    assert driver_supports("470.256.02", "12.1", "linux") is False
    assert driver_supports("575.51.03", "13.0", "linux") is False
    assert driver_supports("580.82.07", "13.0", "linux") is True
    assert driver_supports("572.16", "12.8", "win32") is None
    assert driver_supports("570.86.15", "99.0", "linux") is None


def test_cuda_required_but_missing(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    generation = GenerationConfig(cache_dir=str(tmp_path / "hf"), device="cuda")
    assert row(run_doctor(make_config(tmp_path, generation=generation), online=False), "gpu").status == "fail"


def test_a_cpu_only_machine_that_would_generate_is_not_ready(tmp_path: Path) -> None:
    """The embedded worker on a CPU: every job would run past the timeout, so the doctor says FAIL, with
    the two ways out; on a Redis bot host (workers elsewhere) the same machine is fine, with a warning."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for device in ("auto", "cpu"):
        generation = GenerationConfig(cache_dir=str(tmp_path / "hf"), device=device)
        embedded = row(run_doctor(make_config(tmp_path, generation=generation), online=False), "gpu")
        assert embedded.status == "fail", embedded
        assert "job timeout" in embedded.detail and "900 s" in embedded.detail
        assert "closeup worker" in embedded.fix and "queue.backend = 'redis'" in embedded.fix
        assert "SDXL image" in embedded.detail
    editor = GenerationConfig(cache_dir=str(tmp_path / "hf"), backend="edit")
    on_cpu = row(run_doctor(make_config(tmp_path, generation=editor), online=False), "gpu")
    assert on_cpu.status == "fail" and "a flux2-klein image takes many minutes" in on_cpu.detail
    assert "SDXL" not in on_cpu.detail
    redis_host = make_config(tmp_path, queue=QueueConfig(backend="redis"))
    assert row(run_doctor(redis_host, online=False), "gpu").status == "warn"
    assert row(run_doctor(make_config(tmp_path), online=False, worker=True), "gpu").status == "fail"


# --------------------------------------------------------------------------- the command


def test_cli_json_matches_the_exit_code_and_never_prints_the_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLOSEUP_FACES__INSIGHTFACE_ROOT", str(tmp_path / "insightface"))
    monkeypatch.setenv("CLOSEUP_GENERATION__CACHE_DIR", str(tmp_path / "hf"))
    code = main(["doctor", "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 1 and report["ready"] is False  # no token
    assert row([Check(**item) for item in report["checks"]], "discord token").status == "fail"

    monkeypatch.setenv("DISCORD_TOKEN", FAKE_TOKEN)
    code = main(["doctor", "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    statuses = [item["status"] for item in report["checks"]]
    assert code == (1 if "fail" in statuses else 0)
    assert report["ready"] is (code == 0)
    assert report["counts"] == {status: statuses.count(status) for status in STATUSES}
    assert FAKE_TOKEN not in out + err

    assert main(["doctor"]) == code
    out, err = capsys.readouterr()
    assert "discord token" in out and FAKE_TOKEN not in out + err


# --------------------------------------------------------------------------- local stand-ins for Discord and the hub


class _StandIn(BaseHTTPRequestHandler):
    """Discord's /users/@me (accepting only FAKE_TOKEN) and the hub's model_info for acme/instantid."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/users/@me":
            if self.headers.get("Authorization") == f"Bot {FAKE_TOKEN}":
                self._send(200, {"id": BOT_ID, "username": "closeup-test"})
            else:
                self._send(401, {"message": "401: Unauthorized", "code": 0})
        elif path.startswith("/api/models/acme/instantid"):
            self._send(200, {"id": "acme/instantid", "siblings": [
                {"rfilename": "ControlNetModel/config.json", "size": 0},
                {"rfilename": "ControlNetModel/diffusion_pytorch_model.safetensors", "size": 2_500_000_000},
                {"rfilename": "ip-adapter.bin", "size": 500_000_000},
                {"rfilename": "huge-checkpoint.safetensors", "size": 50_000_000_000},
            ]})
        else:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_safety_checker_is_listed_only_when_turned_on() -> None:
    from generation.config import GenerationConfig
    from generation.stack import needed_models

    assert "safety_checker" not in needed_models(GenerationConfig())
    assert needed_models(GenerationConfig(safety_checker=True))[-1] == "safety_checker"
