"""``export()`` end to end on tiny LLaVA runs: adapter and merged exports that load in a fresh
process with nothing of sam2_finetune imported, the same greedy tokens from both, the model
card, deploy/, the refusals, atomic output and the Hub upload (a local stand-in)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from sam2_finetune.errors import ModelError, OptionsError, OutputExistsError
from sam2_finetune.export import ExportOptions, ExportSourceError, export
from sam2_finetune.models.record import read_record
from tests.export.conftest import FRAMES, write_metrics

pytest.importorskip("torch")
pytestmark = pytest.mark.slow
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# Runs in a fresh interpreter: plain transformers and peft, nothing of sam2_finetune. The greedy
# tokens of the merged model, then of the adapter export on its base, for each image.
GREEDY = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    from PIL import Image
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor
    merged_dir, adapter_dir, base, *images = sys.argv[1:]

    def inputs_for(processor, path):
        turn = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Go."}]}
        text = processor.apply_chat_template([turn], add_generation_prompt=True)
        return processor(text=[text], images=[[Image.open(path).convert("RGB")]],
                         return_tensors="pt")

    def last_logits(model, processor):
        with torch.no_grad():
            return model(**inputs_for(processor, images[0])).logits[0, -1]

    def greedy(model, processor):
        model.eval()
        assert type(processor).__name__.endswith("Processor"), type(processor)
        out = []
        for path in images:
            inputs = inputs_for(processor, path)
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=12, do_sample=False)
            out.append(ids[0, inputs["input_ids"].shape[1]:].tolist())
        return out

    merged_model = AutoModelForImageTextToText.from_pretrained(merged_dir)
    processor = AutoProcessor.from_pretrained(merged_dir)
    merged = greedy(merged_model, processor)
    adapter = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(base), adapter_dir)
    with_adapter = greedy(adapter, AutoProcessor.from_pretrained(adapter_dir))
    # The next-token logits: merged == adapter on base, and both differ from the base alone.
    a, m = last_logits(adapter, processor), last_logits(merged_model, processor)
    with adapter.disable_adapter():
        b = last_logits(adapter, processor)
    assert not [m for m in sys.modules if m.startswith("sam2_finetune")]
    print(json.dumps({"merged": merged, "adapter": with_adapter,
                      "merged_vs_adapter": (m - a).abs().max().item(),
                      "adapter_vs_base": (a - b).abs().max().item()}))
    """
)


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=cwd, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def llava(train_run):
    return train_run("llava")


@pytest.fixture(scope="module")
def exports(llava, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    evaluation = write_metrics(root / "eval")
    adapter = export(ExportOptions(run=llava, out=root / "adapter", evaluation=evaluation))
    merged = export(ExportOptions(run=llava, out=root / "merged", merge=True))
    return adapter, merged


def test_adapter_and_merged_exports_hold_what_loading_needs(exports):
    adapter, merged = exports
    assert adapter.kind == "adapter" and merged.kind == "merged"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (adapter.out_dir / name).is_file(), name
    assert not (adapter.out_dir / "model.safetensors").exists()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        assert (merged.out_dir / name).is_file(), name
    for result in exports:
        folder = result.out_dir
        # The processor files a peer's merged exports dropped.
        for name in ("processor_config.json", "tokenizer.json", "chat_template.jinja"):
            assert (folder / name).is_file(), (result.kind, name)
        # No optimizer state, no leftovers of the atomic write.
        assert not list(folder.glob("optimizer*")) and not list(folder.glob("*.pt"))
        assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]
        record = read_record(folder)
        assert record.merged is (result.kind == "merged")
        assert record.family == "llava" and record.base_model == "tiny:llava"
        assert record.labels == ["bicycle", "car", "person"]
        assert {"transformers", "peft", "torch"} <= set(record.versions)
    merged_config = json.loads((merged.out_dir / "config.json").read_text())
    assert "quantization_config" not in merged_config
    assert merged.merge_seconds is not None and merged.merge_seconds > 0


