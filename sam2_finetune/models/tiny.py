"""Tiny random models of every supported family, built offline from config classes.

Tests, the demo and the ``quick_test`` preset train these instead of real checkpoints: nothing is
downloaded. Each tiny model is the family's real architecture and processor at toy size (2
layers; vision hidden size 32; language model hidden size 64 with MLP 64, the smallest whose
layers bitsandbytes' 4-bit CPU kernel accepts, see :data:`TINY_TEXT_CONFIG`; 32-64 px images; a
BPE tokenizer of ~500 tokens trained in-process with the family's special tokens and a chat
template), saved with ``save_pretrained`` and loaded back by
the same :func:`~sam2_finetune.models.loading.load_model` / ``load_processor`` a real checkpoint
goes through. Weights are random, so outputs are noise; the point is exercising every code path
(processor, image tokens, labels, LoRA, quantization, saving) in milliseconds.

The chat templates mark the assistant turn with ``{% generation %}`` so that
``apply_chat_template(..., return_assistant_tokens_mask=True)`` returns which tokens are the
answer. Real checkpoints' templates usually lack these markers.

>>> path = build_tiny_model("smolvlm", Path("models/tiny-smolvlm"))  # doctest: +SKIP
>>> resolve_checkpoint("tiny:qwen2_vl")  # cached under ~/.cache/sam2-finetune  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.errors import ModelError, describe
from sam2_finetune.models.registry import get_family
from sam2_finetune.outputs import atomic_output_dir

# Bump when a builder changes what it writes, so cached tiny folders are rebuilt.
TINY_VERSION = 5
TINY_PREFIX = "tiny:"
CACHE_ENV = "SAM2_FINETUNE_CACHE"
MARKER_FILE = "tiny_model.json"

_HIDDEN = 32  # vision towers: never quantised, so any size works
# The language model, whose linear layers 8/4-bit quantisation replaces. bitsandbytes' 4-bit CPU
# kernel on AVX512-BF16 CPUs needs in-features divisible by 64 and out-features by 32
# (models.quantization): hidden 64, heads of 32, MLP 64 make every projection fit (q 64x64,
# k/v 64x32, o 64x64, gate/up/down 64x64) while staying tiny (PaliGemma's 1,669-token embedding
# at width 64 already takes 427 kB of its folder).
TINY_TEXT_CONFIG: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
}
_TEXT_HIDDEN = TINY_TEXT_CONFIG["hidden_size"]
_BPE_VOCAB = 512  # BPE tokens before the family's special tokens (256 of them are the bytes)

_LABELS = ("person", "car", "dog", "cat", "bicycle", "truck", "bird", "horse", "ball", "chair")
_PROMPTS = (
    "Detect every object in this frame.",
    "Find every {label} in the image.",
    "Segment the {label}; answer with polygons.",
    "How many {label} objects are there?",
    "Describe the objects and their boxes.",
)


def _corpus() -> list[str]:
    """Deterministic text covering prompts, JSON answers and numbers, to train the tiny BPE."""
    lines = []
    for i, label in enumerate(_LABELS):
        for prompt in _PROMPTS:
            lines.append(prompt.format(label=label))
        a, b = (37 * i) % 1000, (91 * i + 13) % 1000
        lines.append(f'[{{"label": "{label}", "bbox_2d": [{a}, {b}, {a + 9}, {b + 17}]}}]')
        lines.append(f'{{"label": "{label}", "polygon": [[{a}, {b}], [{b}, {a}], [{a}, {a}]]}}')
        lines.append(f"There are {i + 1} objects: a {label} at ({a},{b}),({b},{a}).")
    lines.append(" ".join(str(n) for n in range(1001)))
    lines.append("The quick brown fox jumps over the lazy dog. User Assistant system model")
    return lines * 3


def _tokenizer(
    special_tokens: list[str],
    *,
    chat_template: str,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str | None = None,
    named: dict[str, str] | None = None,
    split_digits: bool = False,
) -> Any:
    """A byte-level BPE trained on :func:`_corpus`, with ``special_tokens`` first in the vocab.

    Byte-level, so any text (any label, any language) encodes without an unknown token.
    ``named`` are model-specific special tokens that processors read as tokenizer attributes
    (``tokenizer.image_token``, ``tokenizer.boi_token``...). ``split_digits`` makes every digit
    its own token (as LLaMA's and Qwen's tokenizers do): a number is then written most
    significant digit first, the same way whatever its value.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys(t for t in (bos, eos, pad, unk, *special_tokens) if t))
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_digits:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), backend.pre_tokenizer]
        )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB + len(specials),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer)
    extra: dict[str, Any] = {"extra_special_tokens": named} if named else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        chat_template=chat_template,
        model_max_length=4096,
        **extra,
    )


