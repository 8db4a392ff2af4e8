"""Logging set-up shared by every entry point, with secrets scrubbed from every record."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# The job a line is about: set while a worker runs one, read by every handler's filter below.
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("closeup_job_id", default=None)
# Libraries that install their own stderr handler (so their lines skipped our format, JSON included).
LIBRARY_LOGGERS = ("transformers", "diffusers", "huggingface_hub", "accelerate", "peft", "torch", "onnxruntime")
# HTTP clients that log every request at INFO (the hub client makes dozens per download): warnings only.
CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore")

# Discord bot tokens: three base64url parts separated by dots; also "Bot <token>" headers.
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
_AUTH_PATTERN = re.compile(r"(Authorization['\"]?\s*[:=]\s*['\"]?)(Bot\s+)?[^\s'\",}]+", re.IGNORECASE)
# Interaction and webhook tokens travel in URL paths (discord.py logs request URLs at DEBUG).
_URL_TOKEN_PATTERN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.-]{20,}")
# Secret-named fields in logged payloads (discord.py logs gateway events, with interaction tokens, at DEBUG).
_FIELD_PATTERN = re.compile(r"""(['"]?(?:token|password|secret)['"]?\s*[:=]\s*['"])[^'"]+""", re.IGNORECASE)
# Passwords in service URLs (redis://:password@host) and in their query strings (redis://host/0?password=pw).
_URL_PASSWORD_PATTERN = re.compile(r"([a-z][a-z0-9+.-]*://[^:@/\s]*:)[^@/\s]+@", re.IGNORECASE)
_QUERY_PASSWORD_PATTERN = re.compile(r"(password=)[^&\s]+", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs (``redis://user:***@host``, ``?password=***``) so messages and logs can show the
    rest. The one implementation: scrub() applies it to every log line, and the Redis queue and `closeup doctor`
    to the URLs and errors they show."""
    return _QUERY_PASSWORD_PATTERN.sub(r"\1***", _URL_PASSWORD_PATTERN.sub(r"\1***@", text))


def scrub(text: str) -> str:
    """Mask Discord bot tokens, interaction/webhook tokens in URLs, URL passwords and Authorization values."""
    text = _TOKEN_PATTERN.sub("[token]", text)
    text = _URL_TOKEN_PATTERN.sub(r"\1[token]", text)
    text = _FIELD_PATTERN.sub(r"\1[redacted]", text)
    text = mask_secrets(text)
    return _AUTH_PATTERN.sub(r"\1[redacted]", text)


class _JobFilter(logging.Filter):
    """Stamps each record with the job it was logged for (None outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
        return True


class _ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job = getattr(record, "job_id", None)
        if job:
            head, sep, tail = text.partition(": ")
            text = f"{head}: [job {job}] {tail}" if sep else f"[job {job}] {text}"
        return scrub(text)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if getattr(record, "job_id", None):
            entry["job_id"] = record.job_id
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        # Scrub the text before encoding: after json.dumps, quotes are escaped (\"Bot ...\"), which
        # hid header values from the pattern and let a replacement break the line's JSON.
        return json.dumps(entry, ensure_ascii=False)


def adopt_library_loggers() -> None:
    """Send the libraries' own log lines through our handler (format, JSON, scrubbing): they attach a
    stderr handler of their own when imported and stop propagation. Called at set-up and again after
    the generation libraries are imported."""
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            library.removeHandler(handler)
        library.propagate = True


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once: stderr, chosen format, token scrubbing; Python warnings and the
    libraries' loggers come through it too, so a JSON log is JSON on every line."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_ScrubbingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_JobFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    adopt_library_loggers()
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


@contextlib.contextmanager
def job_logging(job_id: str) -> Iterator[None]:
    """Lines logged inside (this task, and threads started with :func:`in_job_context`) carry ``job_id``."""
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


def in_job_context(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """``fn(*args)`` bound to the current context (the job id included) for an executor thread, which
    does not inherit it on its own."""
    context = contextvars.copy_context()
    return lambda: context.run(fn, *args)
