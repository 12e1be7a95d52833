"""What our training loop costs over a bare Trainer, and our collator over its floor, in one run.

Same tiny model (the ``quick_test`` preset: tiny SmolVLM2, LoRA, CPU, fp32) and same data (the
canonical dataset converted from sample_data/ with the raw frames, split as ``train`` does):

(a) training steps: our Trainer as ``train()`` builds it (our collator on the dataset's rows, our
    callbacks: metrics file, best checkpoint, progress bar, non-finite loss, interrupt, epoch; no
    grounding-metrics callback) against a bare ``transformers.Trainer`` fed the SAME batches, ready
    (a list of the dicts our collator returned in a warm-up run of the same seed, a collator that
    returns them), same model, same ``TrainingArguments`` (checkpoint saving and evaluation off in
    both: they are not the step). Target: at most 1.05x.
(b) the collator per batch against its floor: decoding the same images and calling the processor
    on the same texts (the chat texts our collator built), per batch of the same rows. Target: at
    most 1.25x. Measured twice: with the collator as the runs of (a) left it (every prompt of
    these batches already rendered and placed, as in later epochs), and "cold", the collator's
    prompts forgotten before each repeat (a run's first epoch over these rows).

Repeats are interleaved (ours, then the baseline) and the ratio is the median of the per-pair
ratios; times are medians.

    .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --steps 40 --repeat 7 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sam2_finetune.dataset import row_image  # the floor decodes as the collator does


def setup(run_dir: Path, steps: int, workers: int = 0) -> dict[str, Any]:
    """The pieces ``train()`` builds for the quick_test preset, with ``steps`` steps."""
    from transformers import set_seed

    from sam2_finetune.train.arguments import training_arguments
    from sam2_finetune.train.collator import collator_for_config
    from sam2_finetune.train.config import load_config
    from sam2_finetune.train.data import load_training_data, prepare_split_folder
    from sam2_finetune.train.model import prepare_model

    # The preset names sample_data/ and its frame folders relative to the repository root.
    os.chdir(Path(__file__).resolve().parents[1])
    config = load_config(
        preset="quick_test",
        overrides=[
            f"output.run_dir={run_dir}",
            f"training.max_steps={steps}",
            f"training.dataloader_workers={workers}",
        ],
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_split_folder(config, run_dir)
    data = load_training_data(config, run_dir)
    set_seed(config.training.seed)
    prepared = prepare_model(config.model, precision="fp32", gradient_checkpointing=False)
    collator = collator_for_config(config, prepared.processor, data.labels)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    args = training_arguments(config, run_dir, device="cpu", precision="fp32")
    # Checkpoints and evaluation are not the training step: off in both runs.
    args = dataclasses.replace(
        args,
        save_strategy="no",
        eval_strategy="no",
        eval_on_start=False,
        load_best_model_at_end=False,
        metric_for_best_model=None,
        greater_is_better=None,
        eval_steps=None,
    )
    return {
        "config": config,
        "data": data,
        "model": prepared.model,
        "processor": prepared.processor,
        "collator": collator,
        "args": args,
        "run_dir": run_dir,
    }


def our_trainer(parts: dict[str, Any], collate: Any = None):
    """The Trainer as ``train()`` builds it (callbacks included, no grounding metrics)."""
    from transformers import ProgressCallback, Trainer

    from sam2_finetune.train.callbacks import (
        BestCheckpointCallback,
        EpochCallback,
        InterruptCallback,
        MetricsFileCallback,
        NonFiniteLossCallback,
        ProgressBarCallback,
    )

    run_dir, collator = parts["run_dir"], parts["collator"]
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    callbacks = [
        MetricsFileCallback(run_dir),
        BestCheckpointCallback(run_dir),
        ProgressBarCallback(),
        NonFiniteLossCallback(),
        InterruptCallback(),
        EpochCallback(collator),
    ]
    trainer = Trainer(
        model=parts["model"],
        args=parts["args"],
        train_dataset=parts["data"].train,
        data_collator=collate or collator,
        processing_class=parts["processor"],
        callbacks=callbacks,
    )
    trainer.remove_callback(ProgressCallback)
    return trainer


def bare_trainer(parts: dict[str, Any], batches: list[dict[str, Any]]):
    """A plain Trainer on ready batches: one dataset item is one batch, the collator unwraps it."""
    from transformers import Trainer

    args = dataclasses.replace(
        parts["args"], per_device_train_batch_size=1, dataloader_num_workers=0
    )
    return Trainer(
        model=parts["model"],
        args=args,
        train_dataset=batches,
        data_collator=lambda items: items[0],
    )


def timed(trainer: Any) -> float:
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def collator_vs_floor(
    parts: dict[str, Any], batch_size: int, batches: int, repeat: int, *, cold: bool = False
) -> dict:
    """(b): seconds per batch of our collator and of its floor, per repeat. ``cold``: the
    collator forgets the prompts it rendered and placed before each repeat, as a new run's
    collator in its first epoch (otherwise every prompt of these batches is known after the
    warm-up, as in later epochs)."""
    data, collator, processor = parts["data"].train, parts["collator"], parts["processor"]
    collator.epoch = 0
    groups = [
        list(range(i * batch_size, (i + 1) * batch_size))
        for i in range(min(batches, len(data) // batch_size))
    ]
    # The texts our collator builds for each group (epoch 0), for the floor to process.
    texts = []
    for group in groups:
        rows = [data[i] for i in group]
        texts.append(
            [
                collator.encode(None, example).full_text
                for row in rows
                for example in collator.examples(row)
            ]
        )
    ours, floor, ratios = [], [], []
    for run in range(repeat + 1):  # run 0 warms up both (template compilation, first calls)
        spent_ours = spent_floor = 0.0
        if cold:
            collator._prompts.clear()
            collator._prompt_ids.clear()
        for group, text in zip(groups, texts, strict=True):
            rows = [data[i] for i in group]  # fresh rows: nothing decoded yet
            started = time.perf_counter()
            collator(rows)
            spent_ours += time.perf_counter() - started
            rows = [data[i] for i in group]
            started = time.perf_counter()
            images = [[row_image(row)] for row in rows]
            processor(text=text, images=images, padding=True, return_tensors="pt")
            spent_floor += time.perf_counter() - started
        if run == 0:
            continue
        ours.append(spent_ours / len(groups))
        floor.append(spent_floor / len(groups))
        ratios.append(spent_ours / spent_floor)
    return {"batches": len(groups), "ours_s": ours, "floor_s": floor, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="Training steps per timed run.")
    parser.add_argument("--repeat", type=int, default=5, help="Interleaved pairs of runs.")
    parser.add_argument("--batches", type=int, default=20, help="Collator batches per repeat.")
    parser.add_argument("--json", action="store_true", help="Print the full results as JSON.")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: the shared 2-core machine)."
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader worker processes of our run (training.dataloader_workers; default 0). "
        "The baseline has no data work to move and stays in-process.",
    )
    args = parser.parse_args()
    import torch

    # Two threads on two shared cores spin against other processes' work: one is steadier.
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        parts = setup(Path(tmp) / "run", args.steps, args.workers)
        batch_size = parts["config"].training.batch_size

        # Warm-up run of ours, recording the batches the collator makes for these steps.
        recorded: list[dict[str, Any]] = []

        def record(rows):
            batch = parts["collator"](rows)
            recorded.append(batch)
            return batch

        args_used = parts["args"]
        # Recorded in this process: a worker process would keep the batches to itself.
        parts["args"] = dataclasses.replace(args_used, dataloader_num_workers=0)
        our_trainer(parts, record).train()
        parts["args"] = args_used
        batches = recorded[: args.steps]
        timed(bare_trainer(parts, batches))  # warm-up of the baseline

        ours_s, bare_s, step_ratios = [], [], []
        for _ in range(args.repeat):
            a = timed(our_trainer(parts))
            b = timed(bare_trainer(parts, batches))
            ours_s.append(a)
            bare_s.append(b)
            step_ratios.append(a / b)
        collated = collator_vs_floor(parts, batch_size, args.batches, args.repeat)
        cold = collator_vs_floor(parts, batch_size, args.batches, args.repeat, cold=True)

    tokens = [int(b["input_ids"].shape[1]) for b in batches]
    result = {
        "steps": args.steps,
        "batch_size": batch_size,
        "sequence_lengths": [min(tokens), max(tokens)],
        "train": {"ours_s": ours_s, "bare_s": bare_s, "ratios": step_ratios},
        "collator": collated,
        "collator_cold": cold,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    ms = 1000 / args.steps
    print(
        f"(a) {args.steps} steps, batch {batch_size}, {tokens[0]}-{max(tokens)} tokens: ours "
        f"{statistics.median(ours_s) * ms:.1f} ms/step, bare Trainer on ready batches "
        f"{statistics.median(bare_s) * ms:.1f} ms/step; ratio {statistics.median(step_ratios):.3f}x"
        f" (pairs {min(step_ratios):.3f}-{max(step_ratios):.3f}; target <= 1.05x)"
    )
    print(
        f"(b) collator {statistics.median(collated['ours_s']) * 1000:.1f} ms/batch, floor "
        f"(decode + processor) {statistics.median(collated['floor_s']) * 1000:.1f} ms/batch over "
        f"{collated['batches']} batches; ratio {statistics.median(collated['ratios']):.3f}x "
        f"(repeats {min(collated['ratios']):.3f}-{max(collated['ratios']):.3f}; target <= 1.25x)"
    )
    print(
        f"(b) cold (prompts forgotten before each repeat, as in a run's first epoch): collator "
        f"{statistics.median(cold['ours_s']) * 1000:.1f} ms/batch, floor "
        f"{statistics.median(cold['floor_s']) * 1000:.1f} ms/batch; ratio "
        f"{statistics.median(cold['ratios']):.3f}x "
        f"(repeats {min(cold['ratios']):.3f}-{max(cold['ratios']):.3f})"
    )


if __name__ == "__main__":
    main()
