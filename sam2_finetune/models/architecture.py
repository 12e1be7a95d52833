"""Full-size transformers configs of registry checkpoints, from the registry's numbers alone.

The registry (``registry.py``) holds each checkpoint's architecture numbers; this module turns
them back into a transformers config, so that a test can compare the table with the parameter
count transformers builds (on the meta device) and a benchmark can measure the memory of a
full-size model with random weights. transformers is imported only when called.
"""

from __future__ import annotations

from typing import Any

from sam2_finetune.errors import ModelError, describe
from sam2_finetune.models.registry import CHECKPOINT_FAMILY, get_checkpoint

_NATIVE = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "paligemma", "gemma3")

# Vision input size and patch size per checkpoint (the table does not hold them).
VISION_INPUT: dict[str, tuple[int | None, int]] = {
    "llava-hf/llava-1.5-7b-hf": (336, 14),
    "llava-hf/llava-1.5-13b-hf": (336, 14),
    "Qwen/Qwen2-VL-2B-Instruct": (None, 14),
    "Qwen/Qwen2-VL-7B-Instruct": (None, 14),
    "Qwen/Qwen2.5-VL-3B-Instruct": (None, 14),
    "Qwen/Qwen2.5-VL-7B-Instruct": (None, 14),
    "HuggingFaceM4/Idefics3-8B-Llama3": (364, 14),
    "HuggingFaceTB/SmolVLM-256M-Instruct": (512, 16),
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct": (512, 16),
    "google/paligemma2-3b-pt-224": (224, 14),
    "google/paligemma2-3b-pt-448": (448, 14),
    "google/gemma-3-4b-it": (896, 14),
}


def full_size_config(name: str) -> Any:
    """The transformers config of registry checkpoint ``name`` at full size, built from the
    table's architecture numbers alone (nothing downloaded; native families only).

    Used to check the table against transformers' own parameter counts (meta device) and to
    measure memory of a full-size model with random weights (``benchmarks/bench_memory.py``).
    """
    family = CHECKPOINT_FAMILY.get(name)
    if family not in _NATIVE or name not in VISION_INPUT:
        raise ModelError(
            describe(
                f"{name!r} has no offline architecture"
                + (
                    f": it belongs to the remote-code family {family}"
                    if family and family not in _NATIVE
                    else ""
                ),
                expected="one of " + ", ".join(VISION_INPUT),
                found=name,
                fix="use a registry checkpoint of a native family (llava, qwen2_vl, qwen2_5_vl, "
                "idefics3, smolvlm, paligemma, gemma3)",
            )
        )
    import transformers as T

    a = get_checkpoint(name).architecture
    image_size, patch = VISION_INPUT[name]
    text = {
        "hidden_size": a.hidden_size,
        "intermediate_size": a.intermediate_size,
        "num_hidden_layers": a.num_layers,
        "num_attention_heads": a.num_attention_heads,
        "num_key_value_heads": a.num_kv_heads,
        "vocab_size": a.vocab_size,
    }
    vision = {
        "hidden_size": a.vision_hidden_size,
        "intermediate_size": a.vision_intermediate_size,
        "num_hidden_layers": a.vision_num_layers,
        "num_attention_heads": 16 if a.vision_hidden_size > 768 else 12,
        "patch_size": patch,
        "image_size": image_size,
    }
    tie = a.tied_embeddings
    if family == "llava":
        return T.LlavaConfig(
            text_config=T.LlamaConfig(**text),
            vision_config=T.CLIPVisionConfig(**vision),
            tie_word_embeddings=tie,
        )
    if family in ("qwen2_vl", "qwen2_5_vl"):
        merged = {"depth": a.vision_num_layers, "num_heads": 16}
        if family == "qwen2_vl":
            merged |= {"embed_dim": a.vision_hidden_size, "hidden_size": a.hidden_size}
            cls = T.Qwen2VLConfig
        else:
            merged |= {
                "hidden_size": a.vision_hidden_size,
                "intermediate_size": a.vision_intermediate_size,
                "out_hidden_size": a.hidden_size,
            }
            cls = T.Qwen2_5_VLConfig
        return cls(text_config=text, vision_config=merged, tie_word_embeddings=tie)
    if family in ("idefics3", "smolvlm"):
        cls = T.Idefics3Config if family == "idefics3" else T.SmolVLMConfig
        return cls(
            text_config=T.LlamaConfig(**text, tie_word_embeddings=tie),
            vision_config=vision,
            scale_factor=int(a.patches_per_image_token**0.5),
            tie_word_embeddings=tie,
        )
    siglip = T.SiglipVisionConfig(**vision, vision_use_head=False, projection_dim=a.hidden_size)
    if family == "paligemma":
        return T.PaliGemmaConfig(
            text_config=T.Gemma2Config(**text, head_dim=a.head_dim),
            vision_config=siglip,
            projection_dim=a.hidden_size,
            hidden_size=a.hidden_size,
        )
    if family == "gemma3":
        return T.Gemma3Config(
            text_config=T.Gemma3TextConfig(**text, head_dim=a.head_dim), vision_config=siglip
        )
    raise AssertionError(family)  # _NATIVE lists exactly the families handled above
