"""`closeup doctor`: one table of what is ready and what is not, before anyone starts the bot.

Every check is a plain function returning `Check` rows and runs offline in a few seconds; `online`
adds the network checks (Discord with the token, Hugging Face). A check never raises: a crash
becomes a "fail" row naming the exception, so one broken probe cannot hide the rest of the table.

Generation needs (torch, the GPU, model weights, the conditioning insightface pack) are hard
requirements only where generation runs: in this process with the embedded queue, or on a
`closeup worker` machine. With ``queue.backend = "redis"`` the bot's own host merely warns about them.

One file on purpose: a flat checklist of small, independent probes in the order the table
prints them (`run_doctor` at the end lists them), each a plain function; what the probes share (which models
and packs the stack loads) lives in generation/stack.py and generation/models.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from generation.config import Config, GenerationConfig, ModelsConfig, QueueConfig
from generation.models import (
    MODEL_FILES,
    ModelFiles,
    ModelRef,
    cached_snapshot,
    hf_cache_dir,
    model_files,
    model_ref,
)
from generation.stack import (
    SELFIE_CHECKS,
    needed_models,
    needs_torchvision,
    pack_uses,
    torchvision_fits,
    torchvision_for,
)

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")
# The first word of every row's name; a row per area is always present, whatever the machine.
AREAS = ("python", "package", "gpu", "model", "insightface", "licence", "redis", "data", "disk", "discord",
         "huggingface")

GB = 1_000_000_000
DISK_FAIL_BYTES = 2 * GB
DISK_WARN_BYTES = 20 * GB  # SDXL base + adapters + LoRAs come to about 15 GB
SMI_TIMEOUT_S = 5.0
REDIS_TIMEOUT_S = 2.0
DISCORD_TIMEOUT_S = 5.0
HUB_TIMEOUT_S = 10.0
BUG_FIX = "this is a bug in `closeup doctor`; please report it with this line"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Endpoints:
    """Where the online checks go; tests point them at local servers."""

    discord_api: str = "https://discord.com/api/v10"
    huggingface: str | None = None  # None: huggingface_hub's own (HF_ENDPOINT or huggingface.co)


@dataclass(frozen=True)
class Scope:
    """What the machine running the doctor is for, which decides how hard generation needs are."""

    generates: bool  # generation runs here (embedded queue, or a `closeup worker` machine)
    worker: bool  # a `closeup worker` machine: it needs no Discord token

    def need(self, status: Status) -> Status:
        """A generation failure is only a warning on a bot host whose Redis workers generate."""
        return "warn" if status == "fail" and not self.generates else status

    def where(self) -> str:
        return "" if self.generates else " (queue.backend = 'redis': only the `closeup worker` machines need this)"


# --------------------------------------------------------------------------- python and packages


def check_python(version: Sequence[int] = tuple(sys.version_info)) -> Check:
    shown = ".".join(str(part) for part in version[:3])
    if tuple(version[:2]) >= (3, 11):
        return Check("python", "ok", f"Python {shown}")
    return Check("python", "fail", f"Python {shown}; closeup needs 3.11 or newer",
                 "install Python 3.11+ and recreate the virtual environment")


@dataclass(frozen=True)
class Package:
    label: str
    dists: tuple[str, ...]  # distribution names; any one of them will do
    module: str
    group: Literal["base", "insightface", "gpu", "redis"]


# Every wheel that installs the `cv2` folder; closeup (and insightface) depend on the first.
OPENCV_WHEELS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
PACKAGES = (
    Package("discord.py", ("discord.py",), "discord", "base"),
    Package("aiohttp", ("aiohttp",), "aiohttp", "base"),
    Package("numpy", ("numpy",), "numpy", "base"),
    Package("pillow", ("pillow",), "PIL", "base"),
    Package("pillow-heif", ("pillow-heif",), "pillow_heif", "base"),
    Package("opencv", OPENCV_WHEELS, "cv2", "base"),
    Package("dlib", ("dlib-bin", "dlib"), "dlib", "base"),
    Package("insightface", ("insightface",), "insightface", "insightface"),
    Package("onnxruntime", ("onnxruntime", "onnxruntime-gpu"), "onnxruntime", "insightface"),
    Package("torch", ("torch",), "torch", "gpu"),
    Package("diffusers", ("diffusers",), "diffusers", "gpu"),
    Package("transformers", ("transformers",), "transformers", "gpu"),
    Package("huggingface-hub", ("huggingface-hub",), "huggingface_hub", "gpu"),
    Package("peft", ("peft",), "peft", "gpu"),
    Package("redis", ("redis",), "redis", "redis"),
)


def _dist_version(dists: Iterable[str]) -> tuple[str, str] | None:
    for dist in dists:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return dist, importlib.metadata.version(dist)
    return None


def _module_present(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (torch takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def required_versions() -> dict[str, Any]:
    """closeup's own pins by normalised package name, from its installed metadata ({} when run from source)."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name

        lines = importlib.metadata.requires("closeup") or []
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return {}
    pins: dict[str, Any] = {}
    for line in lines:
        with contextlib.suppress(InvalidRequirement):
            req = Requirement(line)
            if req.specifier and req.name != "closeup":
                pins.setdefault(canonicalize_name(req.name), req.specifier)
    return pins


