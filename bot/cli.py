"""`closeup` with the `bot` command added; every other command comes from generation/cli.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from generation import cli as generation_cli
from generation.config import Config

EXIT_SETUP = 2


def cmd_bot(args: argparse.Namespace, config: Config) -> int:
    from bot.run import run_bot

    return run_bot(config)


def add_bot_command(sub: Any) -> None:
    bot = sub.add_parser(
        "bot", help="run the Discord bot (embedded queue and GPU worker by default)",
        description="Needs a bot token: set DISCORD_TOKEN (or discord.token in the config file). "
        "Exit code: 0 clean stop, 2 setup problem (token, data folder, Redis).")
    bot.set_defaults(func=cmd_bot)


def main(argv: list[str] | None = None) -> int:
    return generation_cli.main(argv, add_commands=add_bot_command)


if __name__ == "__main__":
    sys.exit(main())