def _text_ids(tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _llama_text(tokenizer: Any) -> dict[str, Any]:
    return {
        "model_type": "llama",
        **TINY_TEXT_CONFIG,
        "num_hidden_layers": 2,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": False,
        **_text_ids(tokenizer),
    }


def _siglip_vision(image_size: int, patch_size: int) -> dict[str, Any]:
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": _HIDDEN,
        "intermediate_size": 2 * _HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
        # The attention-pooling head is unused by PaliGemma and Gemma3; without it no parameter
        # is left out of the graph, which DDP would reject.
        "vision_use_head": False,
    }


# ---------------------------------------------------------------------------------------------
# Chat templates. Each mirrors the real family's layout, plus {% generation %} around the answer.

_LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: {% generation %}"
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{{ eos_token }}"
    "{% endgeneration %} "
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %} "
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

_QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}<|im_end|>"
    "{% endgeneration %}{{ '\\n' }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _idefics_template(start: str) -> str:
    return (
        start + "{% for message in messages %}{{ message['role'] | capitalize }}"
        "{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
        "{% if message['role'] == 'assistant' %}{% generation %}"
        "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}<end_of_utterance>"
        "{% endgeneration %}{{ '\\n' }}"
        "{% else %}{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}"
        "{{ part['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    )


# PaliGemma checkpoints ship no chat template (prompts are prefix + suffix); this one renders the
# same layout, images first then the prompt, and the answer ends with eos.
_PALIGEMMA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{% generation %}"
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{{ eos_token }}"
    "{% endgeneration %}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% endif %}{% endfor %}{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{{ '\\n' }}{% endif %}{% endfor %}"
)

_GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}<end_of_turn>"
    "{% endgeneration %}{{ '\\n' }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# ---------------------------------------------------------------------------------------------
# Builders: () -> (model, processor). Each imports only what it needs.


def _build_llava() -> tuple[Any, Any]:
    return _llava(LlavaDims())


@dataclass(frozen=True)
class LlavaDims:
    """The sizes of a tiny LLaVA: the default plumbing model, or :data:`LEARNER_DIMS`."""

    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = _HIDDEN
    vision_layers: int = 2
    vision_heads: int = 2
    text: tuple[tuple[str, int], ...] = tuple(TINY_TEXT_CONFIG.items())
    text_layers: int = 2
    # Resize every image to image_size x image_size (no crop): the default crops the centre of
    # the shortest-edge resize, as CLIP does, which cuts the sides of a wide frame off.
    squash: bool = False
    split_digits: bool = False
    # Start the vision tower's patch position embeddings at the 2D sine-cosine table of ViT /
    # MAE instead of noise: each image token then says where it is from the first step, which
    # the model otherwise has to discover before it can learn a single box.
    sincos_positions: bool = False
    # The table's amplitude. At 1 (MAE's) each patch's position (norm 8 at width 128) drowns its
    # colour (norm ~3 from CLIP's patch-embedding init) after the pre-layernorm: the model then
    # learnt which labels are in a frame only after ~300 steps; at 0.3 it did by ~200 and its
    # answers depended on the image twice as much at step 300 (bench_learning's validation split).
    sincos_scale: float = 1.0
    # Multiplies the projector's output layer at init, so that image tokens enter the language
    # model at about unit scale (CLIP's and LLaMA's 0.02-std inits give them about 0.03). Meant
    # for training with the vision tower and projector frozen, where the scale stays what it is
    # built with (benchmarks/RESULTS.md, session 20).
    projector_gain: float = 1.0


