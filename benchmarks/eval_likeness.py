"""How much each backend and framing keeps the person: face similarity of generated portraits to their reference.

    python benchmarks/eval_likeness.py [--config closeup.toml] [--photos a.jpg b.jpg ...]
        [--backends instantid faceid edit:flux2-klein edit:qwen-image-edit] [--framings close-up full-body]
        [--prompts "a studio portrait" ...] [--seeds 2] [--out likeness-eval]

For each reference photo × backend × framing × prompt × seed it generates one portrait through the production
engine (prompt lint, framing, the backend's own sampling), then scores the image before and after the
small-face re-render pass with two face recognisers: OpenCV's SFace (permissive; downloaded on first use like
``faces.backend = "opencv"``) and, where its models are installed, insightface's ArcFace (buffalo_l). Each
score is the cosine similarity of the portrait's main face to that recogniser's embedding of the reference
photo; "no face" counts as a miss. It writes:

* ``results.csv``: one row per portrait (backend, framing, prompt, photo, seed, re-render on/off, whether a
  face was re-rendered, each recogniser's cosine or empty);
* ``summary.md``: per backend × framing × re-render, the mean cosine per recogniser and the share of
  portraits with a face found; printed too;
* ``contact-sheet.png``: per portrait the reference crop, the image without and with the re-render pass.

The models come from the config file (``models.*``, ``faces.*``), so an owner measures exactly the stack the
bot would run; run it on a GPU with real weights. On the tests' tiny random models it runs end to end and the
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from generation.config import Config, ConfigError, load_config  # noqa: E402
from generation.drawing import label_font  # noqa: E402
from generation.engine import Engine, build_reference  # noqa: E402
from generation.faces.types import FaceAnalyzer  # noqa: E402
from generation.images import LoadedImage, encode_png, load_image_file  # noqa: E402
from generation.jobs import PortraitJob  # noqa: E402
from generation.likeness import ReferenceIdentity, ReferenceSetError, combine_references, score_images  # noqa: E402
from generation.models import EDITOR_MODELS  # noqa: E402
from generation.quality.gate import main_face_first  # noqa: E402
from generation.styles import FRAMINGS  # noqa: E402

PROMPTS = ("a studio portrait, soft light", "a portrait in a sunlit park", "an oil painting portrait")
DEFAULT_PHOTOS = sorted((ROOT / "tests" / "fixtures" / "faces").glob("*.jpg"))
BACKENDS = ("instantid", "faceid", *(f"edit:{editor}" for editor in EDITOR_MODELS))
THUMB = 192


@dataclass(frozen=True)
class Scorer:
    """A face recogniser and each reference photo's identity under it (None: it found no face there)."""

    name: str
    analyzer: FaceAnalyzer
    references: dict[str, ReferenceIdentity | None]

    def cosine(self, image: np.ndarray, photo: str) -> float | None:
        reference = self.references[photo]
        if reference is None:
            return None
        scored = score_images([image], self.analyzer, reference)[0]
        return None if scored.likeness is None else scored.likeness.cosine


@dataclass(frozen=True)
class Row:
    backend: str
    framing: str
    prompt: str
    photo: str
    seed: int
    rerender: bool  # the re-render pass was on
    refined: bool  # ... and re-rendered a face in this image
    cosines: dict[str, float | None]


def backend_config(config: Config, backend: str) -> Config:
    """The config with ``backend`` ("instantid", "faceid" or "edit:<editor>") chosen, the rest as configured."""
    name, _, editor = backend.partition(":")
    generation = dataclasses.replace(config.generation, backend=name, editor=editor or config.generation.editor,
                                     retry_attempts=0, likeness_threshold=0.0)
    return dataclasses.replace(config, generation=generation)


def make_scorers(config: Config, photos: dict[str, LoadedImage]) -> list[Scorer]:
    """SFace always (the run fails clearly without it); ArcFace where its models are installed."""
    from generation.faces.factory import create_analyzer
    from generation.faces.types import FaceModelMissingError

    wanted = [("sface", dataclasses.replace(config.faces, backend="opencv")),
              ("arcface", dataclasses.replace(config.faces, backend="insightface", insightface_pack="buffalo_l"))]
    scorers = []
    for name, faces in wanted:
        try:
            analyzer = create_analyzer(faces)
        except FaceModelMissingError as exc:
            if name == "sface":
                raise
            print(f"note: no ArcFace column: {exc}", file=sys.stderr)
            continue
        references: dict[str, ReferenceIdentity | None] = {}
        for key, photo in photos.items():
            try:
                references[key] = combine_references([_main_face(analyzer, photo.pixels)])
            except ReferenceSetError:
                print(f"note: {name} finds no face in {key}; its column is empty for that photo", file=sys.stderr)
                references[key] = None
        scorers.append(Scorer(name, analyzer, references))
    return scorers


def _main_face(analyzer: FaceAnalyzer, pixels: np.ndarray):
    """The face the gate would take as the person (largest confident one), as the bot scores likeness."""
    faces = main_face_first(analyzer.analyze(pixels, embeddings=True))
    return faces[0] if faces else None


