"""`closeup models pull` / `list` against a Hugging Face Hub stand-in on localhost (tests/fake_hub.py):
only the files the loaders open are fetched (the fp16 weights, not the full-precision ones), a download cut
short resumes, and the real loaders then build the pipeline from the cache without asking the hub."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiny_sdxl
from fake_hub import FakeHub, Repo

from generation.config import Config, FacesConfig, GenerationConfig, ModelsConfig
from generation.model_pull import needed_refs, pull, state_of
from generation.models import ModelMissingError

ROOT = Path(__file__).resolve().parents[2]
UNET_FP16 = "unet/diffusion_pytorch_model.fp16.safetensors"


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(".")
            and "_tokenizer_src" not in path.parts}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hub-source")
    base = tiny_sdxl.build_sdxl(root / "sdxl", fp16_variant=True)
    tiny_sdxl.build_identitynet(root / "instantid" / "ControlNetModel", 1)
    tiny_sdxl.build_instantid_adapter(root / "instantid" / "ip-adapter.bin", 2)
    server = FakeHub({"acme/sdxl": Repo(_files(base)), "acme/instantid": Repo(_files(root / "instantid"))}).start()
    yield server
    server.stop()


def _config(tmp_path: Path, **generation: object) -> Config:
    return Config(
        faces=FacesConfig(insightface_root=str(tmp_path / "insightface"), insightface_download=False),
        generation=GenerationConfig(cache_dir=str(tmp_path / "hf"), width=64, height=64, steps=2, device="cpu",
                                    **generation),  # type: ignore[arg-type]
        models=ModelsConfig(base="acme/sdxl", instantid="acme/instantid"),
    )


def test_pull_fetches_what_the_loaders_read_resumes_and_the_pipeline_loads_from_the_cache(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # The client writes in 10 MB chunks and resumes from what it wrote; the tiny weights are ~2 MB, so it
    # writes in 1 kB chunks here for a cut 2 kB in to leave something to resume from.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    config = _config(tmp_path)
    refs = needed_refs(config)
    assert [ref.key for ref in refs] == ["base", "instantid"]
    assert [state_of(ref, config.generation).state for ref in refs] == ["missing", "missing"]
    hub.requests.clear()
    hub.drop_after[UNET_FP16] = 2000  # the connection drops 2 kB into the UNet's weights
    for ref in refs:
        assert pull(ref, config.generation, endpoint=hub.url).state == "cached"

    fetched = {path.split("/resolve/", 1)[1].split("/", 1)[1] for method, path, _ in hub.requests
               if method == "GET" and "/resolve/" in path}
    assert UNET_FP16 in fetched and "text_encoder/model.fp16.safetensors" in fetched
    assert "ip-adapter.bin" in fetched and "ControlNetModel/diffusion_pytorch_model.safetensors" in fetched
    # The full-precision SDXL weights (twice the size) were never downloaded.
    assert not {name for name in fetched if name.startswith(("unet/", "vae/", "text_encoder"))
                and name.endswith("model.safetensors")}
    # The cut download went on from where it stopped, and the file in the cache is whole.
    resumed = [rng for method, path, rng in hub.requests if method == "GET" and path.endswith(UNET_FP16) and rng]
    assert resumed, "the second request asked for the rest only"
    start = int(resumed[-1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 2000  # from the last chunk it had written
    blob = next(path for path in (tmp_path / "hf").rglob("*.safetensors") if path.as_posix().endswith(UNET_FP16))
    assert blob.read_bytes() == hub.repos["acme/sdxl"].files[UNET_FP16]

    # The real loaders, offline: everything they open is in the cache, in its fp16 variant.
    from generation.pipelines.instantid import InstantIDBackend

    hub.requests.clear()
    backend = InstantIDBackend.load(_config(tmp_path, offline=True).generation, config.models)
    assert backend.pipe.unet is not None
    backend = InstantIDBackend.load(config.generation, config.models)  # downloads allowed: still no request
    assert hub.requests == []


def test_offline_setting_refuses_to_pull_with_what_to_do(tmp_path: Path) -> None:
    config = _config(tmp_path, offline=True)
    with pytest.raises(ModelMissingError, match=r"generation\.offline = true.*models\.base_path"):
        pull(needed_refs(config)[0], config.generation)


def test_a_missing_model_with_no_hub_in_reach_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, downloads allowed: a clear error within seconds naming `closeup models pull`, not the hub
    client's half a minute of retries."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    from generation.pipelines.instantid import InstantIDBackend

    config = _config(tmp_path)
    started = time.monotonic()
    with pytest.raises(ModelMissingError, match=r"closeup models pull") as info:
        InstantIDBackend.load(config.generation, config.models)
    assert time.monotonic() - started < 5
    assert "cannot be reached" in str(info.value)


def test_the_command_shows_progress_then_a_table_and_list_agrees(hub: FakeHub, tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "CLOSEUP_GENERATION__CACHE_DIR": str(tmp_path / "hf"),
           "CLOSEUP_MODELS__BASE": "acme/sdxl", "CLOSEUP_MODELS__INSTANTID": "acme/instantid",
           "CLOSEUP_FACES__INSIGHTFACE_ROOT": str(tmp_path / "insightface"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "CLOSEUP_FACES__BACKEND": "dlib"}  # selfie checks on dlib: no insightface pack of their own
    env.pop("HF_HUB_OFFLINE", None)
    # The insightface pack InstantID needs is there already (no download from GitHub in a test).
    import tiny_onnx

    tiny_onnx.make_pack(tmp_path / "insightface" / "models" / "antelopev2", pack="antelopev2")
    closeup = [sys.executable, "-m", "bot.cli"]
    before = subprocess.run([*closeup, "models", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert before.returncode == 1 and "missing" in before.stdout
    done = subprocess.run([*closeup, "models", "pull"], env=env, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "%|" in done.stderr  # huggingface_hub's progress bars
    assert "2 of 2 ready" in done.stdout and "MB" in done.stdout
    assert "insightface antelopev2" in done.stderr  # the pack InstantID conditions on, found in place
    after = subprocess.run([*closeup, "models", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0 and after.stdout.count("cached") == 2


def test_a_cache_from_before_the_fp16_setting_still_loads(hub: FakeHub, tmp_path: Path) -> None:
    """A host that downloaded the full-precision files earlier: the loader takes what the cache has
    (no variant error, no download), and `models list` says the fp16 files are not all there."""
    import dataclasses

    old = _config(tmp_path)
    old = dataclasses.replace(old, models=dataclasses.replace(old.models, base_variant=""))
    for ref in needed_refs(old):
        pull(ref, old.generation, endpoint=hub.url)
    new = _config(tmp_path)
    assert state_of(needed_refs(new)[0], new.generation).state == "partial"
    from generation.pipelines.instantid import InstantIDBackend

    hub.requests.clear()
    InstantIDBackend.load(_config(tmp_path, offline=True).generation, new.models)
    InstantIDBackend.load(new.generation, new.models)
    assert hub.requests == []