# The learner: meant to learn grounding from scratch from a few thousand examples on a CPU
# (benchmarks/bench_learning.py trains its language model with the vision tower and projector
# frozen at this random init, which keeps each image token saying what colour is where; in 5
# minutes on 2 cores it places boxes in unseen videos: benchmarks/RESULTS.md), 4.7 MB. 64 x 64
# images in 8-pixel patches (64 image tokens) resized whole, not cropped, so every object is in
# view; width 128 in both towers (bitsandbytes' 4-bit CPU kernel accepts every LM layer: in 128,
# out 64-256); 4 LM layers; digits tokenised one by one, so a coordinate is written most
# significant digit first; image tokens at about unit scale (projector gain 30).
LEARNER_DIMS = LlavaDims(
    image_size=64,
    patch_size=8,
    vision_hidden=128,
    vision_layers=3,
    vision_heads=4,
    text=(
        ("hidden_size", 128),
        ("intermediate_size", 256),
        ("num_attention_heads", 4),
        ("num_key_value_heads", 2),
        ("head_dim", 32),
    ),
    text_layers=4,
    squash=True,
    split_digits=True,
    sincos_positions=True,
    sincos_scale=0.3,
    projector_gain=30.0,
)


def sincos_2d(grid: int, width: int) -> Any:
    """The ``(grid * grid, width)`` 2D sine-cosine position table (MAE's
    ``get_2d_sincos_pos_embed``): half the channels encode the row, half the column, each as
    sines and cosines of geometric frequencies; patches in row-major order."""
    import torch

    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for axis in (rows, cols):
        angles = axis.reshape(-1, 1) * omega.reshape(1, -1)
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


def _llava(dims: LlavaDims) -> tuple[Any, Any]:
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaImageProcessorPil,
        LlavaProcessor,
    )

    image_size, patch_size = dims.image_size, dims.patch_size
    tokenizer = _tokenizer(
        ["<image>"],
        chat_template=_LLAVA_TEMPLATE,
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        unk="<unk>",
        split_digits=dims.split_digits,
    )
    if dims.squash:
        image_processor = LlavaImageProcessorPil(
            size={"height": image_size, "width": image_size}, do_center_crop=False
        )
    else:
        image_processor = LlavaImageProcessorPil(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=_LLAVA_TEMPLATE,
    )
    text = {**_llama_text(tokenizer), **dict(dims.text), "num_hidden_layers": dims.text_layers}
    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": dims.vision_hidden,
            "intermediate_size": 2 * dims.vision_hidden,
            "num_hidden_layers": dims.vision_layers,
            "num_attention_heads": dims.vision_heads,
            "image_size": image_size,
            "patch_size": patch_size,
            "projection_dim": dims.vision_hidden,
        },
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_layer=-1,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlavaForConditionalGeneration(config)
    if dims.sincos_positions:
        import torch

        table = model.model.vision_tower.embeddings.position_embedding.weight
        with torch.no_grad():  # row 0 is CLIP's CLS token, kept as drawn
            table[1:] = dims.sincos_scale * sincos_2d(image_size // patch_size, dims.vision_hidden)
    if dims.projector_gain != 1.0:
        import torch

        output = model.model.multi_modal_projector.linear_2
        with torch.no_grad():
            output.weight.mul_(dims.projector_gain)
            output.bias.mul_(dims.projector_gain)
    return model, processor


def _build_llava_learner() -> tuple[Any, Any]:
    return _llava(LEARNER_DIMS)


_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _qwen_parts() -> tuple[Any, Any, dict[str, Any]]:
    from transformers import Qwen2VLImageProcessorPil

    tokenizer = _tokenizer(
        _QWEN_SPECIALS,
        chat_template=_QWEN_TEMPLATE,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
    )
    # Images are resized to multiples of patch * merge = 16 px, between 32x32 and 64x64 pixels:
    # 1 to 4 merged tokens per side, so 4-16 image tokens.
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=64 * 64
    )
    text = {
        **TINY_TEXT_CONFIG,
        "num_hidden_layers": 2,
        "max_position_embeddings": 1024,
        # Multimodal RoPE: temporal, height and width sections add up to head_dim / 2 (16),
        # in the checkpoints' 2:3:3 proportion (Qwen2-VL: 16, 24, 24 of 64).
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 6, 6],
        },
        **_text_ids(tokenizer),
    }
    ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    return tokenizer, image_processor, {"text_config": text, **ids}


