"""``sam2-finetune models``: the registry as a table with memory estimates."""

import json

import pytest

from sam2_finetune.cli import main
from sam2_finetune.models.registry import CHECKPOINT_FAMILY
from sam2_finetune.models.table import ModelsOptions, models_table


def test_models_command_prints_every_checkpoint_and_says_unverified(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in CHECKPOINT_FAMILY:
        assert name in out
    assert "UNVERIFIED" in out and "LoRA bf16" in out


def test_models_command_json_and_filter(capsys):
    assert main(["models", "qwen2_vl", "llava", "--json", "--frame-size", "640", "480"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["family"] for r in rows} == {"qwen2_vl", "llava"}
    qwen = next(r for r in rows if r["checkpoint"] == "Qwen/Qwen2-VL-2B-Instruct")
    assert qwen["image_tokens"] == 23 * 17  # 644 x 476
    assert qwen["memory_lora_bf16"] > 0 and qwen["parameters"] == 2_208_985_600


def test_families_after_a_multi_value_flag_are_still_families(capsys):
    """`--frame-size W H FAMILY`: the option takes exactly two values, FAMILY is positional."""
    assert main(["models", "--json", "--frame-size", "640", "480", "qwen2_vl", "llava"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["family"] for r in rows} == {"qwen2_vl", "llava"}
    assert next(r for r in rows if r["family"] == "qwen2_vl")["image_tokens"] == 23 * 17
    # A third frame size is a family, and is reported as one.
    assert main(["models", "--frame-size", "640", "480", "360"]) == 2
    assert "unknown model family '360'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["models"], ["check", "production"]])
@pytest.mark.parametrize("size", [["0", "0"], ["-5", "100"], ["640", "100000"]])
def test_impossible_frame_sizes_are_option_errors_not_tracebacks(capsys, command, size):
    assert main([*command, "--frame-size", *size]) == 2
    err = capsys.readouterr().err
    assert "  - --frame-size: " in err and "Traceback" not in err and "ValueError" not in err


def test_models_with_an_unknown_family_is_a_one_line_error(capsys):
    assert main(["models", "qwen3"]) == 2
    assert "unknown model family 'qwen3'" in capsys.readouterr().err


def test_models_table_estimates_grow_with_batch():
    small = models_table(ModelsOptions(family=["gemma3"], batch_size=1))
    large = models_table(ModelsOptions(family=["gemma3"], batch_size=4))
    assert all(b.memory_qlora_4bit > a.memory_qlora_4bit for a, b in zip(small, large, strict=True))


# --- Against the installed transformers (slow: imports it) --------------------------------
