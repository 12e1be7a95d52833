"""metrics: hand-made answers with known scores, COCOeval run directly on the files we write,
masks compared on RLE only, counts, baselines, and the sample data scored against itself.

Expected AP values are worked out by hand from COCO's definition (101 recall points, precision
made monotone from the right), never from the module's own code.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from sam2_finetune.answer_formats import AnswerObject, ParsedAnswer, parse_answer, render_answer
from sam2_finetune.errors import DatasetError, OptionsError
from sam2_finetune.masks import rle_encode
from sam2_finetune.metrics import (
    GroundTruth,
    GroundTruthObject,
    MetricsAccumulator,
    PriorBoxes,
    baseline_answer,
    below_baselines,
    box_iou,
    ground_truth,
    prior_from_rows,
    score_answers,
    score_baselines,
    summary,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
LABELS = ["car", "dog"]
# COCOeval's precision is tp / (tp + fp + eps), so a perfect score reads 1 - 2e-16.
approx = pytest.approx


def truth(
    index: int, objects: list[tuple[str, tuple]], video: str = "v", size: int = 100
) -> GroundTruth:
    return GroundTruth(
        image_id=f"{video}/{index:06d}",
        video_id=video,
        width=size,
        height=size,
        objects=tuple(GroundTruthObject(label, box) for label, box in objects),
    )


def said(*objects: tuple[str, tuple], ok: bool = True) -> ParsedAnswer:
    return ParsedAnswer([AnswerObject(label, box) for label, box in objects], None, ok, [])


CAR = ("car", (0, 0, 10, 10))
DOG = ("dog", (50, 50, 20, 20))
FAR = ("car", (80, 80, 10, 10))


def detect(*pairs: tuple[GroundTruth, ParsedAnswer], labels=LABELS, out_dir=None):
    return score_answers(((t, "detect", a, None) for t, a in pairs), labels, out_dir=out_dir)


def _all_values(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _all_values(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _all_values(v)
    else:
        yield value


# --------------------------------------------------------------------------------------------
# Boxes: known answers
# --------------------------------------------------------------------------------------------


def test_perfect_answers_score_one_overall_per_class_and_per_video():
    report = detect(
        (truth(1, [CAR, DOG], "a"), said(CAR, DOG)),
        (truth(2, [CAR], "b"), said(CAR)),
    )
    boxes = report.detect
    for scores in [boxes, *boxes.per_class.values(), *boxes.per_video.values()]:
        assert (scores.map, scores.map50, scores.map75, scores.ar100) == (
            approx(1),
            approx(1),
            approx(1),
            approx(1),
        )
        assert scores.mean_iou == 1.0
    assert (boxes.truth_objects, boxes.predicted_objects, boxes.examples) == (3, 3, 2)
    assert boxes.per_class["car"].truth_objects == 2
    assert boxes.per_video["a"].predicted_objects == 2
    assert report.parse_failure_rate == {"detect": 0.0, "all": 0.0}
    # metrics.json material: plain JSON, undefined values as null.
    assert json.loads(json.dumps(report.to_dict()))["detect"]["per_class"]["car"]["map50"] > 0.99


def test_shifted_box_scores_its_known_iou():
    # Shifted by 2 of 10 pixels: intersection 80, union 120, IoU 2/3. It matches at the IoU
    # thresholds .50, .55, .60, .65 (4 of 10), so mAP = 0.4, AP50 = 1, AP75 = 0, AR = 0.4.
    shifted = ("car", (2, 0, 10, 10))
    assert box_iou(CAR[1], shifted[1]) == approx(2 / 3)
    boxes = detect((truth(1, [CAR]), said(shifted))).detect
    assert (boxes.map, boxes.map50, boxes.map75, boxes.ar100) == (
        approx(0.4),
        approx(1),
        0.0,
        approx(0.4),
    )
    assert boxes.mean_iou == approx(2 / 3)


def test_missing_box_halves_recall():
    # One of two cars found: recall 0.5 at precision 1, so 51 of the 101 recall points.
    boxes = detect((truth(1, [CAR, FAR]), said(CAR))).detect
    assert boxes.map50 == approx(51 / 101)
    assert boxes.ar100 == approx(0.5)
    assert boxes.mean_iou == approx(0.5)


def test_an_extra_box_costs_by_its_place_in_the_answer():
    """All detections score 1.0 in answer order: a wrong box named before the right one ranks
    above it (AP 0.5), named after it costs nothing (AP 1): the documented consequence."""
    first = detect((truth(1, [CAR]), said(FAR, CAR))).detect
    last = detect((truth(1, [CAR]), said(CAR, FAR))).detect
    assert first.map50 == approx(0.5)
    assert last.map50 == approx(1)
    assert first.mean_iou == last.mean_iou == 1.0  # best match per truth box ignores extras
    assert first.predicted_objects == 2


def test_duplicated_box_is_a_false_positive():
    # Detections in dataset order: TP, FP (the duplicate), TP. Recall .5 at precision 1, then
    # recall 1 at precision 2/3: (51 * 1 + 50 * 2/3) / 101.
    report = detect(
        (truth(1, [CAR]), said(CAR, CAR)),
        (truth(2, [CAR]), said(CAR)),
    )
    assert report.detect.map50 == approx((51 + 50 * 2 / 3) / 101)


def test_wrong_label_misses_and_undefined_classes_are_none_not_minus_one():
    report = detect((truth(1, [CAR]), said(("dog", CAR[1]))))
    boxes = report.detect
    assert boxes.per_class["car"].map50 == 0.0
    # No dog in the truth: COCOeval says -1 (undefined); we say None and leave it out of the mean.
    assert boxes.per_class["dog"].map is None and boxes.per_class["dog"].map50 is None
    assert boxes.per_class["dog"].predicted_objects == 1
    assert boxes.map == 0.0 and boxes.mean_iou == 0.0
    assert -1 not in list(_all_values(report.to_dict()))


def test_garbage_text_is_a_counted_parse_failure_and_a_miss():
    garbage = parse_answer("I think there is a car somewhere", "json", (100, 100))
    assert not garbage.ok and not garbage.objects
    accumulator = MetricsAccumulator(LABELS)
    score = accumulator.add(truth(1, [CAR]), "detect", garbage)
    accumulator.add(truth(2, [CAR]), "detect", said(CAR))
    assert (score.parse_ok, score.matched50, score.mean_iou) == (False, 0, 0.0)
    report = accumulator.result()
    assert report.parse_failures == {"detect": 1}
    assert report.parse_failure_rate == {"detect": 0.5, "all": 0.5}
    assert report.detect.ar100 == approx(0.5)


def test_truncated_answer_is_a_failure_that_keeps_its_complete_objects():
    text = '[{"label": "car", "bbox_2d": [0, 0, 100, 100]}, {"label": "car", "bbox_2d": [5'
    parsed = parse_answer(text, "json", (100, 100))
    assert not parsed.ok and len(parsed.objects) == 1
    accumulator = MetricsAccumulator(LABELS)
    score = accumulator.add(truth(1, [CAR]), "detect", parsed)
    assert (score.parse_ok, score.matched50) == (False, 1)
    assert accumulator.result().parse_failure_rate["detect"] == 1.0


def test_empty_images():
    scored = [(truth(1, [CAR]), said(("car", (1, 0, 10, 10))))]
    alone = detect(*scored).detect
    with_empty = detect((truth(2, []), said()), *scored).detect
    assert (with_empty.map, with_empty.map50, with_empty.ar100) == (
        alone.map,
        alone.map50,
        alone.ar100,
    )
    assert with_empty.examples == 2
    # A box invented on an empty image is a false positive ranked first: AP 0.5.
    invented = detect((truth(2, []), said(FAR)), (truth(1, [CAR]), said(CAR))).detect
    assert invented.map50 == approx(0.5)
    # Nothing to find anywhere: AP is undefined (None, NaN in the summary), not -1 nor 0.
    report = detect((truth(1, []), said()), (truth(2, []), said(FAR)))
    assert report.detect.map is None and report.detect.mean_iou is None
    assert math.isnan(summary(report)["map50"])


def test_no_example_at_all_is_one_clear_error():
    with pytest.raises(DatasetError, match="no example was scored"):
        MetricsAccumulator(LABELS).result()


def test_labels_outside_the_training_labels():
    accumulator = MetricsAccumulator(LABELS)
    accumulator.add(truth(1, [CAR]), "detect", said(("truck", CAR[1]), CAR, ("truck", FAR[1])))
    boxes = accumulator.result().detect
    assert boxes.unknown_labels == {"truck": 2}  # counted and reported ...
    assert boxes.predicted_objects == 1  # ... but no detection of any class
    assert boxes.map50 == approx(1)
    with pytest.raises(OptionsError, match=r"v/000001.*cat"):
        accumulator.add(truth(1, [("cat", (0, 0, 5, 5))]), "detect", said())
    with pytest.raises(OptionsError, match="distinct"):
        MetricsAccumulator(["car", "car"])


def test_per_class_and_per_video():
    boxes = detect(
        (truth(1, [CAR, DOG], "a"), said(CAR, DOG)),
        (truth(1, [CAR, DOG], "b"), said(("car", (60, 60, 10, 10)))),
    ).detect
    assert boxes.per_video["a"].map == approx(1)
    assert boxes.per_video["b"].map == 0.0 and boxes.per_video["b"].mean_iou == 0.0
    assert boxes.per_video["b"].truth_objects == 2
    # car: found in a (first), missed in b; dog: found in a only; both recall .5.
    assert boxes.per_class["car"].ar100 == approx(0.5)
    assert boxes.per_class["dog"].map50 == approx(51 / 101)
    assert boxes.per_class["car"].map50 == approx(51 / 101)
    assert boxes.mean_iou == approx(0.5)


def test_ground_task_is_restricted_to_the_asked_label():
    accumulator = MetricsAccumulator(LABELS)
    # The dog is not asked about, so it is not missed; the box written as "dog" counts as a car.
    score = accumulator.add(truth(1, [CAR, DOG]), "ground", said(("dog", CAR[1])), "car")
    assert (score.truth_objects, score.matched50) == (1, 1)
    # Asked about a label absent from the image: any box is a false positive.
    accumulator.add(truth(2, [CAR]), "ground", said(("dog", (0, 0, 5, 5))), "dog")
    accumulator.add(truth(3, [DOG]), "ground", said(DOG), "dog")
    ground = accumulator.result().ground
    assert ground.off_label_objects == 1
    assert ground.per_class["car"].map50 == approx(1)
    assert ground.per_class["dog"].map50 == approx(0.5)  # FP on image 2 ranks before the TP
    assert ground.truth_objects == 2 and ground.examples == 3


# --------------------------------------------------------------------------------------------
# COCOeval run directly on the files we write
# --------------------------------------------------------------------------------------------


def _cocoeval_on_files(gt_file: str, dt_file: str, **params) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        evaluator = COCOeval(gt, gt.loadRes(dt_file), "bbox")
        for name, value in params.items():
            setattr(evaluator.params, name, value)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_numbers_equal_cocoeval_run_on_the_written_files(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(12):
        objects = [
            (str(rng.choice(LABELS)), (*(float(v) for v in rng.uniform(0, 60, 2)), 20, 25))
            for _ in range(int(rng.integers(0, 4)))
        ]
        answer = []
        for label, box in objects:
            if rng.random() < 0.8:  # found, shifted by up to 3 pixels, sometimes mislabelled
                shift = rng.uniform(-3, 3, 2)
                name = label if rng.random() < 0.85 else str(rng.choice([*LABELS, "truck"]))
                answer.append((name, (box[0] + shift[0], box[1] + shift[1], 20, 25)))
        if rng.random() < 0.4:
            answer.insert(int(rng.integers(0, len(answer) + 1)), ("car", (70, 70, 15, 15)))
        pairs.append((truth(i, objects, video=f"video{i % 3}"), said(*answer)))
    boxes = detect(*pairs, out_dir=tmp_path).detect
    assert set(boxes.files) == {"ground_truth", "detections"}
    gt_file, dt_file = boxes.files["ground_truth"], boxes.files["detections"]
    assert Path(gt_file).parent == tmp_path
    stats = _cocoeval_on_files(gt_file, dt_file)
    assert (boxes.map, boxes.map50, boxes.map75, boxes.ar100) == (
        stats[0],
        stats[1],
        stats[2],
        stats[8],
    )
    assert 0.2 < boxes.map < 0.9  # a mixed case, not a trivial one
    categories = {c["name"]: c["id"] for c in json.loads(Path(gt_file).read_text())["categories"]}
    for label, scores in boxes.per_class.items():
        stats = _cocoeval_on_files(gt_file, dt_file, catIds=[categories[label]])
        assert (scores.map, scores.map50, scores.ar100) == (stats[0], stats[1], stats[8])
    images = json.loads(Path(gt_file).read_text())["images"]
    for video, scores in boxes.per_video.items():
        ids = [image["id"] for image in images if image["video_id"] == video]
        stats = _cocoeval_on_files(gt_file, dt_file, imgIds=ids)
        assert (scores.map, scores.map50, scores.ar100) == (stats[0], stats[1], stats[8])
    detections = json.loads(Path(dt_file).read_text())
    assert {d["score"] for d in detections} == {1.0}
    assert len(detections) == boxes.predicted_objects


# --------------------------------------------------------------------------------------------
# Segment: tiny masks, RLE only
# --------------------------------------------------------------------------------------------


def square_mask(size: int, y0: int, y1: int, x0: int, x1: int) -> dict:
    mask = np.zeros((size, size), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return rle_encode(mask)


def mask_truth(index: int, objects: list[tuple[str, dict]], size: int = 10) -> GroundTruth:
    return GroundTruth(
        image_id=f"m/{index:06d}",
        video_id="m",
        width=size,
        height=size,
        objects=tuple(
            GroundTruthObject(label, tuple(coco_mask.toBbox(rle).tolist()), rle)
            for label, rle in objects
        ),
    )


def polygon_answer(label: str, *polygons: list[tuple[float, float]]) -> ParsedAnswer:
    xs = [x for p in polygons for x, _ in p]
    ys = [y for p in polygons for _, y in p]
    box = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    return ParsedAnswer([AnswerObject(label, box, list(polygons))], None, True, [])


def rectangle(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


@pytest.fixture
def no_decoding(monkeypatch):
    """Segment metrics must work on RLE: decoding a mask fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a mask was decoded")

    monkeypatch.setattr(coco_mask, "decode", refuse)
    monkeypatch.setattr("sam2_finetune.masks.rle_decode", refuse)
    monkeypatch.setattr("sam2_finetune.polygons.rle_decode", refuse)


