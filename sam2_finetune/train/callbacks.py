"""What the stock ``transformers.Trainer`` lacks, as plain ``TrainerCallback``s.

The Trainer's own mechanisms come first (``load_best_model_at_end``, ``save_total_limit``,
``EarlyStoppingCallback``); these add only what it does not do:

- :class:`MetricsFileCallback`: every logged value as one JSON line in ``metrics.jsonl`` (what the
  curves, the evaluate stage and a user's own scripts read), consistent after a resume;
- :class:`BestCheckpointCallback`: the best checkpoint copied to ``best/`` (weights or adapter with
  the processor files, no optimizer state), loadable alone, replaced atomically;
- :class:`ProgressBarCallback`: one tqdm bar with ETA, loss, samples/s and tokens/s;
- :class:`NonFiniteLossCallback`: a NaN or infinite loss (or trainable weight) stops the run without
  saving the broken state, so the last checkpoint on disk is a good one;
- :class:`InterruptCallback`: SIGINT / SIGTERM save a checkpoint at the end of the current step and
  stop cleanly (a second Ctrl-C aborts at once).

Only the main process writes files; every process takes the same decisions (stop / save), which
keeps data-parallel ranks in step.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sam2_finetune.evaluate.pictures import prediction_picture
from sam2_finetune.models.record import RECORD_NAME
from sam2_finetune.outputs import atomic_output_dir

METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"
BEST_INFO = "best.json"
# Files of a checkpoint that exist to resume training, not to load the model.
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json")
TRAINING_STATE_PREFIXES = ("rng_state", "optimizer", "global_step")


class MetricsFileCallback(TrainerCallback):
    """Appends every log (training loss, learning rate, evaluation metrics, speeds) to
    ``run_dir/metrics.jsonl`` as ``{"step": ..., "epoch": ..., <name>: <value>, ...}``.

    A resumed run first drops the lines logged after the checkpoint it resumes from (the killed
    run logged them, the resumed one logs those steps again), so each step appears once.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / METRICS_FILE

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if not state.is_world_process_zero or not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= state.global_step
        ]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            # NaN / Infinity are written as JSON's extensions: a diverged run must show it.
            file.write(json.dumps(record, default=str) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``, in order (empty when nothing was logged)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def copy_for_inference(checkpoint: Path, out: Path) -> None:
    """Copy what loading the model needs (weights or adapter, configs, processor / tokenizer
    files) from a Trainer checkpoint to ``out``, without its optimizer and RNG state."""
    for item in checkpoint.iterdir():
        if item.name in TRAINING_STATE_FILES or item.name.startswith(TRAINING_STATE_PREFIXES):
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name)
        else:
            shutil.copy2(item, out / item.name)


