"""Logging set-up: tokens and Authorization values never reach a log line, in text or JSON."""

from __future__ import annotations

import json
import logging
import secrets
import string
from pathlib import Path

import pytest

from generation.logging_setup import scrub, setup_logging

B64URL = string.ascii_letters + string.digits + "-_"


def random_part(length: int) -> str:
    return "".join(secrets.choice(B64URL) for _ in range(length))


def fake_token(first: int = 26, second: int = 6, third: int = 38) -> str:
    """A random string shaped like a Discord bot token (user-id part, timestamp part, HMAC part)."""
    return f"{random_part(first)}.{random_part(second)}.{random_part(third)}"


# --------------------------------------------------------------------------- scrub()


@pytest.mark.parametrize(("first", "second", "third"), [(24, 6, 27), (26, 6, 38), (28, 7, 38), (23, 6, 27)])
def test_scrub_masks_token_shapes(first: int, second: int, third: int) -> None:
    token = fake_token(first, second, third)
    out = scrub(f"logging in with {token} now")
    assert token not in out
    assert out == "logging in with [token] now"


def test_scrub_masks_every_token_in_a_line() -> None:
    one, two = fake_token(), fake_token(24, 6, 27)
    out = scrub(f"old={one}, new={two}")
    assert one not in out and two not in out
    assert out.count("[token]") == 2


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bot xyz",
        "authorization: bot xyz",
        "Authorization=Bot xyz",
        "{'Authorization': 'Bot xyz', 'User-Agent': 'closeup'}",
        '{"Authorization": "Bot xyz"}',
        "Authorization: xyz",
    ],
)
def test_scrub_masks_authorization_values(text: str) -> None:
    out = scrub(text)
    assert "xyz" not in out
    assert "[redacted]" in out


def test_scrub_keeps_the_rest_of_the_header_dict() -> None:
    out = scrub("{'Authorization': 'Bot xyz', 'User-Agent': 'closeup'}")
    assert out == "{'Authorization': '[redacted]', 'User-Agent': 'closeup'}"


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = "faces.backend=auto: using insightface pack buffalo_l at ~/.insightface/models/buffalo_l"
    assert scrub(text) == text
    assert scrub("version 1.2.3, file a.b.c") == "version 1.2.3, file a.b.c"


# --------------------------------------------------------------------------- through the logging set-up


def emit_secrets(token: str) -> None:
    log = logging.getLogger("closeup.test")
    log.info("connecting with token %s", token)
    log.warning("request headers: %s", {"Authorization": f"Bot {token}", "User-Agent": "closeup"})
    log.info("raw header Authorization: Bot %s", token)
    log.info("as JSON: %s", json.dumps({"Authorization": f"Bot {token}"}))
    try:
        raise RuntimeError(f"login failed for {token}")
    except RuntimeError:
        log.exception("discord login failed")


def test_text_logging_never_writes_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    token = fake_token()
    setup_logging("INFO", "text")
    emit_secrets(token)
    err = capsys.readouterr().err
    assert "connecting with token [token]" in err
    assert "INFO" in err and "WARNING" in err and "closeup.test" in err
    assert "Traceback" in err and "RuntimeError" in err  # the exception is logged, scrubbed
    assert token not in err
    for part in token.split("."):
        assert part not in err


def test_json_logging_never_writes_the_token_and_parses(capsys: pytest.CaptureFixture[str]) -> None:
    token = fake_token()
    setup_logging("INFO", "json")
    emit_secrets(token)
    err = capsys.readouterr().err
    assert token not in err
    for part in token.split("."):
        assert part not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 5
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert entry["logger"] == "closeup.test"
    assert [e["level"] for e in entries] == ["INFO", "WARNING", "INFO", "INFO", "ERROR"]
    assert entries[0]["message"] == "connecting with token [token]"
    assert "[redacted]" in entries[1]["message"]
    assert "closeup" in entries[1]["message"]  # the other header survives
    assert "[redacted]" in entries[3]["message"]
    assert "RuntimeError" in entries[4]["exception"]
    assert "[token]" in entries[4]["exception"]


def test_json_logging_keeps_non_ascii_and_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json")
    logging.getLogger("closeup.test").info('café "quoted" ✓')
    entry = json.loads(capsys.readouterr().err.strip())
    assert entry["message"] == 'café "quoted" ✓'
    assert entry["level"] == "INFO"


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("WARNING", "text")
    log = logging.getLogger("closeup.test")
    log.info("quiet")
    log.warning("loud")
    err = capsys.readouterr().err
    assert "quiet" not in err
    assert "loud" in err


def test_setup_logging_twice_does_not_duplicate_lines(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "text")
    setup_logging("INFO", "json")
    logging.getLogger("closeup.test").info("once")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "once"


