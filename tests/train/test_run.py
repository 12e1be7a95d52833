"""``train()`` end to end on a tiny model: the run folder, refusals, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from sam2_finetune.convert import ConvertOptions, convert  # noqa: E402
from sam2_finetune.errors import DatasetError, OutputExistsError  # noqa: E402
from sam2_finetune.train.callbacks import read_metrics  # noqa: E402
from sam2_finetune.train.config import load_config  # noqa: E402
from sam2_finetune.train.run import (  # noqa: E402
    TrainingError,
    complete_checkpoints,
    train,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def overlay_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "overlays"
    convert(ConvertOptions(exports=[SAMPLE / "kitchen.zip"], to="hf", out=out))
    return out


def config_for(dataset, run_dir, *overrides):
    return load_config(
        preset="quick_test",
        overrides=[
            f"data.dataset={dataset}",
            f"output.run_dir={run_dir}",
            "output.overwrite=false",
            "output.loggers=[tensorboard]",
            "training.max_steps=4",
            "training.eval_steps=2",
            "training.save_steps=2",
            "training.logging_steps=1",
            "training.save_total_limit=1",
            *overrides,
        ],
    )


def test_a_run_leaves_a_folder_a_user_can_trust(raw_dataset, tmp_path):
    run_dir = tmp_path / "run"
    result = train(config_for(raw_dataset, run_dir))
    assert result.global_step == 4 and result.stopped == "max_steps"
    for name in ("config.yaml", "data_manifest.json", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["best_step"] in (2, 4)
    assert summary["allow_overlays"] is False and summary["trainable_parameters"] > 0
    manifest = json.loads((run_dir / "data_manifest.json").read_text())
    assert manifest["overlay_frames"] == {"train": 0, "validation": 0}
    assert "split in the run" in manifest["how"]
    logged = read_metrics(run_dir)
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in logged if "eval_loss" in r] == [0, 2, 4]  # 0: the baseline
    # best/ loads alone: the adapter on the base model, with the processor next to it.
    from peft import PeftModel

    from sam2_finetune.models.loading import load_model, load_processor

    best = run_dir / "best"
    info = json.loads((best / "best.json").read_text())
    assert info["step"] == summary["best_step"]
    base = load_model("tiny:smolvlm", "smolvlm")
    model = PeftModel.from_pretrained(base, best)
    assert any("lora_" in n for n, _ in model.named_parameters())
    assert load_processor(best, "smolvlm").tokenizer is not None
    # What inference must reproduce travels with the run and with best/.
    from sam2_finetune.models.record import read_record

    record = read_record(best)
    assert record == read_record(run_dir)
    assert record.family == "smolvlm" and record.base_model == "tiny:smolvlm"
    assert record.labels == manifest["labels"] and record.versions["transformers"]
    # The same folder again is refused; resuming a finished run continues from its last step.
    with pytest.raises(OutputExistsError, match="--resume"):
        train(config_for(raw_dataset, run_dir))


def test_overlays_are_refused_naming_the_videos_and_the_fix(overlay_dataset, tmp_path):
    with pytest.raises(DatasetError, match=r"overlays.*kitchen.*--frames.*allow_overlays"):
        train(config_for(overlay_dataset, tmp_path / "run"))
    # Nothing is left behind: fixing the data and running the same command again works.
    assert not (tmp_path / "run").exists()


def test_resume_with_a_changed_config_names_the_fields(raw_dataset, tmp_path):
    run_dir = tmp_path / "run"
    train(config_for(raw_dataset, run_dir, "training.max_steps=2"))
    with pytest.raises(TrainingError, match=r"training.learning_rate: 0.01 -> 0.001"):
        train(config_for(raw_dataset, run_dir, "training.learning_rate=1e-3"), resume=True)
    # Changing how long it runs is fine.
    result = train(config_for(raw_dataset, run_dir, "training.max_steps=4"), resume=True)
    assert result.global_step == 4


def test_resume_without_a_checkpoint_says_so(raw_dataset, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(TrainingError, match="no complete checkpoint"):
        train(config_for(raw_dataset, tmp_path / "run"), resume=True)


def test_a_half_written_checkpoint_is_never_resumed_from(tmp_path):
    for step, state in ((2, "{}"), (4, '{"trunc')):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoints" / "checkpoint-6").mkdir()  # died before its state was written
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2"]


SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from sam2_finetune.train.config import load_config
    from sam2_finetune.train.run import train
    dataset, run_dir, steps, resume = sys.argv[1:5]
    config = load_config(preset="quick_test", overrides=[
        f"data.dataset={dataset}", f"output.run_dir={run_dir}", "output.overwrite=false",
        "output.loggers=[]", f"training.max_steps={steps}", "training.eval_steps=null",
        "training.metric_for_best_model=null", "data.eval_split=null",
        "training.save_steps=2", "training.logging_steps=1", "training.save_total_limit=null",
    ])
    train(config, resume=resume == "resume")
    """
)


