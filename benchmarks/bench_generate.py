"""Generation engine timings, with a plain diffusers call as the baseline in the same run.

    python benchmarks/bench_generate.py [--runs 10]            # CPU, tiny random models
    python benchmarks/bench_generate.py --full-size [--runs 3] [--device cuda] [--dtype float16]
        [--backends instantid faceid edit] [--editors flux2-klein qwen-image-edit] [--presets quality lightning]
        [--batches 1 4]

    # the issue-14 comparison on a lent H200: the editors next to InstantID, in one run
    python benchmarks/bench_generate.py --full-size --backend instantid edit --presets quality --batches 1 --runs 2

Tiny mode (CPU, one thread) prints the engine's own overhead per job outside the denoising loop —
prompt lint, framing, the face-token projection, refine detection and likeness scoring — as
milliseconds and as a ratio to a plain diffusers SDXL-ControlNet call with the same steps, plus
peak memory for one job.

Full-size mode builds the real architectures from their public config values with random weights
(timing and memory are those of the real weights), nothing downloaded: SDXL, IdentityNet and the
InstantID adapter; SDXL, IP-Adapter FaceID-Plus-v2 (with its rank-128 LoRA) and CLIP ViT-H. Adapters
and the fast preset's LoRA (rank 64, as SDXL-Lightning's) load through the production calls. For
each backend × preset × batch it prints seconds per 1024² image, the ratio to plain SDXL with the
same steps in the same run, peak GPU memory, and the LoRA adapters in effect. Run it on a GPU.

``--backend edit`` adds the reference-image editors at their real sizes (benchmarks/full_size_editors.py):
FLUX.2 [klein] 4B and Qwen-Image-Edit-2511, bf16, at their model cards' steps and guidance, given one 512²
reference face crop; the same columns, the ratio against plain SDXL at the quality preset's steps. Qwen needs
torchvision and ≈ 60 GiB of GPU memory; it is skipped, saying why, where it cannot run.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "testkit"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_DISABLE_REMOTE_CODE", "1")

import numpy as np  # noqa: E402
import tiny_sdxl  # noqa: E402
import torch  # noqa: E402

from generation.config import GenerationConfig, ModelsConfig  # noqa: E402
from generation.engine import Engine, Reference  # noqa: E402
from generation.faces.types import Face, HeadPose  # noqa: E402
from generation.jobs import PortraitJob  # noqa: E402
from generation.likeness import combine_references  # noqa: E402
from generation.models import EDITOR_MODELS  # noqa: E402
from generation.pipelines.diffusers_common import LIGHTNING_FILE  # noqa: E402
from generation.pipelines.framing import draw_keypoints, target_keypoints  # noqa: E402
from generation.pipelines.instantid import IdentityNet, InstantIDBackend  # noqa: E402
from generation.pipelines.refine import face_at_keypoints, plan_refine  # noqa: E402
from generation.pipelines.types import GenerationRequest, IdentityEmbedding  # noqa: E402

KEYPOINTS = np.array([[380, 420], [640, 420], [510, 560], [410, 680], [610, 680]], dtype=float)


def _reference(analyzer) -> Reference:  # a DlibAnalyzer (imported where used: full-size mode needs no dlib)
    from generation.images import load_image_file

    photo = load_image_file(ROOT / "tests" / "fixtures" / "faces" / "obama.jpg", max_side=1024)
    face = analyzer.analyze(photo.pixels, embeddings=True)[0]
    identity = np.random.default_rng(0).normal(size=512).astype(np.float32) * 20
    conditioning = Face(box=face.box, score=1.0, landmarks5=face.landmarks5, pose=HeadPose(0, 0, 0),
                        embedding=identity, embedding_model="arcface-antelopev2")
    return Reference(conditioning=combine_references([conditioning]), likeness=combine_references([face]),
                     keypoints=face.landmarks5)


def _peak_mb() -> int:
    with Path("/proc/self/status").open() as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM"))


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def tiny(runs: int) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = tiny_sdxl.build_instantid(Path(tmp))
        # The re-render pass is off here (it is more denoising); its planning is timed at 1024² below.
        generation = GenerationConfig(offline=True, device="cpu", width=64, height=64, steps=4,
                                      retry_attempts=0, likeness_threshold=0.0, refine_min_eye_distance=0)
        models = ModelsConfig(base_path=str(paths["base"]), instantid_path=str(paths["identitynet"].parent))
        backend = InstantIDBackend.load(generation, models)
        from generation.faces.dlib_backend import DlibAnalyzer

        analyzer = DlibAnalyzer()
        reference = _reference(analyzer)
        engine = Engine(backend, analyzer, generation)
        job = PortraitJob(prompt="a studio portrait", seed=1)

        # Time spent inside backend.generate (the denoising call) during engine.run.
        inside: list[float] = []
        original = backend.generate

        def timed(request: GenerationRequest, on_step=None):
            start = time.perf_counter()
            try:
                return original(request, on_step)
            finally:
                inside.append(time.perf_counter() - start)

        backend.generate = timed  # type: ignore[method-assign]
        request = engine.request_for(job, reference, __import__("generation.prompts").prompts.lint_prompt(
            job.prompt, style=job.style), 1)
        control = __import__("PIL.Image").Image.fromarray(draw_keypoints(request.keypoints, 64, 64))

        def plain() -> None:
            # The same denoising work as one plain diffusers call: SDXL + ControlNet, CFG, same steps.
            identitynet: IdentityNet = backend.pipe.controlnet  # type: ignore[assignment]
            identitynet.use_face_tokens(*backend.face_tokens(request.identity.raw))
            backend.pipe(prompt=request.prompt, negative_prompt=request.negative_prompt, image=control,
                         width=64, height=64, num_inference_steps=4, guidance_scale=request.guidance_scale,
                         ip_adapter_image_embeds=[torch.zeros(2, 1, 1, 512)],
                         generator=torch.Generator().manual_seed(1), output_type="np")

        for _ in range(2):  # warm-up
            plain()
            engine.run(job, reference)
        plain_times, engine_times = [], []
        inside.clear()
        for _ in range(runs):
            start = time.perf_counter()
            plain()
            plain_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            engine.run(job, reference)
            engine_times.append(time.perf_counter() - start)
        overhead = [total - denoise for total, denoise in zip(engine_times, inside, strict=True)]
        print(f"tiny models, CPU, one thread, 64×64, 4 steps, {runs} runs (median)")
        print(f"  plain diffusers SDXL-ControlNet call : {_median_ms(plain_times):8.1f} ms")
        print(f"  engine.run, whole job                : {_median_ms(engine_times):8.1f} ms")
        print(f"  of which backend.generate            : {_median_ms(inside):8.1f} ms")
        print(f"  engine overhead outside the denoising: {_median_ms(overhead):8.1f} ms "
              f"= {statistics.median(overhead) / statistics.median(plain_times):.2f}× the plain call")
        print(f"  peak memory (RSS) of this process    : {_peak_mb()} MB")
        # Tiny outputs are 64 px; at full size the per-image post-processing (refine check + likeness)
        # runs face detection and an embedding on a 1024² image. Measure that on a real photo.
        import cv2

        from generation.images import load_image_file
        from generation.likeness import score_images

        photo = load_image_file(ROOT / "tests" / "fixtures" / "faces" / "obama.jpg").pixels
        square = cv2.resize(photo[:910], (1024, 1024))
        target = target_keypoints(reference.keypoints, "full-body", 1024, 1024)
        detect, known, likeness = [], [], []
        for _ in range(runs):
            start = time.perf_counter()
            plan_refine(max(analyzer.analyze(square), key=lambda f: f.area), square.shape)
            detect.append(time.perf_counter() - start)
            start = time.perf_counter()
            plan_refine(face_at_keypoints(target), square.shape)
            known.append(time.perf_counter() - start)
            start = time.perf_counter()
            score_images([square], analyzer, reference.likeness)
            likeness.append(time.perf_counter() - start)
        print("  per 1024² image, after denoising (dlib on this CPU):")
        print(f"    re-render planning, detector (FaceID)   : {_median_ms(detect):8.2f} ms")
        print(f"    re-render planning, keypoints (InstantID): {_median_ms(known):8.2f} ms "
              f"= {statistics.median(known) / statistics.median(detect):.4f}× the detector")
        print(f"    likeness scoring                         : {_median_ms(likeness):8.2f} ms")


# ---------------------------------------------------------------------------- full size


def full_size_components(dtype: torch.dtype, device: str):
    """SDXL base 1.0, InstantID IdentityNet and adapter architectures with random weights."""

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the target precision: no full-precision copy at the peak
    try:
        return _build_full_size(dtype, device)
    finally:
        torch.set_default_dtype(previous)


def _build_full_size(dtype: torch.dtype, device: str):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
            cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        ).to(dtype)
        controlnet = IdentityNet.from_unet(unet).to(dtype)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=1024,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            scaling_factor=0.13025,
        ).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
            projection_dim=768, hidden_act="quick_gelu", vocab_size=49408, bos_token_id=512, eos_token_id=513,
            pad_token_id=513)).to(dtype)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
            projection_dim=1280, hidden_act="gelu", vocab_size=49408, bos_token_id=512, eos_token_id=513,
            pad_token_id=513)).to(dtype)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    tok_dir = Path(tempfile.mkdtemp()) / "tokenizer"
    tiny_sdxl._tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    return dict(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder,
                text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler)


def _full_size_lora(unet, folder: Path, rank: int, dtype: torch.dtype) -> Path:
    """A random LoRA on every attention projection of the full UNet (SDXL-Lightning's targets and rank)."""
    from diffusers import StableDiffusionXLPipeline

    g = torch.Generator().manual_seed(7)
    state = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in ("to_q", "to_k", "to_v", "0") and (
                "attn" in name):
            if name.endswith(".0") and not name.endswith("to_out.0"):
                continue
            state[f"{name}.lora.down.weight"] = (torch.randn(rank, module.in_features, generator=g) * 0.01).to(dtype)
            state[f"{name}.lora.up.weight"] = (torch.randn(module.out_features, rank, generator=g) * 0.01).to(dtype)
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=state, weight_name=LIGHTNING_FILE)
    return folder


