import dataclasses

import pytest

from sam2_finetune.errors import ModelError
from sam2_finetune.models.memory import (
    OPTIMIZER_BYTES_PER_PARAMETER,
    QUANTIZED_BYTES_PER_PARAMETER,
    estimate_memory,
    lora_parameters,
    resolve_architecture,
)
from sam2_finetune.models.registry import FAMILIES, Architecture, get_checkpoint

GIB = 2**30

# Text-only LLaMA-1 shapes (no vision tower), for comparing with published LLM numbers.
LLAMA_7B = Architecture(
    parameters=6_738_415_616,
    vision_parameters=0,
    projector_parameters=0,
    hidden_size=4096,
    intermediate_size=11008,
    num_layers=32,
    num_attention_heads=32,
    num_kv_heads=32,
    head_dim=128,
    vocab_size=32000,
    tied_embeddings=False,
    vision_hidden_size=0,
    vision_intermediate_size=0,
    vision_num_layers=0,
)
LLAMA_65B = dataclasses.replace(
    LLAMA_7B,
    parameters=65_285_660_672,
    hidden_size=8192,
    intermediate_size=22016,
    num_layers=80,
    num_attention_heads=64,
    num_kv_heads=64,
)

BASE = {
    "quantization": "4bit",
    "lora_rank": 16,
    "batch_size": 1,
    "seq_len": 256,
    "image_tokens": 576,
    "gradient_checkpointing": True,
    "optimizer": "adamw_torch",
    "precision": "bf16",
}


def total(arch="llava", **changes):
    return estimate_memory(arch, **{**BASE, **changes}).total


def test_lora_parameter_count_matches_peft_for_llama_7b():
    # peft prints "trainable params: 4,194,304" for LLaMA-7B, r=8 on q_proj and v_proj.
    assert lora_parameters(LLAMA_7B, 8, ("q", "v")) == 4_194_304
    # CogVLM adapts both experts of every layer: twice the parameters of one.
    cog = get_checkpoint("THUDM/cogvlm-chat-hf").architecture
    one_expert = dataclasses.replace(cog, experts=1)
    assert lora_parameters(cog, 16) == 2 * lora_parameters(one_expert, 16)


@pytest.mark.parametrize(
    "field, small, large",
    [
        ("batch_size", 1, 4),
        ("seq_len", 128, 2048),
        ("image_tokens", 64, 2048),
        ("lora_rank", 8, 128),
    ],
)
def test_memory_grows_with_batch_length_image_tokens_and_rank(field, small, large):
    for quantization in ("none", "8bit", "4bit"):
        assert total(**{field: small, "quantization": quantization}) < total(
            **{field: large, "quantization": quantization}
        )


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl", "idefics3", "gemma3", "cogvlm"])
def test_quantisation_orders_weights_for_large_models(arch):
    weights = {
        q: estimate_memory(arch, **{**BASE, "quantization": q}).weights
        for q in ("none", "8bit", "4bit")
    }
    assert weights["none"] > weights["8bit"] > weights["4bit"]
    # peft's fp32 upcast of unquantised weights (not what our preparation does) costs more.
    upcast = estimate_memory(arch, **{**BASE, "quantization": "4bit"}, upcast_unquantized=True)
    assert upcast.weights > weights["4bit"]


@pytest.mark.parametrize("precision, unquantized_bytes", [("bf16", 2), ("fp16", 2), ("fp32", 4)])
def test_qlora_counts_unquantised_parts_at_the_compute_dtype(precision, unquantized_bytes):
    # train.model.prepare_quantized keeps the frozen vision tower, projector, embeddings and
    # output head in the compute dtype; peft's prepare_model_for_kbit_training makes them fp32.
    arch = get_checkpoint("Qwen/Qwen2-VL-2B-Instruct").architecture
    unquantized = arch.vision_parameters + arch.projector_parameters + arch.embedding_parameters
    ours = estimate_memory(arch, **{**BASE, "precision": precision}).weights
    peft = estimate_memory(arch, **{**BASE, "precision": precision}, upcast_unquantized=True)
    assert ours == pytest.approx(
        QUANTIZED_BYTES_PER_PARAMETER["4bit"] * arch.decoder_parameters
        + unquantized_bytes * unquantized,
        abs=1,
    )
    assert peft.weights - ours == pytest.approx((4 - unquantized_bytes) * unquantized, abs=1)


def test_decoder_quantisation_rates():
    # 7B text model, nothing else unquantised but the embeddings: 16-bit ~ 2 bytes/param,
    # 8-bit ~ 1, NF4 with double quantisation ~ 0.516.
    d = LLAMA_7B.decoder_parameters
    e = LLAMA_7B.embedding_parameters
    lora16 = estimate_memory(LLAMA_7B, **{**BASE, "quantization": "none"}).weights
    q4 = estimate_memory(LLAMA_7B, **BASE, upcast_unquantized=False).weights
    assert lora16 == 2 * (d + e)
    assert q4 == pytest.approx(0.516 * d + 2 * e, rel=1e-3)