def _pin_problem(dist: str, version: str, pins: dict[str, Any]) -> str | None:
    try:
        from packaging.utils import canonicalize_name

        spec = pins.get(canonicalize_name(dist))
        if spec is None or spec.contains(version, prereleases=True):
            return None
    except (ImportError, ValueError):
        return None
    return str(spec)


def _missing_package(pkg: Package, config: Config, scope: Scope) -> Check:
    name = f"package {pkg.label}"
    if pkg.group == "base":
        return Check(name, "fail", "not installed (closeup needs it)",
                     f"pip install '{pkg.dists[0]}' (or reinstall closeup)")
    if pkg.group == "insightface":
        status: Status = "fail" if config.faces.backend == "insightface" else scope.need("fail")
        return Check(name, status, "not installed: insightface packs cannot run (selfie checks fall back to dlib; "
                     "generation needs it for the face embedding)" + scope.where(),
                     "pip install 'closeup[insightface]'")
    if pkg.group == "gpu":
        return Check(name, "fail" if scope.worker else "warn",
                     "not installed: in-process generation unavailable",
                     "pip install 'closeup[gpu]' (CUDA build of torch first, see README), or use Redis workers")
    if config.queue.backend == "redis":
        return Check(name, "fail", "not installed, and queue.backend = 'redis' needs it",
                     "pip install 'closeup[redis]'")
    return Check(name, "skip", "not installed; only needed with queue.backend = 'redis'")


def check_package(pkg: Package, config: Config, scope: Scope, pins: dict[str, Any]) -> Check:
    found = _dist_version(pkg.dists)
    if found is None or not _module_present(pkg.module):
        return _missing_package(pkg, config, scope)
    dist, version = found
    name = f"package {pkg.label}"
    wanted = _pin_problem(dist, version, pins)
    if wanted:
        return Check(name, "warn", f"{dist} {version} installed; closeup is tested with {dist}{wanted}",
                     f"pip install '{dist}{wanted}'")
    return Check(name, "ok", f"{dist} {version}")


def check_dlib_models() -> Check:
    """face_recognition_models' files, located by its spec: importing it pulls in pkg_resources."""
    name = "package face_recognition_models"
    spec = importlib.util.find_spec("face_recognition_models")
    fix = "pip install --force-reinstall face_recognition_models==0.3.0"
    if spec is None or spec.origin is None:
        return Check(name, "fail", "not installed: dlib has no face models", fix)
    folder = Path(spec.origin).parent / "models"
    found = sorted(path.name for path in folder.glob("*.dat"))
    if not found:
        return Check(name, "fail", f"installed but {folder} holds no .dat model files", fix)
    return Check(name, "ok", f"{len(found)} dlib model files in {folder}")


def check_opencv_wheels() -> Check | None:
    """Two OpenCV wheels write one `cv2` folder: it works until either is upgraded or removed, then the other
    is broken. An upgrade from a closeup that used the headless wheel leaves both."""
    installed = [dist for dist in OPENCV_WHEELS if _dist_version([dist]) is not None]
    if len(installed) < 2:
        return None
    return Check("package opencv wheels", "warn", f"{' and '.join(installed)} are all installed; they share the "
                 "cv2 folder, so upgrading or removing one breaks the others",
                 f"pip uninstall -y {' '.join(installed)} && pip install '{OPENCV_WHEELS[0]}>=4.9,<6'")