def test_segment_iou_dice_and_pixel_accuracy_on_tiny_masks(no_decoding):
    car = square_mask(10, 0, 5, 0, 5)  # 25 pixels, top-left
    accumulator = MetricsAccumulator(LABELS)
    exact = accumulator.add(
        mask_truth(1, [("car", car)]),
        "segment",
        polygon_answer("car", rectangle(0, 0, 5, 5)),
        "car",
    )
    assert (exact.mask_iou, exact.mask_dice) == (1.0, 1.0)
    # Twice as tall: intersection 25, union 50 -> IoU 0.5, Dice 50 / 75; 25 of 100 pixels wrong.
    tall = accumulator.add(
        mask_truth(2, [("car", car)]),
        "segment",
        polygon_answer("car", rectangle(0, 0, 5, 10)),
        "car",
    )
    assert (tall.mask_iou, tall.mask_dice) == (0.5, approx(2 / 3))
    segment = accumulator.result().segment
    scores = segment.per_class["car"]
    # Summed over both examples: intersections 50, unions 75, truth 50, predicted 75.
    assert scores.iou == approx(50 / 75)
    assert scores.dice == approx(100 / 125)
    assert scores.pixel_accuracy == approx(175 / 200)
    assert (scores.truth_pixels, scores.predicted_pixels, scores.intersection_pixels) == (
        50,
        75,
        50,
    )
    assert segment.mean_iou == scores.iou and segment.examples == 2


