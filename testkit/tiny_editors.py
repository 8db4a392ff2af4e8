"""Tiny random FLUX.2 [klein] and Qwen-Image-Edit-Plus pipelines, saved in the real hub layouts.

model_index.json, scheduler/, text_encoder/, tokenizer/, transformer/, vae/ (and processor/ for Qwen), as the
black-forest-labs/FLUX.2-klein-4B and Qwen/Qwen-Image-Edit-2511 repositories hold them, so the backend loads
them through the production code (``from_pretrained`` with dtype and device). Offline tokenizers: byte-level
BPE with no merges (every byte one token) plus the chat and vision special tokens, and a chat template with
the ``enable_thinking`` switch FLUX.2 [klein] passes. Weights are random: tests assert what the pipeline is
given and the shapes it returns, never pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tiny_sdxl import _byte_symbols

TEXT_HIDDEN = 16
# FLUX.2 [klein] stacks the text encoder's hidden states 9, 18 and 27: it needs at least 28 layers.
KLEIN_TEXT_LAYERS = 28
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def qwen_tokenizer(folder: Path, extra: tuple[str, ...] = ()):
    """A Qwen2Tokenizer (fast) saved in ``folder``: the byte alphabet, chat specials and ``extra``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(_byte_symbols())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra]
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)
    fast.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"  # what the real repositories name
    config_path.write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(folder)


def build_flux2_klein(folder: Path, seed: int = 0) -> Path:
    """black-forest-labs/FLUX.2-klein-4B's layout: Qwen3 text encoder, FLUX.2 transformer and VAE, distilled."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer(folder / "_tokenizer_src")
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=32, num_hidden_layers=KLEIN_TEXT_LAYERS,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        tie_word_embeddings=True))
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=3 * TEXT_HIDDEN, timestep_guidance_channels=16, axes_dims_rope=(2, 2, 2, 2),
        guidance_embeds=False)
    vae = AutoencoderKLFlux2(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, layers_per_block=1,
        sample_size=32)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    pipe = Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              transformer=transformer, is_distilled=True)
    pipe.save_pretrained(folder)
    (folder / "LICENSE.md").write_text("Apache License 2.0 (test stand-in)\n")
    return folder


def build_qwen_edit(folder: Path, seed: int = 0) -> Path:
    """Qwen/Qwen-Image-Edit-2511's layout: Qwen2.5-VL text encoder + processor, QwenImage transformer and VAE.

    Needs torchvision (transformers builds the Qwen2-VL processor's video half with it).
    """
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer(folder / "_tokenizer_src", VISION_TOKENS)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in VISION_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": TEXT_HIDDEN, "intermediate_size": 32,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 4096, "rope_theta": 10000.0,
                     "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                       "out_hidden_size": TEXT_HIDDEN, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "fullatt_block_indexes": [0], "window_size": 112, "in_channels": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor())
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=TEXT_HIDDEN, axes_dims_rope=(2, 2, 4), zero_cond_t=True)
    vae = AutoencoderKLQwenImage(base_dim=4, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
        max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")
    pipe = QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=Qwen2_5_VLForConditionalGeneration(
        config), tokenizer=tokenizer, processor=processor, transformer=transformer)
    pipe.save_pretrained(folder)
    (folder / "LICENSE").write_text("Apache License 2.0 (test stand-in)\n")
    return folder
