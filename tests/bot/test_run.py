"""bot.run's start-up checks and the `closeup` command line with `bot` added (bot.cli)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bot.cli import main
from bot.run import EXIT_SETUP, data_problem, token_problem
from generation.config import Config, QueueConfig, StoreConfig

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
# Shaped like a bot token (id . timestamp . HMAC) but made up.
FAKE_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def config_in(data_dir: Path, queue_path: Path) -> Config:
    return Config(store=StoreConfig(data_dir=str(data_dir)), queue=QueueConfig(path=str(queue_path)))


def test_token_problem_empty() -> None:
    problem = token_problem("")
    assert problem is not None
    assert "DISCORD_TOKEN" in problem


@pytest.mark.parametrize("token", [f"Bot {FAKE_TOKEN}", f"bot {FAKE_TOKEN}", "Bot xxx"])
def test_token_problem_bot_prefix(token: str) -> None:
    problem = token_problem(token)
    assert problem is not None
    assert "'Bot '" in problem


@pytest.mark.parametrize("token", [
    "not-a-token",
    "abc.def.ghi",
    FAKE_TOKEN.replace(".", ""),
    FAKE_TOKEN + ".extra",
    FAKE_TOKEN.replace("G", "G ", 1),
    "x" * 70,
])
def test_token_problem_malformed(token: str) -> None:
    problem = token_problem(token)
    assert problem is not None
    assert "does not look like a bot token" in problem


@pytest.mark.parametrize("token", [FAKE_TOKEN, f"  {FAKE_TOKEN}\n", "A" * 18 + ".abcd." + "-_" * 10])
def test_token_problem_accepts_well_shaped_tokens(token: str) -> None:
    assert token_problem(token) is None


def test_data_problem_creates_private_folders(tmp_path: Path) -> None:
    config = config_in(tmp_path / "data", tmp_path / "queue" / "queue.db")
    assert data_problem(config) is None
    for folder in (tmp_path / "data", tmp_path / "queue"):
        assert folder.is_dir()
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    assert not (tmp_path / "queue" / "queue.db").exists()


def test_data_problem_when_a_file_is_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    problem = data_problem(config_in(blocker / "data", tmp_path / "queue.db"))
    assert problem is not None
    assert "cannot create the data folder" in problem
    assert str(blocker / "data") in problem


@pytest.mark.skipif(AS_ROOT, reason="root ignores file permissions")
def test_data_problem_unwritable_parent(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        problem = data_problem(config_in(locked / "data", tmp_path / "queue.db"))
        assert problem is not None
        assert "cannot create the data folder" in problem
        assert str(locked / "data") in problem
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(AS_ROOT, reason="root ignores file permissions")
def test_data_problem_existing_folder_not_writable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        problem = data_problem(config_in(locked, tmp_path / "queue.db"))
        assert problem is not None
        assert "not writable" in problem
        assert str(locked) in problem
    finally:
        locked.chmod(0o700)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No token anywhere in the environment; the bot's folders inside tmp_path."""
    for var in list(os.environ):
        if var.startswith("CLOSEUP_"):
            monkeypatch.delenv(var)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setenv("CLOSEUP_STORE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLOSEUP_QUEUE__PATH", str(tmp_path / "queue" / "queue.db"))
    monkeypatch.setenv("CLOSEUP_LOGGING__FORMAT", "text")
    return tmp_path


