"""A fast stand-in for the GPU (the edge of the queue) that returns real PNG images.

Tests about Discord behaviour use it instead of the tiny diffusion pipeline: each image is a flat
colour from the seed (or random noise of a chosen size, to test re-encoding for the upload limit).
"""

from __future__ import annotations

import base64
import io
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from generation.jobs import JobSpec, ResultImage
from generation.queue.base import JobFailed, Progress


def png_bytes(size: int, seed: int, noise: bool) -> bytes:
    rng = np.random.default_rng(seed)
    if noise:
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    else:
        pixels = np.full((size, size, 3), rng.integers(0, 256, 3, dtype=np.uint8), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


@dataclass
class FastGenerator:
    steps: int = 4
    step_s: float = 0.0
    size: int = 64
    noise: bool = False
    fail_reason: str | None = None
    gate: threading.Event | None = None  # when given, jobs wait for it before their first step
    seen: list[JobSpec] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]:
        with self.lock:
            self.seen.append(spec)
        if self.gate is not None:
            while not self.gate.wait(0.01):
                progress(0, self.steps)  # lets a cancel through while waiting
        if self.fail_reason:
            raise JobFailed(self.fail_reason)
        for step in range(1, self.steps + 1):
            time.sleep(self.step_s)
            progress(step, self.steps)
        base = spec.seed if spec.seed is not None else 1234
        return [ResultImage(png=base64.b64encode(png_bytes(self.size, base + i, self.noise)).decode("ascii"),
                            seed=base + i, likeness=0.81, same_person=True, face_found=True, refined=i == 0)
                for i in range(spec.count)]
