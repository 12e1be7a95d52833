"""``train(config) -> TrainResult``: one fine-tuning run, top to bottom.

Set up (run folder, data, model, collator, Trainer), train, save. The same function runs in one
process or in each of N under ``accelerate launch``: the main process prepares the data and writes
the run folder's files while the others wait, and the Trainer keeps the ranks in step. Resuming is
an option of it (``resume``), not a second path.

The run folder::

    config.yaml          the resolved config (every option spelled out)
    data_manifest.json   where the data came from: splits, sizes, fingerprints, overlays, labels
    data/                exports converted and split for this run (when given exports)
    checkpoints/         the Trainer's checkpoints (save_total_limit; the best is never pruned)
    best/                the best (or, without a metric, the last) model, loadable alone
    tensorboard/         TensorBoard event files
    metrics.jsonl        every logged value, one JSON object a line
    summary.json         steps, time, best metric and step, why it stopped, what was skipped
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from sam2_finetune.errors import OptionsError, OutputExistsError, Sam2FinetuneError, describe
from sam2_finetune.models.record import (
    RECORD_NAME,
    ImageSettings,
    InferenceRecord,
    library_versions,
    write_record,
)
from sam2_finetune.outputs import atomic_output_dir, atomic_write_text
from sam2_finetune.train.config import (
    RESOLVED_CONFIG_NAME,
    ConfigArguments,
    TrainConfig,
    load_config,
)

if TYPE_CHECKING:
    from transformers import Trainer

SUMMARY_NAME = "summary.json"
TENSORBOARD_DIR = "tensorboard"
# Options that may change when a run is resumed: how long it runs and how often it logs, evaluates
# and saves. Anything else (data, model, optimiser, schedule shape) would make the resumed run a
# different run than the one its checkpoints come from.
RESUMABLE_CHANGES = (
    "training.max_steps",
    "training.epochs",
    "training.eval_steps",
    "training.eval_generation_samples",
    "training.save_steps",
    "training.logging_steps",
    "training.dataloader_workers",
    "training.save_total_limit",
    "training.early_stopping_patience",
    "output.overwrite",
    "output.loggers",
    "hardware.num_processes",
    "description",
)


class TrainingError(Sam2FinetuneError):
    """A run cannot start or continue as configured (resume, run folder, memory)."""


@dataclass
class TrainResult:
    """What :func:`train` did. ``stopped`` says why it ended."""

    run_dir: Path
    best_dir: Path | None
    global_step: int
    stopped: str
    best_metric: float | None
    best_step: int | None
    train_loss: float | None
    seconds: float
    examples_skipped: int
    examples_shortened: int
    summary_path: Path


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<family>-<UTC time>``, for a config without ``output.run_dir``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model.family}-{stamp}"


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints that were written to the end, oldest first.

    The Trainer writes ``trainer_state.json`` last: a checkpoint whose state file is missing or
    cut short is one the process died while writing, and is never resumed from.
    """
    folder = Path(run_dir) / "checkpoints"
    found = []
    for path in folder.glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        state = path / "trainer_state.json"
        if not step.isdigit() or not state.is_file():
            continue
        try:
            json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append((int(step), path))
    return [path for _, path in sorted(found)]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