def test_segment_unions_instances_and_parts_per_class(no_decoding):
    left, right = square_mask(10, 0, 4, 0, 2), square_mask(10, 0, 4, 6, 8)
    image = mask_truth(1, [("car", left), ("car", right), ("dog", square_mask(10, 6, 10, 0, 10))])
    # One predicted object drawn as two parts covering both cars: every car pixel, nothing else.
    answer = polygon_answer("car", rectangle(0, 0, 2, 4), rectangle(6, 0, 8, 4))
    score = MetricsAccumulator(LABELS).add(image, "segment", answer, "car")
    assert (score.mask_iou, score.truth_objects) == (1.0, 2)
    # Without an asked label every class is scored: the dog (40 pixels) is missed.
    accumulator = MetricsAccumulator(LABELS)
    accumulator.add(image, "segment", answer)
    segment = accumulator.result().segment
    assert segment.per_class["car"].iou == 1.0
    assert segment.per_class["dog"].iou == 0.0 and segment.per_class["dog"].truth_pixels == 40
    assert segment.mean_iou == 0.5


def test_segment_box_without_polygon_and_empty_answers(no_decoding):
    car = square_mask(10, 2, 6, 2, 6)
    accumulator = MetricsAccumulator(LABELS)
    # A box without polygons stands for its rectangle.
    boxed = accumulator.add(mask_truth(1, [("car", car)]), "segment", said(("car", (2, 2, 4, 4))))
    assert boxed.mask_iou == 1.0
    missed = accumulator.add(mask_truth(2, [("car", car)]), "segment", said(), "car")
    assert (missed.mask_iou, missed.mask_dice) == (0.0, 0.0)
    # Asked about an absent label and rightly answered nothing: nothing to measure.
    negative = accumulator.add(mask_truth(3, [("car", car)]), "segment", said(), "dog")
    assert negative.mask_iou is None
    segment = accumulator.result().segment
    assert segment.per_class["dog"].iou is None
    assert segment.per_class["dog"].pixel_accuracy == 1.0
    assert segment.per_class["car"].iou == approx(0.5)


