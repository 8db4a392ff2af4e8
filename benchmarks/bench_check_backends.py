"""Per-photo speed of `closeup check` on each face backend, one thread, decode included.

    python benchmarks/bench_check_backends.py [--runs 20] [--insightface-root DIR] [--pack buffalo_l]

For each backend it builds the analyzer the way `closeup check --backend …` does (create_analyzer from
the config) and times what the command does per photo: read the file, decode, run the gate. The dlib
backend on the same photos is the baseline in the same run, so the ratios survive a noisy machine.

Without --insightface-root it builds testkit's tiny stand-in packs (needs the dev extra's ``onnx``):
then the figures measure the backend's own work around the models (resizing, decoding the detector's
outputs, retries, alignment, dlib's 68 points), not a real SCRFD. Photos: a 1024-px portrait (the tiny
detector finds nothing there, so the whole retry ladder runs, in every orientation the gate tries) and
an 800×600 frame holding one square the tiny detector takes for a face (one try, embeddings on).
Also printed: the time to build each analyzer, to import the insightface package, and the installed
size of the packages the insightface extra brings.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.config import FacesConfig, ImagesConfig  # noqa: E402
from generation.faces.factory import create_analyzer  # noqa: E402
from generation.faces.types import FaceAnalyzer  # noqa: E402
from generation.images import load_image_file  # noqa: E402
from generation.quality import assess  # noqa: E402

cv2.setNumThreads(1)
PORTRAIT = ROOT / "tests" / "fixtures" / "faces" / "obama.jpg"
# What `pip install 'closeup[insightface]'` adds on top of the base install, and the OpenCV wheels.
FOOTPRINT = ("insightface", "onnxruntime", "onnx", "scipy", "scikit-image", "opencv-python",
             "opencv-python-headless")


def write_photos(folder: Path) -> dict[str, Path]:
    """The 1024-px portrait and the tiny detector's one-square frame, as files `check` would read."""
    portrait = Image.open(PORTRAIT).convert("RGB")
    portrait.thumbnail((1024, 1024))
    square = np.zeros((600, 800, 3), np.uint8)
    square[200:400, 300:500] = 255
    paths = {"portrait-1024": folder / "portrait.jpg", "square-800x600": folder / "square.png"}
    portrait.save(paths["portrait-1024"], "JPEG", quality=92)
    Image.fromarray(square).save(paths["square-800x600"], "PNG")
    return paths


def tiny_packs(folder: Path, pack: str) -> Path:
    """testkit's stand-in pack in the real layout (<root>/models/<pack>/*.onnx)."""
    sys.path.insert(0, str(ROOT / "testkit"))
    try:
        from tiny_onnx import make_pack
    except ImportError as exc:
        raise SystemExit(f"building the tiny packs needs the dev extra ({exc}); or pass --insightface-root") from None
    make_pack(folder / "models" / pack, pack=pack)
    return folder


def time_check(analyzer: FaceAnalyzer, photo: Path, runs: int, embeddings: bool) -> list[float]:
    """Seconds per photo for what `closeup check` does with one file: read, decode, gate."""
    options = ImagesConfig().load_options()
    assess(load_image_file(photo, **options), analyzer, embeddings=embeddings)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        assess(load_image_file(photo, **options), analyzer, embeddings=embeddings)
        times.append(time.perf_counter() - start)
    return times


def import_seconds(module: str) -> float | None:
    """Wall time of a fresh interpreter importing ``module``, minus an empty interpreter's."""
    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - start

    try:
        return run(f"import {module}") - run("pass")
    except subprocess.CalledProcessError:
        return None


def installed_mib(distribution: str) -> float | None:
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    total = 0
    for file in files:
        path = Path(file.locate())
        if path.is_file():
            total += path.stat().st_size
    return total / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--insightface-root", help="a folder with real packs (<root>/models/<pack>)")
    parser.add_argument("--pack", default="buffalo_l", choices=["buffalo_l", "antelopev2"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        photos = write_photos(tmp_path)
        root = Path(args.insightface_root) if args.insightface_root else tiny_packs(tmp_path / "packs", args.pack)
        backends = {
            "dlib": FacesConfig(backend="dlib"),
            "insightface": FacesConfig(backend="insightface", insightface_root=str(root),
                                       insightface_pack=args.pack, insightface_download=False),
        }
        analyzers: dict[str, FaceAnalyzer] = {}
        print(f"closeup check, per photo, one thread, {args.runs} runs (ms); packs: "
              f"{'tiny stand-ins' if not args.insightface_root else root}")
        for name, config in backends.items():
            start = time.perf_counter()
            analyzers[name] = create_analyzer(config)
            print(f"build the {name} analyzer: {(time.perf_counter() - start) * 1000:.0f} ms")

        print(f"{'backend':12} {'photo':16} {'p50':>8} {'p95':>8} {'vs dlib':>8}")
        baseline: dict[str, float] = {}
        for name, analyzer in analyzers.items():
            for label, photo in photos.items():
                embeddings = name == "insightface" and label.startswith("square")
                times = [t * 1000 for t in time_check(analyzer, photo, args.runs, embeddings)]
                p50 = statistics.median(times)
                if name == "dlib":
                    baseline[label] = p50
                ratio = p50 / baseline[label] if baseline.get(label) else float("nan")
                print(f"{name:12} {label:16} {p50:8.1f} {float(np.percentile(times, 95)):8.1f} {ratio:8.2f}")

    seconds = import_seconds("insightface")
    try:
        version = importlib.metadata.version("insightface")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    print(f"insightface package: {version}; import in a fresh interpreter: "
          f"{'n/a' if seconds is None else f'{seconds * 1000:.0f} ms'}")
    sizes = {name: installed_mib(name) for name in FOOTPRINT}
    print("installed size (MiB): " + ", ".join(
        f"{name} {size:.0f}" for name, size in sizes.items() if size is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