def test_cli_bot_without_token_exits_2_naming_discord_token(clean_env: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bot"]) == EXIT_SETUP == 2
    err = capsys.readouterr().err
    assert "cannot start the bot" in err
    assert "DISCORD_TOKEN" in err


def test_cli_bot_with_malformed_token_exits_2(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", f"Bot {FAKE_TOKEN}")
    assert main(["bot"]) == 2
    err = capsys.readouterr().err
    assert "'Bot '" in err
    assert FAKE_TOKEN not in err  # the token itself never reaches the log


def test_cli_help_lists_the_bot_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "bot" in out.split("positional arguments")[-1]
    assert "run the Discord bot" in out
    for command in ("check", "generate", "worker"):
        assert command in out


def test_cli_bot_help_mentions_discord_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bot", "--help"])
    assert exit_info.value.code == 0
    assert "DISCORD_TOKEN" in capsys.readouterr().out


def test_cli_check_still_works(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--json", str(FACES / "obama.jpg")])
    assert code in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == {0: "pass", 1: "warn"}[code]
    assert report["faces_found"] == 1


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_config(tmp_path: Path, url: str) -> Config:
    from generation.config import DiscordConfig

    return Config(discord=DiscordConfig(token=FAKE_TOKEN), store=StoreConfig(data_dir=str(tmp_path / "data")),
                  queue=QueueConfig(path=str(tmp_path / "q.db"), backend="redis", redis_url=url))


def test_unreachable_redis_stops_the_bot_with_exit_2_in_one_line_before_discord(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import bot.run as run

    monkeypatch.setattr(run, "serve", lambda config: pytest.fail("logged in to Discord with no queue"))
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    started = time.monotonic()
    with caplog.at_level("ERROR", logger="closeup.bot"):
        assert run.run_bot(_redis_config(tmp_path, url)) == EXIT_SETUP
    assert time.monotonic() - started < 2.0
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    message = record.getMessage()
    assert "Cannot reach Redis" in message and "hunter2" not in message and record.exc_info is None


def test_a_redis_that_accepts_but_never_answers_is_given_up_on_within_2_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A firewall or a wrong service on the port: the connection opens, no reply ever comes."""
    import socket
    import threading
    import time

    from bot.run import run_bot

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # accepted, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with caplog.at_level("ERROR", logger="closeup.bot"):
            assert run_bot(_redis_config(tmp_path, f"redis://127.0.0.1:{server.getsockname()[1]}/0")) == EXIT_SETUP
        assert time.monotonic() - started < 2.5
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        server.close()
    assert any("Redis" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_no_network_to_discord_is_one_line_and_exit_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network is the true edge here: discord.py's login raising what aiohttp raises offline."""
    import aiohttp

    import bot.app
    from bot.run import serve

    async def offline(self: object, token: str) -> None:
        raise aiohttp.ClientConnectorDNSError(
            aiohttp.client_reqrep.ConnectionKey("discord.com", 443, True, True, None, None, None),
            OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(bot.app.CloseupBot, "start", offline)
    config = Config(store=StoreConfig(data_dir=str(tmp_path / "data")), queue=QueueConfig(path=str(tmp_path / "q")))
    import asyncio

    with caplog.at_level("ERROR", logger="closeup.bot"):
        assert asyncio.run(serve(config)) == EXIT_SETUP
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "cannot reach Discord" in record.getMessage() and record.exc_info is None


def test_the_bot_warns_at_start_when_the_embedded_worker_has_no_gpu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    import bot.run as run
    from generation.config import DiscordConfig

    async def no_discord(config: Config) -> int:
        return 0

    monkeypatch.setattr(run, "serve", no_discord)
    config = Config(discord=DiscordConfig(token=FAKE_TOKEN), store=StoreConfig(data_dir=str(tmp_path / "d")),
                    queue=QueueConfig(path=str(tmp_path / "q.db")))
    with caplog.at_level("WARNING", logger="closeup.bot"):
        assert run.run_bot(config) == 0
    [warning] = [r.getMessage() for r in caplog.records if "generation on this machine" in r.getMessage()]
    assert "job timeout" in warning and "closeup worker" in warning
    caplog.clear()
    redis = Config(discord=DiscordConfig(token=FAKE_TOKEN), store=StoreConfig(data_dir=str(tmp_path / "d")),
                   queue=QueueConfig(path=str(tmp_path / "q.db"), backend="redis"))  # the machine's Redis
    with caplog.at_level("WARNING", logger="closeup.bot"):
        assert run.run_bot(redis) == 0
    assert not [r for r in caplog.records if "generation on this machine" in r.getMessage()]
