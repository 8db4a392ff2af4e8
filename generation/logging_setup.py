"""Logging set-up shared by every entry point, with secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import re
import sys

# Discord bot tokens: three base64url parts separated by dots; also "Bot <token>" headers.
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
_AUTH_PATTERN = re.compile(r"(Authorization['\"]?\s*[:=]\s*['\"]?)(Bot\s+)?[^\s'\",}]+", re.IGNORECASE)
# Interaction and webhook tokens travel in URL paths (discord.py logs request URLs at DEBUG).
_URL_TOKEN_PATTERN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.-]{20,}")
# Secret-named fields in logged payloads (discord.py logs gateway events, with interaction tokens, at DEBUG).
_FIELD_PATTERN = re.compile(r"""(['"]?(?:token|password|secret)['"]?\s*[:=]\s*['"])[^'"]+""", re.IGNORECASE)
# Passwords in service URLs (redis://:password@host).
_URL_PASSWORD_PATTERN = re.compile(r"([a-z][a-z0-9+.-]*://[^:@/\s]*:)[^@/\s]+@", re.IGNORECASE)


def scrub(text: str) -> str:
    """Mask Discord bot tokens, interaction/webhook tokens in URLs, URL passwords and Authorization values."""
    text = _TOKEN_PATTERN.sub("[token]", text)
    text = _URL_TOKEN_PATTERN.sub(r"\1[token]", text)
    text = _FIELD_PATTERN.sub(r"\1[redacted]", text)
    text = _URL_PASSWORD_PATTERN.sub(r"\1***@", text)
    return _AUTH_PATTERN.sub(r"\1[redacted]", text)


class _ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        # Scrub the text before encoding: after json.dumps, quotes are escaped (\"Bot ...\"), which
        # hid header values from the pattern and let a replacement break the line's JSON.
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once: stderr, chosen format, token scrubbing."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_ScrubbingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
