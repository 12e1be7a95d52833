"""``TrainConfig`` -> ``transformers.TrainingArguments``, in one function.

The config keeps its own short names (``training.epochs``, ``training.precision``, ...); this is
the only place that knows the Trainer's spelling of each, so a renamed Trainer field (transformers 5
renamed several) is fixed here once. Values the run needs but a user should not have to choose are
set here too, each with its reason:

- ``remove_unused_columns=False``: the collator reads the canonical columns (image, objects);
  the Trainer would otherwise drop every column the model's ``forward`` does not name.
- ``load_best_model_at_end`` whenever a ``metric_for_best_model`` is set: with it the Trainer also
  keeps the best checkpoint out of ``save_total_limit``'s pruning.
- ``ddp_find_unused_parameters=False``: LoRA freezes most parameters on purpose; searching for
  unused ones each step costs a graph traversal and is never needed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sam2_finetune.errors import OptionsError, describe

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from sam2_finetune.train.config import TrainConfig

CHECKPOINTS_DIR = "checkpoints"


def check_precision(device: str, precision: str) -> None:
    """Refuse fp16 on the CPU (the Trainer accepts it and silently trains in fp32)."""
    if device == "cpu" and precision == "fp16":
        raise OptionsError(
            describe(
                "the CPU has no fp16 training: the Trainer would silently run in fp32",
                field="training.precision",
                expected="fp32 or bf16 on the CPU",
                found="fp16",
                fix="set training.precision=fp32 (or bf16 on a CPU with AVX512-BF16 / AMX), "
                "or train on a GPU",
            )
        )


def training_arguments(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    device: Literal["cpu", "cuda"],
    precision: Literal["fp32", "bf16", "fp16"],
) -> TrainingArguments:
    """The Trainer's arguments for ``config``, writing checkpoints to ``run_dir/checkpoints``.

    ``device`` and ``precision`` are the resolved ones (``train.check.resolve_device`` and
    ``resolve_precision``), never ``auto``.

    Example: ``training_arguments(config, "runs/x", device="cpu", precision="fp32")``.
    """
    from transformers import TrainingArguments

    training = config.training
    check_precision(device, precision)
    evaluate = training.eval_steps is not None and config.data.eval_split is not None
    best = training.metric_for_best_model if evaluate else None
    return TrainingArguments(
        output_dir=str(Path(run_dir) / CHECKPOINTS_DIR),
        num_train_epochs=training.epochs if training.epochs is not None else 1.0,
        max_steps=training.max_steps if training.max_steps is not None else -1,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        optim=training.optimizer,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=training.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the steps
        weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        activation_checkpointing=training.gradient_checkpointing,
        # Non-reentrant checkpointing works with frozen inputs (LoRA) and with DDP.
        activation_checkpointing_kwargs={"use_reentrant": False}
        if training.gradient_checkpointing
        else None,
        seed=training.seed,
        data_seed=training.seed,
        logging_strategy="steps",
        logging_steps=training.logging_steps,
        logging_first_step=True,
        # A NaN step must show in the logs (callbacks.NonFiniteLossCallback stops on it); the
        # Trainer's default replaces it with the mean of the other steps.
        logging_nan_inf_filter=False,
        include_num_input_tokens_seen="non_padding",  # tokens/s in the logs and progress bar
        eval_strategy="steps" if evaluate else "no",
        # The evaluation loss before any step: the baseline a user compares the run against.
        eval_on_start=evaluate,
        eval_steps=training.eval_steps if evaluate else None,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        load_best_model_at_end=best is not None,
        metric_for_best_model=best,
        greater_is_better=training.greater_is_better if best is not None else None,
        report_to=list(config.output.loggers) or "none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_pin_memory=device == "cuda",
        # Workers are started at each epoch and evaluation (not persistent), so that each starts
        # with the collator's epoch and training flag of that moment (train.collator).
        dataloader_num_workers=training.dataloader_workers,
        dataloader_persistent_workers=False,
        ddp_find_unused_parameters=False,
    )