def _full_size_backend(kind: str, preset: str, dtype: torch.dtype, device: str, work: Path):
    """A backend of the real architecture with random weights, its adapter and preset LoRA loaded
    through the production calls (load_ip_adapter, apply_preset)."""
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from generation.pipelines.diffusers_common import apply_preset
    from generation.pipelines.faceid import ADAPTER_FILE as FACEID_FILE
    from generation.pipelines.faceid import FaceIDBackend

    parts = full_size_components(dtype, device)
    folder = work / f"{kind}-{preset}"
    folder.mkdir(parents=True)
    if kind == "instantid":
        pipe = StableDiffusionXLControlNetPipeline(**parts)
        state = tiny_sdxl.instantid_adapter_state(parts["unet"], heads=20, dim_head=64)
        weight_name = "ip-adapter.bin"
    else:
        pipe = StableDiffusionXLPipeline(**{k: v for k, v in parts.items() if k != "controlnet"})
        del parts["controlnet"]
        state = tiny_sdxl.faceid_plus_state(parts["unet"], embed=2048, lora_rank=128, clip_hidden=1280)
        weight_name = FACEID_FILE
    torch.save({part: {k: v.to(dtype) for k, v in tensors.items()} for part, tensors in state.items()},
               folder / weight_name)
    del state
    pipe.load_ip_adapter(str(folder), subfolder="", weight_name=weight_name, image_encoder_folder=None,
                         local_files_only=True)
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    generation = GenerationConfig(offline=True, device=device, preset=preset)
    models = ModelsConfig(lightning_path=str(_full_size_lora(pipe.unet, folder / "lora", 64, dtype))
                          if preset == "lightning" else "")
    apply_preset(pipe, generation, models)
    if kind == "instantid":
        return InstantIDBackend(pipe, device, dtype)
    with torch.device(device):  # CLIP ViT-H/14, as laion/CLIP-ViT-H-14-laion2B-s32B-b79K
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
            image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")).to(dtype).eval()
    return FaceIDBackend(pipe, encoder, device, dtype)