def _start(dataset, run_dir, steps, resume=""):
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(dataset), str(run_dir), str(steps), resume],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_then_resume_gives_the_uninterrupted_losses(raw_dataset, tmp_path):
    """Killed hard mid-run and resumed, the loss of every step equals an uninterrupted run's."""
    steps = 8
    reference = _start(raw_dataset, tmp_path / "reference", steps)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    expected = [r["loss"] for r in read_metrics(tmp_path / "reference") if "loss" in r]
    assert len(expected) == steps

    run_dir = tmp_path / "killed"
    process = _start(raw_dataset, run_dir, steps)
    deadline = time.monotonic() + 600
    while not any(p.name == "checkpoint-4" for p in complete_checkpoints(run_dir)):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = [r["step"] for r in read_metrics(run_dir) if "loss" in r]
    assert max(done) < steps  # killed mid-run

    resumed = _start(raw_dataset, run_dir, steps, "resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    losses = [r["loss"] for r in read_metrics(run_dir) if "loss" in r]
    assert [r["step"] for r in read_metrics(run_dir) if "loss" in r] == list(range(1, steps + 1))
    assert losses == pytest.approx(expected, rel=1e-5)


def test_a_start_that_fails_leaves_no_run_folder(raw_dataset, tmp_path):
    """Refused options, or a model that cannot load once the data is prepared: the same command
    works again once the cause is fixed (no half-made run folder in the way)."""
    from sam2_finetune.errors import ModelError, OptionsError

    with pytest.raises(OptionsError, match="fp16"):
        train(config_for(raw_dataset, tmp_path / "a", "training.precision=fp16"))
    assert not (tmp_path / "a").exists()
    missing = tmp_path / "no-such-model"
    # (room for a real model's image tokens, so that `check` lets it through to the loading)
    other = [f"model.checkpoint={missing}", "data.max_length=8192", "training.learning_rate=1e-4"]
    with pytest.raises(ModelError, match="no-such-model"):
        train(config_for(raw_dataset, tmp_path / "b", *other))
    assert not (tmp_path / "b").exists()


def test_resume_without_a_run_folder_says_which_option_names_it(raw_dataset):
    config = config_for(raw_dataset, "unused")
    config = config.model_copy(
        update={"output": config.output.model_copy(update={"run_dir": None})}
    )
    with pytest.raises(TrainingError, match=r"output.run_dir.*--set output.run_dir=RUN_DIR"):
        train(config, resume=True)


def test_a_lora_run_skips_the_4bit_probe(raw_dataset, tmp_path, monkeypatch):
    """Only quantised runs run bitsandbytes' 4-bit probe (a real quantised layer per start)."""
    from sam2_finetune.train import check

    probed = []
    monkeypatch.setattr(check, "probe_4bit", lambda device: probed.append(device))
    train(config_for(raw_dataset, tmp_path / "run", "training.max_steps=1"))
    assert probed == []


def test_the_record_carries_the_example_options_inference_must_repeat(tmp_path):
    """A run's record (what evaluate and predict read) says how prompts were phrased."""
    from sam2_finetune.train.run import inference_record

    for fixed in (False, True):
        config = config_for(tmp_path, tmp_path / "run", f"data.fixed_prompts={str(fixed).lower()}")
        record = inference_record(config, ["car"])
        assert record.fixed_prompts is fixed
        assert record.max_polygon_points == config.data.max_polygon_points


def test_dataloader_workers_train_exactly_the_same_run(raw_dataset, tmp_path, monkeypatch):
    """Batches built in DataLoader worker processes: over 2.5 epochs with augmentation and
    evaluations (the collator's epoch and training flag must reach each new worker), every loss
    equals the run without workers, and the examples skipped for data.max_length are counted
    from the workers' own rows."""
    from sam2_finetune.train import collator as collator_module

    made = []
    original = collator_module.collator_for_config

    def keep(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(collator_module, "collator_for_config", keep)
    options = [
        "training.max_steps=30",  # 24 training frames, batch 2: 2.5 epochs
        "training.eval_steps=10",
        "training.save_steps=10",
        "training.metric_for_best_model=null",
        "training.eval_generation_samples=0",
        "data.augment={hflip: true, brightness: 0.2}",
        "data.max_length=330",  # some long segment examples of epochs 1-2 do not fit
    ]
    runs = {}
    for workers in (0, 2):
        run_dir = tmp_path / f"workers{workers}"
        result = train(
            config_for(raw_dataset, run_dir, *options, f"training.dataloader_workers={workers}")
        )
        logged = read_metrics(run_dir)
        runs[workers] = (
            [r["loss"] for r in logged if "loss" in r],
            [r["eval_loss"] for r in logged if "eval_loss" in r],
            result.examples_skipped,
        )
    assert len(runs[0][0]) == 30 and len(runs[0][1]) == 4
    assert runs[0][2] > 0
    assert runs[2] == runs[0]
    without, with_workers = made
    assert int(without._counts[1:].sum()) == 0
    assert int(with_workers._counts[0].sum()) == 0  # every batch was built in a worker


def test_an_error_in_a_dataloader_worker_is_one_readable_message(raw_dataset, tmp_path):
    """...and a run that fails mid-training leaves the session's signal handlers as they were
    (the Trainer calls no callback after a failed step; in a notebook Ctrl-C must work again)."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(DatasetError) as caught:
        train(
            config_for(
                raw_dataset,
                tmp_path / "run",
                "training.dataloader_workers=1",
                "data.max_length=64",
            )
        )
    message = str(caught.value)
    assert message.startswith("no example of this batch fits data.max_length")
    assert "Traceback" not in message and "worker" not in message
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


def test_ctrl_c_with_dataloader_workers_saves_and_stops(raw_dataset, tmp_path):
    """Ctrl-C reaches the whole process group, DataLoader workers included: the training process
    finishes its step, saves a checkpoint and exits cleanly (the workers' side:
    tests/train/test_collator.py)."""
    run_dir = tmp_path / "run"
    script = SCRIPT.replace(
        '"training.save_total_limit=null",',
        '"training.save_total_limit=null", "training.dataloader_workers=2",',
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(raw_dataset), str(run_dir), "1000", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job is
    )
    deadline = time.monotonic() + 600
    while not any(p.name == "checkpoint-2" for p in complete_checkpoints(run_dir)):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"] == "interrupted (SIGINT)"
    assert summary["global_step"] < 1000
    saved = complete_checkpoints(run_dir)
    assert saved[-1].name == f"checkpoint-{summary['global_step']}"