def check_torchvision(config: Config, scope: Scope) -> Check | None:
    """Only for Qwen-Image-Edit, whose processor transformers builds with torchvision: present, and of the series
    built for the installed torch (another one fails at import). Read from the metadata: nothing is imported."""
    if not needs_torchvision(config.generation):
        return None
    name = "package torchvision"
    found = _dist_version(["torchvision"])
    torch_found = _dist_version(["torch"])
    series = torchvision_for(torch_found[1]) if torch_found else None
    wanted = f"torchvision=={series}.*" if series else "torchvision"
    fix = (f"pip install '{wanted}' from the index your torch came from (the Docker image has it), or set "
           "generation.editor = 'flux2-klein'")
    if found is None or not _module_present("torchvision"):
        return Check(name, scope.need("fail"), "not installed: generation.editor = 'qwen-image-edit' needs it (its "
                     "Qwen2.5-VL processor)" + scope.where(), fix)
    version = found[1]
    if torch_found and not torchvision_fits(torch_found[1], version):
        return Check(name, scope.need("fail"), f"torchvision {version} is built for another torch than the "
                     f"installed torch {torch_found[1]} (it takes {series}.x): it fails at import" + scope.where(), fix)
    return Check(name, "ok", f"torchvision {version} (for Qwen-Image-Edit)")


def check_packages(config: Config, scope: Scope) -> list[Check]:
    pins, rows = required_versions(), []
    for pkg in PACKAGES:
        rows.append(check_package(pkg, config, scope, pins))
        if pkg.label == "dlib":
            rows.append(check_dlib_models())
        if pkg.label == "opencv" and (clash := check_opencv_wheels()) is not None:
            rows.append(clash)
        if pkg.label == "torch" and (vision := check_torchvision(config, scope)) is not None:
            rows.append(vision)
    return rows


# --------------------------------------------------------------------------- GPU


@dataclass(frozen=True)
class Driver:
    """What nvidia-smi says about the first GPU; ``problem`` explains an empty answer."""

    version: str = ""
    gpu: str = ""
    memory: str = ""
    problem: str = ""


def nvidia_smi(timeout_s: float = SMI_TIMEOUT_S) -> Driver:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return Driver(problem="no NVIDIA driver found (nvidia-smi is not on PATH)")
    try:
        done = subprocess.run([exe, "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return Driver(problem=f"nvidia-smi did not answer within {timeout_s:g} s")
    except OSError as exc:
        return Driver(problem=f"nvidia-smi could not run ({exc.strerror or exc})")
    lines = done.stdout.strip().splitlines()
    parts = [part.strip() for part in lines[0].split(",")] if lines else []
    if done.returncode != 0 or len(parts) < 3:
        said = (done.stderr or done.stdout).strip().splitlines()
        return Driver(problem=f"nvidia-smi failed: {said[0] if said else f'exit {done.returncode}'}")
    return Driver(version=parts[0], gpu=parts[1], memory=parts[2])


# The oldest Linux driver each CUDA major release runs on (NVIDIA's minor-version compatibility table).
MIN_LINUX_DRIVER = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580, 65, 6)}


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def driver_supports(driver: str, cuda: str, platform: str = sys.platform) -> bool | None:
    """Whether a Linux driver is new enough for torch's CUDA; None when unknown (other systems, new CUDA)."""
    major = _numbers(cuda)[:1]
    need = MIN_LINUX_DRIVER.get(major[0]) if major else None
    if need is None or not platform.startswith("linux") or not _numbers(driver):
        return None
    return _numbers(driver) >= need


def _no_cuda_reason(torch_version: str, cuda: str | None, driver: Driver) -> tuple[str, str]:
    """Why torch sees no CUDA device, and what to do about it."""
    if cuda is None:
        hint = f" (driver {driver.version} on {driver.gpu})" if driver.version else ""
        return (f"torch {torch_version} is a CPU-only build{hint}",
                "install the CUDA build of torch that matches the driver (see README), then pip install "
                "'closeup[gpu]'")
    if not driver.version:
        return (f"{driver.problem}; torch {torch_version} is built for CUDA {cuda}",
                "install the NVIDIA driver (in containers: run with --gpus all / the NVIDIA container toolkit)")
    if driver_supports(driver.version, cuda) is False:
        need = ".".join(map(str, MIN_LINUX_DRIVER[_numbers(cuda)[0]]))
        return (f"driver {driver.version} is too old for torch's CUDA {cuda} (needs >= {need})",
                f"update the NVIDIA driver to >= {need}, or install a torch build for an older CUDA")
    return (f"torch {torch_version} (CUDA {cuda}) cannot use {driver.gpu} (driver {driver.version})",
            "check CUDA_VISIBLE_DEVICES and that this user or container may use the GPU")