def _build_qwen2_vl() -> tuple[Any, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from sam2_finetune.models.processors import Qwen2VLProcessorWithoutVideo

    tokenizer, image_processor, config_kwargs = _qwen_parts()
    processor = Qwen2VLProcessorWithoutVideo(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=_QWEN_TEMPLATE
    )
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": _HIDDEN,
            "hidden_size": _TEXT_HIDDEN,  # the merger's output size: the text model's
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        **config_kwargs,
    )
    return Qwen2VLForConditionalGeneration(config), processor


def _build_qwen2_5_vl() -> tuple[Any, Any]:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from sam2_finetune.models.processors import Qwen2_5_VLProcessorWithoutVideo

    tokenizer, image_processor, config_kwargs = _qwen_parts()
    processor = Qwen2_5_VLProcessorWithoutVideo(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=_QWEN_TEMPLATE
    )
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": _HIDDEN,
            "intermediate_size": 2 * _HIDDEN,
            "num_heads": 2,
            "out_hidden_size": _TEXT_HIDDEN,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 32,  # pixels: 2x2 merged tokens per attention window
            "fullatt_block_indexes": [1],
        },
        **config_kwargs,
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor


_IDEFICS_SPECIALS = [
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
]


def _idefics_parts(start: str) -> tuple[Any, dict[str, Any], int]:
    """Tokenizer, config kwargs and image_seq_len shared by Idefics3 and SmolVLM."""
    tokenizer = _tokenizer(
        _IDEFICS_SPECIALS,
        chat_template=_idefics_template(start),
        bos=start,
        eos="<end_of_utterance>",
        pad="<|pad|>",
    )
    image_size, patch_size, scale_factor = 32, 8, 2
    image_seq_len = (image_size // patch_size) ** 2 // scale_factor**2
    config_kwargs = {
        "vision_config": {
            "hidden_size": _HIDDEN,
            "intermediate_size": 2 * _HIDDEN,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        "text_config": _llama_text(tokenizer),
        "image_token_id": tokenizer.convert_tokens_to_ids("<image>"),
        "scale_factor": scale_factor,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return tokenizer, config_kwargs, image_seq_len


# No image splitting: one 32x32 view per image keeps sequences short (4 image tokens).
_IDEFICS_IMAGE_KWARGS = {
    "size": {"longest_edge": 32},
    "max_image_size": {"longest_edge": 32},
    "do_image_splitting": False,
}


def _build_idefics3() -> tuple[Any, Any]:
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    tokenizer, config_kwargs, image_seq_len = _idefics_parts("<|begin_of_text|>")
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(**_IDEFICS_IMAGE_KWARGS),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=tokenizer.chat_template,
    )
    config = Idefics3Config(**config_kwargs)
    return Idefics3ForConditionalGeneration(config), processor


def _build_smolvlm() -> tuple[Any, Any]:
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
    )

    from sam2_finetune.models.processors import SmolVLMProcessorWithoutVideo

    tokenizer, config_kwargs, image_seq_len = _idefics_parts("<|im_start|>")
    processor = SmolVLMProcessorWithoutVideo(
        image_processor=SmolVLMImageProcessorPil(**_IDEFICS_IMAGE_KWARGS),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=tokenizer.chat_template,
    )
    config = SmolVLMConfig(**config_kwargs)
    return SmolVLMForConditionalGeneration(config), processor


def _build_paligemma() -> tuple[Any, Any]:
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    image_size, patch_size = 32, 8
    tokenizer = _tokenizer(
        ["<image>"],
        chat_template=_PALIGEMMA_TEMPLATE,
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        unk="<unk>",
        named={"image_token": "<image>"},
    )
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = (image_size // patch_size) ** 2
    # The processor adds 1,024 <locNNNN> and 128 <segNNN> tokens: size the vocab after it.
    processor = PaliGemmaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=_PALIGEMMA_TEMPLATE
    )
    config = PaliGemmaConfig(
        vision_config=_siglip_vision(image_size, patch_size),
        text_config={
            "model_type": "gemma",
            **TINY_TEXT_CONFIG,
            "num_hidden_layers": 2,
            "max_position_embeddings": 1024,
            **_text_ids(tokenizer),
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vocab_size=len(tokenizer),
        projection_dim=_TEXT_HIDDEN,
        hidden_size=_TEXT_HIDDEN,
        pad_token_id=tokenizer.pad_token_id,
    )
    return PaliGemmaForConditionalGeneration(config), processor


def _build_gemma3() -> tuple[Any, Any]:
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    image_size, patch_size, tokens_per_image = 32, 8, 4
    named = {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    }
    tokenizer = _tokenizer(
        ["<start_of_turn>", "<end_of_turn>", *named.values()],
        chat_template=_GEMMA3_TEMPLATE,
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        unk="<unk>",
        named=named,
    )
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(
            size={"height": image_size, "width": image_size}, do_pan_and_scan=False
        ),
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=_GEMMA3_TEMPLATE,
    )
    config = Gemma3Config(
        vision_config=_siglip_vision(image_size, patch_size),
        text_config={
            **TINY_TEXT_CONFIG,
            "num_hidden_layers": 2,
            "query_pre_attn_scalar": TINY_TEXT_CONFIG["head_dim"],
            "sliding_window": 64,
            "max_position_embeddings": 1024,
            **_text_ids(tokenizer),
        },
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=tokenizer.convert_tokens_to_ids(named["boi_token"]),
        eoi_token_index=tokenizer.convert_tokens_to_ids(named["eoi_token"]),
        image_token_index=tokenizer.convert_tokens_to_ids(named["image_token"]),
    )
    model = Gemma3ForConditionalGeneration(config)
    # Gemma3 initialises its image projection to zeros (fine before loading trained weights); at
    # random init that would cut the image out of the output and the vision tower out of training.
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=0.02)
    return model, processor


