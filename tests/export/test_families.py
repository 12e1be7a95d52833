"""Exports beyond a LoRA LLaVA: SmolVLM's processor made loadable without sam2_finetune, a QLoRA
run merged into its base reloaded unquantised, a full fine-tune exported whole, and the templates
listed in the wheel's package data."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sam2_finetune.export import ExportOptions, export
from sam2_finetune.models.record import read_record

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_every_template_file_is_in_the_wheels_package_data():
    """`pip install .` ships only what package-data lists: the card and deploy templates must
    match a pattern there, or the installed package cannot write an export."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["sam2_finetune"]
    package = ROOT / "sam2_finetune"
    templates = [
        str(p.relative_to(package))
        for p in (package / "export" / "templates").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert len(templates) >= 4
    missing = [t for t in templates if not any(fnmatch.fnmatch(t, pat) for pat in patterns)]
    assert missing == []


@pytest.mark.slow
def test_smolvlm_processor_is_saved_under_the_stock_class(train_run, tmp_path):
    """Our SmolVLMProcessorWithoutVideo name means nothing to a process without sam2_finetune
    (AutoProcessor then returns only the tokenizer): the export names the stock class and writes
    the video processor config that class reads."""
    import transformers

    from sam2_finetune.models.loading import load_processor

    result = export(ExportOptions(run=train_run("smolvlm"), out=tmp_path / "merged", merge=True))
    folder = result.out_dir
    config = json.loads((folder / "processor_config.json").read_text())
    assert config["processor_class"] == "SmolVLMProcessor"
    video = json.loads((folder / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == "SmolVLMVideoProcessor"
    assert hasattr(transformers, video["video_processor_type"])
    image = json.loads((folder / "processor_config.json").read_text())["image_processor"]
    assert video["size"] == image["size"]
    # sam2_finetune's own loader (evaluate, predict, deploy/inference.py) still reads it ...
    processor = load_processor(folder, "smolvlm")
    assert processor.image_processor.size == image["size"]
    from sam2_finetune.evaluate.loading import load_for_inference

    loaded = load_for_inference(folder, device="cpu")
    assert type(loaded.processor).__name__ == "SmolVLMProcessorWithoutVideo"
    # ... and the merged weights load with plain transformers in a fresh process.
    script = textwrap.dedent(
        """
        import sys
        from transformers import AutoModelForImageTextToText
        model = AutoModelForImageTextToText.from_pretrained(sys.argv[1])
        assert not [m for m in sys.modules if m.startswith("sam2_finetune")]
        print(type(model).__name__)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=ENV
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "SmolVLMForConditionalGeneration"


@pytest.mark.slow
def test_a_qlora_run_merges_into_its_base_reloaded_unquantised(train_run, tmp_path):
    run = train_run("llava", "model.quantization=4bit")
    assert read_record(run).quantization == "4bit"
    result = export(ExportOptions(run=run, out=tmp_path / "merged", merge=True))
    config = json.loads((result.out_dir / "config.json").read_text())
    assert "quantization_config" not in config
    from safetensors import safe_open

    with safe_open(str(result.out_dir / "model.safetensors"), "pt") as weights:
        dtypes = {str(weights.get_slice(k).get_dtype()) for k in weights.keys()}  # noqa: SIM118
        assert not any("absmax" in k or "quant" in k for k in weights.keys())  # noqa: SIM118
    assert dtypes <= {"F32", "BF16", "F16"}
    record = read_record(result.out_dir)
    assert record.merged and record.quantization == "4bit"  # what it was trained as
    card = (result.out_dir / "README.md").read_text()
    assert "reloaded unquantised" in card and "qlora" in card


@pytest.mark.slow
def test_a_full_fine_tune_exports_the_whole_model(train_run, tmp_path):
    run = train_run("llava", "model.method=full")
    result = export(ExportOptions(run=run, out=tmp_path / "full", merge=True))
    assert result.kind == "full" and result.merge_seconds is None
    folder = result.out_dir
    assert (folder / "model.safetensors").is_file() and not (
        folder / "adapter_config.json"
    ).exists()
    assert read_record(folder).method == "full" and not read_record(folder).merged
    script = textwrap.dedent(
        """
        import sys
        from transformers import AutoModelForImageTextToText, AutoProcessor
        AutoModelForImageTextToText.from_pretrained(sys.argv[1])
        print(type(AutoProcessor.from_pretrained(sys.argv[1])).__name__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=ENV
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "LlavaProcessor"
    assert "full-fine-tune" in (folder / "README.md").read_text()