def config_changes(before: TrainConfig, after: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Options whose value differs, ``name -> (before, after)``."""
    old = _flatten(before.model_dump(mode="json"))
    new = _flatten(after.model_dump(mode="json"))
    return {
        k: (old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }


def _resume_checkpoint(config: TrainConfig, run_dir: Path, resume: bool | str) -> str:
    if isinstance(resume, str) and resume not in ("latest", ""):
        checkpoint = Path(resume)
        if not checkpoint.is_absolute() and not checkpoint.exists():
            checkpoint = run_dir / "checkpoints" / resume
        if (
            checkpoint not in complete_checkpoints(run_dir)
            and not (checkpoint / "trainer_state.json").is_file()
        ):
            raise TrainingError(
                describe(
                    "not a complete checkpoint of this run",
                    file=checkpoint,
                    fix="pass --resume alone for the latest complete one, or one of "
                    + (", ".join(p.name for p in complete_checkpoints(run_dir)) or "(none)"),
                )
            )
    else:
        checkpoints = complete_checkpoints(run_dir)
        if not checkpoints:
            raise TrainingError(
                describe(
                    "nothing to resume: the run folder has no complete checkpoint",
                    file=run_dir / "checkpoints",
                    fix="start the run without --resume (add --set output.overwrite=true to "
                    "replace the folder)",
                )
            )
        checkpoint = checkpoints[-1]
    saved = run_dir / RESOLVED_CONFIG_NAME
    if saved.is_file():
        changes = {
            name: values
            for name, values in config_changes(load_config(saved), config).items()
            if name not in RESUMABLE_CHANGES
        }
        if changes:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
            raise TrainingError(
                describe(
                    "the config differs from the one the run started with",
                    file=saved,
                    found=listed,
                    fix="resume with the run's own config (`train "
                    f"{saved} --resume`), or start a new run; only "
                    + ", ".join(RESUMABLE_CHANGES[:5])
                    + " and the like may change on resume",
                )
            )
    return str(checkpoint)


def _prepare_run_dir(config: TrainConfig, run_dir: Path, resume: bool | str | None) -> str | None:
    """Check the run folder against ``resume`` / ``overwrite``; the checkpoint to resume from."""
    if resume:
        return _resume_checkpoint(config, run_dir, resume)
    if run_dir.exists() and any(run_dir.iterdir()) and not config.output.overwrite:
        raise OutputExistsError(
            describe(
                "the run folder already holds a run",
                file=run_dir,
                fix="continue it with --resume, replace it with --set output.overwrite=true, "
                "or choose another output.run_dir",
            )
        )
    return None


def _without_worker_traceback(error: Sam2FinetuneError) -> Sam2FinetuneError:
    """``error`` as the collator raised it. An error raised in a DataLoader worker comes back as
    the same type with the worker's whole traceback as its message (torch's ``ExceptionWrapper``);
    the user needs the message at its end, not the traceback."""
    text = str(error)
    if "Original Traceback" not in text:
        return error
    kind = type(error)
    prefix = f"{kind.__module__}.{kind.__qualname__}: "  # the traceback's last line
    start = text.rfind(prefix)
    return error if start < 0 else kind(text[start + len(prefix) :].rstrip())


def _stop_reason(trainer: Trainer, callbacks: dict[str, Any]) -> str:
    if callbacks["interrupt"].interrupted:
        return f"interrupted ({callbacks['interrupt'].interrupted})"
    if callbacks["nonfinite"].reason:
        return f"non-finite: {callbacks['nonfinite'].reason}"
    state, args = trainer.state, trainer.args
    early = callbacks.get("early")
    if early is not None and early.early_stopping_patience_counter >= early.early_stopping_patience:
        return "early stopping"
    if args.max_steps > 0 and state.global_step >= args.max_steps:
        return "max_steps"
    return "epochs"


def inference_record(config: TrainConfig, labels: list[str]) -> InferenceRecord:
    """What inference must reproduce of a run of ``config`` on ``labels`` (the run writes it as
    ``sam2_finetune.json``; see :mod:`sam2_finetune.models.record`)."""
    data = config.data
    answer_format = str(data.answer_format)
    return InferenceRecord(
        family=config.model.family,
        base_model=str(config.model.checkpoint),
        method=config.model.method,
        quantization=config.model.quantization,
        trust_remote_code=config.model.trust_remote_code,
        answer_format=answer_format,
        labels=list(labels),
        task_mix=data.task_weights(answer_format),
        max_polygon_points=data.max_polygon_points,
        fixed_prompts=data.fixed_prompts,
        image=ImageSettings(
            min_pixels=data.min_pixels,
            max_pixels=data.max_pixels,
            longest_edge=data.longest_edge,
            max_slices=data.max_slices,
        ),
        versions=library_versions(),
    )


def train(config: TrainConfig, *, resume: bool | str | None = None) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data``; see the module for the run folder.

    ``resume``: ``True`` / ``"latest"`` continues from the latest complete checkpoint, a path or
    ``checkpoint-N`` from that one; the config must match the run's except
    :data:`RESUMABLE_CHANGES`.

    >>> result = train(load_config(preset="quick_test"))  # doctest: +SKIP
    >>> result.best_dir, result.stopped                   # doctest: +SKIP
    """
    import torch

    from sam2_finetune.models.tiny import is_plumbing_model
    from sam2_finetune.train.arguments import check_precision
    from sam2_finetune.train.check import (
        check_config,
        format_report,
        gather_hardware_facts,
        needs_bitsandbytes,
        resolve_device,
        resolve_precision,
    )

    if resume and config.output.run_dir is None:
        raise TrainingError(
            describe(
                "--resume needs the run's folder, and the config names none (each new run gets "
                "its own runs/<family>-<time> folder)",
                field="output.run_dir",
                fix="add --set output.run_dir=RUN_DIR, the folder of the run to continue",
            )
        )
    started = time.perf_counter()
    run_dir = Path(config.output.run_dir or default_run_dir(config))
    facts = gather_hardware_facts(probe_bitsandbytes=needs_bitsandbytes(config))
    report = check_config(config, facts)
    if not report.ok:
        raise OptionsError(
            "the config cannot run on this machine:\n"
            + format_report(report)
            + "\nFix: change the options named above (`sam2-finetune check CONFIG` shows them)."
        )
    device, precision = resolve_device(config, facts), resolve_precision(config, facts)
    check_precision(device, precision)  # before anything is written or loaded
    threads = torch.get_num_threads()
    if device == "cpu" and is_plumbing_model(str(config.model.checkpoint)):
        # A default tiny model's 64-wide matrices are too small to split between threads: one
        # thread generated the grounding callback's answers 12x faster than two on a busy 2-core
        # machine (1.5 s against 18 s), and trains faster too. The learner (width 128, batches
        # of 16) keeps every thread: 400 steps took 96 s on two, 144 s on one (idle 2-core
        # machine, benchmarks/bench_learning.py). Restored when the run ends.
        torch.set_num_threads(1)
    try:
        return _run(config, run_dir, resume, device, precision, started)
    finally:
        torch.set_num_threads(threads)


