"""The grounding-metrics callback: generated answers scored at each evaluation, logged, and
usable as ``metric_for_best_model``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

from sam2_finetune.errors import OptionsError
from sam2_finetune.train import load_config, train
from sam2_finetune.train.callbacks import read_metrics

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config_for(dataset, run_dir, *overrides):
    return load_config(
        preset="quick_test",
        overrides=[
            f"data.dataset={dataset}",
            f"output.run_dir={run_dir}",
            "output.loggers=[tensorboard]",
            "training.max_steps=4",
            "training.eval_steps=2",
            "training.save_steps=2",
            "training.logging_steps=2",
            "training.save_total_limit=1",
            "training.eval_generation_samples=3",
            *overrides,
        ],
    )


@pytest.mark.slow
def test_map50_picks_the_best_checkpoint_and_is_logged(raw_dataset, tmp_path):
    run_dir = tmp_path / "run"
    result = train(config_for(raw_dataset, run_dir, "training.metric_for_best_model=map50"))
    logged = [r for r in read_metrics(run_dir) if "eval_map50" in r]
    assert [r["step"] for r in logged] == [0, 2, 4]  # the baseline, then each evaluation
    for record in logged:
        assert 0.0 <= record["eval_parse_failure_rate"] <= 1.0
        for key in ("eval_map", "eval_map50", "eval_mean_iou"):
            assert math.isnan(record[key]) or 0.0 <= record[key] <= 1.0, key
    # The Trainer chose the best checkpoint by map50: the first evaluation at the best value
    # (a later equal value is no improvement), and best/ is that checkpoint.
    scored = [r for r in logged if r["step"] > 0 and not math.isnan(r["eval_map50"])]
    assert scored, logged
    best = max(r["eval_map50"] for r in scored)
    first_best = next(r["step"] for r in scored if r["eval_map50"] == best)
    assert result.best_step == first_best and result.best_metric == best
    info = json.loads((run_dir / "best" / "best.json").read_text())
    assert info["metric"] == "map50" and info["step"] == first_best
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metric_for_best_model"] == "map50"
    # A few predictions next to the truth, as TensorBoard text.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert any(tag.startswith("predictions") for tag in events.Tags()["tensors"])
    assert any(tag.startswith("predictions/") for tag in events.Tags()["images"])
    assert "eval/map50" in events.Tags()["scalars"]


def test_map50_without_generation_is_refused_with_the_fix(raw_dataset, tmp_path):
    with pytest.raises(OptionsError, match="eval_generation_samples"):
        config_for(
            raw_dataset,
            tmp_path / "run",
            "training.metric_for_best_model=map50",
            "training.eval_generation_samples=0",
        )


def test_prediction_pictures_draw_truth_green_and_prediction_red():
    from PIL import Image

    from sam2_finetune.answer_formats import AnswerObject, ParsedAnswer
    from sam2_finetune.metrics import GroundTruth, GroundTruthObject
    from sam2_finetune.train.callbacks import prediction_picture

    image = Image.new("RGB", (64, 48), (0, 0, 0))
    truth = GroundTruth("v/000000", "v", 64, 48, (GroundTruthObject("car", (4, 4, 20, 20)),))
    parsed = ParsedAnswer([AnswerObject("car", (30, 10, 20, 30))], None, True, [])
    picture = prediction_picture(image, truth, parsed)
    assert picture.shape == (48, 64, 3)
    assert tuple(picture[24, 4]) == (40, 200, 60)  # the true box's left edge
    assert tuple(picture[25, 30]) == (230, 40, 40)  # the predicted box's left edge
    assert tuple(picture[40, 10]) == (0, 0, 0)  # outside both boxes: the image
