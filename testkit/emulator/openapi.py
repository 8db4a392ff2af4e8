"""Request-body validation against Discord's own OpenAPI 3.1 description of the v10 REST API.

``openapi.json`` next to this module is a copy of discord/discord-api-spec (MIT, see
``openapi.LICENSE``). Concrete paths are mapped to the spec's templates (``/channels/{channel_id}/
messages``); one jsonschema validator is built per operation on first use and cached.

Where the spec is stricter than what Discord accepts and discord.py 2.7.1 relies on that, the copy
is patched in memory by ``_patch_spec`` (each patch says why); everything else stays strict.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

DEFAULT_SPEC = Path(__file__).with_name("openapi.json")


@dataclass(frozen=True)
class RouteMatch:
    template: str
    params: dict[str, str]


@dataclass(frozen=True)
class SchemaProblem:
    message: str  # "components.0.components.0.custom_id: 'xxx…' is too long"
    errors: dict[str, Any]  # Discord's nested {"field": {"_errors": [...]}} shape


def _patch_spec(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    # Discord accepts snowflakes as JSON integers too, and discord.py sends integers for
    # attachments[].id (File.to_dict(index) and Attachment.to_dict()) and for message_reference ids.
    snowflake = schemas["SnowflakeType"]
    schemas["SnowflakeType"] = {"anyOf": [snowflake, {"type": "integer", "minimum": 0}]}


def _pointer(path: list[str | int]) -> str:
    return ".".join(str(part) for part in path) or "(body)"


def _nested_errors(path: list[str | int], message: str) -> dict[str, Any]:
    leaf: dict[str, Any] = {"_errors": [{"code": "SCHEMA_INVALID", "message": message}]}
    for part in reversed(path):
        leaf = {str(part): leaf}
    return leaf


class OpenApi:
    """Path-template matching and cached request-body validators for one spec document."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else DEFAULT_SPEC
        self.doc: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        _patch_spec(self.doc)
        self._by_length: dict[int, list[tuple[str, list[str]]]] = {}
        for template in self.doc["paths"]:
            segments = template.strip("/").split("/")
            self._by_length.setdefault(len(segments), []).append((template, segments))
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}

    def match(self, path: str) -> RouteMatch | None:
        """Map a concrete API path (without /api/v10) to its template; literal segments win."""
        segments = path.strip("/").split("/")
        best: tuple[int, str, dict[str, str]] | None = None
        for template, parts in self._by_length.get(len(segments), []):
            params: dict[str, str] = {}
            literals = 0
            for want, got in zip(parts, segments, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    params[want[1:-1]] = got
                elif want == got:
                    literals += 1
                else:
                    break
            else:
                if best is None or literals > best[0]:
                    best = (literals, template, params)
        return None if best is None else RouteMatch(best[1], best[2])

    def has_operation(self, method: str, template: str) -> bool:
        return method.lower() in self.doc["paths"].get(template, {})

    def _validator(self, method: str, template: str) -> Draft202012Validator | None:
        key = (method.upper(), template)
        if key not in self._validators:
            operation = self.doc["paths"].get(template, {}).get(method.lower(), {})
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema is None:
                self._validators[key] = None
            else:
                # "#/components/..." refs resolve against the root, so the root carries them.
                root = {**copy.deepcopy(schema), "components": self.doc["components"]}
                self._validators[key] = Draft202012Validator(root)
        return self._validators[key]

    def accepts_body(self, method: str, template: str) -> bool:
        return self._validator(method, template) is not None

    def validate(self, method: str, template: str, body: Any) -> SchemaProblem | None:
        """None when the JSON body (or multipart payload_json) matches the operation's schema."""
        validator = self._validator(method, template)
        if validator is None:
            return None
        error: ValidationError | None = best_match(validator.iter_errors(body))
        if error is None:
            return None
        path = list(error.absolute_path)
        text = error.message if len(error.message) <= 300 else error.message[:300] + "…"
        return SchemaProblem(f"{_pointer(path)}: {text}", _nested_errors(path, text))


@functools.cache
def load_openapi(path: Path = DEFAULT_SPEC) -> OpenApi:
    """One parsed spec (and its cached validators) per process: every emulator in a test run shares it."""
    return OpenApi(path)
