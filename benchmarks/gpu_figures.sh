#!/usr/bin/env bash
# Issue 14's GPU figures (FLUX.2 klein 4B and Qwen-Image-Edit-2511 next to InstantID and plain SDXL, full-size
# architectures with random weights) on a lent GPU machine that cannot download anything.
#
#   on the development machine:  bash benchmarks/gpu_figures.sh fetch
#       puts the wheel the GPU image lacks into .whl/ (diffusers 0.42.1, pure Python, 6.4 MB: the image has
#       torch, torchvision, transformers, peft, opencv and huggingface-hub already)
#   on the GPU machine (carry .whl):  bash benchmarks/gpu_figures.sh run [bench_generate.py arguments]
#       installs it into /tmp/site and prints bench_generate.py's table, also kept in $OUT/bench_generate.txt
#       (out/gpu-figures/ in the checkout where $OUT is not set).
#       Without arguments: --full-size --backend instantid edit --presets quality --batches 1 --runs 2, which
#       on an H200 is estimated (from the models' sizes) at 5-8 minutes, Qwen's 40 true-CFG steps the most.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(diffusers==0.42.1)

case "${1:-}" in
  fetch)
    mkdir -p .whl
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
      -d .whl "${WHEELS[@]}"
    ls -l .whl
    ;;
  run)
    shift
    if ! ls .whl/*.whl >/dev/null 2>&1; then
      echo "no wheels in .whl/: run 'bash benchmarks/gpu_figures.sh fetch' here and carry .whl" >&2
      exit 2
    fi
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    if [ "$#" -eq 0 ]; then
      set -- --full-size --backend instantid edit --presets quality --batches 1 --runs 2
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    python3 - <<'PY'
import importlib.metadata as metadata
for name in ("torch", "torchvision", "transformers", "diffusers", "peft"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "not installed")
PY
    mkdir -p "${OUT:-out/gpu-figures}"
    python3 benchmarks/bench_generate.py "$@" 2>&1 | tee "${OUT:-out/gpu-figures}/bench_generate.txt"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_figures.sh fetch | run [bench_generate.py arguments]" >&2
    exit 2
    ;;
esac