# family -> builder of (random model, processor). Literal table: a family is a row.
TINY_FAMILIES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "llava": _build_llava,
    "qwen2_vl": _build_qwen2_vl,
    "qwen2_5_vl": _build_qwen2_5_vl,
    "idefics3": _build_idefics3,
    "smolvlm": _build_smolvlm,
    "paligemma": _build_paligemma,
    "gemma3": _build_gemma3,
}


# Tiny sizes besides the default: size -> family -> builder. ``learner`` models are big enough to
# learn grounding on a CPU in minutes (benchmarks/bench_learning.py); the default ones are for
# plumbing tests. A sized checkpoint is written ``tiny:<family>-<size>``.
DEFAULT_SIZE = "default"
TINY_SIZES: dict[str, dict[str, Callable[[], tuple[Any, Any]]]] = {
    "learner": {"llava": _build_llava_learner},
}
TinySize = Literal["default", "learner"]


def parse_tiny_checkpoint(checkpoint: str) -> tuple[str, str]:
    """``"tiny:<family>"`` or ``"tiny:<family>-<size>"`` -> ``(family, size)``.

    Family names never hold a hyphen, so the size is what follows the last one.

    >>> parse_tiny_checkpoint("tiny:llava-learner"), parse_tiny_checkpoint("tiny:qwen2_vl")
    (('llava', 'learner'), ('qwen2_vl', 'default'))
    """
    name = checkpoint[len(TINY_PREFIX) :] if checkpoint.startswith(TINY_PREFIX) else checkpoint
    family, sep, size = name.rpartition("-")
    return (family, size) if sep else (name, DEFAULT_SIZE)