def _full_size_editor(editor: str, device: str):
    """An EditBackend around a full-size editor with random weights (bf16: what the backend loads on a GPU)."""
    import full_size_editors

    from generation.pipelines.edit import RECIPES, EditBackend

    dtype = torch.bfloat16
    full_size_editors.check_fits(editor, dtype, device)
    pipe = full_size_editors.EDITORS[editor][1](dtype, device)
    pipe.set_progress_bar_config(disable=True)
    return EditBackend(pipe, RECIPES[editor], device, dtype)


def _editor_rows(args: argparse.Namespace, measure, release, plain_quality_s: float) -> list[tuple]:
    from generation.pipelines.edit import editor_canvas

    rows = []
    crop = np.random.default_rng(2).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    identity = IdentityEmbedding.of_one_face(np.zeros(512))
    for editor in args.editors:
        try:
            backend = _full_size_editor(editor, args.device)
        except Exception as exc:  # torchvision missing, or too little memory for the 20B model
            print(f"  skipped {editor}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            release()
            continue
        steps, guidance = backend.sampling
        width, height = editor_canvas("head-and-shoulders", args.size, args.size)
        for batch in args.batches:
            request = GenerationRequest(
                prompt="a studio portrait", negative_prompt="", identity=identity, keypoints=KEYPOINTS,
                seeds=tuple(range(batch)), width=width, height=height, steps=steps, guidance_scale=guidance,
                framing="head-and-shoulders", references=(crop,))
            seconds, peak = measure(functools.partial(backend.generate, request))
            rows.append((f"edit:{editor}", f"card {steps}st", batch, seconds / batch, plain_quality_s, peak, "none"))
            print(f"  done: {editor} batch {batch}", file=sys.stderr, flush=True)
        del backend
        release()
    return rows


def full_size(args: argparse.Namespace) -> None:
    """Seconds per image and peak GPU memory for each backend × preset × batch, next to plain SDXL."""
    import gc

    from diffusers import StableDiffusionXLPipeline
    from diffusers.models.attention_processor import AttnProcessor2_0

    from generation.engine import PRESET_SAMPLING
    from generation.pipelines.diffusers_common import active_adapters

    dtype = getattr(torch, args.dtype)
    device = args.device
    size = args.size
    keypoints = KEYPOINTS * size / 1024
    identity = IdentityEmbedding.of_one_face(np.random.default_rng(0).normal(size=512) * 25)
    crop = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    sampling = {"quality": (args.steps, 5.0), **PRESET_SAMPLING}

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def measure(fn) -> tuple[float, float]:
        """(median seconds per call, peak GPU GiB) after one warm-up call."""
        fn()
        sync()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else _peak_mb() / 1024
        return statistics.median(times), peak

    def release() -> None:
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    # The baseline: plain SDXL, same architecture and settings, one image.
    parts = full_size_components(dtype, device)
    plain = StableDiffusionXLPipeline(**{k: v for k, v in parts.items() if k != "controlnet"})
    plain.unet.set_attn_processor(AttnProcessor2_0())
    plain.set_progress_bar_config(disable=True)
    baseline = {}
    for preset in sorted({*args.presets, "quality"} if "edit" in args.backends else args.presets):
        steps, guidance = sampling[preset]
        baseline[preset] = measure(functools.partial(
            plain, prompt="a studio portrait", width=size, height=size, num_inference_steps=steps,
            guidance_scale=guidance, generator=torch.Generator().manual_seed(1), output_type="np"))[0]
    del plain, parts
    release()

    rows = []
    work = Path(tempfile.mkdtemp())
    for kind in args.backends:
        if kind == "edit":
            rows += _editor_rows(args, measure, release, baseline["quality"])
            continue
        for preset in args.presets:
            backend = _full_size_backend(kind, preset, dtype, device, work)
            adapters = ", ".join(active_adapters(backend.pipe)) or "none"
            steps, guidance = sampling[preset]
            for batch in args.batches:
                request = GenerationRequest(
                    prompt="a studio portrait", negative_prompt="", identity=identity, keypoints=keypoints,
                    seeds=tuple(range(batch)), width=size, height=size, steps=steps, guidance_scale=guidance,
                    face_crop=crop)
                seconds, peak = measure(functools.partial(backend.generate, request))
                rows.append((kind, preset, batch, seconds / batch, baseline[preset], peak, adapters))
                print(f"  done: {kind} {preset} batch {batch}", file=sys.stderr, flush=True)
            del backend
            release()
    name = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"full-size architectures, random weights, {size}², {args.dtype}, {name}, median of {args.runs}")
    print("(edit rows: bf16, the model card's steps; 'plain SDXL' there is SDXL at the quality preset's steps)")
    print(f"{'backend':24} {'preset':10} {'batch':>5} {'s/img':>7} {'plain SDXL':>11} {'ratio':>6} "
          f"{'peak GiB':>9}  active LoRA adapters")
    for kind, preset, batch, per_image, plain_s, peak, adapters in rows:
        print(f"{kind:24} {preset:10} {batch:5d} {per_image:7.2f} {plain_s:11.2f} {per_image / plain_s:6.2f} "
              f"{peak:9.1f}  {adapters}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--size", type=int, default=1024, help="full-size mode: image side (1024 for the figures)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--backends", "--backend", nargs="+", default=["instantid", "faceid"],
                        choices=["instantid", "faceid", "edit"])
    parser.add_argument("--editors", nargs="+", default=list(EDITOR_MODELS),
                        choices=list(EDITOR_MODELS), help="with --backend edit")
    parser.add_argument("--presets", nargs="+", default=["quality", "lightning"], choices=["quality", "lightning"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    args = parser.parse_args()
    if args.full_size:
        full_size(args)
    else:
        tiny(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