def _gpu_ok(torch: Any, setting: str, driver: Driver) -> Check:
    props = torch.cuda.get_device_properties(0)
    detail = (f"{props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__} "
              f"(CUDA {torch.version.cuda}), driver {driver.version or 'unknown'}")
    if setting == "cpu":
        return Check("gpu", "warn", f"generation.device = 'cpu' although CUDA works: {detail}",
                     "set generation.device = 'auto' (or 'cuda')")
    return Check("gpu", "ok", detail)


def check_gpu(generation: GenerationConfig, scope: Scope, job_timeout_s: float = 900.0) -> Check:
    """A machine that generates with no GPU fails: one SDXL image takes tens of minutes on a CPU, past
    the job timeout, so every /portrait would time out (on a Redis bot host it only warns)."""
    setting = generation.device
    if not _module_present("torch"):
        status: Status = "fail" if setting in ("cuda", "mps") else "warn"
        return Check("gpu", scope.need(status), "torch is not installed: no generation here" + scope.where(),
                     "pip install 'closeup[gpu]' (CUDA build of torch first, see README)")
    try:
        import torch
    except Exception as exc:  # a CUDA build missing its libraries fails here, not at find_spec
        return Check("gpu", scope.need("fail"), f"torch is installed but does not import ({type(exc).__name__}: "
                     f"{_first_line(str(exc))}){scope.where()}",
                     "reinstall the torch build that matches the NVIDIA driver (see README)")
    driver = nvidia_smi()
    if torch.cuda.is_available():
        return _gpu_ok(torch, setting, driver)
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if setting in ("auto", "mps") and has_mps:
        return Check("gpu", "ok", f"Apple GPU (mps); torch {torch.__version__}")
    if generation.backend == "edit":  # billions of parameters over a megapixel's tokens: minutes, not seconds
        cost = f"a {generation.editor} image takes many minutes on a CPU, near or past the job timeout"
    else:
        cost = "an SDXL image takes tens of minutes on a CPU, past the job timeout"
    cpu_only = f"{cost} (queue.job_timeout_s = {job_timeout_s:g} s): every /portrait would time out"
    move_it = ("run the bot on a machine with an NVIDIA GPU, or set queue.backend = 'redis' here and run "
               "`closeup worker` on a GPU machine")
    if setting == "cpu":
        return Check("gpu", scope.need("fail"), f"generation.device = 'cpu': {cpu_only}{scope.where()}",
                     move_it + ", with generation.device = 'auto'")
    if setting == "mps":
        return Check("gpu", scope.need("fail"), "generation.device = 'mps' but torch sees no Apple GPU" + scope.where(),
                     "set generation.device = 'auto'")
    reason, fix = _no_cuda_reason(torch.__version__, torch.version.cuda, driver)
    if setting == "cuda":
        return Check("gpu", scope.need("fail"), f"generation.device = 'cuda' but no CUDA: {reason}{scope.where()}", fix)
    return Check("gpu", scope.need("fail"), f"no GPU, generation would run on the CPU: {cpu_only} ({reason})"
                 f"{scope.where()}", f"{fix}; or {move_it}")


# --------------------------------------------------------------------------- models


def licence_note(ref: ModelRef) -> str:
    if ref.repo_id == getattr(ModelsConfig(), ref.key):
        return MODEL_FILES[ref.key].licence
    return f"see https://huggingface.co/{ref.repo_id}"


def size_on_disk(folder: Path) -> int:
    """Bytes under ``folder``, following the cache's symlinks to their blobs."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


def gigabytes(size: int) -> str:
    return f"{size / GB:.1f} GB"


def download_size(ref: ModelRef, fetch: Sequence[str], endpoint: str | None) -> str:
    """What the loaders would download, from the hub's file list; a note instead of raising."""
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.utils import filter_repo_objects

        info = HfApi(endpoint=endpoint).model_info(ref.repo_id, revision=ref.revision, files_metadata=True,
                                                   timeout=HUB_TIMEOUT_S)
        files = filter_repo_objects(info.siblings or [], allow_patterns=list(fetch) or None, key=lambda s: s.rfilename)
        return f"download about {gigabytes(sum(item.size or 0 for item in files))}"
    except Exception as exc:  # any hub or network error only costs the size estimate
        return f"size unknown ({type(exc).__name__}: {_first_line(str(exc))})"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no message"


def _hf_download_command(ref: ModelRef, fetch: Sequence[str], generation: GenerationConfig | None = None) -> str:
    """`hf download` for just the files closeup loads, into the cache closeup reads."""
    include = "".join(f" --include '{pattern}'" for pattern in fetch)
    cache = f" --cache-dir {hf_cache_dir(generation)}" if generation is not None and generation.cache_dir else ""
    return f"hf download {ref.repo_id} --revision {ref.revision}{include}{cache}"


