import re

import pytest

from sam2_finetune.answer_formats import ANSWER_FORMATS
from sam2_finetune.errors import ModelError
from sam2_finetune.models.architecture import VISION_INPUT, full_size_config
from sam2_finetune.models.registry import (
    CHECKPOINT_FAMILY,
    FAMILIES,
    ImageRule,
    get_checkpoint,
    get_family,
    image_tokens,
)

# One LM projection and one vision-tower projection per family, as the real modules are named.
MODULE_NAMES = {
    "llava": (
        "model.language_model.layers.3.self_attn.q_proj",
        "model.vision_tower.vision_model.encoder.layers.3.self_attn.q_proj",
    ),
    "qwen2_vl": ("model.language_model.layers.3.mlp.down_proj", "model.visual.blocks.3.attn.qkv"),
    "qwen2_5_vl": (
        "model.language_model.layers.3.self_attn.v_proj",
        "model.visual.blocks.3.mlp.gate_proj",
    ),
    "idefics3": (
        "model.text_model.layers.3.self_attn.o_proj",
        "model.vision_model.encoder.layers.3.self_attn.q_proj",
    ),
    "smolvlm": (
        "model.text_model.layers.3.mlp.up_proj",
        "model.vision_model.encoder.layers.3.self_attn.k_proj",
    ),
    "paligemma": (
        "model.language_model.layers.3.mlp.gate_proj",
        "model.vision_tower.vision_model.encoder.layers.3.self_attn.q_proj",
    ),
    "minicpm_v": ("llm.model.layers.3.self_attn.q_proj", "vpm.encoder.layers.3.self_attn.q_proj"),
    "cogvlm": (
        "model.layers.3.self_attn.vision_expert_query_key_value",
        "model.vision.transformer.layers.3.attention.query_key_value",
    ),
    "gemma3": (
        "model.language_model.layers.3.self_attn.k_proj",
        "model.vision_tower.vision_model.encoder.layers.3.self_attn.k_proj",
    ),
}


def test_the_table_has_the_families_the_issue_names():
    assert set(FAMILIES) == {
        "llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "paligemma", "minicpm_v",
        "cogvlm", "gemma3",
    }  # fmt: skip
    for name in (
        "llava-hf/llava-1.5-7b-hf",
        "Qwen/Qwen2-VL-2B-Instruct",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "HuggingFaceM4/Idefics3-8B-Llama3",
        "google/paligemma2-3b-pt-224",
        "openbmb/MiniCPM-V-2_6",
        "THUDM/cogvlm-chat-hf",
        "google/gemma-3-4b-it",
    ):
        assert name in CHECKPOINT_FAMILY


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_row_is_complete_and_consistent(name):
    family = FAMILIES[name]
    assert family.name == name
    assert family.answer_format in ANSWER_FORMATS
    assert family.checkpoints and family.model_class and family.processor_class
    assert family.vision_modules and family.projector_modules
    assert re.fullmatch(r"\d+\.\d+\.\d+", family.min_transformers)
    for checkpoint in family.checkpoints:
        arch = checkpoint.architecture
        # Every checkpoint of a family resizes images the same way (data.* options depend on it).
        assert checkpoint.image.kind == family.resolution
        assert 0 < arch.vision_parameters < arch.parameters
        assert arch.decoder_parameters > 0
        # The decoder count implied by the totals matches the layer shapes (norms, biases aside).
        h, i = arch.hidden_size, arch.intermediate_size
        q, kv = arch.num_attention_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
        per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
        shapes = per_layer * arch.num_layers * arch.experts
        assert arch.decoder_parameters == pytest.approx(shapes, rel=0.02), checkpoint.name


@pytest.mark.parametrize("name", list(FAMILIES))
def test_lora_pattern_selects_lm_projections_and_no_vision_layer(name):
    family = FAMILIES[name]
    lm_module, vision_module = MODULE_NAMES[name]
    pattern = re.compile(family.lora_target_modules)
    assert pattern.fullmatch(lm_module)
    assert not pattern.fullmatch(vision_module)
    assert vision_module.startswith(family.vision_modules)


def test_qwen_image_tokens_follow_smart_resize():
    rule = FAMILIES["qwen2_5_vl"].default_checkpoint.image
    assert image_tokens(rule, 1280, 720) == 46 * 26  # 1288 x 728 pixels
    assert image_tokens(rule, 1920, 1080) == 69 * 39
    assert image_tokens(rule, 1280, 720, max_pixels=200_704) == 21 * 12
    assert image_tokens(rule, 20, 20) == 4  # upscaled to min_pixels 3136 = 2x2 tokens
    assert image_tokens(rule, 1280, 720, max_pixels=200_704) < image_tokens(rule, 1280, 720)


