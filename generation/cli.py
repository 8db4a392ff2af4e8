"""The `closeup` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generation.config import Config, ConfigError, load_config, unused_environment
from generation.logging_setup import setup_logging

log = logging.getLogger("closeup")

EXIT_PASS, EXIT_WARN, EXIT_FAIL, EXIT_UNREADABLE = 0, 1, 2, 3
EXIT_USAGE = 64  # a bad command line (BSD sysexits EX_USAGE), kept apart from "the photo failed"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _output_path(template: Path, photo: Path, many: bool, taken: set[Path]) -> Path:
    """With several photos, OUT.png becomes OUT-<photo name>.png so nothing is overwritten.

    Photos sharing a name (a/me.jpg, b/me.png, or one given twice) get -2, -3, ... after it.
    """
    if not many:
        return template
    suffix = template.suffix or ".png"
    out = template.with_name(f"{template.stem}-{photo.stem}{suffix}")
    n = 2
    while out in taken:
        out = template.with_name(f"{template.stem}-{photo.stem}-{n}{suffix}")
        n += 1
    taken.add(out)
    return out


def _format_report(photo: Path, report_dict: dict) -> str:
    lines = [f"{photo}: {report_dict['verdict'].upper()}  ({report_dict['faces_found']} face(s), "
             f"backend {report_dict['backend']})"]
    lines += [f"  -> {message}" for message in report_dict["messages"]]
    for note in report_dict["notes"]:
        lines.append(f"  note: {note}")
    for check in report_dict["checks"]:
        value = "" if check["value"] is None else f"{check['value']:g}"
        lines.append(f"    {check['name']:<15} {check['tier']:<8} {value:>9}  {check['detail']}")
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    from generation.faces import FaceModelMissingError
    from generation.faces.factory import create_analyzer
    from generation.images import ImageError, encode_jpeg, encode_png, load_image_file
    from generation.quality import assess
    from generation.quality.crop import apply_crop
    from generation.quality.preview import render_preview
    from generation.quality.report import Tier

    try:
        analyzer = create_analyzer(config.faces)
    except FaceModelMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    worst = EXIT_PASS
    results = []
    many = len(args.photos) > 1
    written: set[Path] = set()
    for photo in args.photos:
        photo = Path(photo)
        try:
            image = load_image_file(photo, **config.images.load_options())
        except ImageError as exc:
            worst = max(worst, EXIT_UNREADABLE)
            results.append({"photo": str(photo), "verdict": "unreadable", "error": exc.code,
                            "message": exc.user_message})
            if not args.json:
                print(f"{photo}: UNREADABLE  -> {exc.user_message}")
            continue
        try:
            assessment = assess(image, analyzer, embeddings=config.faces.embeddings)
        except Exception:  # a bug must not cost the other photos their reports
            log.exception("checking %s failed", photo)
            worst = max(worst, EXIT_UNREADABLE)
            results.append({"photo": str(photo), "verdict": "error", "error": "internal",
                            "message": "Checking this photo failed unexpectedly (details in the log)."})
            continue
        report = assessment.report.to_dict()
        report["photo"] = str(photo)
        code = {Tier.PASS: EXIT_PASS, Tier.WARN: EXIT_WARN}.get(assessment.report.verdict, EXIT_FAIL)
        worst = max(worst, code)
        try:
            if args.annotate:
                out = _output_path(Path(args.annotate), photo, many, written)
                out.write_bytes(encode_png(render_preview(assessment)))
                report["preview"] = str(out)
            if args.crop and assessment.report.crop is not None:
                out = _output_path(Path(args.crop), photo, many, written)
                crop = apply_crop(assessment.pixels, assessment.report.crop, image.scale)
                out.write_bytes(encode_jpeg(crop) if out.suffix.lower() in (".jpg", ".jpeg") else encode_png(crop))
                report["crop_file"] = str(out)
        except OSError as exc:
            print(f"error: cannot write {exc.filename or 'output'}: {exc.strerror or exc}", file=sys.stderr)
            worst = max(worst, EXIT_UNREADABLE)
        results.append(report)
        if not args.json:
            print(_format_report(photo, report))
    if args.json:
        json.dump(results if many else results[0], sys.stdout, indent=2, ensure_ascii=False)
        print()
    return worst


GENERATE_EXIT = {"ok": 0, "below_target": 1, "refused": 2, "unreadable": 3, "models": 4}


def _load_photos(paths: list[str], config: Config) -> list:
    from generation.images import load_image_file

    return [load_image_file(path, **config.images.load_options()) for path in paths]


def licence_refusal(config: Config) -> str | None:
    from generation.licences import refusal

    return refusal(config)


def cmd_generate(args: argparse.Namespace, config: Config) -> int:
    """Reference photos + prompt → portraits, likeness per image, and a contact sheet."""
    refused = licence_refusal(config)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    from generation.contact_sheet import contact_sheet
    from generation.engine import Engine, build_reference
    from generation.faces import FaceModelMissingError
    from generation.images import ImageError, encode_png
    from generation.jobs import PortraitJob
    from generation.likeness import ReferenceSetError
    from generation.loading import conditioning_analyzer, likeness_analyzer, load_backend, reference_crops
    from generation.models import ModelMissingError
    from generation.pipelines.types import GenerationError, OutOfMemory
    from generation.prompts import PromptRejectedError, UnknownFramingError
    from generation.queue.base import out_of_memory_outcome
    from generation.styles import UnknownStyleError

    out_dir = Path(args.out)
    try:
        photos = _load_photos(args.photos, config)
    except ImageError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return GENERATE_EXIT["unreadable"]
    job = PortraitJob(prompt=args.prompt, style=args.style, framing=args.framing, count=args.n, seed=args.seed,
                      identity_strength=args.identity_strength)
    try:
        likeness = likeness_analyzer(config)
        conditioning = conditioning_analyzer(config, likeness)
        reference = build_reference(photos, conditioning, likeness, crops=reference_crops(config))
        for message in reference.messages:
            print(f"note: {message}", file=sys.stderr)
        backend = load_backend(config)
    except ReferenceSetError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return GENERATE_EXIT["refused"]
    except (ModelMissingError, FaceModelMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return GENERATE_EXIT["models"]

    from tqdm import tqdm

    bar = tqdm(total=None, unit="step", file=sys.stderr, disable=args.quiet, leave=False)

    def progress(stage: str, done: int, total: int) -> None:
        bar.set_description(stage)
        bar.total = total
        bar.n = done
        bar.refresh()

    engine = Engine(backend, likeness, config.generation)
    try:
        smaller = False
        while True:  # the queue's out-of-memory policy: once more with one image, then a clear failure
            try:
                outcome = engine.run(dataclasses.replace(job, count=1) if smaller else job, reference, progress)
                break
            except OutOfMemory:
                reason = out_of_memory_outcome(job.count, smaller)
                if reason is not None:
                    raise GenerationError(reason) from None
                smaller = True
                print(f"note: the GPU ran out of memory making {job.count} images at once; making one.",
                      file=sys.stderr)
    except (PromptRejectedError, UnknownStyleError, UnknownFramingError, GenerationError, ValueError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return GENERATE_EXIT["refused"]
    bar.close()
    for change in outcome.lint.changes:
        print(f"prompt: {change}", file=sys.stderr)
    for message in outcome.messages:
        print(f"note: {message}", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    for rank, portrait in enumerate(outcome.portraits, start=1):
        path = out_dir / f"portrait-{rank}-seed{portrait.seed}.png"
        path.write_bytes(encode_png(portrait.image))
        score = "no face found" if portrait.likeness is None else f"likeness {portrait.likeness.score:.2f}" + (
            " (same person)" if portrait.likeness.same_person else " (not a match)")
        print(f"{path}: {score}{' · face re-rendered' if portrait.refined else ''}")
    sheet = out_dir / "contact-sheet.png"
    sheet.write_bytes(encode_png(contact_sheet(outcome.portraits)))
    print(f"{sheet}: contact sheet")
    return GENERATE_EXIT["ok"] if outcome.threshold_met else GENERATE_EXIT["below_target"]


def cmd_worker(args: argparse.Namespace, config: Config) -> int:
    """A GPU worker for the Redis queue: loads the models once, then takes jobs until stopped."""
    import asyncio

    from generation.queue.worker import run_worker

    if config.queue.backend != "redis" and not args.redis_url:
        print("error: `closeup worker` serves the Redis queue; set queue.backend = \"redis\" (and queue.redis_url). "
              "With the embedded queue the worker runs inside `closeup bot`.", file=sys.stderr)
        return 2
    refused = licence_refusal(config)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    return asyncio.run(run_worker(args.config, redis_url=args.redis_url, name=args.name))


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    """One table of what is ready and what is not, so a server owner knows before starting the bot."""
    from generation.doctor import failed, format_table, run_doctor, to_json

    checks = run_doctor(config, online=args.online, worker=args.worker)
    print(to_json(checks) if args.json else format_table(checks))
    return 1 if failed(checks) else 0


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    """`closeup models list` / `closeup models pull`: what generation needs, and fetching it ahead of time."""
    try:
        return _models(args, config)
    except ImportError as exc:
        print(f"error: the generation packages are not installed ({exc}): pip install 'closeup[gpu]'",
              file=sys.stderr)
        return 1


def _models(args: argparse.Namespace, config: Config) -> int:
    from generation.faces import FaceModelMissingError
    from generation.model_pull import format_states, needed_refs, pull, pull_packs, state_of
    from generation.models import ModelMissingError

    refs = needed_refs(config, backend=args.generation_backend, preset=args.preset)
    if args.action == "list":
        states = [state_of(ref, config.generation) for ref in refs]
        print(format_states(states))
        return 0 if all(state.ready for state in states) else 1
    if args.quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    states, failures = [], []
    for ref in refs:
        print(f"{ref.role}: {ref.local_path or f'{ref.repo_id}@{ref.revision}'}", file=sys.stderr, flush=True)
        try:
            states.append(pull(ref, config.generation))
        except ModelMissingError as exc:
            failures.append(str(exc))
            states.append(state_of(ref, config.generation))
    for pack, outcome in pull_packs(config, backend=args.generation_backend):
        if isinstance(outcome, FaceModelMissingError):
            failures.append(str(outcome))
        else:
            print(f"insightface {pack}: {outcome}", file=sys.stderr)
    print(format_states(states))
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_queue(args: argparse.Namespace, config: Config) -> int:
    """`closeup queue ls` / `closeup queue cancel JOB`: the host's view of the queue beside a running bot."""
    import asyncio

    from generation.queue.base import QueueStorageError

    try:
        return asyncio.run(_queue_command(args, config))
    except QueueStorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _queue_command(args: argparse.Namespace, config: Config) -> int:
    import time

    q = config.queue
    if q.backend == "redis":
        from generation.queue.redis import RedisQueue

        queue: Any = RedisQueue(q.redis_url, prefix=q.redis_prefix)
    else:
        if not Path(q.path).exists():
            print(f"error: no job journal at {q.path} (queue.path): has `closeup bot` run here?", file=sys.stderr)
            return 1
        if args.action in ("cancel", "retry"):
            print(f"error: the embedded queue belongs to the running bot: `closeup queue {args.action}` works with "
                  "queue.backend = \"redis\". Cancel from Discord (/settings queue for server admins, /queue for "
                  "your own); a failed portrait is made again with its Re-roll button.", file=sys.stderr)
            return 1
        from generation.queue.local import LocalQueue

        queue = LocalQueue(q.path, runner=None)  # type: ignore[arg-type] - read only: no worker runs
    await queue.open_for_inspection()
    try:
        if args.action in ("cancel", "retry") and not args.job:
            print(f"error: closeup queue {args.action} JOB_ID", file=sys.stderr)
            return EXIT_USAGE
        if args.action == "cancel":
            if await queue.cancel(args.job):
                print(f"cancelled {args.job}; its owner's message says so")
                return 0
            print(f"error: {args.job} is not queued or running", file=sys.stderr)
            return 1
        if args.action == "retry":
            event = await queue.retry(args.job)
            if event is None:
                print(f"error: {args.job} is not a failed or set-aside job the queue still keeps (or the bot has not "
                      "reported its failure yet: try again in a moment)", file=sys.stderr)
                return 1
            print(f"queued {args.job} again at position {(event.position or 0) + 1}; its owner's message follows it")
            return 0
        jobs = await queue.active_jobs() + (await queue.set_aside_jobs() if args.all else [])
        if args.json:
            print(json.dumps([{"job_id": j.job_id, "state": str(j.state), "position": j.position,
                               "user_id": j.user_id, "guild_id": j.guild_id, "attempts": j.attempts,
                               "enqueued_at": j.enqueued_at} for j in jobs], indent=2))
            return 0
        if not jobs:
            print("nothing queued or running")
            return 0
        print(f"{'JOB':<32}  {'STATE':<8}  {'POS':>3}  {'WAITING':>8}  {'TRIES':>5}  USER / SERVER")
        for job in jobs:
            position = "-" if job.position is None else str(job.position + 1)
            waited = f"{(time.time() - job.enqueued_at) / 60:.0f} min"
            why = f"  ({job.reason[:80]})" if job.reason and str(job.state) in ("failed", "poisoned") else ""
            print(f"{job.job_id:<32}  {job.state!s:<8}  {position:>3}  {waited:>8}  {job.attempts:>5}  "
                  f"{job.user_id} / {job.guild_id or 'DM'}{why}")
        return 0
    finally:
        await queue.close()


