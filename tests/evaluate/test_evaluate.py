"""evaluate() end to end: a memorised tiny model scores 1, the outputs, the refusals."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from sam2_finetune.errors import DatasetError, ModelError, OutputExistsError  # noqa: E402
from sam2_finetune.evaluate import EvaluateOptions, evaluate  # noqa: E402
from sam2_finetune.models.record import read_record, write_record  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def options(model, data, out, **extra):
    return EvaluateOptions(model=model, data=data, out=out, tasks=["detect"], **extra)


def test_a_memorised_model_scores_one_on_its_training_frames(memorised, split_dataset, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(options(memorised, split_dataset, out))
    assert result.out_dir == out and result.examples == 3
    assert result.metrics["map"] == pytest.approx(1.0)
    assert result.metrics["map50"] == pytest.approx(1.0)
    assert result.metrics["parse_failure_rate"] == 0.0
    assert result.below_baselines == [] and result.headline == "map50"
    # The baselines, scored on the same examples, are far below.
    assert set(result.baselines) == {"prior", "empty"}
    assert result.baselines["empty"]["map50"] == 0.0
    assert result.baselines["prior"]["map50"] < 0.5
    for name in (
        "metrics.json",
        "summary.md",
        "predictions.jsonl",
        "per_image.csv",
        "detect_ground_truth.json",
        "detect_detections.json",
        "predictions.png",
        "confusion_matrix.png",
        "ap_per_class.png",
    ):
        assert (out / name).is_file(), name
    assert not (out / "training_curves.png").exists()  # an export: no run, no curves

    document = json.loads((out / "metrics.json").read_text())
    assert document["split"] == "test" and document["examples"] == 3
    assert document["metrics"]["map50"] == pytest.approx(1.0)
    assert document["baselines"]["prior"]["map50"] == result.baselines["prior"]["map50"]
    assert document["record"]["family"] == "smolvlm" and document["unknown_labels"] == {}
    assert document["report"]["detect"]["examples"] == 3
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    first = lines[0]
    assert first["text"] == first["expected"] and first["parse_ok"]
    assert (
        first["prompt"]
        and first["objects"]
        and first["scores"]["matched50"] == len(first["objects"])
    )
    with (out / "per_image.csv").open() as file:
        table = list(csv.DictReader(file))
    assert [row["image_id"] for row in table] == [line["image_id"] for line in lines]
    summary = (out / "summary.md").read_text()
    assert "| map50 | 1.0000 |" in summary and "WARNING" not in summary


def test_our_numbers_equal_cocoeval_on_the_files_evaluate_writes(
    memorised, split_dataset, tmp_path
):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "eval"
    # A checkpoint that has not converged would do too; the memorised one is at hand. Half its
    # answers shortened, so the numbers are not all 1.
    result = evaluate(options(memorised, split_dataset, out, generation={"max_new_tokens": 30}))
    truth = COCO(str(out / "detect_ground_truth.json"))
    detections = json.loads((out / "detect_detections.json").read_text())
    found = truth.loadRes(detections) if detections else None
    if found is None:
        assert result.metrics["map"] == 0.0
        return
    evaluator = COCOeval(truth, found, "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats
    assert result.metrics["map"] == pytest.approx(stats[0], abs=1e-12)
    assert result.metrics["map50"] == pytest.approx(stats[1], abs=1e-12)
    assert result.metrics["map75"] == pytest.approx(stats[2], abs=1e-12)
    assert result.metrics["ar100"] == pytest.approx(stats[8], abs=1e-12)
    assert 0 < result.metrics["map"] < 1  # cut answers: a mixed case, not a trivial one


def test_limit_evaluates_the_first_frames_only(memorised, split_dataset, tmp_path):
    result = evaluate(options(memorised, split_dataset, tmp_path / "eval", limit=1))
    assert result.examples == 1
    lines = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["frames"] == 1


def test_each_task_of_the_training_mix_is_asked_once_per_frame(memorised, split_dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(memorised, model)
    record = read_record(model)
    write_record(record.model_copy(update={"task_mix": {"detect": 0.5, "count": 0.5}}), model)
    out = tmp_path / "eval"
    result = evaluate(
        EvaluateOptions(model=model, data=split_dataset, out=out, generation={"max_new_tokens": 40})
    )
    assert result.report.examples == {"detect": 3, "count": 3}
    tasks = [
        json.loads(line)["task"] for line in (out / "predictions.jsonl").read_text().splitlines()
    ]
    assert sorted(tasks) == ["count"] * 3 + ["detect"] * 3
    assert "count_accuracy" in result.metrics and "count_accuracy" in result.baselines["prior"]


def test_predicted_labels_outside_the_training_labels_are_counted(
    memorised, split_dataset, tmp_path
):
    # The same model, told it was trained without "person": its "person" boxes are unknown.
    model = tmp_path / "model"
    shutil.copytree(memorised, model)
    record = read_record(model)
    write_record(
        record.model_copy(update={"labels": [x for x in record.labels if x != "person"]}), model
    )
    result = evaluate(options(model, split_dataset, tmp_path / "eval"))
    assert result.unknown_labels == {"person": 3}
    document = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert document["unknown_labels"] == {"person": 3}
    assert "'person' x3" in (tmp_path / "eval" / "summary.md").read_text()


def test_a_run_folder_gets_its_training_curves(tiny_run, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(
        EvaluateOptions(
            model=tiny_run,
            data=tiny_run / "data" / "split",
            out=out,
            limit=1,
            tasks=["count"],
            generation={"max_new_tokens": 4},
        )
    )
    assert (out / "training_curves.png").is_file()
    assert json.loads((out / "metrics.json").read_text())["source"] == str(tiny_run / "best")
    # A random model: no better than the prior, and the summary says so loudly.
    assert result.below_baselines
    assert "WARNING: the model does not beat" in (out / "summary.md").read_text()


# ---- refusals: one clear message each ------------------------------------------------------


def test_an_empty_split_is_one_clear_message(memorised, street_dataset, tmp_path):
    import warnings

    from sam2_finetune.split import SplitOptions, split

    empty = tmp_path / "split"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split(SplitOptions(dataset=street_dataset, out=empty, ratios=[0.9, 0.1, 0.0]))
    with pytest.raises(DatasetError, match="the 'test' split has no frames") as error:
        evaluate(options(memorised, empty, tmp_path / "eval"))
    assert str(empty) in str(error.value) and "Fix:" in str(error.value)
    assert not (tmp_path / "eval").exists()


def test_a_dataset_without_the_split_is_one_clear_message(memorised, split_dataset, tmp_path):
    with pytest.raises(DatasetError, match="no 'holdout' split") as error:
        evaluate(options(memorised, split_dataset, tmp_path / "eval", split="holdout"))
    assert "train | validation | test" in str(error.value)


def test_a_dataset_without_splits_is_one_clear_message(memorised, street_dataset, tmp_path):
    with pytest.raises(DatasetError, match="has no splits") as error:
        evaluate(options(memorised, street_dataset, tmp_path / "eval"))
    assert "sam2-finetune split" in str(error.value)


def test_a_model_folder_without_processor_is_one_clear_message(memorised, split_dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(memorised, model)
    for name in ("processor_config.json", "tokenizer_config.json", "tokenizer.json"):
        (model / name).unlink(missing_ok=True)
    with pytest.raises(ModelError, match="no saved processor"):
        evaluate(options(model, split_dataset, tmp_path / "eval"))
    assert not (tmp_path / "eval").exists()


def test_an_existing_output_is_kept_without_overwrite(memorised, split_dataset, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        evaluate(options(memorised, split_dataset, out, limit=1))
    assert (out / "keep.txt").read_text() == "mine"
    evaluate(options(memorised, split_dataset, out, limit=1, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "metrics.json").is_file()


def test_overlay_frames_need_the_raw_frames(memorised, tmp_path):
    """Rows whose images are overlays (the answer drawn in) are refused; with --frames the raw
    frames are read instead."""
    from datasets import DatasetDict

    from sam2_finetune.convert import ConvertOptions, convert
    from sam2_finetune.dataset import load_canonical

    overlays = tmp_path / "overlays"
    convert(ConvertOptions(exports=[SAMPLE / "kitchen.zip"], to="hf", out=overlays))
    dataset = load_canonical(overlays)
    split = tmp_path / "split"
    DatasetDict({"test": dataset.select(range(2))}).save_to_disk(str(split))
    with pytest.raises(DatasetError, match="overlays") as error:
        evaluate(options(memorised, split, tmp_path / "eval"))
    assert "--frames" in str(error.value)
    result = evaluate(
        options(
            memorised,
            split,
            tmp_path / "eval",
            frames=[f"kitchen={SAMPLE / 'kitchen_frames'}"],
            generation={"max_new_tokens": 8},
        )
    )
    assert result.examples == 2
    assert "prior" not in result.baselines  # no train split to learn a prior from


def test_the_command_end_to_end(memorised, split_dataset, tmp_path):
    out = tmp_path / "eval"
    command = [
        sys.executable, "-m", "sam2_finetune", "evaluate", "--model", str(memorised),
        "--data", str(split_dataset), "--tasks", "detect", "--limit", "2", "--out", str(out),
        "--json",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["metrics"]["map50"] == pytest.approx(1.0) and printed["examples"] == 2
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode != 0 and again.stderr.startswith("error: ")
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr


def test_labels_are_compared_after_normalisation(split_dataset, tiny_dirs, tmp_path):
    """A model that writes "  CAR " where the annotation says "car" found the car (labels are
    normalised as convert normalises them), and "CAR" is no unknown label."""
    from evaluate.memorise import memorise
    from sam2_finetune.dataset import category_names, load_canonical

    dataset = load_canonical(split_dataset)
    rows = []
    for i in range(len(dataset["test"])):
        row = dataset["test"][i]
        shouted = [{**o, "label": f"  {o['label'].upper()} "} for o in row["objects"]]
        rows.append({**row, "objects": shouted})
    labels = [f"  {label.upper()} " for label in category_names(dataset)]
    model = tmp_path / "model"
    assert memorise(rows, labels, model, tiny_dir=tiny_dirs("smolvlm")) < 0.1
    result = evaluate(options(model, split_dataset, tmp_path / "eval"))
    first = json.loads((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert "CAR" in first["text"] and {o["label"] for o in first["objects"]} <= {
        "car",
        "person",
        "bicycle",
    }
    assert result.metrics["map50"] == pytest.approx(1.0) and result.unknown_labels == {}