def test_merged_model_generates_the_adapter_models_tokens_in_a_fresh_process(exports):
    from sam2_finetune.models.tiny import resolve_checkpoint

    adapter, merged = exports
    images = [str(p) for p in FRAMES[:2]]
    base = resolve_checkpoint("tiny:llava")
    tokens = json.loads(
        _python("-c", GREEDY, str(merged.out_dir), str(adapter.out_dir), base, *images).stdout
    )
    from_merged, from_adapter = tokens["merged"], tokens["adapter"]
    assert tokens["merged_vs_adapter"] < 1e-4 < 1e-2 < tokens["adapter_vs_base"]
    assert len(from_merged) == 2 and all(len(ids) > 0 for ids in from_merged)
    assert from_merged == from_adapter
    # ... and the merge changed the weights the adapters target, nothing else.
    from safetensors.torch import load_file

    before = load_file(str(Path(base) / "model.safetensors"))
    after = load_file(str(merged.out_dir / "model.safetensors"))
    changed = {k for k in after if k in before and not before[k].equal(after[k])}
    assert changed and all(re.search(r"language_model.*_proj", k) for k in changed), changed


def test_the_model_card_passes_the_hub_metadata_checks_and_tells_the_data(exports):
    from huggingface_hub import ModelCard

    from sam2_finetune.export.model_card import check_card

    adapter, merged = exports
    card = check_card((adapter.out_dir / "README.md").read_text())
    assert isinstance(card, ModelCard)
    data = card.data
    assert data.library_name == "peft" and data.pipeline_tag == "image-text-to-text"
    assert {"sam2-finetune", "lora", "llava"} <= set(data.tags)
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    assert values["map50"] == pytest.approx(0.62) and "mask_iou" not in values  # None: left out
    assert all(r.dataset_split == "test" for r in data.eval_results)
    text = str(card)
    assert "| mAP@.5 | 0.6200 | 0.1000 | 0.0000 |" in text  # model, prior, empty baselines
    assert "truck (2)" in text  # labels it wrote that it was not trained on
    assert "Split: temporal (seed 42)" in text and "raw video frames" in text
    assert "does not record a validation verdict" in text
    assert "```yaml\n# Resolved training config" in text
    merged_card = check_card((merged.out_dir / "README.md").read_text())
    assert merged_card.data.library_name == "transformers" and not merged_card.data.eval_results
    assert "Not evaluated in this export" in str(merged_card)