def test_one_smart_resize_equal_to_transformers_tiny_sizes_included():
    """The registry counts Qwen image tokens with answer_formats.qwen_smart_resize, which equals
    transformers' smart_resize, also on images smaller than one 28 px patch and at the tiny
    models' factor 16 (the registry once had its own copy that disagreed there)."""
    # The PIL processor's module copies the reference (image_processing_qwen2_vl.smart_resize,
    # whose module needs torchvision).
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from sam2_finetune.answer_formats import qwen_smart_resize

    rule = FAMILIES["qwen2_vl"].default_checkpoint.image
    sides = (1, 2, 5, 10, 13, 14, 27, 28, 29, 41, 56, 57, 100, 333, 720, 1280, 4001)
    for factor, lo, hi in ((28, 56 * 56, 28 * 28 * 1280), (28, 3136, 12_845_056), (16, 1024, 4096)):
        for h in sides:
            for w in sides:
                if max(h, w) / min(h, w) > 200:
                    continue
                expected = smart_resize(h, w, factor, lo, hi)
                assert qwen_smart_resize(h, w, factor, lo, hi) == expected, (h, w, factor)
                if factor == 28:
                    tokens = (expected[0] // 28) * (expected[1] // 28)
                    assert image_tokens(rule, w, h, min_pixels=lo, max_pixels=hi) == tokens


def test_tiled_and_fixed_image_tokens():
    idefics = FAMILIES["idefics3"].default_checkpoint.image
    assert image_tokens(idefics, 1280, 720) == (4 * 3 + 1) * 169
    assert image_tokens(idefics, 300, 200) == (4 * 3 + 1) * 169  # upscaled to 1456 x 970
    assert image_tokens(idefics, 1280, 720, longest_edge=364) == 169  # one tile, no global image
    smol = FAMILIES["smolvlm"].default_checkpoint.image
    assert image_tokens(smol, 1280, 720) == (4 * 3 + 1) * 64
    minicpm = FAMILIES["minicpm_v"].default_checkpoint.image
    assert image_tokens(minicpm, 1280, 720) == (1 + 6) * 64  # a 3 x 2 grid
    assert image_tokens(minicpm, 1280, 720, max_slices=0) == 64
    assert image_tokens(minicpm, 400, 300) == 64  # smaller than one slice: not sliced
    for name in ("llava", "paligemma", "cogvlm", "gemma3"):
        rule = FAMILIES[name].default_checkpoint.image
        assert image_tokens(rule, 1280, 720) == image_tokens(rule, 64, 48) == rule.tokens
    with pytest.raises(ValueError):
        image_tokens(ImageRule(kind="fixed", tokens=4), 0, 10)


def test_unknown_names_raise_with_the_closest_known_one():
    with pytest.raises(ModelError, match="did you mean 'qwen2_vl'"):
        get_family("qwen2vl")
    with pytest.raises(ModelError, match="not in the model registry"):
        get_checkpoint("someone/else")
    assert get_checkpoint("google/gemma-3-4b-it").billions == pytest.approx(4.3, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VISION_INPUT))
def test_parameter_counts_match_transformers_on_the_meta_device(name):
    import torch
    from transformers import AutoModelForImageTextToText

    family = CHECKPOINT_FAMILY[name]
    checkpoint = get_checkpoint(name)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(full_size_config(name))
    total = sum(p.numel() for p in model.parameters())
    assert total == checkpoint.architecture.parameters
    prefixes = FAMILIES[family].vision_modules + FAMILIES[family].projector_modules
    vision = sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))
    arch = checkpoint.architecture
    assert vision == arch.vision_parameters + arch.projector_parameters


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (640, 480), (33, 900), (100, 60)])
def test_image_token_rules_match_the_image_processors(size):
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    width, height = size
    qwen = FAMILIES["qwen2_vl"].default_checkpoint.image
    for max_pixels in (qwen.max_pixels, 200_704):
        h, w = smart_resize(height, width, 28, qwen.min_pixels, max_pixels)
        assert image_tokens(qwen, width, height, max_pixels=max_pixels) == (h // 28) * (w // 28)
    for checkpoint in ("HuggingFaceM4/Idefics3-8B-Llama3", "HuggingFaceTB/SmolVLM-256M-Instruct"):
        rule = get_checkpoint(checkpoint).image
        processor = Idefics3ImageProcessorPil(
            size={"longest_edge": rule.longest_edge},
            max_image_size={"longest_edge": rule.tile_px},
        )
        patches, _, _ = processor.get_number_of_image_patches(height, width)
        assert image_tokens(rule, width, height) == max(patches, 1) * rule.tokens


def test_remote_code_checkpoints_have_no_offline_architecture():
    remote = next(name for name, family in CHECKPOINT_FAMILY.items() if family == "cogvlm")
    with pytest.raises(ModelError, match="remote-code family cogvlm"):
        full_size_config(remote)
