"""The run-folder callbacks, on real ``transformers.Trainer`` runs of a small torch model."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from sam2_finetune.train.callbacks import (
    BEST_DIR,
    BestCheckpointCallback,
    InterruptCallback,
    MetricsFileCallback,
    NonFiniteLossCallback,
    ProgressBarCallback,
    read_metrics,
)


class Regression(nn.Module):
    """y = 2x + 1 from noisy points; ``nan_after`` makes the loss NaN from that forward on."""

    def __init__(self, nan_after: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(1, 1)
        self.calls = 0
        self.nan_after = nan_after

    def forward(self, x, labels):
        self.calls += 1
        loss = nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)
        if self.nan_after is not None and self.calls > self.nan_after:
            loss = loss * float("nan")
        return {"loss": loss}


class Points(torch.utils.data.Dataset):
    def __init__(self, n: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, generator=generator)
        self.y = 2 * self.x.squeeze(-1) + 1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def arguments(tmp_path, **overrides) -> TrainingArguments:
    values = {
        "output_dir": str(tmp_path / "checkpoints"),
        "max_steps": 8,
        "per_device_train_batch_size": 4,
        "learning_rate": 0.05,
        "logging_steps": 1,
        "save_steps": 2,
        "save_total_limit": 1,
        "use_cpu": True,
        "report_to": "none",
        "logging_nan_inf_filter": False,
        "disable_tqdm": True,
        "seed": 0,
    }
    return TrainingArguments(**{**values, **overrides})


def run(tmp_path, model=None, callbacks=(), resume=None, **overrides) -> Trainer:
    trainer = Trainer(
        model=model or Regression(),
        args=arguments(tmp_path, **overrides),
        train_dataset=Points(),
        eval_dataset=Points(8),
        callbacks=list(callbacks),
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_every_log_is_one_json_line(tmp_path):
    trainer = run(tmp_path, callbacks=[MetricsFileCallback(tmp_path)])
    records = read_metrics(tmp_path)
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == list(range(1, 9))
    logged = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert [r["loss"] for r in losses] == pytest.approx(logged)
    assert "train_runtime" in records[-1]


def test_a_resumed_run_logs_each_step_once(tmp_path):
    run(tmp_path, callbacks=[MetricsFileCallback(tmp_path)], save_total_limit=None)
    before = [r["loss"] for r in read_metrics(tmp_path) if "loss" in r]
    # As if the run had been killed after step 8 and resumed from its step-4 checkpoint.
    run(
        tmp_path,
        callbacks=[MetricsFileCallback(tmp_path)],
        resume=str(tmp_path / "checkpoints" / "checkpoint-4"),
        save_total_limit=None,
    )
    records = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["loss"] for r in records] == pytest.approx(before)  # deterministic on the CPU


def test_best_checkpoint_is_copied_and_loads_alone(tmp_path):
    trainer = run(
        tmp_path,
        callbacks=[BestCheckpointCallback(tmp_path)],
        eval_strategy="steps",
        eval_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
    )
    best = tmp_path / BEST_DIR
    info = json.loads((best / "best.json").read_text())
    assert info["checkpoint"] == os.path.basename(trainer.state.best_model_checkpoint)
    assert info["value"] == pytest.approx(trainer.state.best_metric)
    assert (best / "model.safetensors").is_file()
    assert not (best / "optimizer.pt").exists() and not list(best.glob("rng_state*"))
    from safetensors.torch import load_file

    weights = load_file(best / "model.safetensors")
    saved = load_file(os.path.join(trainer.state.best_model_checkpoint, "model.safetensors"))
    assert weights.keys() == saved.keys()
    assert all(torch.equal(weights[k], saved[k]) for k in weights)


def test_a_nan_loss_stops_the_run_and_is_never_saved(tmp_path):
    guard = NonFiniteLossCallback()
    trainer = run(tmp_path, model=Regression(nan_after=3), callbacks=[guard])
    # Step 4 is a save step: the weights are checked before the save, then the loss is logged.
    assert guard.reason == "weight linear.weight became non-finite at step 4"
    assert trainer.state.global_step == 4
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == ["checkpoint-2"]  # step 4 (a save step) had diverged: not written
    # The checkpoint on disk is intact.
    from safetensors.torch import load_file

    state = load_file(tmp_path / "checkpoints" / "checkpoint-2" / "model.safetensors")
    assert all(math.isfinite(v) for t in state.values() for v in t.flatten().tolist())


class SendSignal(TrainerCallback):
    def __init__(self, at_step: int, signum: int) -> None:
        self.at_step, self.signum = at_step, signum

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_stops(tmp_path, signum):
    interrupt = InterruptCallback()
    previous = signal.getsignal(signum)
    trainer = run(tmp_path, callbacks=[interrupt, SendSignal(2, signum)], save_steps=100)
    assert interrupt.interrupted == signal.Signals(signum).name
    assert trainer.state.global_step == 3  # the step under way when the signal came finished
    assert (tmp_path / "checkpoints" / "checkpoint-3" / "optimizer.pt").is_file()
    assert signal.getsignal(signum) is previous  # handlers restored after training


def test_progress_bar_shows_speed_and_loss(tmp_path):
    bar = ProgressBarCallback()
    run(tmp_path, callbacks=[bar], include_num_input_tokens_seen="no")
    assert {"loss", "lr", "samples/s"} <= set(bar.postfix)
    assert float(bar.postfix["samples/s"]) > 0