def evaluate_backend(config: Config, backend_name: str, photos: dict[str, LoadedImage], scorers: Sequence[Scorer],
                     framings: Sequence[str], prompts: Sequence[str], seeds: int
                     ) -> tuple[list[Row], list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    """Rows for one backend, and (caption, reference crop, plain, re-rendered) per portrait for the sheet."""
    from generation.loading import conditioning_analyzer, likeness_analyzer, load_backend, reference_crops

    chosen = backend_config(config, backend_name)
    likeness = likeness_analyzer(chosen)
    conditioning = conditioning_analyzer(chosen, likeness)
    engine = Engine(load_backend(chosen), likeness, chosen.generation)
    rows: list[Row] = []
    tiles = []
    for key, photo in photos.items():
        try:
            reference = build_reference([photo], conditioning, likeness, crops=reference_crops(chosen))
        except ReferenceSetError as exc:
            print(f"note: {backend_name} cannot use {key}: {exc.user_message}", file=sys.stderr)
            continue
        shown = reference.crops[0] if reference.crops else reference.face_crop
        for framing in framings:
            for prompt_number, prompt in enumerate(prompts):
                job = PortraitJob(prompt=prompt, framing=framing, count=seeds, seed=1000 * prompt_number + 1)
                request = engine.request_for(job, reference, engine.lint(job), job.seed)
                images = engine.backend.generate(request)
                for seed, image in zip(request.seeds, images, strict=True):
                    refined_image, refined = engine.refine(image, request, seed)
                    for rerender, picture in ((False, image), (True, refined_image)):
                        rows.append(Row(backend_name, framing, prompt, key, seed, rerender, refined and rerender,
                                        {s.name: s.cosine(picture, key) for s in scorers}))
                    tiles.append((f"{backend_name} · {framing} · {key} · seed {seed}", shown, image, refined_image))
    return rows, tiles


def summarise(rows: Sequence[Row], scorer_names: Sequence[str]) -> str:
    """Markdown: mean cosine per recogniser and the share with a face, per backend × framing × re-render."""
    groups: dict[tuple[str, str, bool], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row.backend, row.framing, row.rerender)].append(row)
    header = ["backend", "framing", "re-render", "n", *(f"{name} cosine" for name in scorer_names),
              *(f"{name} faces" for name in scorer_names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (backend, framing, rerender), members in groups.items():
        means, found = [], []
        for name in scorer_names:
            values = [row.cosines[name] for row in members if row.cosines.get(name) is not None]
            means.append(f"{statistics.fmean(values):.3f}" if values else "–")
            found.append(f"{len(values)}/{len(members)}")
        lines.append("| " + " | ".join([backend, framing, "on" if rerender else "off", str(len(members)),
                                         *means, *found]) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[Row], scorer_names: Sequence[str], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["backend", "framing", "prompt", "photo", "seed", "rerender", "refined", *scorer_names])
        for row in rows:
            writer.writerow([row.backend, row.framing, row.prompt, row.photo, row.seed, int(row.rerender),
                             int(row.refined), *("" if row.cosines.get(n) is None else f"{row.cosines[n]:.4f}"
                                                 for n in scorer_names)])


def sheet(tiles: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """One line per portrait: reference crop | without the re-render pass | with it, captioned."""
    caption = 24
    canvas = Image.new("RGB", (3 * THUMB, len(tiles) * (THUMB + caption)), (32, 34, 37))
    draw = ImageDraw.Draw(canvas)
    font = label_font(13)
    for line, (text, *images) in enumerate(tiles):
        y = line * (THUMB + caption)
        for column, image in enumerate(images):
            thumb = Image.fromarray(np.ascontiguousarray(image))
            thumb.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
            canvas.paste(thumb, (column * THUMB + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        draw.text((6, y + THUMB + 5), f"{text}   (reference | plain | re-rendered)", fill=(235, 235, 235), font=font)
    return np.asarray(canvas)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="closeup config file (default: as the bot finds it)")
    parser.add_argument("--photos", nargs="+", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, help="default: the configured backend")
    parser.add_argument("--framings", nargs="+", choices=FRAMINGS, default=list(FRAMINGS))
    parser.add_argument("--prompts", nargs="+", default=list(PROMPTS))
    parser.add_argument("--seeds", type=int, default=2, help="portraits per photo × framing × prompt")
    parser.add_argument("--out", type=Path, default=Path("likeness-eval"))
    args = parser.parse_args(argv)
    if not args.photos:
        parser.error("no reference photos: pass --photos")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 3
    backends = args.backends or [config.generation.backend + (
        f":{config.generation.editor}" if config.generation.backend == "edit" else "")]
    from generation.faces.types import FaceModelMissingError
    from generation.images import ImageError
    from generation.models import ModelMissingError

    try:
        photos = {path.name: load_image_file(path, **config.images.load_options())
                  for path in args.photos}
        scorers = make_scorers(config, photos)
        rows, tiles = [], []
        for backend in backends:
            print(f"evaluating {backend} …", file=sys.stderr, flush=True)
            more_rows, more_tiles = evaluate_backend(config, backend, photos, scorers, args.framings, args.prompts,
                                                     args.seeds)
            rows += more_rows
            tiles += more_tiles
    except ImageError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 3
    except (ModelMissingError, FaceModelMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    if not rows:
        print("error: no backend could use any of the photos (see the notes above)", file=sys.stderr)
        return 2
    names = [scorer.name for scorer in scorers]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, names, args.out / "results.csv")
    summary = summarise(rows, names)
    (args.out / "summary.md").write_text(summary)
    (args.out / "contact-sheet.png").write_bytes(encode_png(sheet(tiles)))
    print(summary)
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'summary.md'}, {args.out / 'contact-sheet.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
