"""The queue's Runner for real jobs: a JobSpec in, the generation engine run, ResultImages out.

Loads the backend and the face analyzers once (they stay warm for every job). Everything a person
can fix (an unreadable photo, no face, a refused prompt, an unknown style) becomes JobFailed with
their message, so the queue fails the job at once instead of retrying it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading

from generation.config import Config
from generation.engine import Engine, build_reference
from generation.faces.types import FaceAnalyzer
from generation.images import ImageError, encode_png, load_image
from generation.jobs import JobSpec, PortraitJob, ResultImage
from generation.likeness import ReferenceSetError
from generation.loading import reference_crops
from generation.pipelines.types import Backend, GenerationError
from generation.prompts import PromptRejectedError, UnknownFramingError
from generation.queue.base import JobFailed, Progress
from generation.safety import SafetyChecker
from generation.styles import UnknownStyleError

log = logging.getLogger("closeup.worker")


class EngineRunner:
    def __init__(self, engine: Engine, conditioning: FaceAnalyzer, likeness: FaceAnalyzer, config: Config,
                 safety: SafetyChecker | None = None) -> None:
        self.engine = engine
        self.conditioning = conditioning
        self.likeness = likeness
        self.config = config
        self.safety = safety

    @classmethod
    def from_config(cls, config: Config, backend: Backend | None = None) -> EngineRunner:
        """Load everything once: the diffusion backend, the conditioning face model and the likeness one."""
        from generation.loading import conditioning_analyzer, likeness_analyzer, load_backend

        likeness = likeness_analyzer(config)
        backend = backend or load_backend(config)
        safety = SafetyChecker.load(config.generation, config.models) if config.generation.safety_checker else None
        return cls(Engine(backend, likeness, config.generation), conditioning_analyzer(config, likeness), likeness,
                   config, safety)

    def _photos(self, spec: JobSpec) -> list:
        images = self.config.images
        photos = []
        for number, encoded in enumerate(spec.references, start=1):
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise JobFailed(f"Reference photo {number} was damaged in the queue. Please send it again.") from None
            try:
                photos.append(load_image(data, **images.load_options()))
            except ImageError as exc:
                raise JobFailed(f"Reference photo {number}: {exc.user_message}") from None
        if not photos:
            raise JobFailed("This job has no reference photo. Attach a selfie or set one with /reference set.")
        return photos

    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]:
        photos = self._photos(spec)
        try:
            reference = build_reference(photos, self.conditioning, self.likeness, crops=reference_crops(self.config))
        except ReferenceSetError as exc:
            raise JobFailed(exc.user_message) from None
        job = PortraitJob(prompt=spec.prompt, style=spec.style, framing=spec.framing, count=spec.count,
                          seed=spec.seed, identity_strength=spec.identity_strength, nsfw_policy=spec.nsfw_policy)

        def on_progress(stage: str, done: int, total: int) -> None:
            progress(done, total)  # raises JobCancelled when the job was cancelled

        try:
            outcome = self.engine.run(job, reference, on_progress)
        except (PromptRejectedError, UnknownStyleError, UnknownFramingError, GenerationError) as exc:
            raise JobFailed(str(exc)) from None
        portraits = outcome.portraits
        if self.safety is not None:
            flags = self.safety.flagged([p.image for p in portraits])
            portraits = [p for p, flagged in zip(portraits, flags, strict=True) if not flagged]
            if not portraits:
                raise JobFailed("The safety checker withheld every image of this portrait. "
                                "Try a different prompt or style.")
        return [
            ResultImage(
                png=base64.b64encode(encode_png(p.image)).decode("ascii"),
                seed=p.seed,
                likeness=None if p.likeness is None else round(float(p.likeness.score), 4),
                same_person=None if p.likeness is None else bool(p.likeness.same_person),
                face_found=p.face_found,
                refined=p.refined,
            )
            for p in portraits
        ]


# What a person is told when the host's set-up is incomplete: the details (paths, settings, commands) are
# the host's business and go to the log and `closeup doctor`, not into a Discord channel.
NOT_READY = "The bot isn't ready to make portraits yet; its host has been told. Please try again later."


class LazyEngineRunner:
    """The in-process worker of `closeup bot`: loads the models on the first job, in the worker thread.

    The bot comes online at once instead of after a minute of model loading, and a host without the
    [gpu] extra gets a clear message on each job instead of a bot that will not start.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._runner: EngineRunner | None = None
        self._lock = threading.Lock()
        self.state = "cold"  # "cold", "warming", "ready" or "failed": what /queue tells people

    def warm_up(self) -> None:
        """Load the models now (the bot calls this on a thread at start, generation.warm_up), so the first
        person does not wait minutes; jobs that arrive meanwhile wait for it. Failures are logged for the
        host (the expected ones by _load, anything else here with its traceback) and left for the jobs."""
        try:
            self._load()
        except JobFailed:
            pass
        except Exception:
            log.exception("warming up the generation engine failed; each job will try again")

    def _load(self) -> EngineRunner:
        with self._lock:
            if self._runner is None:
                self.state = "warming"
                try:
                    self._runner = EngineRunner.from_config(self.config)
                except ImportError as exc:
                    log.error("cannot generate: the generation engine is not installed (%s). Install closeup[gpu] "
                              "on this machine, or set queue.backend = \"redis\" and run `closeup worker` on a "
                              "GPU machine; `closeup doctor` shows what is missing.", exc)
                    raise JobFailed(NOT_READY) from exc
                except Exception as exc:
                    from generation.faces import FaceModelMissingError
                    from generation.models import ModelMissingError

                    if isinstance(exc, ModelMissingError | FaceModelMissingError):
                        log.error("cannot generate: the models are not ready: %s (`closeup doctor` lists them)", exc)
                        raise JobFailed(NOT_READY) from exc
                    raise
                finally:
                    self.state = "ready" if self._runner is not None else "failed"
            return self._runner

    def run(self, spec: JobSpec, progress: Progress, cancelled: threading.Event) -> list[ResultImage]:
        return self._load().run(spec, progress, cancelled)
