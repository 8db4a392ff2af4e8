"""Quality-gate speed and memory, on one thread, decode included.

    python benchmarks/bench_quality.py [--runs 30]

Prints p50/p95 per photo for a 1024-px photo and a 12-MP (4000×3000) JPEG, how the time splits
(decode, detection, landmarks, checks), and peak memory checking the 12-MP JPEG (measured in a
fresh child process). The baseline in the same run is a plain full-size Pillow decode of the same
12-MP file, so the ratios survive a noisy machine.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.config import ImagesConfig  # noqa: E402
from generation.faces.dlib_backend import DlibAnalyzer  # noqa: E402
from generation.images import load_image  # noqa: E402
from generation.quality import assess  # noqa: E402

cv2.setNumThreads(1)
PHOTO = ROOT / "tests" / "fixtures" / "faces" / "obama.jpg"


def make_photos() -> dict[str, bytes]:
    """A 1024-px photo and a 12-MP camera-sized JPEG (the portrait placed on a 4000×3000 frame)."""
    src = Image.open(PHOTO).convert("RGB")
    small = src.copy()
    small.thumbnail((1024, 1024))
    big = Image.new("RGB", (4000, 3000), (118, 112, 104))
    portrait = src.resize((2000, round(2000 * src.height / src.width)), Image.Resampling.BICUBIC)
    big.paste(portrait.crop((0, 0, 2000, 2500)), (1000, 250))
    out = {}
    for name, image in (("1024px", small), ("12MP", big)):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        out[name] = buffer.getvalue()
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def time_photo(data: bytes, analyzer: DlibAnalyzer, runs: int) -> dict[str, list[float]]:
    cfg = ImagesConfig()
    parts: dict[str, list[float]] = {k: [] for k in ("total", "decode", "detect", "landmarks", "checks")}
    for _ in range(runs):
        t0 = time.perf_counter()
        image = load_image(data, max_bytes=cfg.max_bytes, max_pixels=cfg.max_pixels,
                           max_side=cfg.analysis_max_side)
        t1 = time.perf_counter()
        assessment = assess(image, analyzer)
        t2 = time.perf_counter()
        parts["total"].append(t2 - t0)
        parts["decode"].append(t1 - t0)
        # Split the analyzer's share: detection alone, then landmarks on the found boxes.
        d0 = time.perf_counter()
        found = analyzer._detect(image.pixels)
        d1 = time.perf_counter()
        import dlib

        for box, _ in found:
            analyzer._landmarks(image.pixels, dlib.rectangle(*(round(v) for v in box)))
        d2 = time.perf_counter()
        parts["detect"].append(d1 - d0)
        parts["landmarks"].append(d2 - d1)
        parts["checks"].append(max(0.0, (t2 - t1) - (d2 - d0)))
        assert assessment.faces, "benchmark photo must contain a face"
    return parts


def plain_decode(data: bytes, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        Image.open(io.BytesIO(data)).convert("RGB").load()
        times.append(time.perf_counter() - t0)
    return times


CHILD = """
import sys
sys.path.insert(0, {root!r})
from generation.faces.dlib_backend import DlibAnalyzer
from generation.images import load_image
from generation.quality import assess

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) // 1024

analyzer = DlibAnalyzer()
loaded_peak = status('VmHWM')
with open('/proc/self/clear_refs', 'w') as f:  # reset the peak so it measures the photo alone
    f.write('5')
before = status('VmRSS')
data = open({path!r}, 'rb').read()
for _ in range(3):
    assess(load_image(data, max_side=2048), analyzer)
print(loaded_peak, before, status('VmHWM'))
"""


def peak_memory(data: bytes, tmp: Path) -> tuple[int, int, int]:
    path = tmp / "bench-12mp.jpg"
    path.write_bytes(data)
    code = CHILD.format(root=str(ROOT), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded_peak, before, after = (int(v) for v in out.stdout.split())
    return loaded_peak, before, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    photos = make_photos()
    analyzer = DlibAnalyzer()
    for data in photos.values():  # warm-up: model pages, allocator
        assess(load_image(data, max_side=2048), analyzer)

    print(f"closeup quality gate, one thread, {args.runs} runs per photo (ms)")
    print(f"{'photo':8} {'p50':>7} {'p95':>7} | {'decode':>7} {'detect':>7} {'landmk':>7} {'checks':>7}  (p50s)")
    for name, data in photos.items():
        parts = time_photo(data, analyzer, args.runs)
        ms = {k: [v * 1000 for v in vals] for k, vals in parts.items()}
        print(f"{name:8} {statistics.median(ms['total']):7.1f} {percentile(ms['total'], 95):7.1f} | "
              f"{statistics.median(ms['decode']):7.1f} {statistics.median(ms['detect']):7.1f} "
              f"{statistics.median(ms['landmarks']):7.1f} {statistics.median(ms['checks']):7.1f}")
        if name == "12MP":
            baseline = [v * 1000 for v in plain_decode(data, args.runs)]
            ratio = statistics.median(ms["total"]) / statistics.median(baseline)
            print(f"baseline: plain full-size Pillow decode of the 12-MP JPEG p50 {statistics.median(baseline):.1f} ms;"
                  f" whole check (decode included) = {ratio:.2f}× that decode alone")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        loaded_peak, before, after = peak_memory(photos["12MP"], Path(tmp))
    print(f"peak RSS while checking the 12-MP JPEG: {after} MB (process with models loaded: {before} MB, "
          f"so the photo adds {after - before} MB; loading the models peaked at {loaded_peak} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