class BestCheckpointCallback(TrainerCallback):
    """Keeps ``run_dir/best/`` equal to the Trainer's best checkpoint.

    The Trainer decides which checkpoint is best (``metric_for_best_model``) and, with
    ``load_best_model_at_end``, never prunes it; this copies it out of ``checkpoints/`` each time
    it changes, so ``best/`` survives any pruning, a deleted ``checkpoints/`` folder, or a killed
    run, and loads alone (``best/best.json`` says which step and metric it is).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.best_dir = Path(run_dir) / BEST_DIR

    def _copied(self) -> str | None:
        info = self.best_dir / BEST_INFO
        if not info.exists():
            return None
        return json.loads(info.read_text(encoding="utf-8")).get("checkpoint")

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        best = state.best_model_checkpoint
        if not state.is_world_process_zero or best is None or not Path(best).is_dir():
            return
        if self._copied() == Path(best).name:
            return
        info = {
            "checkpoint": Path(best).name,
            "step": int(Path(best).name.rsplit("-", 1)[-1]),
            "metric": args.metric_for_best_model,
            "value": state.best_metric,
        }
        with atomic_output_dir(self.best_dir, overwrite=True) as tmp:
            copy_for_inference(Path(best), tmp)
            record = self.best_dir.parent / RECORD_NAME  # the run's (train() writes it)
            if record.is_file():
                shutil.copy2(record, tmp / RECORD_NAME)
            (tmp / BEST_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


class ProgressBarCallback(TrainerCallback):
    """One tqdm bar over the optimizer steps, with ETA, the last loss and learning rate, samples/s
    and tokens/s (tokens counted by the Trainer with ``include_num_input_tokens_seen``).

    Replaces the Trainer's ``ProgressCallback``, which prints each log as a dict below the bar.
    """

    def __init__(self) -> None:
        self.bar: Any = None
        self.postfix: dict[str, str] = {}
        self._start = 0.0
        self._start_step = 0
        self._start_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step")
        self._start = time.perf_counter()
        self._start_step = state.global_step
        self._start_tokens = state.num_input_tokens_seen or 0

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        elapsed = time.perf_counter() - self._start
        steps = state.global_step - self._start_step
        if elapsed > 0 and steps > 0:
            samples = steps * args.train_batch_size * args.gradient_accumulation_steps
            self.postfix["samples/s"] = f"{samples * args.world_size / elapsed:.3g}"
            tokens = (state.num_input_tokens_seen or 0) - self._start_tokens
            if tokens > 0:
                self.postfix["tokens/s"] = f"{tokens / elapsed:.4g}"
        self.bar.set_postfix(self.postfix, refresh=False)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        if self.bar is None or not logs:
            return
        for key, shown in (("loss", "loss"), ("eval_loss", "eval_loss"), ("learning_rate", "lr")):
            if key in logs:
                self.postfix[shown] = f"{logs[key]:.4g}"
        self.bar.set_postfix(self.postfix)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar (also after a run that failed: no bar left dangling in a notebook)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class NonFiniteLossCallback(TrainerCallback):
    """Stops the run at the first NaN / infinite loss (or trainable weight), never saving it.

    The loss is seen at each log; the trainable weights are checked before each save, so a
    divergence between two logs is not written over the last good checkpoint either. Needs
    ``logging_nan_inf_filter=False`` (the Trainer would otherwise log a NaN step's loss as the
    mean of the others). ``reason`` says what was found, for the run summary.
    """

    def __init__(self) -> None:
        self.reason: str | None = None

    def _stop(self, control: TrainerControl, reason: str) -> None:
        self.reason = self.reason or reason
        control.should_training_stop = True
        control.should_save = False

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        for key in ("loss", "eval_loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                self._stop(control, f"{key} was {value} at step {state.global_step}")

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kw: Any,
    ) -> None:
        if self.reason is not None:
            control.should_save = False
            return
        if not control.should_save or model is None:
            return
        import torch

        for name, parameter in model.named_parameters():
            if parameter.requires_grad and not torch.isfinite(parameter).all():
                self._stop(control, f"weight {name} became non-finite at step {state.global_step}")
                return


class EpochCallback(TrainerCallback):
    """Tells the collator which epoch starts, so that each epoch draws other tasks and phrasings
    for the same frames (epoch 0 draws what ``convert`` writes). DataLoader workers, if any,
    are started after this event with a copy of the collator, so they see the change too."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.collator.epoch = int(state.epoch or 0)


