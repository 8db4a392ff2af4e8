"""`closeup worker`: refuses the embedded queue, fails fast and secret-free on a bad Redis URL."""

from __future__ import annotations

import pytest

from generation.cli import main


def test_worker_needs_the_redis_backend(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CLOSEUP_QUEUE__BACKEND", raising=False)
    assert main(["worker"]) == 2
    assert "closeup bot" in capsys.readouterr().err


def test_unreachable_redis_exits_1_without_the_password(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLOSEUP_QUEUE__BACKEND", "redis")
    assert main(["worker", "--redis-url", "redis://:hunter2secret@127.0.0.1:1/0"]) == 1
    printed = capsys.readouterr()
    assert "hunter2secret" not in printed.err + printed.out
    assert "127.0.0.1:1" in printed.err