def test_segment_needs_masks_at_image_size():
    wrong = GroundTruth(
        "m/1",
        "m",
        20,
        20,
        (GroundTruthObject("car", (0, 0, 5, 5), rle_encode(np.ones((10, 10), np.uint8))),),
    )
    with pytest.raises(OptionsError, match=r"m/1.*not at image size.*\[20, 20\]"):
        MetricsAccumulator(LABELS).add(wrong, "segment", said(), "car")
    without = truth(1, [CAR])
    with pytest.raises(OptionsError, match="needs the objects' masks"):
        MetricsAccumulator(LABELS).add(without, "segment", said(), "car")


# --------------------------------------------------------------------------------------------
# Count
# --------------------------------------------------------------------------------------------


def test_count_accuracy_and_mean_absolute_error():
    two_cars = truth(1, [CAR, FAR, DOG])
    accumulator = MetricsAccumulator(LABELS)
    right = accumulator.add(
        two_cars, "count", parse_answer('{"count": 2}', "json", (100, 100)), "car"
    )
    assert (right.count_truth, right.count_predicted) == (2, 2)
    accumulator.add(two_cars, "count", parse_answer("3", "json", (100, 100)), "car")
    garbage = accumulator.add(
        two_cars, "count", parse_answer("many, many", "json", (100, 100)), "car"
    )
    assert (garbage.parse_ok, garbage.count_predicted) == (False, None)
    accumulator.add(truth(2, [DOG]), "count", parse_answer("None", "json", (100, 100)), "car")
    report = accumulator.result()
    count = report.count
    # Exact: 2 (right) and 0 (rightly none) of 4; errors 0, 1, 2 (a failure counts as 0), 0.
    assert (count.examples, count.accuracy, count.mae) == (4, 0.5, 0.75)
    assert count.per_class["car"].examples == 4 and "dog" not in count.per_class
    assert report.parse_failure_rate["count"] == 0.25
    assert summary(report)["count_mae"] == 0.75