def _run(
    config: TrainConfig,
    run_dir: Path,
    resume: bool | str | None,
    device: str,
    precision: Any,
    started: float,
) -> TrainResult:
    """The body of :func:`train` once the device is known: set up, train, save."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list
    from transformers import EarlyStoppingCallback, ProgressCallback, Trainer, set_seed

    from sam2_finetune.models.tiny import resolve_checkpoint
    from sam2_finetune.train.arguments import training_arguments
    from sam2_finetune.train.callbacks import (
        BEST_DIR,
        BEST_INFO,
        AugmentCallback,
        BestCheckpointCallback,
        EpochCallback,
        GroundingMetricsCallback,
        InterruptCallback,
        MetricsFileCallback,
        NonFiniteLossCallback,
        ProgressBarCallback,
    )
    from sam2_finetune.train.collator import collator_for_config
    from sam2_finetune.train.config import save_resolved_config
    from sam2_finetune.train.data import load_training_data, prepare_split_folder, write_manifest
    from sam2_finetune.train.model import prepare_model

    state = PartialState(cpu=device == "cpu")
    checkpoint = _prepare_run_dir(config, run_dir, resume)
    # Every rank checks the folder before the main process replaces or fills it: a rank checking
    # later would find the main process's fresh files and call the folder taken.
    state.wait_for_everyone()
    try:
        if state.is_main_process:
            if checkpoint is None and run_dir.exists():
                shutil.rmtree(run_dir)  # output.overwrite (checked above)
            run_dir.mkdir(parents=True, exist_ok=True)
            save_resolved_config(config, run_dir)
            prepare_split_folder(config, run_dir)
        state.wait_for_everyone()
        data = load_training_data(config, run_dir)
        if state.is_main_process:
            write_manifest(data, run_dir)
            write_record(inference_record(config, data.labels), run_dir)

        # A `tiny:` checkpoint is built into the cache by the main process alone: under
        # torch.distributed, transformers writes a model's weights on rank 0 only, so a copy another
        # rank built (and won the race to place) would have none.
        if state.is_main_process:
            resolve_checkpoint(config.model.checkpoint)
        state.wait_for_everyone()
        # LoRA's A matrices (and a full model's new heads) are drawn when the model is prepared,
        # before the Trainer seeds anything: seed here so that a run is reproducible.
        set_seed(config.training.seed)
        prepared = prepare_model(
            config.model,
            precision=precision,
            gradient_checkpointing=config.training.gradient_checkpointing,
        )
        collator = collator_for_config(config, prepared.processor, data.labels)
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TENSORBOARD_DIR)
        args = training_arguments(config, run_dir, device=device, precision=precision)
        callbacks: dict[str, Any] = {
            "metrics": MetricsFileCallback(run_dir),
            "best": BestCheckpointCallback(run_dir),
            "progress": ProgressBarCallback(),
            "nonfinite": NonFiniteLossCallback(),
            "interrupt": InterruptCallback(),
            "epoch": EpochCallback(collator),
            "augment": AugmentCallback(collator),
        }
        samples = config.training.eval_generation_samples
        if data.eval is not None and args.eval_strategy != "no" and samples > 0:
            # Before "early": early stopping reads the metrics this callback adds.
            callbacks["grounding"] = GroundingMetricsCallback(
                data.eval.select(range(min(samples, len(data.eval)))),
                processor=prepared.processor,
                family=config.model.family,
                answer_format=str(config.data.answer_format),
                labels=data.labels,
                options=collator.options,
                seed=config.training.seed,
                batch_size=args.per_device_eval_batch_size,  # what fits next to training
            )
        if config.training.early_stopping_patience is not None:
            callbacks["early"] = EarlyStoppingCallback(
                early_stopping_patience=config.training.early_stopping_patience,
                early_stopping_threshold=config.training.early_stopping_threshold,
            )
        trainer = Trainer(
            model=prepared.model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            data_collator=collator,
            processing_class=prepared.processor,
            callbacks=list(callbacks.values()),
        )
        trainer.remove_callback(ProgressCallback)
        if "grounding" in callbacks:
            callbacks["grounding"].trainer = trainer  # it logs its metrics through trainer.log
    except BaseException:
        # Nothing trained yet (bad data, a model that cannot load, options the Trainer refuses):
        # a new run folder goes, so fixing the cause and running the same
        # command again works (a resumed run's folder is kept as it was).
        if state.is_main_process and checkpoint is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    except BaseException as error:
        # The Trainer calls no callback when a step raises: leave the session as it was.
        callbacks["interrupt"].restore()
        callbacks["progress"].close()
        if isinstance(error, Sam2FinetuneError):  # the collator's, maybe from a worker
            raise _without_worker_traceback(error) from None
        if not isinstance(error, torch.OutOfMemoryError):
            raise
        raise TrainingError(
            describe(
                "out of GPU memory",
                found=f"batch_size {config.training.batch_size}, max_length "
                f"{config.data.max_length}, quantization {config.model.quantization}",
                fix="lower training.batch_size (raise gradient_accumulation_steps to keep the "
                "effective batch), set training.gradient_checkpointing=true, use 4-bit "
                "quantization, or start from the ultra_low_memory preset",
            )
        ) from None

    stopped = _stop_reason(trainer, callbacks)
    best_dir = run_dir / BEST_DIR
    # No metric picked a best checkpoint: best/ is the last model. The main process decides (best/
    # is on its disk) and writes; every rank calls save_model, since FSDP and ZeRO-3 gather the
    # weights from all ranks (a rank left out would hang the others).
    (save_last,) = broadcast_object_list(
        [state.is_main_process and not (best_dir / BEST_INFO).is_file()]
    )
    if save_last:
        writer = (
            atomic_output_dir(best_dir, overwrite=True)
            if state.is_main_process
            else nullcontext(best_dir)  # other ranks write nothing there
        )
        with writer as folder:
            trainer.save_model(str(folder))
            if state.is_main_process:
                shutil.copy2(run_dir / RECORD_NAME, folder / RECORD_NAME)
                (folder / BEST_INFO).write_text(
                    json.dumps({"checkpoint": None, "step": trainer.state.global_step}) + "\n"
                )
    state.wait_for_everyone()
    best_step = None
    if trainer.state.best_model_checkpoint:
        best_step = int(Path(trainer.state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    result = TrainResult(
        run_dir=run_dir,
        best_dir=best_dir if best_dir.is_dir() else None,
        global_step=trainer.state.global_step,
        stopped=stopped,
        best_metric=trainer.state.best_metric,
        best_step=best_step,
        train_loss=getattr(output, "training_loss", None),
        seconds=round(time.perf_counter() - started, 2),
        examples_skipped=collator.skipped,
        examples_shortened=collator.shortened,
        summary_path=run_dir / SUMMARY_NAME,
    )
    if state.is_main_process:
        summary = {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()},
            "metric_for_best_model": config.training.metric_for_best_model,
            "device": device,
            "precision": precision,
            "processes": state.num_processes,
            "trainable_parameters": prepared.trainable_parameters,
            "total_parameters": prepared.total_parameters,
            "allow_overlays": config.data.allow_overlays,
            "data": data.manifest["splits"],
            "versions": library_versions(),
        }
        atomic_write_text(result.summary_path, json.dumps(summary, indent=2) + "\n", overwrite=True)
    return result


class TrainOptions(ConfigArguments):
    """Fine-tune a model as a training config says (LoRA, QLoRA or full fine-tuning on
    transformers' Trainer) and leave a run folder: the resolved config, the data manifest,
    checkpoints, best/, TensorBoard logs, metrics.jsonl and summary.json. Ctrl-C saves a
    checkpoint; `--resume` continues from the latest complete one."""

    resume: str | None = Field(
        None,
        description="Continue the run in output.run_dir: alone, from its latest complete "
        "checkpoint; or from the checkpoint named (checkpoint-N or a folder). Write CONFIG first.",
        json_schema_extra={"bare": "latest"},
    )
    json_output: bool = Field(
        False, alias="json", description="Print the run summary as JSON at the end."
    )


def format_result(result: TrainResult) -> str:
    """The end-of-run summary a user reads: where things are, why it stopped, what to do next."""
    lines = [
        f"run        {result.run_dir}",
        f"stopped    {result.stopped} after {result.global_step} steps ({result.seconds:.0f} s)",
    ]
    if result.best_metric is not None:
        lines.append(f"best       {result.best_metric:.4g} at step {result.best_step}")
    if result.best_dir is not None:
        lines.append(f"model      {result.best_dir}")
    if result.examples_skipped or result.examples_shortened:
        lines.append(
            f"examples   {result.examples_shortened} shortened, {result.examples_skipped} "
            "skipped for data.max_length (see summary.json)"
        )
    lines.append(f"summary    {result.summary_path}")
    return "\n".join(lines)


def train_command(options: TrainOptions) -> int:
    """``sam2-finetune train CONFIG``: 0 when the run finished, 130 when interrupted (after
    saving a checkpoint), 1 when it stopped on a non-finite loss."""
    import sys

    config = options.load()
    result = train(config, resume=options.resume)
    if not _is_main_process():
        # Under `accelerate launch` the main process speaks for the run (and wrote the summary);
        # the others only return the same exit code.
        return _exit_code(result)
    if options.json_output:
        print(result.summary_path.read_text(encoding="utf-8"), end="")
    else:
        print(format_result(result))
    if result.stopped.startswith("interrupted"):
        again = " ".join(
            ["sam2-finetune train", options.config, *(f"--set {s}" for s in options.set)]
        )
        print(
            f"interrupted: a checkpoint was saved. Resume with: {again} --resume", file=sys.stderr
        )
    if result.stopped.startswith("non-finite"):
        print(
            f"error: training diverged ({result.stopped.removeprefix('non-finite: ')}); the last "
            "good checkpoint is kept. Fix: lower training.learning_rate, or set "
            "training.max_grad_norm (clipping), then start again.",
            file=sys.stderr,
        )
    return _exit_code(result)


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _exit_code(result: TrainResult) -> int:
    if result.stopped.startswith("interrupted"):
        return 130
    if result.stopped.startswith("non-finite"):
        return 1
    return 0