class AugmentCallback(TrainerCallback):
    """Augment only the batches the Trainer trains on. The Trainer collates training and
    evaluation batches with the same collator, and no event precedes an evaluation, so the
    callback follows the flow: ``collator.training`` is true from the start of training, false
    from the moment an evaluation is decided (``control.should_evaluate`` at a step's or an
    epoch's end, or ``eval_on_start``) until ``on_evaluate`` reports it done, and false after
    training. Batches collated ahead (a prefetched training batch) were training batches."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self._in_train = False

    def _set(self, evaluating: bool) -> None:
        self.collator.training = self._in_train and not evaluating

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._in_train = True
        self._set(evaluating=bool(getattr(args, "eval_on_start", False)))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._set(evaluating=control.should_evaluate)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._set(evaluating=control.should_evaluate)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._set(evaluating=False)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._in_train = False
        self._set(evaluating=False)


class InterruptCallback(TrainerCallback):
    """SIGINT / SIGTERM: finish the current step, save a checkpoint, stop; ``interrupted`` is then
    the signal's name. A second SIGINT raises ``KeyboardInterrupt`` at once (nothing saved)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.interrupted: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.interrupted = signal.Signals(signum).name

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread (a notebook's worker): signals stay as they are
            self._previous.clear()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if args.world_size > 1:
            self._agree(args)
        if self.interrupted is not None:
            control.should_save = True
            control.should_training_stop = True

    def _agree(self, args: TrainingArguments) -> None:
        """Under several processes, stop all at the step where any one has seen a signal.

        Each process gets Ctrl-C (or the launcher's SIGTERM) on its own, possibly a step apart; a
        process that stopped alone would leave the others waiting for its gradients. One small
        all-reduce per step: the largest signal number seen anywhere.
        """
        import torch
        import torch.distributed as dist

        seen = signal.Signals[self.interrupted].value if self.interrupted else 0
        flag = torch.tensor([seen], dtype=torch.int64, device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if self.interrupted is None and int(flag.item()):
            self.interrupted = signal.Signals(int(flag.item())).name

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the signal handlers back as they were (also after a run that failed: in a notebook,
        Ctrl-C must interrupt the next cell again)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class GroundingMetricsCallback(TrainerCallback):
    """At each evaluation, generates answers on a fixed validation subset and scores them.

    The subset is the first ``training.eval_generation_samples`` rows of the eval split, each
    asked one example drawn as the collator draws epoch 0 (the run's seed, the frame's id), from
    the run's task mix restricted to the box tasks (``detect`` / ``ground``; the whole mix when
    it has none), so the numbers are box metrics and the questions are the same at every
    evaluation. Answers come from :func:`sam2_finetune.evaluate.generate.generate_answers`
    (greedy, the training prompt), scores from :mod:`sam2_finetune.metrics` (the evaluate
    stage's numbers): ``eval_map50``, ``eval_map``, ``eval_mean_iou``,
    ``eval_parse_failure_rate`` and the rest of :func:`sam2_finetune.metrics.summary`.

    How the numbers reach the Trainer (transformers 5.23, ``Trainer.evaluate``): the evaluation
    metrics are logged, then ``on_evaluate`` gets the very dict ``evaluate`` returns, which the
    Trainer then hands to ``_determine_best_metric`` (and ``EarlyStoppingCallback`` reads in its
    own ``on_evaluate``, after this callback's). So this callback adds its values to that dict
    in place (``metric_for_best_model: map50`` works, early stopping too) and logs them with
    ``trainer.log`` (``metrics.jsonl``, TensorBoard, ``trainer_state.json``): ``train()`` sets
    :attr:`trainer` after building the Trainer. A few prediction-vs-truth samples go to
    TensorBoard as text (``predictions``), through the Trainer's own TensorBoard writer (one
    event file per run) when the run logs to TensorBoard.

    The answers are bounded at twice the longest true answer of the subset (in tokens) plus 8,
    not by the evaluate stage's rule (room for 10 objects per label): a monitor run at every
    evaluation must stay cheap, and an answer twice as long as the truth is wrong anyway (cut
    there, it counts as a parse failure). The subset's frames are decoded once.

    Every process generates (the same subset, the same weights), so that all of them take the
    same best-checkpoint and early-stopping decisions without exchanging numbers; only the main
    process writes. Undefined metrics (no ground truth in the subset) are NaN, never a best.
    """

    def __init__(
        self,
        rows: Any,
        *,
        processor: Any,
        family: str,
        answer_format: str,
        labels: Any,
        options: Any,
        seed: int,
        batch_size: int = 8,
        text_samples: int = 4,
    ) -> None:
        from sam2_finetune.metrics import BOX_TASKS
        from sam2_finetune.tasks import ExampleOptions

        mix = options.task_weights(answer_format)
        boxes = {task: w for task, w in mix.items() if task in BOX_TASKS and w > 0}
        self.options = ExampleOptions.model_validate(
            {
                **{name: getattr(options, name) for name in ExampleOptions.model_fields},
                "task_mix": boxes or mix,
                "examples_per_frame": 1,
            }
        )
        self.rows = rows
        self.processor = processor
        self.family = family
        self.answer_format = answer_format
        self.labels = list(labels)
        self.seed = seed
        self.batch_size = batch_size
        self.text_samples = text_samples
        self.pictures: list[Any] = []  # the last evaluation's, for TensorBoard
        self.trainer: Any = None
        self.last: dict[str, float] = {}
        self._cached: list[tuple[Any, Any, Any]] | None = None

    def _items(self) -> list[tuple[Any, Any, Any]]:
        from sam2_finetune.answer_formats import get_format
        from sam2_finetune.dataset import row_image
        from sam2_finetune.metrics import ground_truth
        from sam2_finetune.models.chat import processor_resized_wh
        from sam2_finetune.tasks import examples_for_row

        needs_resized = get_format(self.answer_format).needs_resized_wh
        items = []
        for row in self.rows:
            wh = (int(row["width"]), int(row["height"]))
            resized = processor_resized_wh(self.processor, *wh) if needs_resized else None
            (example,) = examples_for_row(
                row,
                self.options,
                self.answer_format,
                seed=self.seed,
                vocabulary=self.labels,
                resized_wh=resized,
            )
            items.append((row_image(row), example, ground_truth(row)))
        return items

    def scores(self, model: Any) -> tuple[dict[str, float], list[str]]:
        """``({"eval_map50": ..., ...}, text samples)`` of ``model`` on the subset; the first
        ``text_samples`` pictures (truth green, prediction red) are kept in ``pictures``."""
        from sam2_finetune.evaluate.generate import GenerationOptions, generate_answers
        from sam2_finetune.metrics import MetricsAccumulator, summary

        if self._cached is None:
            self._cached = self._items()
        items = self._cached
        tokenizer = self.processor.tokenizer
        longest = max(
            len(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
            for _, example, _ in items
        )
        generated = generate_answers(
            model,
            self.processor,
            self.family,
            self.answer_format,
            [(image, example) for image, example, _ in items],
            batch_size=self.batch_size,
            labels=self.labels,
            options=GenerationOptions(max_new_tokens=2 * longest + 8),
        )
        accumulator = MetricsAccumulator(self.labels)
        samples = []
        self.pictures = []
        for (image, example, truth), answer in zip(items, generated, strict=True):
            label = None if example.task == "detect" else example.labels[0]
            accumulator.add(truth, example.task, answer.parsed, label)
            if len(samples) < self.text_samples:
                samples.append(
                    f"**{truth.image_id}** ({example.task}) {example.prompt}\n\n"
                    f"- truth: `{example.answer}`\n- predicted: `{answer.text[:500]}`"
                    f"{'' if answer.parsed.ok else ' (parse failure)'}"
                )
                self.pictures.append(prediction_picture(image, truth, answer.parsed))
        values = summary(accumulator.result())
        for key in ("map", "map50", "mean_iou"):
            values.setdefault(key, float("nan"))
        return {f"eval_{key}": float(value) for key, value in values.items()}, samples

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        model: Any = None,
        **kw: Any,
    ) -> None:
        if metrics is None or model is None or not len(self.rows):
            return
        values, samples = self.scores(model)
        metrics.update(values)
        self.last = values
        if self.trainer is not None:
            self.trainer.log(dict(values))
        writer = self._tensorboard_writer()
        if state.is_world_process_zero and writer is not None and samples:
            writer.add_text("predictions", "\n\n---\n\n".join(samples), state.global_step)
            for i, picture in enumerate(self.pictures):
                writer.add_image(f"predictions/{i}", picture, state.global_step, dataformats="HWC")

    def _tensorboard_writer(self) -> Any:
        """The writer of the Trainer's ``TensorBoardCallback`` (None without TensorBoard)."""
        if self.trainer is None:
            return None
        from transformers.integrations import TensorBoardCallback

        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback):
                return callback.tb_writer
        return None