# --------------------------------------------------------------------------------------------
# Summary and baselines
# --------------------------------------------------------------------------------------------


def test_summary_is_flat_floats_for_the_trainer():
    accumulator = MetricsAccumulator(LABELS)
    accumulator.add(truth(1, [CAR, DOG]), "detect", said(CAR))
    accumulator.add(truth(1, [CAR, DOG]), "detect", parse_answer("???", "json", (100, 100)))
    values = summary(accumulator.result())
    assert {"map", "map50", "map75", "ar100", "mean_iou", "parse_failure_rate"} <= set(values)
    assert values["parse_failure_rate"] == 0.5
    assert values["map50/car"] == approx(51 / 101) and values["map50/dog"] == 0.0
    assert values["mean_iou"] == 0.25
    assert all(isinstance(v, float) for v in values.values())


TRAIN_ROWS = [
    {
        "width": 100,
        "height": 50,
        "objects": [
            {"label": "car", "bbox": [10, 10, 20, 10]},
            {"label": "car", "bbox": [30, 20, 40, 20]},
            {"label": "dog", "bbox": [0, 0, 50, 25]},
        ],
    },
    {"width": 200, "height": 100, "objects": [{"label": "car", "bbox": [20, 20, 40, 20]}]},
]


def test_prior_boxes_from_a_known_train_split():
    prior = prior_from_rows(TRAIN_ROWS)
    # car boxes normalised: (.1, .2, .2, .2), (.3, .4, .4, .4), (.1, .2, .2, .2).
    assert prior.boxes["car"] == approx((0.5 / 3, 0.8 / 3, 0.8 / 3, 0.8 / 3))
    assert prior.boxes["dog"] == approx((0, 0, 0.5, 0.5))
    assert prior.counts == {"car": 2, "dog": 1}  # 3 cars over 2 images, 1 dog in 1 image
    image = truth(1, [], size=300)
    detect_answer = baseline_answer("prior", image, "detect", None, prior)
    assert [o.label for o in detect_answer.objects] == ["car", "dog"]
    assert detect_answer.objects[1].bbox == approx((0, 0, 150, 150))
    ground = baseline_answer("prior", image, "ground", "dog", prior)
    assert [o.label for o in ground.objects] == ["dog"]
    segment = baseline_answer("prior", image, "segment", "dog", prior)
    assert segment.objects[0].polygons == [[(0, 0), (150, 0), (150, 150), (0, 150)]]
    assert baseline_answer("prior", image, "count", "car", prior).count == 2
    assert baseline_answer("empty", image, "detect", None, prior).objects == []
    assert baseline_answer("empty", image, "count", "car", prior).count == 0
    with pytest.raises(OptionsError, match="unknown baseline"):
        baseline_answer("oracle", image, "detect", None, prior)


