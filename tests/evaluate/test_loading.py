"""load_for_inference on a real tiny run: run folder, best/, checkpoints, broken folders."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")

from sam2_finetune.errors import ModelError  # noqa: E402
from sam2_finetune.evaluate.loading import load_for_inference, model_folder  # noqa: E402
from sam2_finetune.models.record import RECORD_NAME  # noqa: E402


@pytest.mark.slow
def test_a_run_folder_loads_its_best_model_in_eval_mode(tiny_run):
    from peft import PeftModel

    loaded = load_for_inference(tiny_run, device="cpu")
    assert loaded.source == tiny_run / "best"
    assert isinstance(loaded.model, PeftModel) and not loaded.model.training
    assert loaded.record.family == "smolvlm" and loaded.record.answer_format == "json"
    assert loaded.record.labels  # the run's labels
    # The adapter really is the trained one: its LoRA B matrices left zero.
    trained = [p for n, p in loaded.model.named_parameters() if "lora_B" in n]
    assert trained and any(float(p.abs().sum()) > 0 for p in trained)


@pytest.mark.slow
def test_best_folder_and_checkpoints_load(tiny_run):
    assert load_for_inference(tiny_run / "best", device="cpu").source == tiny_run / "best"
    last = load_for_inference(tiny_run, checkpoint="last", device="cpu")
    assert last.source == tiny_run / "checkpoints" / "checkpoint-2"
    assert last.record.family == "smolvlm"  # from the run: a checkpoint holds no record
    one = load_for_inference(tiny_run, checkpoint="checkpoint-1", device="cpu")
    assert one.source.name == "checkpoint-1"
    assert model_folder(tiny_run, "1")[0].name == "checkpoint-1"
    assert model_folder(tiny_run, "best")[0] == tiny_run / "best"
    # Different steps, different adapters.
    a = dict(last.model.named_parameters())
    b = dict(one.model.named_parameters())
    name = next(n for n in a if "lora_B" in n)
    assert not torch.equal(a[name], b[name])


@pytest.mark.slow
def test_unknown_checkpoint_names_the_saved_steps(tiny_run):
    with pytest.raises(ModelError, match=r"checkpoint-N with N in 1, 2, found 7"):
        load_for_inference(tiny_run, checkpoint="7")
    with pytest.raises(ModelError, match="--checkpoint needs a run folder"):
        load_for_inference(tiny_run / "best", checkpoint="last")


@pytest.mark.slow
def test_a_folder_without_processor_files_is_one_clear_message(tiny_run, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_run / "best", folder)
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(ModelError) as error:
        load_for_inference(folder, device="cpu")
    message = str(error.value)
    assert str(folder) in message and "no saved processor" in message
    assert "processor_config.json" in message and "tokenizer_config.json" in message
    assert "Fix:" in message


@pytest.mark.slow
def test_a_folder_without_record_is_one_clear_message(tiny_run, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_run / "best", folder)
    (folder / RECORD_NAME).unlink()
    with pytest.raises(ModelError, match=f"no {RECORD_NAME}") as error:
        load_for_inference(folder, device="cpu")
    assert str(folder) in str(error.value) and "Fix:" in str(error.value)


def test_missing_or_empty_folders_are_refused(tmp_path):
    with pytest.raises(ModelError, match="no such model folder"):
        load_for_inference(tmp_path / "nothing")
    (tmp_path / RECORD_NAME).write_text(
        '{"family": "smolvlm", "base_model": "tiny:smolvlm", "method": "lora", '
        '"answer_format": "json", "labels": ["car"]}'
    )
    with pytest.raises(ModelError, match="no model weights"):
        load_for_inference(tmp_path)


def test_a_run_without_best_points_to_its_checkpoints(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ModelError, match="no best/ model") as error:
        load_for_inference(tmp_path)
    assert "no checkpoint" in str(error.value)


@pytest.mark.slow
def test_an_adapter_export_loads_its_base_from_the_record(tiny_run, tmp_path):
    from peft import PeftModel

    export = tmp_path / "adapter"
    shutil.copytree(tiny_run / "best", export)  # adapter + processor + record, out of the run
    loaded = load_for_inference(export, device="cpu")
    assert isinstance(loaded.model, PeftModel) and loaded.source == export
    assert loaded.record.base_model == "tiny:smolvlm"


def test_a_full_model_folder_with_a_record_loads_directly(tiny_dirs, tmp_path):
    from sam2_finetune.models.record import InferenceRecord, write_record

    export = tmp_path / "merged"
    shutil.copytree(tiny_dirs("qwen2_vl"), export)
    record = InferenceRecord(
        family="qwen2_vl",
        base_model="tiny:qwen2_vl",
        method="lora",
        merged=True,
        answer_format="qwen2_vl",
        labels=["car"],
        image={"max_pixels": 56 * 56 * 4},
    )
    write_record(record, export)
    loaded = load_for_inference(export, device="cpu")
    assert type(loaded.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert not loaded.model.training and loaded.record.merged
    assert loaded.processor.image_processor.size["longest_edge"] == 56 * 56 * 4
