"""A controllable stand-in for the GPU job (the edge of the queue): steps, sleeps, failures on cue."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from generation.jobs import JobSpec, ResultImage
from generation.queue.base import JobFailed, OutOfMemory, Progress


@dataclass
class FakeRunner:
    steps: int = 3
    step_s: float = 0.0
    fail_with: dict[str, BaseException] = field(default_factory=dict)  # job_id -> exception, every attempt
    oom_above: int | None = None  # raise OutOfMemory when spec.count is larger
    started: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    gate: threading.Event | None = None  # when set up, every job waits for it before its first step
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]:
        with self.lock:
            self.started.append(spec.job_id)
            self.counts.append(spec.count)
        if self.gate is not None:
            while not self.gate.wait(0.01):
                progress(0, self.steps)  # lets a cancel through while waiting
        if spec.job_id in self.fail_with:
            raise self.fail_with[spec.job_id]
        if self.oom_above is not None and spec.count > self.oom_above:
            raise OutOfMemory("CUDA out of memory")
        for step in range(1, self.steps + 1):
            time.sleep(self.step_s)
            progress(step, self.steps)
        return [ResultImage(png="", seed=(spec.seed or 0) + i, likeness=0.8, same_person=True, face_found=True,
                            refined=False) for i in range(spec.count)]


__all__ = ["FakeRunner", "JobFailed"]