def test_baselines_are_scored_like_the_model():
    prior = PriorBoxes(boxes={"car": (0.0, 0.0, 0.1, 0.1)}, counts={"car": 1})
    examples = [
        (truth(1, [CAR]), "detect", None),  # exactly where the prior puts a car
        (truth(2, [FAR]), "detect", None),
        (truth(3, [FAR]), "count", "car"),
    ]
    reports = score_baselines(examples, LABELS, prior)
    assert set(reports) == {"prior", "empty"}
    assert reports["prior"].detect.map50 == approx(51 / 101)
    assert reports["prior"].count.accuracy == 1.0
    assert reports["empty"].detect.map50 == 0.0 and reports["empty"].detect.ar100 == 0.0
    assert reports["empty"].count.mae == 1.0
    model = {"map50": 0.4}
    baselines = {name: summary(report) for name, report in reports.items()}
    assert below_baselines(model, baselines) == ["prior"]
    assert below_baselines({"map50": 0.9}, baselines) == []
    assert below_baselines({"map50": float("nan")}, baselines) == ["prior", "empty"]


# --------------------------------------------------------------------------------------------
# Sample data: the truth against itself, and the prior
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_rows(tmp_path_factory) -> tuple[list[dict], list[str]]:
    from datasets import load_from_disk

    from sam2_finetune.convert import ConvertOptions, convert
    from sam2_finetune.dataset import category_names

    out = tmp_path_factory.mktemp("metrics") / "hf"
    exports = sorted(SAMPLE.glob("*.zip"))
    convert(ConvertOptions(exports=exports, to="hf", out=out))
    dataset = load_from_disk(str(out))
    labels = category_names(dataset)
    return list(dataset.remove_columns("image")), labels