@pytest.mark.parametrize(
    "message",
    [
        '{"Authorization": "Bot short-secret"}',
        'Authorization="Bot short-secret"',
        'Authorization: short-secret"tail',
    ],
)
def test_json_logging_scrubs_before_encoding(capsys: pytest.CaptureFixture[str], message: str) -> None:
    """Quotes escaped by json.dumps must neither hide a header value nor let scrubbing break the line."""
    setup_logging("INFO", "json")
    logging.getLogger("closeup.test").info(message)
    err = capsys.readouterr().err
    entry = json.loads(err.strip())
    assert "short-secret" not in err
    assert "[redacted]" in entry["message"]


def test_interaction_and_webhook_tokens_in_urls_are_masked() -> None:
    from generation.logging_setup import scrub

    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTA6abcDEF_-ghiJKLmnoPQRstuVWXyz0123456789"
    for url in (f"POST https://discord.com/api/v10/interactions/1234567890/{token}/callback",
                f"PATCH https://discord.com/api/v10/webhooks/987654321/{token}/messages/@original"):
        cleaned = scrub(url)
        assert token not in cleaned and "[token]" in cleaned
    assert scrub("/webhooks/123/short") == "/webhooks/123/short"  # ids and short paths stay readable


def test_passwords_in_service_urls_are_masked() -> None:
    from generation.logging_setup import scrub

    cleaned = scrub("cannot reach redis://:hunter2secret@redis:6379/0 (timeout)")
    assert "hunter2secret" not in cleaned and "redis://:***@redis:6379/0" in cleaned
    assert scrub("https://example.com/a:b") == "https://example.com/a:b"


def test_secret_fields_in_logged_payloads_are_masked() -> None:
    from generation.logging_setup import scrub

    payload = "{'type': 2, 'token': 'aW50ZXJhY3Rpb246c2VjcmV0', 'id': '123', \"password\": \"pw-value\"}"
    cleaned = scrub(payload)
    assert "aW50ZXJhY3Rpb246c2VjcmV0" not in cleaned and "pw-value" not in cleaned
    assert "'id': '123'" in cleaned and "'type': 2" in cleaned


def test_every_line_is_json_warnings_and_library_loggers_included() -> None:
    """A worker start prints Python warnings and transformers/diffusers lines; in JSON mode each must be
    one JSON object (the libraries attach their own stderr handler on import: adopted again after it, as
    generation.loading does after importing them)."""
    import subprocess
    import sys

    script = (
        "import logging, warnings\n"
        "from generation.logging_setup import adopt_library_loggers, setup_logging\n"
        "setup_logging('INFO', 'json')\n"
        "from transformers.utils import logging as tlog\n"
        "from diffusers.utils import logging as dlog\n"
        "tlog.get_logger('transformers.modeling_utils')\n"
        "dlog.get_logger('diffusers.models')\n"
        "adopt_library_loggers()\n"
        "warnings.warn('a deprecation from some library', DeprecationWarning, stacklevel=1)\n"
        "warnings.warn('a user warning', UserWarning, stacklevel=1)\n"
        "tlog.get_logger('transformers.modeling_utils').warning('Some weights were not used')\n"
        "dlog.get_logger('diffusers.models').warning('kept in float32')\n"
        "logging.getLogger('huggingface_hub.file_download').warning('download resumed')\n"
    )
    done = subprocess.run([sys.executable, "-W", "always", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) >= 5, lines
    entries = [json.loads(line) for line in lines]  # every line parses
    loggers = {entry["logger"] for entry in entries}
    assert {"py.warnings", "transformers.modeling_utils", "diffusers.models"} <= loggers


def test_lines_logged_while_a_job_runs_carry_its_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The embedded queue runs the job on its own thread: the id still reaches every line logged there."""
    import asyncio
    import sys
    import threading

    sys.path.insert(0, str(Path(__file__).parent / "queue"))
    from fake_runner import FakeRunner

    from generation.jobs import EventKind, JobSpec
    from generation.queue.local import LocalQueue

    class LoggingRunner(FakeRunner):
        def run(self, spec, progress, cancelled: threading.Event):  # type: ignore[no-untyped-def]
            logging.getLogger("closeup.engine").info("denoising")
            return super().run(spec, progress, cancelled)

    setup_logging("INFO", "json")
    job = JobSpec(user_id="u1", guild_id="g1")

    async def main() -> None:
        async with LocalQueue(tmp_path / "q.db", LoggingRunner(steps=1)) as queue:
            events = queue.subscribe()
            await queue.submit(job)
            while (await asyncio.wait_for(events.get(), 10)).kind != EventKind.DONE:
                pass
        logging.getLogger("closeup").info("after the job")

    asyncio.run(main())
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [inside] = [e for e in entries if e["message"] == "denoising"]
    assert inside["job_id"] == job.job_id
    [outside] = [e for e in entries if e["message"] == "after the job"]
    assert "job_id" not in outside
