"""Tiny random SDXL, IdentityNet and IP-Adapter checkpoints, saved in the real hub layouts.

Seeded, built in about a second, a few MB on disk. Tests and the CPU benchmark load them through
the production loading code (from_pretrained / load_ip_adapter), so the loading code is what gets
tested; the weights are random, so tests assert structure, never pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TEXT_HIDDEN = 32  # each text encoder; the UNet's cross-attention dim is their sum
CROSS_DIM = 2 * TEXT_HIDDEN
TIME_EMBED = 8
PROJECTION = 32  # text encoder 2's projection size
FACE_EMBED = 512  # antelopev2 / buffalo_l ArcFace
FACE_TOKENS = 16  # InstantID's Resampler queries


def _byte_symbols() -> list[str]:
    """The byte-level BPE alphabet: printable bytes map to themselves, the rest to code points 256+."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _tokenizer(folder: Path) -> None:
    """An offline CLIP BPE tokenizer: 256 byte symbols, the same with </w>, start and end."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + 256 for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
    }))


def _text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=TEXT_HIDDEN, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=514, bos_token_id=512, eos_token_id=513, pad_token_id=513, projection_dim=PROJECTION,
        max_position_embeddings=77, hidden_act="gelu",
    )


def tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * TIME_EMBED + PROJECTION,
        cross_attention_dim=CROSS_DIM,
        norm_num_groups=8,
    )


def build_sdxl(folder: Path, seed: int = 0, fp16_variant: bool = False) -> Path:
    """A tiny SDXL base in the layout of stabilityai/stable-diffusion-xl-base-1.0 (with ``fp16_variant``
    also its *.fp16.safetensors files, half-precision, beside the full-precision ones, as the real repo)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    unet = tiny_unet()
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading",
        steps_offset=1,
    )
    text_encoder = CLIPTextModel(_text_config())
    text_encoder_2 = CLIPTextModelWithProjection(_text_config())
    tok_dir = folder / "_tokenizer_src"
    _tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
    if fp16_variant:
        pipe.to(torch.float16).save_pretrained(folder, variant="fp16")
    for sub in ("tokenizer", "tokenizer_2"):
        _tokenizer(folder / sub)  # the same offline files the real repo layout carries
    return folder


def build_identitynet(folder: Path, seed: int = 1) -> Path:
    """InstantX/InstantID's ControlNetModel/ folder: a ControlNet shaped like the tiny UNet."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(tiny_unet(), conditioning_embedding_out_channels=(8, 16))
    # A fresh ControlNet's output convolutions are zero (it starts as a no-op); a trained one's are
    # not. Give them small random weights so the IdentityNet really steers the tiny UNet.
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                       controlnet.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0.0, 0.05)
    controlnet.save_pretrained(folder)
    return folder


def _hidden_size(unet, name: str) -> int:
    if name.startswith("mid_block"):
        return unet.config.block_out_channels[-1]
    if name.startswith("up_blocks"):
        block = int(name[len("up_blocks.")])
        return list(reversed(unet.config.block_out_channels))[block]
    block = int(name[len("down_blocks.")])
    return unet.config.block_out_channels[block]


def instantid_adapter_state(unet, seed: int = 2, depth: int = 4, heads: int = 1,
                            dim_head: int = 64) -> dict[str, dict[str, torch.Tensor]]:
    """The state of InstantX/InstantID's ip-adapter.bin for ``unet``: a Resampler (512-d face
    embedding -> 16 tokens) under "image_proj", the decoupled cross-attention weights under
    "ip_adapter" (to_k_ip / to_v_ip per cross-attention layer, numbered 1, 3, 5, ... in
    unet.attn_processors order).

    Heads are 64 wide and the depth is 4 as in the real file (1280 = 20 × 64 wide): loaders derive
    the head count from the width and assume that depth.
    """
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    dim = heads * dim_head
    inner = dim * 4

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    proj: dict[str, torch.Tensor] = {
        "latents": rand(1, FACE_TOKENS, dim),
        "proj_in.weight": rand(dim, FACE_EMBED), "proj_in.bias": torch.zeros(dim),
        "proj_out.weight": rand(cross, dim), "proj_out.bias": torch.zeros(cross),
        "norm_out.weight": torch.ones(cross), "norm_out.bias": torch.zeros(cross),
    }
    for i in range(depth):
        proj.update({
            f"layers.{i}.0.norm1.weight": torch.ones(dim), f"layers.{i}.0.norm1.bias": torch.zeros(dim),
            f"layers.{i}.0.norm2.weight": torch.ones(dim), f"layers.{i}.0.norm2.bias": torch.zeros(dim),
            f"layers.{i}.0.to_q.weight": rand(dim, dim),
            f"layers.{i}.0.to_kv.weight": rand(2 * dim, dim),
            f"layers.{i}.0.to_out.weight": rand(dim, dim),
            f"layers.{i}.1.0.weight": torch.ones(dim), f"layers.{i}.1.0.bias": torch.zeros(dim),
            f"layers.{i}.1.1.weight": rand(inner, dim),
            f"layers.{i}.1.3.weight": rand(dim, inner),
        })
    layers = {}
    cross_attention = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for i, name in enumerate(cross_attention):
        hidden = _hidden_size(unet, name)
        layers[f"{2 * i + 1}.to_k_ip.weight"] = rand(hidden, cross)
        layers[f"{2 * i + 1}.to_v_ip.weight"] = rand(hidden, cross)
    return {"image_proj": proj, "ip_adapter": layers}


def build_instantid_adapter(path: Path, seed: int = 2) -> Path:
    """ip-adapter.bin for the tiny UNet, saved where InstantX/InstantID keeps it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(instantid_adapter_state(tiny_unet(), seed), path)
    return path