def installed_version() -> str:
    """The installed package's version (pyproject.toml's), or "unknown" when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("closeup")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _image_count(text: str) -> int:
    """--n: checked when the command line is read, before any model loads."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 4, got {text!r}") from None
    if not 1 <= count <= 4:
        raise argparse.ArgumentTypeError(f"expected 1 to 4 images, got {count}")
    return count


def build_parser(add_commands: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """The command line; ``add_commands`` lets bot/ add `closeup bot` without generation/ importing Discord."""
    parser = _Parser(prog="closeup", description="Identity-locked AI portraits from one selfie.")
    parser.add_argument("--version", action="version", version=f"closeup {installed_version()}")
    parser.add_argument("--config", help="TOML config file (default: built-in defaults + environment)")
    sub = parser.add_subparsers(dest="command", required=True)
    if add_commands is not None:
        add_commands(sub)
    check = sub.add_parser("check", help="check selfies before generating: face size, light, blur, pose",
                           description="Exit code: 0 pass, 1 warnings, 2 fail, 3 unreadable input or "
                           "unwritable output, 64 bad command line.")
    check.add_argument("photos", nargs="+", metavar="PHOTO")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--annotate", metavar="OUT.png", help="write the annotated preview image")
    check.add_argument("--crop", metavar="OUT.jpg", help="write the suggested face-centred crop")
    check.add_argument("--backend", choices=["auto", "dlib", "insightface"], help="override faces.backend")
    check.set_defaults(func=cmd_check)

    from generation.styles import FRAMINGS, STYLES

    generate = sub.add_parser(
        "generate", help="make identity-locked portraits from reference photos",
        description="Exit code: 0 done, 1 done but below the likeness target, 2 refused (prompt, reference "
        "or settings), 3 unreadable photo, 4 models missing, 64 bad command line.")
    generate.add_argument("photos", nargs="+", metavar="PHOTO", help="one or more photos of the same person")
    generate.add_argument("--prompt", default="", help="what to make (empty: the style's default)")
    generate.add_argument("--style", default="studio-headshot", choices=sorted(STYLES))
    generate.add_argument("--framing", choices=list(FRAMINGS), help="default: the style's")
    generate.add_argument("--n", type=_image_count, default=1, help="images to make (1-4)")
    generate.add_argument("--seed", type=int, help="base seed; image i uses seed + i")
    generate.add_argument("--identity-strength", type=float, help="IP-Adapter weight, overrides the style's")
    generate.add_argument("--out", default="portraits", help="output folder (default: ./portraits)")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(func=cmd_generate)

    worker = sub.add_parser("worker", help="run a GPU worker for the Redis queue (scale-out)",
                            description="Exit code: 0 clean stop (SIGTERM/SIGINT), 1 Redis failed, 2 setup problem.")
    worker.add_argument("--redis-url", help="override queue.redis_url")
    worker.add_argument("--name", help="worker name (default: host name and process id)")
    worker.set_defaults(func=cmd_worker)

    queue = sub.add_parser("queue", help="the host's view of the job queue: list, cancel, retry",
                           description="ls: every queued and running job (any person, any server), with position, "
                           "waiting time and attempts (--all: also failed and set-aside ones, with why); cancel JOB: "
                           "stop one; retry JOB: queue a failed or set-aside job again, its owner's message follows "
                           "it (cancel and retry: Redis queue). Works beside a running bot. Exit code: 0 done, 1 "
                           "failed, 64 bad command line.")
    queue.add_argument("action", choices=["ls", "cancel", "retry"])
    queue.add_argument("job", nargs="?", help="the job id (cancel, retry)")
    queue.add_argument("--json", action="store_true", help="ls: print JSON")
    queue.add_argument("--all", action="store_true", help="ls: also failed and set-aside jobs still kept")
    queue.set_defaults(func=cmd_queue)

    models = sub.add_parser("models", help="list the models generation needs, or download them ahead of time",
                            description="list: what the configured backend and preset load, whether each is in the "
                            "cache, its size and licence. pull: download them now (progress bars, resumes a cut "
                            "download) so the first /portrait does not wait for ~10 GB. Exit code: 0 all ready / "
                            "all downloaded, 1 something missing or a download failed, 64 bad command line.")
    models.add_argument("action", choices=["list", "pull"])
    models.add_argument("--backend", dest="generation_backend", choices=["instantid", "faceid"],
                        help="override generation.backend")
    models.add_argument("--preset", choices=["quality", "lightning", "lcm"], help="override generation.preset")
    models.add_argument("--quiet", action="store_true", help="no progress bars")
    models.set_defaults(func=cmd_models)

    doctor = sub.add_parser("doctor", help="check what is ready before starting: packages, GPU, models, Redis, "
                            "folders, disk, token", description="Runs offline in a few seconds and never shows "
                            "secrets. Exit code: 0 nothing failed (warnings allowed), 1 something failed, "
                            "3 unreadable config, 64 bad command line.")
    doctor.add_argument("--online", action="store_true",
                        help="also try the Discord token with Discord, and reach Hugging Face (download sizes)")
    doctor.add_argument("--json", action="store_true", help="print the rows as JSON")
    doctor.add_argument("--worker", action="store_true",
                        help="judge this machine as a `closeup worker` host: generation needs are hard requirements, "
                        "no Discord token needed")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None, add_commands: Callable[[Any], None] | None = None) -> int:
    args = build_parser(add_commands).parse_args(argv)
    try:
        config = load_config(args.config)
        if getattr(args, "backend", None):
            import dataclasses

            config = dataclasses.replace(config, faces=dataclasses.replace(config.faces, backend=args.backend))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    setup_logging(config.logging.level, config.logging.format)
    for problem in unused_environment():
        log.warning("%s", problem)
    try:
        return args.func(args, config)
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as other command-line tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PASS
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
