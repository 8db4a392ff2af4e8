"""The `closeup` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from generation.config import Config, ConfigError, load_config
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
            image = load_image_file(
                photo,
                max_bytes=config.images.max_bytes,
                max_pixels=config.images.max_pixels,
                allow_animation_first_frame=config.images.allow_animation_first_frame,
                max_side=config.images.analysis_max_side,
            )
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="closeup", description="Identity-locked AI portraits from one selfie.")
    parser.add_argument("--config", help="TOML config file (default: built-in defaults + environment)")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check selfies before generating: face size, light, blur, pose",
                           description="Exit code: 0 pass, 1 warnings, 2 fail, 3 unreadable input or "
                           "unwritable output, 64 bad command line.")
    check.add_argument("photos", nargs="+", metavar="PHOTO")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--annotate", metavar="OUT.png", help="write the annotated preview image")
    check.add_argument("--crop", metavar="OUT.jpg", help="write the suggested face-centred crop")
    check.add_argument("--backend", choices=["auto", "dlib", "insightface"], help="override faces.backend")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if getattr(args, "backend", None):
            import dataclasses

            config = dataclasses.replace(config, faces=dataclasses.replace(config.faces, backend=args.backend))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    setup_logging(config.logging.level, config.logging.format)
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