def test_checkpointing_and_attention_kernel():
    assert total(gradient_checkpointing=True) < total(gradient_checkpointing=False)
    long = {"seq_len": 4096}
    assert total(**long, attn_implementation="eager") > total(**long, attn_implementation="sdpa")
    # Without checkpointing, activations scale with the layer count: 13B > 7B.
    kw = {"gradient_checkpointing": False, "quantization": "none"}
    seven = estimate_memory("llava-hf/llava-1.5-7b-hf", **{**BASE, **kw})
    thirteen = estimate_memory("llava-hf/llava-1.5-13b-hf", **{**BASE, **kw})
    assert thirteen.activations > seven.activations


def test_what_trains_costs_memory():
    frozen = estimate_memory("qwen2_vl", **BASE)
    projector = estimate_memory("qwen2_vl", **BASE, freeze_projector=False)
    tower = estimate_memory("qwen2_vl", **BASE, freeze_vision_tower=False)
    assert frozen.total < projector.total < tower.total
    assert tower.trainable_parameters > projector.trainable_parameters
    full = estimate_memory("qwen2_vl", **{**BASE, "quantization": "none"}, method="full")
    assert (
        full.trainable_parameters == FAMILIES["qwen2_vl"].default_checkpoint.architecture.parameters
    )
    assert full.total > tower.total


def test_optimizer_and_precision_ordering():
    totals = {
        opt: total(quantization="none", optimizer=opt) for opt in OPTIMIZER_BYTES_PER_PARAMETER
    }
    assert totals["adamw_torch"] > totals["paged_adamw_8bit"] > totals["sgd"]
    assert totals["adamw_torch"] == totals["adamw_torch_fused"]
    assert total(precision="fp32", quantization="none") > total(
        precision="bf16", quantization="none"
    )
    assert total(precision="bf16") == total(precision="fp16")


def test_terms_add_up_and_describe():
    e = estimate_memory("smolvlm", **BASE)
    terms = dataclasses.asdict(e)
    assert e.total == sum(
        terms[k]
        for k in (
            "weights",
            "adapters",
            "gradients",
            "optimizer",
            "activations",
            "logits",
            "overhead",
        )
    )
    assert e.as_dict()["total"] == e.total
    assert e.tokens_per_sample == 256 + 576
    assert e.describe().startswith(f"{e.total / GIB:.1f} GiB = weights")


# Published ballparks (other people's estimates, not measurements; see docs/models.md):
# LLaMA-Factory's hardware table for 7B: QLoRA 4-bit 6 GB, 8-bit 10 GB, LoRA 16 GB; 65B
# QLoRA 4-bit 48 GB; the QLoRA paper fine-tunes 65B on one 48 GB GPU.
@pytest.mark.parametrize(
    "quantization, low, high",
    [("4bit", 5, 8), ("8bit", 8, 11), ("none", 14, 18)],
)
def test_llama_7b_matches_published_ballparks(quantization, low, high):
    gib = total(LLAMA_7B, quantization=quantization, seq_len=512, image_tokens=0) / GIB
    assert low < gib < high


def test_llama_65b_qlora_fits_48_gb():
    gib = total(LLAMA_65B, quantization="4bit", seq_len=512, image_tokens=0) / GIB
    assert 30 < gib < 48e9 / GIB


def test_qlora_7b_vlms_at_short_sequences_land_between_6_and_16_gib():
    # A 7B VLM adds a vision tower and image tokens to the text model. Qwen2.5-VL-7B lands near
    # the top: its 1.1B untied embedding parameters stay unquantised (bf16).
    for arch in ("llava", "qwen2_5_vl"):
        gib = total(arch, image_tokens=576, seq_len=256, optimizer="paged_adamw_8bit") / GIB
        assert 6 < gib < 16, arch


def test_family_checkpoint_and_architecture_inputs_agree():
    arch = FAMILIES["gemma3"].default_checkpoint.architecture
    assert resolve_architecture("gemma3") is arch
    assert resolve_architecture("google/gemma-3-4b-it") is arch
    assert total("gemma3") == total(arch)
    with pytest.raises(ModelError, match="unknown model family"):
        resolve_architecture("gemma4")


@pytest.mark.parametrize(
    "changes",
    [
        {"batch_size": 0},
        {"seq_len": 0, "image_tokens": 0},
        {"lora_rank": 0},
        {"quantization": "4bit", "method": "full"},
        {"lora_modules": ("q", "qkv")},
    ],
)
def test_impossible_inputs_are_rejected(changes):
    with pytest.raises(ValueError):
        estimate_memory("llava", **{**BASE, **changes})
