"""The queue's Lua scripts ship as package data: every script the store loads exists, and a built wheel carries them;
and the GPU worker reaches the shared store without the bot-side queue.

No Redis server needed. The wheel check builds from a copy of the sources (so the checkout gets no build/ or
egg-info) and skips when this environment cannot build one.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("redis")

from generation.queue import redis_store
from generation.queue.redis_store import SCRIPT_NAMES, load_script, script_resource

ROOT = Path(__file__).resolve().parents[3]
LUA_DIR = ROOT / "generation" / "queue" / "lua"


def test_the_store_loads_exactly_the_listed_scripts() -> None:
    loaded = set(re.findall(r"""load_script\(["'](\w+)["']\)""", inspect.getsource(redis_store.RedisStore)))
    assert loaded == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", ["common", *SCRIPT_NAMES])
def test_every_script_is_a_non_empty_resource(name: str) -> None:
    resource = script_resource(name)
    assert resource.is_file(), f"lua/{name}.lua is missing from the package"
    assert resource.read_text(encoding="utf-8").strip()


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_starts_with_the_common_prelude(name: str) -> None:
    common = script_resource("common").read_text(encoding="utf-8")
    text = load_script(name)
    assert text.startswith(common) and len(text) > len(common)


def test_no_stray_lua_files() -> None:
    assert {path.stem for path in LUA_DIR.glob("*.lua")} == {"common", *SCRIPT_NAMES}


def test_the_worker_needs_only_the_shared_store() -> None:
    """A GPU worker imports the store, never the bot-side queue (generation.queue.redis)."""
    code = "import sys, generation.queue.worker; print('generation.queue.redis' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                            cwd=ROOT)
    assert result.stdout.strip() == "False"


def test_a_built_wheel_carries_every_lua_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("bot", "generation"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "wheels"
    try:
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
             "-w", str(out), str(source)],
            capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot build a wheel here: {exc}")
    wheels = sorted(out.glob("closeup-*.whl"))
    if built.returncode != 0 or not wheels:
        pytest.skip(f"cannot build a wheel here (pip exit {built.returncode}): {built.stderr[-500:]}")
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    expected = {f"generation/queue/lua/{path.name}" for path in LUA_DIR.glob("*.lua")}
    assert expected and expected <= names, sorted(expected - names)