def _local_model(ref: ModelRef, files: ModelFiles, scope: Scope) -> Check:
    name, folder = f"model {ref.key}", Path(ref.local_path)
    licence = f"licence: {licence_note(ref)}"
    if not folder.is_dir():
        return Check(name, scope.need("fail"), f"{ref.role}: models.{ref.key}_path = {folder} does not exist; "
                     f"{licence}{scope.where()}",
                     f"put a download of {ref.repo_id} there ({_hf_download_command(ref, files.fetch)} "
                     f"--local-dir {folder}) or clear models.{ref.key}_path")
    # A local folder may hold the variant's weight files or the full-precision ones: either loads.
    candidates = [files.markers] + ([model_files(ref.key).markers] if ref.variant else [])
    lacking = min(([marker for marker in markers if not (folder / marker).is_file()] for markers in candidates),
                  key=len)
    if lacking:
        return Check(name, "warn", f"{ref.role}: {folder} lacks {', '.join(lacking)}; {licence}",
                     f"check that the folder holds a download of {ref.repo_id}")
    return Check(name, "ok", f"{ref.role}: {folder} ({gigabytes(size_on_disk(folder))}); {licence}")


def check_model(ref: ModelRef, generation: GenerationConfig, scope: Scope, *, online: bool,
                endpoint: str | None = None) -> Check:
    files = model_files(ref.key, ref.variant)
    if ref.local_path:
        return _local_model(ref, files, scope)
    name, licence = f"model {ref.key}", f"licence: {licence_note(ref)}"
    where = f"{ref.repo_id}@{ref.revision}"
    if not _module_present("huggingface_hub"):
        return Check(name, scope.need("warn"), f"{ref.role} {where}: cannot look in the Hugging Face cache "
                     f"(huggingface_hub not installed); {licence}", "pip install 'closeup[gpu]'")
    cache = hf_cache_dir(generation)
    snapshot, lacking = cached_snapshot(ref, files.markers, cache)
    if snapshot is not None and not lacking:
        return Check(name, "ok", f"{ref.role} {where} in the cache ({gigabytes(size_on_disk(snapshot))}); {licence}")
    size = download_size(ref, files.fetch, endpoint) if online else "size unknown offline"
    state = f"partly in the cache (lacks {', '.join(lacking)})" if snapshot else f"not in the cache at {cache}"
    status: Status = scope.need("fail") if generation.offline else "warn"
    then = ("and generation.offline = true" if generation.offline
            else "it will be downloaded at the first generation")
    return Check(name, status, f"{ref.role} {where} {state}, {then}; {size}; {licence}{scope.where()}",
                 f"{_hf_download_command(ref, files.fetch, generation)}, or download it elsewhere and set "
                 f"models.{ref.key}_path")


def check_models(config: Config, scope: Scope, *, online: bool, endpoint: str | None = None) -> list[Check]:
    return [check_model(model_ref(config.models, key), config.generation, scope, online=online, endpoint=endpoint)
            for key in needed_models(config.generation)]


# --------------------------------------------------------------------------- insightface packs

INSIGHTFACE_LICENCE = "insightface packs: non-commercial research use only"


def check_pack(pack: str, uses: list[str], config: Config, scope: Scope) -> Check:
    """Selfie checks with faces.backend = 'auto' never download (they fall back to dlib); the rest may."""
    from generation.faces.insightface_packs import DEFAULT_URL_BASE, find_pack_dir

    faces, name, what = config.faces, f"insightface {pack}", " and ".join(uses)
    for_generation = len(uses) > int(SELFIE_CHECKS in uses)
    found = find_pack_dir(faces.insightface_root, pack)
    if found is not None:
        count = len(list(found.glob("*.onnx")))
        return Check(name, "ok", f"{count} .onnx files in {found} (for {what}); {INSIGHTFACE_LICENCE}")
    folder = Path(faces.insightface_root).expanduser() / "models" / pack
    fix = f"download {DEFAULT_URL_BASE}/{pack}.zip and unzip it into {folder}"
    if not for_generation and faces.backend == "dlib":
        return Check(name, "skip", "faces.backend = 'dlib' does not use it")
    if not for_generation and faces.backend == "auto":
        return Check(name, "warn", f"not in {folder}: selfie checks use dlib instead (faces.backend = 'auto' "
                     "never downloads)", fix + " for insightface's more accurate checks")
    if faces.insightface_download:
        return Check(name, "warn", f"not in {folder}; downloaded on first use (for {what}; needs internet); "
                     f"{INSIGHTFACE_LICENCE}", fix)
    detail = f"not in {folder} and faces.insightface_download = false (for {what})"
    fix += ", or set faces.insightface_download = true"
    if for_generation:
        return Check(name, scope.need("fail"), detail + scope.where(), fix)
    return Check(name, "fail", detail, fix)