def is_plumbing_model(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is a default-size tiny model (``tiny:<family>``): 32-64 wide
    matrices, too small to split between threads (one thread trained them faster than two). A
    sized one (``tiny:llava-learner``, width 128, batches of 16) trains 1.5x faster on two.

    >>> is_plumbing_model("tiny:smolvlm"), is_plumbing_model("tiny:llava-learner")
    (True, False)
    """
    return (
        checkpoint.startswith(TINY_PREFIX) and parse_tiny_checkpoint(checkpoint)[1] == DEFAULT_SIZE
    )


def _builder(family: str, size: str = DEFAULT_SIZE) -> Callable[[], tuple[Any, Any]]:
    row = get_family(family)  # unknown names: one error, naming the closest family
    if row.trust_remote_code:
        checkpoints = ", ".join(c.name for c in row.checkpoints)
        raise ModelError(
            describe(
                f"no tiny offline model can exist for {family!r}: {row.title} ({checkpoints}) "
                "keeps its modelling code in the checkpoint repositories on the Hub "
                "(trust_remote_code), not in transformers, so it cannot be built from config "
                "classes without downloading",
                field="family",
                expected=" | ".join(TINY_FAMILIES),
                found=repr(family),
                fix="test with a native family (e.g. qwen2_vl or smolvlm), or train "
                f"{family} from a real checkpoint with trust_remote_code on a machine with network",
            )
        )
    if size == DEFAULT_SIZE:
        return TINY_FAMILIES[family]
    sized = TINY_SIZES.get(size)
    if sized is None or family not in sized:
        offered = [f"tiny:{f}-{name}" for name, builders in TINY_SIZES.items() for f in builders]
        raise ModelError(
            describe(
                f"no tiny {family} model of size {size!r}",
                field="size",
                expected=f"{DEFAULT_SIZE} (any family) | " + " | ".join(offered),
                found=repr(size),
                fix=f"use tiny:{family} (the default size), or one of " + ", ".join(offered),
            )
        )
    return sized[family]


def build_tiny_model(
    family: str,
    out_dir: Path,
    *,
    seed: int = 0,
    overwrite: bool = False,
    size: str = DEFAULT_SIZE,
) -> Path:
    """Build a tiny random ``family`` model with its processor into ``out_dir``; return the path.

    ``size``: ``default`` (the plumbing models) or a size of :data:`TINY_SIZES` (``learner``,
    for LLaVA). The folder is what ``save_pretrained`` writes for the model and the processor,
    plus ``tiny_model.json`` (family, size, version, seed, parameter count). It is written to a
    temporary sibling and renamed into place. The same ``seed`` gives the same weights. Raises
    :class:`ModelError` for unknown families and for families that need remote code, and
    :class:`~sam2_finetune.errors.OutputExistsError` if ``out_dir`` is not empty and not
    ``overwrite``.

    >>> build_tiny_model("qwen2_vl", Path("tiny-qwen"))  # doctest: +SKIP
    PosixPath('tiny-qwen')
    """
    builder = _builder(family, size)
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        _build_into(family, builder, tmp, seed, size)
    return out_dir


def _build_into(
    family: str,
    builder: Callable[[], tuple[Any, Any]],
    folder: Path,
    seed: int,
    size: str = DEFAULT_SIZE,
) -> None:
    import torch

    # fork_rng: building must not move the caller's random state (tests, training seeds).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = builder()
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar for writing 300 kB is noise
    try:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    marker = {
        "family": family,
        "size": size,
        "tiny_version": TINY_VERSION,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "transformers": version("transformers"),
    }
    (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    # safetensors writes model.safetensors private (0600); give every file the usual umask
    # permissions, as the rest of the folder has, so a shared cache or demo folder is readable.
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def tiny_cache_dir() -> Path:
    """Where :func:`resolve_checkpoint` keeps tiny models: ``$SAM2_FINETUNE_CACHE/tiny`` or
    ``~/.cache/sam2-finetune/tiny``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sam2-finetune"
    return Path(root) / "tiny"


def tiny_cache_path(family: str, size: str = DEFAULT_SIZE) -> Path:
    """The cache folder of ``family``'s tiny model of ``size`` for this tiny-model and
    transformers version: ``<family>-v<N>-...`` (default size), ``<family>-<size>-v<N>-...``."""
    name = family if size == DEFAULT_SIZE else f"{family}-{size}"
    return tiny_cache_dir() / f"{name}-v{TINY_VERSION}-transformers{version('transformers')}"


def resolve_checkpoint(checkpoint: str) -> str:
    """Turn ``"tiny:<family>"`` (or ``"tiny:<family>-<size>"``, e.g. ``tiny:llava-learner``) into
    the path of a cached tiny model; return anything else as is.

    The tiny model is built once per family, size, tiny-model version and transformers version into
    :func:`tiny_cache_dir`. Safe under concurrency (pytest-xdist workers, several runs): each
    builder writes its own temporary folder and renames it into place; a rename that loses the
    race discards its copy and uses the winner's.

    >>> resolve_checkpoint("Qwen/Qwen2-VL-2B-Instruct")
    'Qwen/Qwen2-VL-2B-Instruct'
    """
    if not checkpoint.startswith(TINY_PREFIX):
        return checkpoint
    family, size = parse_tiny_checkpoint(checkpoint)
    builder = _builder(family, size)
    target = tiny_cache_path(family, size)
    if (target / MARKER_FILE).is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _build_into(family, builder, tmp, seed=0, size=size)
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError as exc:
            if not (target / MARKER_FILE).is_file():
                raise ModelError(
                    describe(
                        f"cannot place the tiny {family} model in the cache: {exc}",
                        file=target,
                        fix=f"delete {target} (a cache folder) and retry, or set {CACHE_ENV} "
                        "to another folder",
                    )
                ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


class TinyModelOptions(BaseModel):
    """Build a tiny random model of a family (no download) for tests, demos and quick_test."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    family: str = Field(
        description="Model family: " + ", ".join(TINY_FAMILIES) + ".",
        json_schema_extra={"positional": True},
    )
    out: Path = Field(description="Output folder (written atomically).")
    size: TinySize = Field(
        "default",
        description="default (plumbing tests, any family) or learner (llava only: big enough "
        "to learn grounding on a CPU in minutes).",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the random weights.")
    overwrite: bool = Field(False, description="Replace a non-empty output folder.")
    json_output: bool = Field(False, alias="json", description="Print JSON instead of text.")


@dataclass(frozen=True)
class TinyModelResult:
    """What ``tiny-model`` built: the folder, and the facts of its ``tiny_model.json`` marker."""

    path: str
    family: str
    size: str
    parameters: int
    size_bytes: int
    seed: int
    tiny_version: int
    transformers: str
    seconds: float


def tiny_model(options: TinyModelOptions) -> TinyModelResult:
    """Build the tiny model ``options`` describe (the ``tiny-model`` stage)."""
    started = time.perf_counter()
    path = build_tiny_model(
        options.family,
        options.out,
        seed=options.seed,
        overwrite=options.overwrite,
        size=options.size,
    )
    seconds = time.perf_counter() - started
    marker = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
    return TinyModelResult(
        path=str(path),
        family=marker["family"],
        size=marker["size"],
        parameters=marker["parameters"],
        size_bytes=sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
        seed=marker["seed"],
        tiny_version=marker["tiny_version"],
        transformers=marker["transformers"],
        seconds=round(seconds, 3),
    )


def tiny_model_command(options: TinyModelOptions) -> int:
    """``sam2-finetune tiny-model FAMILY --out DIR``: build, then print what was written, as text
    or (``--json``) as JSON."""
    result = tiny_model(options)
    if options.json_output:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(
            f"{result.family}{'' if result.size == DEFAULT_SIZE else ' ' + result.size}: "
            f"{result.parameters:,} parameters, {result.size_bytes / 1e6:.2f} MB "
            f"in {result.path} ({result.seconds:.1f} s)"
        )
    return 0
