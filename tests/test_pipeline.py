"""`sam2-finetune run PIPELINE.yaml`: stages composed from their own options, skipped when
unchanged, training resumed where it stopped, mistakes reported before anything runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sam2_finetune.errors import DatasetError, OptionsError
from sam2_finetune.pipeline import (
    STATE_NAME,
    load_pipeline,
    read_state,
    run_pipeline,
)
from sam2_finetune.train.loading import PRESETS_DIR, list_presets

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
FAST_TRAIN = [
    "training.max_steps=4",
    "training.save_steps=2",
    "training.eval_steps=2",
    "training.eval_generation_samples=0",
    "training.save_total_limit=3",
    "training.logging_steps=1",
]


def _pipeline(tmp_path: Path, **changes) -> Path:
    data = {
        "out": str(tmp_path / "out"),
        "exports": [str(SAMPLE)],
        "frames": [
            f"{n}={SAMPLE / (n + '_frames')}" for n in ("kitchen", "street_scene", "warehouse")
        ],
        "validate": {"fail_on": "error"},
        "split": {"strategy": "temporal", "ratios": [0.8, 0.1, 0.1], "seed": 42},
        "train": {"preset": "quick_test", "set": FAST_TRAIN},
        "evaluate": {"limit": 2, "tasks": ["detect"], "generation": {"max_new_tokens": 16}},
        "export": {"merge": False},
    }
    for key, value in changes.items():
        data[key] = value
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_pipelines_load_and_are_not_training_presets():
    for path in sorted((PRESETS_DIR / "pipelines").glob("*.yaml")):
        options = load_pipeline(path)
        assert options.exports
    assert not any(name.startswith("pipelines/") for name in list_presets())


def test_a_mistake_in_any_section_is_named_before_anything_runs(tmp_path):
    path = _pipeline(tmp_path, split={"strategy": "temporal", "ratio": [0.8, 0.2]})
    with pytest.raises(OptionsError) as error:
        load_pipeline(path)
    assert "ratio" in str(error.value) and "ratios" in str(error.value)  # did you mean
    path = _pipeline(tmp_path, validate={"fail_on": "sometimes"})
    with pytest.raises(OptionsError, match="fail_on"):
        load_pipeline(path)
    path = _pipeline(tmp_path, train={"preset": "quick_test", "set": ["training.max_steps=-1"]})
    with pytest.raises(OptionsError, match="max_steps"):
        load_pipeline(path)
    assert not (tmp_path / "out").exists()


def test_validation_errors_stop_the_pipeline_naming_the_report(tmp_path):
    # fail_on warning: the sample data's label-case warnings stop it before convert.
    path = _pipeline(tmp_path, validate={"fail_on": "warning"})
    with pytest.raises(DatasetError) as error:
        run_pipeline(path)
    assert "report.md" in str(error.value) and "fail_on" in str(error.value)
    assert not (tmp_path / "out" / "dataset").exists()
    # The state file says which stage stopped it, and why.
    stopped = read_state(tmp_path / "out")["stages"]["validate"]
    assert stopped["status"] == "failed" and "fail_on" in stopped["error"]


@pytest.mark.slow
def test_rerun_skips_unchanged_stages_and_reruns_changed_ones(tmp_path):
    path = _pipeline(tmp_path)
    first = run_pipeline(path)
    assert [s.status for s in first.stages] == ["ran"] * 6
    assert first.stage("train").facts["steps"] == 4
    out = tmp_path / "out"
    for name in (
        "validate/report.md",
        "dataset",
        "split",
        "run/best",
        "evaluation/metrics.json",
        "export/sam2_finetune.json",
        STATE_NAME,
        "pipeline.yaml",
    ):
        assert (out / name).exists(), name
    # Unchanged: nothing runs again.
    again = run_pipeline(path)
    assert [s.status for s in again.stages] == ["skipped"] * 6
    # A changed split seed: what comes before is kept, the split and training run again.
    path = _pipeline(tmp_path, split={"strategy": "temporal", "ratios": [0.8, 0.1, 0.1], "seed": 7})
    changed = run_pipeline(path)
    assert [s.status for s in changed.stages] == ["skipped"] * 2 + ["ran"] * 4
    assert "prior" in changed.stage("evaluate").facts["baselines"]
    # A run stopped part-way (as a killed process leaves it: state "running", only an earlier
    # checkpoint complete) resumes from that checkpoint instead of starting over.
    state = read_state(out)
    state["stages"]["train"]["status"] = "running"
    (out / STATE_NAME).write_text(json.dumps(state))
    shutil.rmtree(out / "run" / "checkpoints" / "checkpoint-4")
    metrics = out / "run" / "metrics.jsonl"
    metrics.write_text('{"step": 1, "marker": "kept by a resume"}\n' + metrics.read_text())
    resumed = run_pipeline(path)
    statuses = [s.status for s in resumed.stages]
    assert statuses == ["skipped", "skipped", "skipped", "resumed", "ran", "ran"]
    assert resumed.stage("train").facts["steps"] == 4
    # The same run folder, continued from checkpoint-2 (a fresh run would have replaced it).
    logged = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert logged[0] == {"step": 1, "marker": "kept by a resume"}
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4]


def test_the_cli_reports_a_missing_pipeline_file_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sam2_finetune.cli", "run", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "nope.yaml" in done.stderr and "Traceback" not in done.stderr
