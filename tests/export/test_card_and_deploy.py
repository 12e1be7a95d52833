"""The card's and deploy/'s pieces for every family and answer format, without training."""

from __future__ import annotations

import pytest

from sam2_finetune.answer_formats import ANSWER_FORMATS, parse_answer
from sam2_finetune.export import detect_prompt
from sam2_finetune.export.deploy import VLLM_SUPPORT, inference_memory, requirements, serving_text
from sam2_finetune.export.model_card import check_card, format_text, is_hub_id
from sam2_finetune.models.record import InferenceRecord
from sam2_finetune.models.registry import FAMILIES


def _record(family: str, **changes) -> InferenceRecord:
    row = FAMILIES[family]
    values = {
        "family": family,
        "base_model": row.default_checkpoint.name,
        "method": "lora",
        "answer_format": row.answer_format,
        "labels": ["car", "person"],
        "trust_remote_code": row.trust_remote_code,
        "versions": {"transformers": "5.23.0", "torch": "2.13.0+cpu", "peft": "0.21.2"},
    }
    return InferenceRecord(**{**values, **changes})


@pytest.mark.parametrize("fmt", sorted(ANSWER_FORMATS))
def test_every_answer_format_has_a_prompt_and_an_example_a_client_can_parse(fmt):
    record = _record("llava", answer_format=fmt)
    assert detect_prompt(record)
    text = format_text(fmt, ["car"])
    example = text.split("reads `")[1].split("`;")[0]
    resized = (644, 476) if ANSWER_FORMATS[fmt].needs_resized_wh else None
    parsed = parse_answer(example, fmt, (640, 480), resized_wh=resized)
    assert parsed.ok and [o.label for o in parsed.objects] == ["car"]
    x, y, w, h = parsed.objects[0].bbox
    assert (x, y, w, h) == pytest.approx((64, 48, 128, 96), abs=3)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gets_a_memory_estimate_and_a_serving_answer(family):
    record = _record(family)
    memory = inference_memory(record)
    assert 0 < memory["weights_gib"] < memory["gpu_memory_gib"] < 100
    assert "not a measurement" in memory["basis"]
    served = serving_text(record, "merged", "m")
    supported = VLLM_SUPPORT[family][0]
    assert ("vllm serve . --served-model-name m" in served) is supported
    assert ("--trust-remote-code" in served) is (supported and record.trust_remote_code)
    pins = requirements(record, "adapter")
    assert '"transformers==5.23.0"' in pins and '"torch==2.13.0"' in pins and "peft" in pins
    assert "peft" not in requirements(record, "merged")


def test_a_tiny_or_local_base_is_not_named_as_a_hub_model():
    assert is_hub_id("Qwen/Qwen2-VL-2B-Instruct")
    assert not is_hub_id("tiny:llava") and not is_hub_id("/models/base")
    assert not is_hub_id("./base/x")


def test_the_card_check_refuses_broken_metadata():
    good = "---\nlibrary_name: peft\npipeline_tag: image-text-to-text\n---\n# Card\n"
    assert check_card(good).data.library_name == "peft"
    with pytest.raises(ValueError):
        check_card(good.replace("pipeline_tag: image-text-to-text\n", ""))
    broken_index = (
        "---\nlibrary_name: peft\npipeline_tag: image-text-to-text\nmodel-index:\n"
        "- name: m\n  results:\n  - task: {type: object-detection}\n"
        "    dataset: {name: d, type: t}\n    metrics:\n    - {type: map}\n---\n"
    )
    with pytest.raises((ValueError, KeyError)):
        check_card(broken_index)


@pytest.mark.parametrize("fixed", [False, True])
def test_the_exported_prompt_is_the_one_predict_asks_in_the_trained_phrasing(fixed):
    """deploy/, inference.py and the card send detect_prompt: with data.fixed_prompts it must
    be the one phrasing the model was trained on, and always what predict asks."""
    from sam2_finetune.evaluate.predict import prediction_example
    from sam2_finetune.tasks import TEMPLATES

    record = _record("llava", fixed_prompts=fixed)
    asked = prediction_example(
        "json", "detect", None, record.labels, (96, 64), fixed_prompt=fixed
    ).prompt
    assert detect_prompt(record) == asked
    if fixed:
        assert asked.startswith(TEMPLATES["detect"][0])