def _boxes_of(t: GroundTruth) -> list[AnswerObject]:
    return [AnswerObject(o.label, o.bbox) for o in t.objects]


def test_sample_data_truth_scores_one_and_the_prior_far_less(sample_rows, tmp_path, no_decoding):
    rows, labels = sample_rows
    truths = [ground_truth(row) for row in rows]
    assert sum(len(t.objects) for t in truths) > 20 and len({t.video_id for t in truths}) == 3
    perfect = score_answers(
        ((t, "detect", ParsedAnswer(_boxes_of(t), None, True, []), None) for t in truths),
        labels,
        out_dir=tmp_path,
    )
    assert perfect.detect.map == approx(1) and perfect.detect.mean_iou == approx(1)
    assert all(v.map == approx(1) for v in perfect.detect.per_video.values())
    # Through the text a model writes: rendered in the json format and parsed back, boxes move by
    # at most one 0-1000 step, which keeps every match above IoU 0.5.
    size = {t.image_id: (t.width, t.height) for t in truths}
    texts = {t.image_id: render_answer(_boxes_of(t), "json", size[t.image_id]) for t in truths}
    through_text = score_answers(
        (
            (t, "detect", parse_answer(texts[t.image_id], "json", size[t.image_id]), None)
            for t in truths
        ),
        labels,
    )
    assert through_text.detect.map50 == approx(1)
    assert through_text.parse_failure_rate["all"] == 0.0
    # Boxes as segment answers against the RLE masks (never decoded): the masks are not
    # rectangles, so IoU is high but below 1.
    segment = score_answers(
        ((t, "segment", ParsedAnswer(_boxes_of(t), None, True, []), None) for t in truths),
        labels,
    ).segment
    assert segment.mean_iou is not None and 0.5 < segment.mean_iou < 1
    # The prior baseline from the same rows: one mean box per label, far below the truth.
    prior = prior_from_rows(rows)
    assert set(prior.boxes) == set(labels)
    baselines = score_baselines(((t, "detect", None) for t in truths), labels, prior)
    assert baselines["prior"].detect.map50 < 0.5
    assert baselines["empty"].detect.map50 == 0.0
    assert below_baselines(summary(perfect), {k: summary(v) for k, v in baselines.items()}) == []