def check_packs(config: Config, scope: Scope) -> list[Check]:
    rows = [check_pack(pack, uses, config, scope) for pack, uses in pack_uses(config.faces, config.generation).items()]
    return rows + check_opencv_models(config)


def check_opencv_models(config: Config) -> list[Check]:
    """YuNet and SFace of faces.backend = 'opencv': on disk, or downloaded on first use."""
    from generation.faces.opencv_backend import DETECTOR, RECOGNIZER

    faces = config.faces
    if faces.backend != "opencv":
        return []
    rows = []
    folder = Path(faces.opencv_root).expanduser()
    for model, use in ((DETECTOR, "selfie checks and faces in outputs"), (RECOGNIZER, "likeness scores")):
        name, path = f"opencv {model.file.split('_2')[0]}", folder / model.file
        if path.is_file() and path.stat().st_size >= model.min_bytes:
            rows.append(Check(name, "ok", f"{path} ({path.stat().st_size / 1e6:.1f} MB, for {use}); {model.licence}"))
        elif faces.opencv_download:
            rows.append(Check(name, "warn", f"not in {folder}; downloaded on first use (for {use}; needs internet)",
                              f"download {model.url} into {folder}"))
        else:
            rows.append(Check(name, "fail", f"not in {folder} and faces.opencv_download = false (for {use})",
                              f"download {model.url} into {folder}, or set faces.opencv_download = true"))
    return rows


# --------------------------------------------------------------------------- Redis


