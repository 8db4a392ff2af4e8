"""Jobs and job events: plain JSON-serialisable data that crosses processes, machines and restarts.

Never pickle: a queue entry may come from another machine or an older release, so it is parsed
field by field, checked, and refused with a clear reason when it is not a job this version knows.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

JOB_VERSION = 1


class JobFormatError(ValueError):
    """A queue message that is not a job (or event) this version can run; the message says why."""


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    POISONED = "poisoned"  # failed too often; set aside with its reason, never retried

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.POISONED)


class EventKind(enum.StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class PortraitJob:
    """What a person asked for, as the engine runs it (a JobSpec carries it across the queue)."""

    prompt: str = ""
    style: str = "studio-headshot"
    framing: str | None = None  # None: the style's default, or what the prompt linter suggests
    count: int = 1
    seed: int | None = None  # None: a random base seed; image i gets seed + i
    identity_strength: float | None = None  # overrides the style's IP-Adapter weight
    nsfw_policy: str | None = None  # the server's content policy; the stricter of it and the host's applies


@dataclass(frozen=True)
class JobSpec:
    """One /portrait request. Reference photos travel as base64 of their validated file bytes."""

    user_id: str
    guild_id: str
    prompt: str = ""
    style: str = "studio-headshot"
    framing: str | None = None
    count: int = 1
    seed: int | None = None
    identity_strength: float | None = None
    nsfw_policy: str | None = None  # the server's content policy when stricter than the host's
    priority: int = 0  # higher runs first among a user's own jobs (e.g. a re-roll of a finished job)
    references: tuple[str, ...] = ()  # base64 of each reference photo
    timeout_s: float | None = None  # None: the queue's default
    job_id: str = field(default_factory=new_job_id)
    created_at: float = field(default_factory=time.time)
    version: int = JOB_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["references"] = list(self.references)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> JobSpec:
        data = _load_object(text, "job")
        version = data.get("version")
        if version != JOB_VERSION:
            raise JobFormatError(f"job version {version!r} is not supported (this release runs version {JOB_VERSION})")
        return _build(cls, _checked(cls, data))


@dataclass(frozen=True)
class ResultImage:
    """One finished portrait. ``png`` is base64 PNG; likeness is None when no face was found."""

    png: str
    seed: int
    likeness: float | None
    same_person: bool | None
    face_found: bool
    refined: bool


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    job_id: str
    at: float = field(default_factory=time.time)
    position: int | None = None  # queued: jobs ahead of this one
    eta_s: float | None = None  # queued: estimated seconds until it starts
    step: int | None = None
    total: int | None = None
    results: tuple[ResultImage, ...] = ()
    reason: str = ""  # failed / cancelled: what happened, in words a person can act on
    attempt: int = 0

    def to_json(self) -> str:
        data = asdict(self)
        data["kind"] = str(self.kind)
        data["results"] = [asdict(r) for r in self.results]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> JobEvent:
        data = _load_object(text, "event")
        try:
            data["kind"] = EventKind(data.get("kind"))
        except ValueError:
            raise JobFormatError(f"unknown event kind {data.get('kind')!r}") from None
        results = data.get("results", [])
        if not isinstance(results, list):
            raise JobFormatError("event results must be a list")
        data["results"] = tuple(_build(ResultImage, _checked(ResultImage, r)) for r in results)
        return _build(cls, _checked(cls, data, skip={"kind", "results"}))


def results_to_json(results: tuple[ResultImage, ...] | list[ResultImage]) -> str:
    """Finished portraits as the queues keep them, apart from the event (events carry no images)."""
    return json.dumps([asdict(r) for r in results], separators=(",", ":"))


def results_from_json(text: str | bytes | None) -> tuple[ResultImage, ...]:
    """What results_to_json wrote; empty for nothing stored, JobFormatError for anything else."""
    if not text:
        return ()
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobFormatError(f"results are not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise JobFormatError("results must be a JSON list")
    return tuple(_build(ResultImage, _checked(ResultImage, r)) for r in data)


def without_images(event: JobEvent) -> JobEvent:
    """The event as queues publish and journal it: the portraits stay behind, fetched once by the bot."""
    return dataclasses.replace(event, results=()) if event.results else event


def prompt_of(spec_json: str | bytes) -> str:
    """The prompt of a stored job spec, for listings and progress messages; "" when the spec is unreadable."""
    try:
        return JobSpec.from_json(spec_json).prompt
    except ValueError:  # JobFormatError, whatever the stored text was
        return ""


def _build(cls: type, values: dict[str, Any]) -> Any:
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise JobFormatError(f"{cls.__name__} is incomplete: {exc}") from None


def _load_object(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JobFormatError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "str | None": (str, type(None)), "int | None": (int, type(None)),
    "float | None": (int, float, type(None)), "bool | None": (bool, type(None)),
    "tuple[str, ...]": (list, tuple), "EventKind": (EventKind,),
    "tuple[ResultImage, ...]": (tuple,),
}


def _checked(cls: type, data: Any, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Only known fields, each of the declared type (bools are not ints here)."""
    if not isinstance(data, dict):
        raise JobFormatError(f"{cls.__name__} must be a JSON object")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise JobFormatError(f"{cls.__name__} has unknown fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in data.items():
        expected = _TYPES.get(str(known[name].type))
        if name not in skip and expected is not None:
            is_bool = isinstance(value, bool)
            if not isinstance(value, expected) or (is_bool and bool not in expected):
                raise JobFormatError(f"{cls.__name__}.{name} has the wrong type: {type(value).__name__}")
        out[name] = value
    if "references" in out:
        refs = out["references"]
        if not all(isinstance(r, str) for r in refs):
            raise JobFormatError("JobSpec.references must be base64 strings")
        out["references"] = tuple(refs)
    return out
