"""The bot in a process of its own, for the kill -9 test (test_faults.py) and the soak (test_soak.py).

    python bot_child.py PORT CA_FILE DATA_DIR TOKEN [--steps N] [--step-s S]

Embedded (local) queue on DATA_DIR, a fake generator taking N x S seconds per job, and the emulator's
Discord over TLS (the CA file trusts it). SIGTERM closes the bot cleanly; SIGKILL is the point of one
test. SIGUSR1 makes the process measure itself (resident and peak memory, open file descriptors,
asyncio tasks, the delivery's lanes, the store's temp files) into DATA_DIR/stats.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import json
import signal
import ssl
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "testkit"), str(ROOT / "tests" / "bot"), str(ROOT)]

from emulator.tls import make_connector  # noqa: E402
from fake_generator import FastGenerator  # noqa: E402
from reliability_kit import fd_kinds, open_fds, peak_rss_mb, rss_mb, store_temp_files  # noqa: E402

from bot.app import CloseupBot  # noqa: E402
from generation.config import Config  # noqa: E402


class NoFaces:
    """/portrait with a saved reference never checks a photo: no face models to load."""

    def detect(self, *args: object, **kwargs: object) -> list[object]:
        raise AssertionError("these tests send no photos")

    def analyze(self, *args: object, **kwargs: object) -> list[object]:
        return []  # a job's reference is then only downscaled (bot.imaging.job_reference)


def write_stats(bot: CloseupBot, data: Path, counter: list[int]) -> None:
    gc.collect()
    counter[0] += 1
    stats = {"seq": counter[0], "rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(peak_rss_mb(), 1),
             "fds": open_fds(), "fd_kinds": fd_kinds(), "tasks": len(asyncio.all_tasks()),
             "lanes": bot.delivery.active_lanes, "delivered": bot.delivery.delivered,
             "temp_files": len(store_temp_files(data))}
    partial = data / "stats.json.part"
    partial.write_text(json.dumps(stats))
    partial.replace(data / "stats.json")


async def main(args: argparse.Namespace) -> None:
    data = Path(args.data)
    config = Config()
    config = dataclasses.replace(
        config,
        store=dataclasses.replace(config.store, data_dir=str(data / "store")),
        queue=dataclasses.replace(config.queue, path=str(data / "queue.db"), per_user=10, per_guild=1000),
        bot=dataclasses.replace(config.bot, edit_interval_s=0.2, command_rate=1000),
    )
    context = ssl.create_default_context(cafile=args.ca)
    # The fake keeps the specs it ran (photos included) for tests to inspect; here only the last few.
    generator = FastGenerator(steps=args.steps, step_s=args.step_s, seen=collections.deque(maxlen=8))  # type: ignore[arg-type]
    bot = CloseupBot(config, runner=generator, analyzer=NoFaces(),  # type: ignore[arg-type]
                     connector_factory=lambda: make_connector(args.port, context))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    counter = [0]
    loop.add_signal_handler(signal.SIGUSR1, write_stats, bot, data, counter)
    running = asyncio.create_task(bot.start(args.token))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    await bot.close()
    await asyncio.gather(running, return_exceptions=True)
    print(f"delivered {bot.delivery.delivered}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("ca")
    parser.add_argument("data")
    parser.add_argument("token")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--step-s", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
