"""Generation engine timings, with a plain diffusers call as the baseline in the same run.

    python benchmarks/bench_generate.py [--runs 10]            # CPU, tiny random models
    python benchmarks/bench_generate.py --full-size [--device cuda] [--dtype float16] [--compile]

Tiny mode (CPU, one thread) prints the engine's own overhead per job outside the denoising loop —
prompt lint, framing, the face-token projection, refine detection and likeness scoring — as
milliseconds and as a ratio to a plain diffusers SDXL-ControlNet call with the same steps, plus
peak memory for one job.

Full-size mode builds the real SDXL, IdentityNet and InstantID architectures from their public
config values with random weights (timing is the same as with real weights), nothing downloaded,
and prints seconds per 1024² image at 30 steps and at the 4-step fast preset, next to a plain
diffusers SDXL call in the same run. Run it on a GPU machine; it needs about 20 GB of GPU memory
in half precision.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "generation" / "pipelines"))
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
from generation.pipelines.framing import draw_keypoints  # noqa: E402
from generation.pipelines.instantid import IdentityNet, InstantIDBackend  # noqa: E402
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
        generation = GenerationConfig(offline=True, device="cpu", width=64, height=64, steps=4,
                                      retry_attempts=0, likeness_threshold=0.0)
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
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            analyzer.analyze(square)
            score_images([square], analyzer, reference.likeness)
            times.append(time.perf_counter() - start)
        print(f"  per-image post-processing at 1024²   : {_median_ms(times):8.1f} ms (refine check + likeness, dlib)")


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


def full_size(args: argparse.Namespace) -> None:
    from diffusers import StableDiffusionXLPipeline
    from diffusers.models.attention_processor import AttnProcessor2_0

    dtype = getattr(torch, args.dtype)
    device = args.device
    parts = full_size_components(dtype, device)
    plain = StableDiffusionXLPipeline(**{k: v for k, v in parts.items() if k != "controlnet"})
    plain.unet.set_attn_processor(AttnProcessor2_0())
    plain.set_progress_bar_config(disable=True)
    from diffusers import StableDiffusionXLControlNetPipeline

    size = args.size
    keypoints = KEYPOINTS * size / 1024
    identity = IdentityEmbedding.of_one_face(np.random.default_rng(0).normal(size=512) * 20)
    settings = ((f"{args.steps} steps, CFG 5", args.steps, 5.0), ("fast preset: 4 steps, no CFG", 4, 1.0))

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def time_it(fn, runs: int) -> float:
        fn()  # warm-up (and compile, when enabled)
        sync()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    # The baseline first: the UNet shared with the InstantID pipeline has no IP-Adapter yet.
    plain_times = [time_it(lambda s=steps, g=guidance: plain(
        prompt="a studio portrait", width=size, height=size, num_inference_steps=s, guidance_scale=g,
        generator=torch.Generator().manual_seed(1), output_type="np"), args.runs) for _, steps, guidance in settings]

    pipe = StableDiffusionXLControlNetPipeline(**parts)
    adapter_dir = Path(tempfile.mkdtemp())
    state = tiny_sdxl.instantid_adapter_state(parts["unet"], heads=20, dim_head=64)
    torch.save({part: {k: v.to(dtype) for k, v in tensors.items()} for part, tensors in state.items()},
               adapter_dir / "ip-adapter.bin")
    del state
    pipe.load_ip_adapter(str(adapter_dir), subfolder="", weight_name="ip-adapter.bin", image_encoder_folder=None,
                         local_files_only=True)
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    backend = InstantIDBackend(pipe, device, dtype)
    rows = []
    for (label, steps, guidance), t_plain in zip(settings, plain_times, strict=True):
        request = GenerationRequest(prompt="a studio portrait", negative_prompt="", identity=identity,
                                    keypoints=keypoints, seeds=(1,), width=size, height=size, steps=steps,
                                    guidance_scale=guidance)
        rows.append((label, t_plain, time_it(lambda r=request: backend.generate(r), args.runs)))
    if args.compile:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=False)
        request = GenerationRequest(prompt="a studio portrait", negative_prompt="", identity=identity,
                                    keypoints=keypoints, seeds=(1,), width=size, height=size, steps=args.steps,
                                    guidance_scale=5.0)
        rows.append((f"{args.steps} steps, torch.compile", plain_times[0], time_it(lambda: backend.generate(request),
                                                                                 args.runs)))
    name = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"full-size SDXL + IdentityNet + InstantID, random weights, {size}², {args.dtype}, {name}")
    print(f"{'setting':32} {'plain SDXL s/img':>17} {'InstantID s/img':>16} {'ratio':>6}")
    for label, t_plain, t_ours in rows:
        print(f"{label:32} {t_plain:17.2f} {t_ours:16.2f} {t_ours / t_plain:6.2f}")
    if device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    else:
        print(f"peak memory (RSS): {_peak_mb()} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--size", type=int, default=1024, help="full-size mode: image side (1024 for the figures)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="full-size mode: also time torch.compile")
    args = parser.parse_args()
    if args.full_size:
        full_size(args)
    else:
        tiny(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