def build_instantid(root: Path, seed: int = 0) -> dict[str, Path]:
    """Everything the instantid backend loads, in the hub layouts, under ``root``."""
    return {
        "base": build_sdxl(root / "sdxl", seed),
        "identitynet": build_identitynet(root / "instantid" / "ControlNetModel", seed + 1),
        "adapter": build_instantid_adapter(root / "instantid" / "ip-adapter.bin", seed + 2),
    }


def build_lora(folder: Path, weight_name: str, seed: int = 3) -> Path:
    """A random LoRA for the tiny UNet, saved as diffusers saves SDXL LoRAs (what the fast presets load)."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = tiny_unet()
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))  # random, so the LoRA visibly changes the output
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=state, weight_name=weight_name)
    return folder


CLIP_HIDDEN = 48  # the tiny CLIP ViT-H stand-in's width (the real one: 1280)


def build_image_encoder(folder: Path, seed: int = 4) -> Path:
    """laion/CLIP-ViT-H-14's layout: a CLIPVisionModelWithProjection, tiny, reading 224-px crops."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=CLIP_HIDDEN, intermediate_size=64, num_attention_heads=4,
                              num_hidden_layers=2, image_size=224, patch_size=32, projection_dim=32)
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


def faceid_plus_state(unet, seed: int = 5, embed: int = 64, lora_rank: int = 4, clip_hidden: int = CLIP_HIDDEN) -> dict:
    """ip-adapter-faceid-plusv2_sdxl.bin's layout: FaceID tokens (proj.0/proj.2/norm) refined by a
    perceiver over CLIP hidden states, to_k_ip/to_v_ip per cross-attention layer, and a LoRA
    (to_{q,k,v,out}_lora.{down,up}) on every attention layer, keyed by attn_processors position.
    The real SDXL file: embed 2048 (32 heads of 64), clip_hidden 1280 (CLIP ViT-H), LoRA rank 128."""
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    tokens, depth, inner = 4, 4, embed * 4

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    proj = {
        # A feed-forward of width 2 × 512 (as in the real file: 512 → 1024 → tokens × width).
        "proj.0.weight": rand(2 * FACE_EMBED, FACE_EMBED), "proj.0.bias": torch.zeros(2 * FACE_EMBED),
        "proj.2.weight": rand(embed * tokens, 2 * FACE_EMBED), "proj.2.bias": torch.zeros(embed * tokens),
        "norm.weight": torch.ones(embed), "norm.bias": torch.zeros(embed),
        "perceiver_resampler.proj_in.weight": rand(embed, clip_hidden),
        "perceiver_resampler.proj_in.bias": torch.zeros(embed),
        "perceiver_resampler.proj_out.weight": rand(cross, embed),
        "perceiver_resampler.proj_out.bias": torch.zeros(cross),
        "perceiver_resampler.norm_out.weight": torch.ones(cross),
        "perceiver_resampler.norm_out.bias": torch.zeros(cross),
    }
    for i in range(depth):
        p = f"perceiver_resampler.layers.{i}"
        proj.update({
            f"{p}.0.norm1.weight": torch.ones(embed), f"{p}.0.norm1.bias": torch.zeros(embed),
            f"{p}.0.norm2.weight": torch.ones(embed), f"{p}.0.norm2.bias": torch.zeros(embed),
            f"{p}.0.to_q.weight": rand(embed, embed), f"{p}.0.to_kv.weight": rand(2 * embed, embed),
            f"{p}.0.to_out.weight": rand(embed, embed),
            f"{p}.1.0.weight": torch.ones(embed), f"{p}.1.0.bias": torch.zeros(embed),
            f"{p}.1.1.weight": rand(inner, embed), f"{p}.1.3.weight": rand(embed, inner),
        })
    layers: dict[str, torch.Tensor] = {}
    for key_id, name in enumerate(unet.attn_processors):
        hidden = _hidden_size(unet, name)
        context = cross if name.endswith("attn2.processor") else hidden
        for part, width in (("to_q", hidden), ("to_k", context), ("to_v", context), ("to_out", hidden)):
            layers[f"{key_id}.{part}_lora.down.weight"] = rand(lora_rank, width)
            layers[f"{key_id}.{part}_lora.up.weight"] = rand(hidden, lora_rank)
        if name.endswith("attn2.processor"):
            layers[f"{key_id}.to_k_ip.weight"] = rand(hidden, cross)
            layers[f"{key_id}.to_v_ip.weight"] = rand(hidden, cross)
    return {"image_proj": proj, "ip_adapter": layers}


def build_faceid(root: Path, seed: int = 0) -> dict[str, Path]:
    """Everything the faceid backend loads (besides the SDXL base), in the hub layouts."""
    adapter = root / "faceid" / "ip-adapter-faceid-plusv2_sdxl.bin"
    adapter.parent.mkdir(parents=True, exist_ok=True)
    torch.save(faceid_plus_state(tiny_unet(), seed + 5), adapter)
    return {"adapter": adapter, "image_encoder": build_image_encoder(root / "image_encoder", seed + 4)}
