"""``training_arguments``: every preset converts, and the fields mean what the config says."""

from __future__ import annotations

import pytest

from sam2_finetune.errors import OptionsError
from sam2_finetune.train.arguments import training_arguments
from sam2_finetune.train.config import list_presets, load_config

pytest.importorskip("transformers")


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_converts(preset, tmp_path):
    # On the CPU: TrainingArguments refuses a CUDA device or bf16 on a machine without a GPU,
    # and every other field converts the same way whatever the device.
    config = load_config(preset=preset)
    precision = "fp32"
    args = training_arguments(config, tmp_path / "run", device="cpu", precision=precision)
    training = config.training
    assert args.output_dir == str(tmp_path / "run" / "checkpoints")
    assert args.per_device_train_batch_size == training.batch_size
    assert args.gradient_accumulation_steps == training.gradient_accumulation_steps
    assert args.learning_rate == training.learning_rate
    assert args.max_steps == (training.max_steps or -1)
    assert args.seed == training.seed and args.data_seed == training.seed
    assert args.bf16 == (precision == "bf16") and not args.fp16
    assert args.remove_unused_columns is False  # the collator reads the canonical columns
    assert args.load_best_model_at_end == (
        training.metric_for_best_model is not None and training.eval_steps is not None
    )


def test_quick_test_evaluates_keeps_the_best_and_logs_to_tensorboard(tmp_path):
    args = training_arguments(
        load_config(preset="quick_test"), tmp_path, device="cpu", precision="fp32"
    )
    assert args.eval_strategy == "steps" and args.eval_steps == 10
    assert args.save_steps == 10 and args.save_total_limit == 1
    assert args.load_best_model_at_end and args.metric_for_best_model == "loss"
    assert args.greater_is_better is False  # the Trainer's default for a loss
    assert args.use_cpu and args.report_to == ["tensorboard"]


def test_no_evaluation_split_means_no_evaluation(tmp_path):
    config = load_config(
        preset="quick_test",
        overrides=[
            "data.eval_split=null",
            "training.eval_steps=null",
            "training.metric_for_best_model=null",
        ],
    )
    args = training_arguments(config, tmp_path, device="cpu", precision="fp32")
    assert args.eval_strategy == "no" and not args.load_best_model_at_end


def test_warmup_ratio_and_checkpointing_reach_the_trainer(tmp_path):
    config = load_config(
        preset="quick_test",
        overrides=["training.warmup_ratio=0.1", "training.gradient_checkpointing=true"],
    )
    args = training_arguments(config, tmp_path, device="cpu", precision="fp32")
    assert args.warmup_steps == pytest.approx(0.1)
    assert args.activation_checkpointing
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}


def test_fp16_on_the_cpu_is_refused_with_the_fix(tmp_path):
    config = load_config(preset="quick_test")
    with pytest.raises(OptionsError, match=r"training.precision.*fp32"):
        training_arguments(config, tmp_path, device="cpu", precision="fp16")