def check_redis(queue: QueueConfig, timeout_s: float = REDIS_TIMEOUT_S) -> Check:
    if queue.backend != "redis":
        return Check("redis", "skip", "queue.backend = 'local' (embedded queue)")
    if not _module_present("redis"):
        return Check("redis", "fail", "queue.backend = 'redis' but the redis package is not installed",
                     "pip install 'closeup[redis]'")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from generation.logging_setup import mask_secrets

    where = mask_secrets(queue.redis_url)
    try:
        client = redis.Redis.from_url(queue.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                      retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        return Check("redis", "fail", f"queue.redis_url is not a Redis URL ({mask_secrets(str(exc))})",
                     "use redis://[:password@]host:port/db or rediss:// for TLS")
    try:
        client.ping()
        version = client.info("server").get("redis_version", "unknown")
    except redis.AuthenticationError:
        return Check("redis", "fail", f"Redis at {where} refused the credentials",
                     "check the user and password in CLOSEUP_QUEUE__REDIS_URL")
    except (redis.RedisError, OSError) as exc:
        return Check("redis", "fail", f"cannot reach Redis at {where} ({type(exc).__name__}: "
                     f"{mask_secrets(_first_line(str(exc)))})",
                     "start Redis, or fix queue.redis_url (host, port, password)")
    finally:
        client.close()
    return Check("redis", "ok", f"Redis {version} at {where} answers PING")


# --------------------------------------------------------------------------- data folders and disk


def check_writable(name: str, folder: Path, settings: str) -> Check:
    """Create the folder if needed, then write and remove a file in it, as the bot will."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".closeup-doctor-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        return Check(name, "fail", f"{folder} ({settings}) is not writable: {exc.strerror or exc}",
                     f"create it and give this user write access, or point {settings} at a writable folder")
    return Check(name, "ok", f"{folder} ({settings}) is writable")


def _absolute(path: str) -> Path:
    return Path(path).expanduser().absolute()


def check_data_folders(config: Config) -> list[Check]:
    folders = {_absolute(config.store.data_dir): ["store.data_dir"]}
    if config.queue.backend == "local":
        folders.setdefault(_absolute(config.queue.path).parent, []).append("queue.path")
    return [check_writable(f"data {' + '.join(settings)}", folder, " and ".join(settings))
            for folder, settings in folders.items()]


def _existing_ancestor(path: Path) -> Path:
    """The folder itself, or the nearest parent that exists (the data folder may not be made yet)."""
    return next((candidate for candidate in (path, *path.parents) if candidate.exists()), Path(path.anchor))


def check_disk(name: str, path: Path, fail_below: int = DISK_FAIL_BYTES, warn_below: int = DISK_WARN_BYTES) -> Check:
    where = _existing_ancestor(path)
    free = shutil.disk_usage(where).free
    detail = f"{gigabytes(free)} free at {where}"
    if free < fail_below:
        return Check(name, "fail", detail + f" (under {gigabytes(fail_below)})", "free some space or move the folder")
    if free < warn_below:
        return Check(name, "warn", detail + f" (SDXL and its adapters take about 15 GB; under {gigabytes(warn_below)})",
                     "free some space or move the folder to a larger disk")
    return Check(name, "ok", detail)


def check_disks(config: Config) -> list[Check]:
    return [check_disk("disk data", _absolute(config.store.data_dir)),
            check_disk("disk hf-cache", hf_cache_dir(config.generation))]


# --------------------------------------------------------------------------- Discord

# The same rule as bot/run.py's TOKEN_SHAPE (generation/ never imports bot/): three base64url parts,
# the bot's id, a timestamp and an HMAC.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$")
TOKEN_FIX = "copy the token from https://discord.com/developers/applications (Bot → Reset Token) into DISCORD_TOKEN"


def token_bot_id(token: str) -> str | None:
    """The bot's user id, which the first part of a token encodes (public, unlike the token)."""
    part = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if decoded.isdigit() else None


async def _fetch_me(token: str, api: str, timeout_s: float) -> tuple[int, dict[str, Any]]:
    import aiohttp

    headers = {"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (https://discord.com, 1.0) closeup-doctor"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
            session.get(f"{api.rstrip('/')}/users/@me", headers=headers) as response:
        body = await response.json(content_type=None) if response.status == 200 else {}
        return response.status, body if isinstance(body, dict) else {}


def _ask_discord(token: str, api: str, timeout_s: float) -> Check:
    import aiohttp

    name = "discord token"
    try:
        status, me = asyncio.run(_fetch_me(token, api, timeout_s))
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return Check(name, "warn", f"well-formed, but Discord could not be reached ({type(exc).__name__})",
                     "check this machine's internet access and run `closeup doctor --online` again")
    if status == 200:
        return Check(name, "ok", f"Discord accepts it: bot {me.get('username', '?')} (id {me.get('id', '?')})")
    if status == 401:
        return Check(name, "fail", "Discord refused the token (401)", TOKEN_FIX)
    return Check(name, "warn", f"well-formed, but Discord answered HTTP {status}", "try again in a minute")


def check_discord(token: str, scope: Scope, *, online: bool, api: str = Endpoints.discord_api,
                  timeout_s: float = DISCORD_TIMEOUT_S) -> Check:
    """Never shows the token; offline only its shape is checked."""
    name, token = "discord token", token.strip()
    if scope.worker:
        return Check(name, "skip", "a `closeup worker` machine does not talk to Discord")
    if not token:
        return Check(name, "fail", "no Discord bot token (DISCORD_TOKEN or discord.token)", TOKEN_FIX)
    if token.lower().startswith("bot "):
        return Check(name, "fail", "the token starts with 'Bot '", "set only the token itself, without 'Bot '")
    if not TOKEN_SHAPE.match(token):
        return Check(name, "fail", "does not look like a bot token (three parts separated by dots)", TOKEN_FIX)
    if online:
        return _ask_discord(token, api, timeout_s)
    bot_id = token_bot_id(token)
    return Check(name, "ok", f"well-formed{f' (bot id {bot_id})' if bot_id else ''}; not checked with Discord "
                 "(--online does)")


# --------------------------------------------------------------------------- Hugging Face


def check_huggingface(config: Config, *, online: bool, endpoint: str | None = None) -> Check:
    name = "huggingface"
    if not online:
        return Check(name, "skip", "not contacted (--online does)")
    if not _module_present("huggingface_hub"):
        return Check(name, "skip", "huggingface_hub is not installed")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi(endpoint=endpoint).model_info(config.models.base, revision=config.models.base_revision,
                                            timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError:
        return Check(name, "fail", f"reachable, but it has no model {config.models.base!r}",
                     "fix models.base (an SDXL repository in the diffusers layout)")
    except Exception as exc:  # network, proxy and hub errors alike: downloads will not work
        return Check(name, "warn", f"cannot reach Hugging Face ({type(exc).__name__}: {_first_line(str(exc))})",
                     "models must then be in the cache or in models.*_path folders (generation.offline = true)")
    return Check(name, "ok", f"reachable; {config.models.base} is there")


# --------------------------------------------------------------------------- running and output


def check_licences(config: Config) -> list[Check]:
    """Each part's licence (information), and one line on commercial use: a warning when some part does
    not allow it, a failure when generation.require_commercial_licence asks for a commercially clean stack."""
    from generation.licences import stack, verdict

    parts = stack(config)
    strict = config.generation.require_commercial_licence
    rows = []
    for part in parts:
        terms = part.terms
        status: Status = "fail" if strict and not terms.commercial else "ok"
        note = f" ({terms.note})" if terms.note else ""
        rows.append(Check(f"licence {part.name}", status, f"{terms.licence}{note}; used for {part.use}",
                          "" if terms.commercial else "replace it, or use closeup only where non-commercial use "
                          "is allowed"))
    cleared = all(part.terms.commercial for part in parts)
    rows.append(Check("licence verdict", "ok" if cleared else ("fail" if strict else "warn"), verdict(parts),
                      "" if cleared else "generation.require_commercial_licence = true refuses to start this stack"))
    return rows


def _guarded(area: str, probe: Callable[[], Check | list[Check]]) -> list[Check]:
    try:
        found = probe()
    except Exception as exc:  # a crashing probe is reported, never allowed to hide the other rows
        return [Check(area, "fail", f"the check crashed: {type(exc).__name__}: {_first_line(str(exc))}", BUG_FIX)]
    return found if isinstance(found, list) else [found]


def _secrets(config: Config) -> list[str]:
    password = ""
    with contextlib.suppress(ValueError):
        password = urlsplit(config.queue.redis_url).password or ""
    return [secret for secret in (config.discord.token.strip(), password) if len(secret) >= 4]


def _scrub(check: Check, secrets: Sequence[str]) -> Check:
    """Belt and braces: no row may ever carry the token or the Redis password, whatever a library said."""
    detail, fix = check.detail, check.fix
    for secret in secrets:
        detail, fix = detail.replace(secret, "***"), fix.replace(secret, "***")
    return replace(check, detail=detail, fix=fix)


def run_doctor(config: Config, *, online: bool, worker: bool = False,
               endpoints: Endpoints = Endpoints()) -> list[Check]:
    """Every check, in table order; ``worker`` judges the machine as a `closeup worker` host."""
    scope = Scope(generates=worker or config.queue.backend == "local", worker=worker)
    probes: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("python", check_python),
        ("package", lambda: check_packages(config, scope)),
        ("gpu", lambda: check_gpu(config.generation, scope, config.queue.job_timeout_s)),
        ("model", lambda: check_models(config, scope, online=online, endpoint=endpoints.huggingface)),
        ("face models", lambda: check_packs(config, scope)),
        ("licence", lambda: check_licences(config)),
        ("redis", lambda: check_redis(config.queue)),
        ("data", lambda: check_data_folders(config)),
        ("disk", lambda: check_disks(config)),
        ("discord", lambda: check_discord(config.discord.token, scope, online=online, api=endpoints.discord_api)),
        ("huggingface", lambda: check_huggingface(config, online=online, endpoint=endpoints.huggingface)),
    ]
    secrets = _secrets(config)
    return [_scrub(row, secrets) for area, probe in probes for row in _guarded(area, probe)]


def failed(checks: Iterable[Check]) -> bool:
    return any(check.status == "fail" for check in checks)


def counts(checks: Sequence[Check]) -> dict[str, int]:
    return {status: sum(check.status == status for check in checks) for status in STATUSES}


LABELS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def format_table(checks: Sequence[Check]) -> str:
    """Status, name and detail per row, the fix indented beneath; a verdict line last."""
    width = max((len(check.name) for check in checks), default=5)
    lines = [f"{'STATUS':<6}  {'CHECK':<{width}}  DETAIL"]
    for check in checks:
        lines.append(f"{LABELS[check.status]:<6}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status in ("warn", "fail"):
            lines.append(f"{'':<6}  {'':<{width}}  fix: {check.fix}")
    tally = ", ".join(f"{number} {status}" for status, number in counts(checks).items())
    verdict = "not ready: fix the FAIL rows first" if failed(checks) else "ready"
    lines.append(f"\n{tally} — {verdict}")
    return "\n".join(lines)


def to_json(checks: Sequence[Check]) -> str:
    return json.dumps({"ready": not failed(checks), "counts": counts(checks),
                       "checks": [asdict(check) for check in checks]}, indent=2, ensure_ascii=False)
