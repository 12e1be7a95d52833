"""`make demo` runs every stage on sample_data/: keep it working after every change."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_every_stage_and_prints_the_summary(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "sam2_finetune.demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.split("== summary")[-1]
    stages = ("ingest", "validate", "convert", "split", "config", "model", "train")
    for stage in (*stages, "evaluate", "export"):
        assert f"  {stage}" in summary
    assert "leakage none" in summary and "check ok" in summary
    assert (out / "hf" / "dataset_info.json").is_file()
    assert (out / "split" / "split_manifest.json").is_file()
    assert (out / "validate" / "report.md").is_file()
    assert (out / "tiny-smolvlm" / "config.json").is_file()
    assert (out / "run" / "best" / "adapter_model.safetensors").is_file()
    assert (out / "run" / "summary.json").is_file()
    # Evaluated on the test split next to the baselines, then exported with its card.
    assert "vs prior" in summary and (out / "evaluation" / "metrics.json").is_file()
    assert (out / "export" / "README.md").is_file()
    assert (out / "export" / "deploy" / "inference.py").is_file()