@pytest.mark.parametrize("which", [0, 1], ids=["adapter", "merged"])
def test_the_cards_usage_snippet_runs(exports, which, tmp_path):
    result = exports[which]
    text = (result.out_dir / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", text.split("## Usage")[1], re.S)[:1]
    assert 'IMAGE = "frame.jpg"' in snippet and str(result.out_dir) in snippet
    assert ("PeftModel.from_pretrained" in snippet) is (result.kind == "adapter")
    shutil.copy(FRAMES[0], tmp_path / "frame.jpg")
    run = _python("-c", snippet, cwd=tmp_path)
    assert run.stdout.strip() != ""


@pytest.mark.parametrize("which", [0, 1], ids=["adapter", "merged"])
def test_the_deploy_script_prints_parsed_detections(exports, which, tmp_path):
    for result in exports[which : which + 1]:
        script = result.out_dir / "deploy" / "inference.py"
        run = _python(str(script), str(FRAMES[0]), "--max-new-tokens", "16", cwd=tmp_path)
        (line,) = run.stdout.strip().splitlines()
        answer = json.loads(line)
        assert answer["image"] == str(FRAMES[0])
        assert answer["prompt"].startswith("List all the objects")
        assert isinstance(answer["objects"], list) and isinstance(answer["parsed"], bool)
        assert answer["parsed"] or answer["problems"]


def test_deploy_files_name_the_hardware_versions_and_serving(exports):
    adapter, merged = exports
    config = yaml.safe_load((merged.out_dir / "deploy" / "deploy_config.yaml").read_text())
    assert config["model"]["export"] == "merged" and config["model"]["answer_format"] == "json"
    assert 5 < config["hardware"]["gpu_memory_gib"] < 40  # LLaVA-1.5-7B in bf16
    assert "not a measurement" in config["hardware"]["basis"]
    assert config["environment"]["HF_HUB_OFFLINE"] == "1"
    assert config["versions"]["transformers"] in config["install"]
    dockerfile = (merged.out_dir / "deploy" / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") == 1 and "COPY . /srv/model" in dockerfile
    assert f'"transformers=={config["versions"]["transformers"]}"' in dockerfile
    assert "ENTRYPOINT" in dockerfile and "$" not in dockerfile.split("FROM")[1].split("RUN")[0]
    serving = (merged.out_dir / "deploy" / "README.md").read_text()
    assert "vllm serve . --served-model-name merged" in serving
    assert "bbox_2d" in serving and "parse_answer" in serving
    adapter_serving = (adapter.out_dir / "deploy" / "README.md").read_text()
    assert "--enable-lora" in adapter_serving and "--merge" in adapter_serving


def test_export_refuses_to_overwrite_and_writes_atomically(llava, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export(ExportOptions(run=llava, out=out))
    assert (out / "keep.txt").read_text() == "mine"

    import sam2_finetune.export.deploy as deploy

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(deploy, "write_deploy", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export(ExportOptions(run=llava, out=out, overwrite=True))
    assert (out / "keep.txt").read_text() == "mine"  # the old folder stays until success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.undo()
    result = export(ExportOptions(run=llava, out=out, overwrite=True))
    assert not (out / "keep.txt").exists() and result.kind == "adapter"


def test_checkpoint_choice(llava, tmp_path):
    last = export(ExportOptions(run=llava, out=tmp_path / "last", checkpoint="last"))
    step = export(ExportOptions(run=llava, out=tmp_path / "step", checkpoint="checkpoint-2"))
    assert last.source == step.source == llava / "checkpoints" / "checkpoint-2"
    assert last.step == step.step == 2
    with pytest.raises(ExportSourceError, match=r"no complete checkpoint-7.*checkpoint-2"):
        export(ExportOptions(run=llava, out=tmp_path / "x", checkpoint="7"))
    with pytest.raises(ValueError, match="best, last"):
        ExportOptions(run=llava, out=tmp_path / "x", checkpoint="newest")


def test_a_best_folder_can_be_exported_directly(llava, tmp_path):
    result = export(ExportOptions(run=llava / "best", out=tmp_path / "out"))
    assert result.source == llava / "best" and result.kind == "adapter"
    assert "of run `run`" in (tmp_path / "out" / "README.md").read_text()


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("data", "optimizer.pt"))
    return to


def test_a_run_without_a_checkpoint_says_so(llava, tmp_path):
    run = _copy_run(llava, tmp_path / "run")
    shutil.rmtree(run / "best")
    with pytest.raises(ExportSourceError, match=r"no best/.*checkpoint-2.*--checkpoint last"):
        export(ExportOptions(run=run, out=tmp_path / "out"))
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(ExportSourceError, match="no complete checkpoint"):
        export(ExportOptions(run=run, out=tmp_path / "out", checkpoint="last"))
    with pytest.raises(ModelError, match=r"no sam2_finetune\.json"):
        export(ExportOptions(run=tmp_path, out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_of_another_family_is_refused(llava, tmp_path):
    from sam2_finetune.models.tiny import resolve_checkpoint

    run = _copy_run(llava, tmp_path / "run")
    config_file = run / "best" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = resolve_checkpoint("tiny:smolvlm")
    config_file.write_text(json.dumps(config))
    with pytest.raises(ExportSourceError, match=r"not a llava model.*'smolvlm'"):
        export(ExportOptions(run=run, out=tmp_path / "out"))


def test_a_missing_base_model_is_named(llava, tmp_path):
    run = _copy_run(llava, tmp_path / "run")
    for folder in (run, run / "best"):
        record = read_record(folder).model_copy(update={"base_model": str(tmp_path / "gone")})
        (folder / "sam2_finetune.json").write_text(record.model_dump_json())
    for merge in (False, True):
        with pytest.raises(
            ExportSourceError, match=r"gone.*base model the run was trained from is missing"
        ):
            export(ExportOptions(run=run, out=tmp_path / "out", merge=merge))


def test_an_evaluation_folder_without_metrics_is_refused(llava, tmp_path):
    with pytest.raises(OptionsError, match=r"no metrics\.json"):
        export(ExportOptions(run=llava, out=tmp_path / "out", evaluation=tmp_path))


def test_push_to_hub_uploads_the_export_privately(llava, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    class FakeApi:
        """A local stand-in for the Hub: records the calls, copies what would be uploaded."""

        def create_repo(self, repo_id, *, repo_type, private, exist_ok):
            calls["create"] = (repo_id, repo_type, private, exist_ok)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, *, repo_id, repo_type, folder_path, commit_message):
            calls["upload"] = repo_id
            shutil.copytree(folder_path, tmp_path / "hub" / repo_id)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    result = export(ExportOptions(run=llava, out=tmp_path / "out", push_to_hub="me/street"))
    assert calls["create"] == ("me/street", "model", True, True)
    assert result.hub_url == "https://huggingface.co/me/street"
    uploaded = sorted(
        p.relative_to(tmp_path / "hub" / "me/street")
        for p in (tmp_path / "hub" / "me/street").rglob("*")
        if p.is_file()
    )
    assert [str(p) for p in uploaded] == result.files
    # The card and deploy files name the Hub repository, not a local folder.
    assert 'MODEL = "me/street"' in (tmp_path / "out" / "README.md").read_text()


def test_the_cli_exports_and_refuses_in_one_line(llava, tmp_path, capsys):
    from sam2_finetune.cli import main

    assert main(["export", str(llava), "--out", str(tmp_path / "out"), "--checkpoint", "2"]) == 0
    assert "export     " in capsys.readouterr().out
    assert main(["export", str(llava), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--overwrite" in err[0]


def test_the_inference_loader_reads_both_exports(exports):
    """Contract 1: evaluate / predict / deploy load an export with load_for_inference."""
    from peft import PeftModel

    from sam2_finetune.evaluate.loading import load_for_inference

    adapter, merged = exports
    loaded = load_for_inference(adapter.out_dir, device="cpu")
    assert isinstance(loaded.model, PeftModel) and not loaded.record.merged
    loaded = load_for_inference(merged.out_dir, device="cpu")
    assert not isinstance(loaded.model, PeftModel) and loaded.record.merged
    assert type(loaded.model).__name__ == "LlavaForConditionalGeneration"
    assert loaded.processor.tokenizer is not None


def test_a_real_evaluation_goes_into_the_card(llava, exports, tmp_path):
    """Contract 3 end to end: `evaluate` writes metrics.json, `export --evaluation` reads it."""
    from sam2_finetune.evaluate import EvaluateOptions, evaluate
    from sam2_finetune.export.model_card import check_card

    adapter, _ = exports
    evaluation = evaluate(
        EvaluateOptions(
            model=adapter.out_dir,
            data=llava / "data" / "split",
            out=tmp_path / "eval",
            limit=2,
            tasks=["detect"],
            pictures=0,
            device="cpu",
            generation={"max_new_tokens": 8},
        )
    )
    result = export(ExportOptions(run=llava, out=tmp_path / "out", evaluation=evaluation.out_dir))
    card = check_card((result.out_dir / "README.md").read_text())
    written = json.loads((evaluation.out_dir / "metrics.json").read_text())
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["map"] == pytest.approx(written["metrics"]["map"], abs=1e-6)
    assert "prior baseline" in str(card) and "empty baseline" in str(card)
