"""The bot under a burst: N simulated people each send /portrait within a few seconds.

The real bot runs in its own process (so its peak memory is its own), pointed at the local Discord
emulator over TLS; the generator is a fast fake, so what is measured is the Discord side: time to
the first response (defer), command → job enqueued (its progress message posted), command → results,
REST calls per job, and the bot process's peak memory. The baseline is the same command sent by one
person at a time on the idle bot, in the same run; the ratios are what to compare across machines.

    .venv/bin/python benchmarks/bench_bot.py [--people 200] [--spread 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "testkit"), str(ROOT)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


# ---------------------------------------------------------------------------------- the bot process

async def child(port: int, ca: str, data: str, token: str) -> None:
    import dataclasses
    import ssl

    from emulator.tls import make_connector
    from fake_generator import FastGenerator

    from bot.app import CloseupBot
    from generation.config import Config

    config = Config()
    config = dataclasses.replace(
        config, store=dataclasses.replace(config.store, data_dir=f"{data}/store"),
        queue=dataclasses.replace(config.queue, path=f"{data}/queue.db", per_guild=100_000, per_user=10))
    ctx = ssl.create_default_context(cafile=ca)
    bot = CloseupBot(config, runner=FastGenerator(steps=4), connector_factory=lambda: make_connector(port, ctx))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runner = asyncio.create_task(bot.start(token))
    await stop.wait()

    await bot.close()
    await asyncio.gather(runner, return_exceptions=True)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "delivered": bot.delivery.delivered, "skipped_edits": bot.edits.skipped}), flush=True)


# ---------------------------------------------------------------------------------- the driver

async def seed_references(data: Path, user_ids: list[str]) -> None:
    from bot.store import Store

    selfie = (ROOT / "tests" / "fixtures" / "faces" / "obama.jpg").read_bytes()
    async with Store(data / "store") as store:
        for user_id in user_ids:
            await store.add_reference(user_id, selfie, "pass", ())


async def drive(people: int, spread: float, baseline_n: int) -> dict:
    from emulator import DiscordEmulator

    async with DiscordEmulator() as emu:
        users = [emu.add_user(f"person{i}") for i in range(people + baseline_n)]
        guild = emu.add_guild("bench", owner=users[0])
        channel = emu.add_channel(guild, "portraits")
        for user in users:
            emu.add_member(guild, user)
        tmp = Path(tempfile.mkdtemp(prefix="closeup-bench-bot-"))
        ca = tmp / "ca.pem"
        emu._tls.ca.cert_pem.write_to_path(str(ca))
        await seed_references(tmp, [u.id for u in users])
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(emu.port), str(ca), str(tmp), emu.token],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            await emu.wait_ready(timeout=60)
            await emu.wait_until(lambda: emu.commands(), timeout=60, what="commands synced")

            async def one(user, delay: float):
                await asyncio.sleep(delay)
                return await emu.slash(user, channel, "portrait")

            async def finished(inters) -> None:
                def done() -> bool:
                    return all(any(m.get("attachments") for m in i.followups) for i in inters)
                await emu.wait_until(done, timeout=600, what="every result")

            # Baseline: one person at a time on the idle bot.
            baseline = []
            for user in users[people:]:
                inter = await one(user, 0)
                await finished([inter])
                baseline.append(inter)
            start_requests = len(emu.requests)
            t0 = time.monotonic()
            burst = await asyncio.gather(*(one(u, random.uniform(0, spread)) for u in users[:people]))
            await finished(burst)
            wall = time.monotonic() - t0
            calls = [r for r in emu.requests[start_requests:] if "/api/v10/" in r.path]
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        child_stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}

        def measures(inters) -> dict[str, list[float]]:
            first, enqueue, results, noted = [], [], [], []
            for inter in inters:
                first.append(inter.responses[0].latency * 1000)
                mine = [r for r in emu.requests if inter.token in r.path]
                noted.append((next(r.wall for r in mine if r.method == "PATCH") - inter.dispatched_wall) * 1000)
                posts = [r for r in mine if r.method == "POST" and "/webhooks/" in r.path]
                enqueue.append((posts[0].wall - inter.dispatched_wall) * 1000)
                edits = [m for m in inter.followups if m.get("attachments")]
                results.append((edits[0]["_edits"][-1] - inter.dispatched_wall) * 1000)
            return {"first": first, "enqueue": enqueue, "results": results, "noted": noted}

        base, load = measures(baseline), measures(burst)
        return {
            "people": people, "spread_s": spread, "burst_wall_s": round(wall, 2),
            "defer_ms": {"p50": pct(load["first"], 50), "p99": pct(load["first"], 99),
                         "baseline_p50": pct(base["first"], 50)},
            "enqueue_ms": {"p50": pct(load["enqueue"], 50), "p99": pct(load["enqueue"], 99),
                           "baseline_p50": pct(base["enqueue"], 50)},
            "reference_found_ms": {"p50": pct(load["noted"], 50), "p99": pct(load["noted"], 99),
                                   "baseline_p50": pct(base["noted"], 50)},
            "results_ms": {"p50": pct(load["results"], 50), "p99": pct(load["results"], 99),
                           "baseline_p50": pct(base["results"], 50)},
            "rest_calls_per_job": round(len(calls) / people, 2),
            "rest_calls_by_route": _by_route(calls),
            "violations": len(emu.violations),
            "bot": child_stats,
        }


def _by_route(calls) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        key = f"{call.method} {call.route}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        asyncio.run(child(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--spread", type=float, default=3.0, help="seconds over which the commands arrive")
    parser.add_argument("--baseline", type=int, default=10, help="commands sent one at a time first")
    args = parser.parse_args()
    random.seed(1)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    report = asyncio.run(drive(args.people, args.spread, args.baseline))
    d, e, r = report["defer_ms"], report["enqueue_ms"], report["results_ms"]
    print(f"{report['people']} people within {report['spread_s']} s (fast fake generator), "
          f"all results in {report['burst_wall_s']} s")
    print(f"first response (defer): p50 {d['p50']:.1f} ms  p99 {d['p99']:.1f} ms   "
          f"idle baseline p50 {d['baseline_p50']:.1f} ms  (p99/baseline {d['p99'] / d['baseline_p50']:.1f}x)")
    n = report["reference_found_ms"]
    print(f"command -> 'using your saved reference' shown: p50 {n['p50']:.1f} ms  p99 {n['p99']:.1f} ms")
    print(f"command -> enqueued:    p50 {e['p50']:.1f} ms  p99 {e['p99']:.1f} ms   idle baseline p50 "
          f"{e['baseline_p50']:.1f} ms  (p99/baseline {e['p99'] / e['baseline_p50']:.1f}x)")
    print(f"command -> results:     p50 {r['p50']:.0f} ms  p99 {r['p99']:.0f} ms   idle baseline p50 "
          f"{r['baseline_p50']:.0f} ms")
    print(f"REST calls per job: {report['rest_calls_per_job']}  {report['rest_calls_by_route']}")
    print(f"bot process peak RSS: {report['bot'].get('peak_rss_mb', float('nan')):.0f} MB; "
          f"delivered {report['bot'].get('delivered')}, progress edits skipped by the budget "
          f"{report['bot'].get('skipped_edits')}; Discord rule violations: {report['violations']}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
