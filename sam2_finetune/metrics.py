"""Grounding metrics over parsed answers: COCO box AP, mask IoU / Dice, counts, baselines.

Shared by the ``evaluate`` stage and the training callback, so a run's ``map50`` during training
and the evaluation's ``map50`` are the same number. Everything here is a plain function over
ground truth (:class:`GroundTruth`, built from a canonical row by :func:`ground_truth`) and parsed
answers (:class:`sam2_finetune.answer_formats.ParsedAnswer`), plus one class that accumulates
(:class:`MetricsAccumulator`). ``docs/metrics.md`` explains each metric; the rules in short:

- Box AP, AR and their per-class and per-video splits are pycocotools' ``COCOeval``, never a
  hand-written AP. Generated answers carry no scores: **every detection gets score 1.0, in answer
  order** (COCOeval's stable sort keeps that order). No confidence is invented, so AP measures the
  one operating point the model chose: the precision-recall curve is traced in dataset order
  (images by the order they were added, objects in answer order), and AP is about the precision
  there times the recall reached, a little more through COCO's interpolation; an extra box named
  before a right one costs more than one named after it. COCOeval's ``-1`` (undefined: no ground
  truth) is reported as ``None``, never as a score.
- In ``detect``, a predicted label outside the training labels cannot be a detection of any
  class: it is left out of AP, and counted in ``unknown_labels`` (in every task). Labels are
  compared exactly as given: normalise them (as convert does) before scoring.
- A parse failure is an answer whose ``ParsedAnswer.ok`` is False. It is counted per task; what
  it did read (a truncated JSON list keeps its complete objects) is scored, so an unreadable answer
  scores as an empty one: every object of its image is missed.
- ``ground`` and ``segment`` ask one label: every predicted object counts as that label (the
  question fixed the class), and objects written with another label are counted in
  ``off_label_objects``. Each ground example is its own COCO image, restricted to the asked label.
- Segment metrics compare, per example and per class, the union of the predicted polygons with the
  union of the ground-truth masks (no instance matching), summed over the split: IoU = sum of
  intersections / sum of unions. Polygons are rasterised by pycocotools to RLE at image size and
  compared on the runs; no mask is decoded.

Memory: :class:`MetricsAccumulator` takes one example at a time and reduces it at once. Masks are
never kept; boxes are (a few numbers per object) because COCOeval needs the whole split at the end.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from sam2_finetune.answer_formats import TASKS, AnswerObject, ParsedAnswer
from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.masks import Rle
from sam2_finetune.outputs import atomic_write_text

__all__ = [
    "BASELINES",
    "BOX_TASKS",
    "DETECTION_SCORE",
    "BoxMetrics",
    "BoxScores",
    "CountMetrics",
    "CountScores",
    "GroundTruth",
    "GroundTruthObject",
    "ImageScore",
    "MaskMetrics",
    "MaskScores",
    "MetricsAccumulator",
    "MetricsReport",
    "PriorBoxes",
    "baseline_answer",
    "below_baselines",
    "box_iou",
    "ground_truth",
    "prior_from_rows",
    "score_answers",
    "score_baselines",
    "summary",
]

BOX_TASKS = ("detect", "ground")
BASELINES = ("prior", "empty")
# Every detection's score: answers state no confidence (see the module docstring).
DETECTION_SCORE = 1.0
# COCOeval's default IoU thresholds (.50:.05:.95); of its area ranges and detection limits only
# "all" and 100 are reported, so only those are computed (its per-image loop is the cost).
_AREA_ALL = 0
_MAX_DETS_100 = -1


# --------------------------------------------------------------------------------------------
# Ground truth


@dataclass(frozen=True)
class GroundTruthObject:
    """One annotated object: ``bbox`` ``(x, y, w, h)`` in image pixels (pixel edges, as COCO),
    ``segmentation`` its compressed COCO RLE at image size (needed only by the segment task),
    ``area`` its mask area in pixels (the box area when unknown)."""

    label: str
    bbox: tuple[float, float, float, float]
    segmentation: Rle | None = None
    area: float | None = None


@dataclass(frozen=True)
class GroundTruth:
    """What an image holds: its ids, size, and visible objects."""

    image_id: str
    video_id: str
    width: int
    height: int
    objects: tuple[GroundTruthObject, ...] = ()


def ground_truth(row: Mapping[str, Any]) -> GroundTruth:
    """The :class:`GroundTruth` of a canonical row (``sam2_finetune.dataset``).

    ``objects`` must be a list of dicts (as the canonical dataset's ``List`` feature reads).
    Objects whose box has no width or height are left out: nothing can be matched to them, and
    the canonical dataset holds only visible objects anyway.
    """
    objects = row.get("objects") or []
    if isinstance(objects, Mapping):
        raise OptionsError(
            describe(
                "objects are columns (a dict of lists), not a list of objects",
                object_id=row.get("image_id"),
                field="objects",
                fix="read the canonical dataset with its own features (dataset.load_canonical), "
                "which give a list of dicts per row",
            )
        )
    kept = []
    for obj in objects:
        x, y, w, h = (float(v) for v in obj["bbox"])
        if w <= 0 or h <= 0:
            continue
        area = obj.get("area")
        kept.append(
            GroundTruthObject(
                label=str(obj["label"]),
                bbox=(x, y, w, h),
                segmentation=obj.get("segmentation"),
                area=float(area) if area is not None else None,
            )
        )
    return GroundTruth(
        image_id=str(row.get("image_id", "")),
        video_id=str(row.get("video_id", "")),
        width=int(row["width"]),
        height=int(row["height"]),
        objects=tuple(kept),
    )


# --------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class BoxScores:
    """COCO box metrics of one slice (the split, a class or a video); ``None`` where COCOeval
    finds them undefined (no ground-truth object in the slice).

    ``mean_iou``: for each ground-truth box, the IoU of the best predicted box of the same label
    (0 when none), averaged. It ignores extra boxes, which AP does not.
    """

    map: float | None
    map50: float | None
    map75: float | None
    ar100: float | None
    mean_iou: float | None
    truth_objects: int
    predicted_objects: int


@dataclass(frozen=True)
class BoxMetrics(BoxScores):
    """Box metrics of a task (``detect`` or ``ground``) over a split, with its slices.

    ``examples``: COCO images scored (one per example); ``unknown_labels``: predicted labels
    outside the training labels and how many objects carried them (left out of AP);
    ``off_label_objects``: ground only, predicted objects written with another label than the one
    asked (scored as the asked label); ``files``: the COCO files written, when asked.
    """

    examples: int = 0
    per_class: dict[str, BoxScores] = field(default_factory=dict)
    per_video: dict[str, BoxScores] = field(default_factory=dict)
    unknown_labels: dict[str, int] = field(default_factory=dict)
    off_label_objects: int = 0
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MaskScores:
    """Segment metrics of one class, from pixel sums over every example that scored the class:
    ``iou`` = intersections / unions, ``dice`` = 2 intersections / (truth + predicted pixels),
    ``pixel_accuracy`` = pixels classified right (inside both or outside both) / all pixels of
    those images (dominated by background: read IoU and Dice first). ``iou`` and ``dice`` are
    ``None`` when neither truth nor prediction has a pixel of the class."""

    iou: float | None
    dice: float | None
    pixel_accuracy: float
    examples: int
    truth_pixels: int
    predicted_pixels: int
    intersection_pixels: int


@dataclass(frozen=True)
class MaskMetrics:
    """Segment task metrics: per class, and ``mean_iou`` / ``mean_dice`` over the classes where
    they are defined, ``pixel_accuracy`` over all scored pixels."""

    examples: int
    mean_iou: float | None
    mean_dice: float | None
    pixel_accuracy: float | None
    per_class: dict[str, MaskScores]
    unknown_labels: dict[str, int] = field(default_factory=dict)
    off_label_objects: int = 0


@dataclass(frozen=True)
class CountScores:
    """Count task metrics: ``accuracy`` (exact count; a failed parse is wrong) and ``mae``
    (mean absolute error; a failed parse counts as answering 0)."""

    examples: int
    accuracy: float
    mae: float


@dataclass(frozen=True)
class CountMetrics(CountScores):
    """:class:`CountScores` over the split, and per asked label."""

    per_class: dict[str, CountScores] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageScore:
    """What one example scored, for ``predictions.jsonl`` / ``per_image.csv``.

    ``truth_objects``: the objects scored (the asked label's only, when one was asked);
    ``predicted_objects``: the objects the answer holds, as parsed.

    Box tasks: ``matched50`` (predicted boxes matched one-to-one to truth of the same label at
    IoU >= 0.5, greedily by IoU) and ``mean_iou`` (best-match IoU per truth box; None without
    truth). Segment: ``mask_iou`` / ``mask_dice`` of the example's pixels (None when both are
    empty). Count: ``count_truth`` / ``count_predicted`` (None for a failed parse).
    """

    image_id: str
    video_id: str
    task: str
    label: str | None
    parse_ok: bool
    truth_objects: int
    predicted_objects: int
    matched50: int | None = None
    mean_iou: float | None = None
    mask_iou: float | None = None
    mask_dice: float | None = None
    count_truth: int | None = None
    count_predicted: int | None = None


@dataclass(frozen=True)
class MetricsReport:
    """Every task's metrics over a split; a task without examples is ``None``.

    ``parse_failure_rate`` per task and ``"all"``: answers whose parse was not ok / examples.
    """

    examples: dict[str, int]
    parse_failures: dict[str, int]
    parse_failure_rate: dict[str, float]
    detect: BoxMetrics | None = None
    ground: BoxMetrics | None = None
    segment: MaskMetrics | None = None
    count: CountMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dicts (undefined values are ``None``, i.e. ``null``)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Geometry


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x, y, w, h)`` boxes (pycocotools' arithmetic, as COCOeval).

    >>> round(box_iou((0, 0, 10, 10), (2, 0, 10, 10)), 4)
    0.6667
    """
    return float(_iou_matrix([a], [b])[0, 0])


def _iou_matrix(pred: Sequence[Sequence[float]], truth: Sequence[Sequence[float]]) -> np.ndarray:
    if not pred or not truth:
        return np.zeros((len(pred), len(truth)))
    boxes = [[float(v) for v in box] for box in pred]
    gts = [[float(v) for v in box] for box in truth]
    return np.asarray(coco_mask.iou(boxes, gts, [0] * len(gts)), dtype=np.float64)


def _greedy_matches(iou: np.ndarray, same: np.ndarray, threshold: float) -> int:
    """One-to-one matches at ``iou >= threshold`` between same-label pairs, greedily by IoU."""
    candidates = np.argwhere(same & (iou >= threshold))
    order = sorted(candidates.tolist(), key=lambda ij: -iou[ij[0], ij[1]])
    used_pred: set[int] = set()
    used_truth: set[int] = set()
    for i, j in order:
        if i not in used_pred and j not in used_truth:
            used_pred.add(i)
            used_truth.add(j)
    return len(used_pred)


# --------------------------------------------------------------------------------------------
# The accumulator


@dataclass
class _IouSums:
    total: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class _BoxState:
    """One box task's COCO entries and IoU sums (boxes only: a few numbers per object)."""

    images: list[dict[str, Any]] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    iou: _IouSums = field(default_factory=_IouSums)
    iou_class: dict[str, _IouSums] = field(default_factory=dict)
    iou_video: dict[str, _IouSums] = field(default_factory=dict)
    unknown: Counter[str] = field(default_factory=Counter)
    off_label: int = 0


@dataclass
class _MaskSums:
    examples: int = 0
    pixels: int = 0
    truth: int = 0
    predicted: int = 0
    intersection: int = 0


@dataclass
class _MaskState:
    per_class: dict[str, _MaskSums] = field(default_factory=dict)
    unknown: Counter[str] = field(default_factory=Counter)
    off_label: int = 0


@dataclass
class _CountSums:
    examples: int = 0
    exact: int = 0
    abs_error: int = 0


class MetricsAccumulator:
    """Scores examples one at a time; :meth:`result` gives the :class:`MetricsReport`.

    ``labels`` are the training labels (``dataset.category_names``): they are the COCO categories
    (ids from 1, in this order) and every ground-truth label must be one of them.

    Memory stays flat as the split grows: each example is reduced when added (mask pixels to
    per-class sums, no mask kept); only boxes are kept, for COCOeval at the end.

    >>> acc = MetricsAccumulator(["car"])
    >>> car = GroundTruthObject("car", (10, 10, 20, 20))
    >>> truth = GroundTruth("v/000001", "v", width=100, height=100, objects=(car,))
    >>> said = ParsedAnswer([AnswerObject("car", (10, 10, 20, 20))], None, True, [])
    >>> acc.add(truth, "detect", said).matched50
    1
    >>> round(acc.result().detect.map50, 6)  # COCOeval's precision is tp / (tp + fp + 2e-16)
    1.0
    """

    def __init__(self, labels: Sequence[str]) -> None:
        labels = list(labels)
        if len(set(labels)) != len(labels) or not all(isinstance(x, str) for x in labels):
            raise OptionsError(
                describe(
                    "the training labels must be distinct strings",
                    field="labels",
                    found=labels,
                )
            )
        self.labels = labels
        self._category = {label: i + 1 for i, label in enumerate(labels)}
        self._examples: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._boxes = {task: _BoxState() for task in BOX_TASKS}
        self._masks = _MaskState()
        self._counts: dict[str, _CountSums] = {}

    # ---- adding --------------------------------------------------------------------------

    def add(
        self, truth: GroundTruth, task: str, answer: ParsedAnswer, label: str | None = None
    ) -> ImageScore:
        """Score one example: ``truth`` of its image, the ``task`` asked, the parsed ``answer``
        and, for ``ground`` / ``segment`` / ``count``, the ``label`` asked (``None`` scores
        every label, as ``detect``)."""
        if task not in TASKS:
            raise OptionsError(
                describe("unknown task", field="task", expected=" | ".join(TASKS), found=task)
            )
        self._check_labels(truth, label)
        self._examples[task] += 1
        if not answer.ok:
            self._failures[task] += 1
        if task in BOX_TASKS or task == "segment":
            state = self._boxes[task] if task in BOX_TASKS else self._masks
            state.unknown.update(o.label for o in answer.objects if o.label not in self._category)
        if task in BOX_TASKS:
            return self._add_boxes(truth, task, answer, label)
        if task == "segment":
            return self._add_masks(truth, answer, label)
        return self._add_count(truth, answer, label)

    def _check_labels(self, truth: GroundTruth, label: str | None) -> None:
        unknown = sorted({o.label for o in truth.objects} - set(self._category))
        if label is not None and label not in self._category:
            unknown.append(label)
        if unknown:
            raise OptionsError(
                describe(
                    f"image {truth.image_id!r}: labels that are not among the training labels",
                    field="labels",
                    expected=self.labels,
                    found=unknown,
                    fix="pass the dataset's labels (dataset.category_names(ds)), which cover "
                    "every split",
                )
            )

    def _attributed(
        self, answer: ParsedAnswer, label: str | None, state: _BoxState | _MaskState
    ) -> list[AnswerObject]:
        """The predicted objects as scored: with an asked label, all of them as that label
        (others counted as off-label); without, those with a training label."""
        if label is None:
            return [o for o in answer.objects if o.label in self._category]
        state.off_label += sum(o.label != label for o in answer.objects)
        return [AnswerObject(label, o.bbox, o.polygons) for o in answer.objects]

    def _add_boxes(
        self, truth: GroundTruth, task: str, answer: ParsedAnswer, label: str | None
    ) -> ImageScore:
        state = self._boxes[task]
        gts = [o for o in truth.objects if label is None or o.label == label]
        preds = self._attributed(answer, label, state)
        image_number = len(state.images) + 1
        state.images.append(
            {
                "id": image_number,
                "width": truth.width,
                "height": truth.height,
                "image_key": truth.image_id,
                "video_id": truth.video_id,
                **({"asked_label": label} if label is not None else {}),
            }
        )
        for obj in gts:
            x, y, w, h = obj.bbox
            state.truth.append(
                {
                    "id": len(state.truth) + 1,
                    "image_id": image_number,
                    "category_id": self._category[obj.label],
                    "bbox": [x, y, w, h],
                    "area": obj.area if obj.area is not None else w * h,
                    "iscrowd": 0,
                }
            )
        for obj in preds:
            state.detections.append(
                {
                    "image_id": image_number,
                    "category_id": self._category[obj.label],
                    "bbox": [float(v) for v in obj.bbox],
                    "score": DETECTION_SCORE,
                }
            )
        iou = _iou_matrix([o.bbox for o in preds], [o.bbox for o in gts])
        same = np.array([[p.label == g.label for g in gts] for p in preds], dtype=bool).reshape(
            iou.shape
        )
        best = np.where(same, iou, 0.0).max(axis=0) if preds else np.zeros(len(gts))
        for obj, value in zip(gts, best.tolist(), strict=True):
            state.iou.add(value)
            state.iou_class.setdefault(obj.label, _IouSums()).add(value)
            state.iou_video.setdefault(truth.video_id, _IouSums()).add(value)
        return ImageScore(
            image_id=truth.image_id,
            video_id=truth.video_id,
            task=task,
            label=label,
            parse_ok=answer.ok,
            truth_objects=len(gts),
            predicted_objects=len(answer.objects),
            matched50=_greedy_matches(iou, same, 0.5),
            mean_iou=float(best.mean()) if gts else None,
        )

    def _add_masks(self, truth: GroundTruth, answer: ParsedAnswer, label: str | None) -> ImageScore:
        state = self._masks
        preds = self._attributed(answer, label, state)
        if label is not None:
            classes = [label]
        else:
            classes = sorted({o.label for o in truth.objects} | {o.label for o in preds})
        height, width = truth.height, truth.width
        total = _MaskSums()
        for cls in classes:
            gts = [o for o in truth.objects if o.label == cls]
            truth_rle = _union([_truth_rle(truth, o) for o in gts])
            pred_rle = _union(_prediction_rles([o for o in preds if o.label == cls], height, width))
            g = _area(truth_rle)
            p = _area(pred_rle)
            inter = (
                _area(coco_mask.merge([truth_rle, pred_rle], intersect=True))
                if truth_rle is not None and pred_rle is not None
                else 0
            )
            sums = state.per_class.setdefault(cls, _MaskSums())
            for s in (sums, total):
                s.examples += 1
                s.pixels += height * width
                s.truth += g
                s.predicted += p
                s.intersection += inter
        union = total.truth + total.predicted - total.intersection
        return ImageScore(
            image_id=truth.image_id,
            video_id=truth.video_id,
            task="segment",
            label=label,
            parse_ok=answer.ok,
            truth_objects=sum(label is None or o.label == label for o in truth.objects),
            predicted_objects=len(answer.objects),
            mask_iou=total.intersection / union if union else None,
            mask_dice=2 * total.intersection / (total.truth + total.predicted) if union else None,
        )

    def _add_count(self, truth: GroundTruth, answer: ParsedAnswer, label: str | None) -> ImageScore:
        true_count = sum(label is None or o.label == label for o in truth.objects)
        predicted: int | None
        if answer.count is not None:
            predicted = answer.count
        elif answer.ok:
            predicted = len(answer.objects)  # an empty answer ("None", "[]") or listed objects
        else:
            predicted = None
        # "" holds the whole split; an asked label also its own line.
        keys = ["", label] if label is not None else [""]
        for key in keys:
            sums = self._counts.setdefault(key, _CountSums())
            sums.examples += 1
            sums.exact += predicted == true_count
            sums.abs_error += abs((predicted or 0) - true_count)
        return ImageScore(
            image_id=truth.image_id,
            video_id=truth.video_id,
            task="count",
            label=label,
            parse_ok=answer.ok,
            truth_objects=true_count,
            predicted_objects=len(answer.objects),
            count_truth=true_count,
            count_predicted=predicted,
        )

    # ---- results -------------------------------------------------------------------------

    def result(self, out_dir: str | Path | None = None) -> MetricsReport:
        """The metrics of everything added so far.

        With ``out_dir``, each box task's COCO files are written there (replaced if present):
        ``<task>_ground_truth.json`` (COCO instances, boxes only) and ``<task>_detections.json``
        (COCO results); ``pycocotools`` run on them gives the same numbers.

        Raises :class:`DatasetError` when no example was added: there is nothing to score.
        """
        total = sum(self._examples.values())
        if total == 0:
            raise DatasetError(
                "metrics: no example was scored, so there is nothing to report. Fix: check that "
                "the split is not empty and that --limit, when given, is above 0."
            )
        rates = {task: self._failures[task] / n for task, n in self._examples.items() if n}
        rates["all"] = sum(self._failures.values()) / total
        return MetricsReport(
            examples={task: self._examples[task] for task in TASKS if self._examples[task]},
            parse_failures={task: self._failures[task] for task in TASKS if self._examples[task]},
            parse_failure_rate=rates,
            detect=self._box_metrics("detect", out_dir) if self._examples["detect"] else None,
            ground=self._box_metrics("ground", out_dir) if self._examples["ground"] else None,
            segment=self._mask_metrics() if self._examples["segment"] else None,
            count=self._count_metrics() if self._examples["count"] else None,
        )

    def _coco_ground_truth(self, task: str) -> dict[str, Any]:
        state = self._boxes[task]
        return {
            "info": {"description": f"sam2-finetune {task} ground truth"},
            "licenses": [],
            "categories": [
                {"id": i, "name": label, "supercategory": "object"}
                for label, i in self._category.items()
            ],
            "images": state.images,
            "annotations": state.truth,
        }

    def _box_metrics(self, task: str, out_dir: str | Path | None) -> BoxMetrics:
        state = self._boxes[task]
        dataset = self._coco_ground_truth(task)
        files: dict[str, str] = {}
        if out_dir is not None:
            folder = Path(out_dir)
            for name, value in (("ground_truth", dataset), ("detections", state.detections)):
                path = atomic_write_text(
                    folder / f"{task}_{name}.json", json.dumps(value), overwrite=True
                )
                files[name] = str(path)
        evaluator = _coco_eval(dataset, state.detections)
        precision, recall = _run(evaluator)
        overall = _scores(precision, recall, slice(None))
        truth_per_class = Counter(a["category_id"] for a in state.truth)
        pred_per_class = Counter(d["category_id"] for d in state.detections)
        per_class = {}
        for k, (label, cat) in enumerate(self._category.items()):
            per_class[label] = BoxScores(
                **_scores(precision, recall, slice(k, k + 1)),
                mean_iou=state.iou_class[label].mean if label in state.iou_class else None,
                truth_objects=truth_per_class[cat],
                predicted_objects=pred_per_class[cat],
            )
        per_video = {}
        video_of = {image["id"]: image["video_id"] for image in state.images}
        videos: dict[str, list[int]] = {}
        for image_number, video in video_of.items():
            videos.setdefault(video, []).append(image_number)
        truth_per_video = Counter(video_of[a["image_id"]] for a in state.truth)
        pred_per_video = Counter(video_of[d["image_id"]] for d in state.detections)
        for video, ids in sorted(videos.items()):
            v_precision, v_recall = _run_subset(evaluator, ids)
            per_video[video] = BoxScores(
                **_scores(v_precision, v_recall, slice(None)),
                mean_iou=state.iou_video[video].mean if video in state.iou_video else None,
                truth_objects=truth_per_video[video],
                predicted_objects=pred_per_video[video],
            )
        return BoxMetrics(
            **overall,
            mean_iou=state.iou.mean,
            truth_objects=len(state.truth),
            predicted_objects=len(state.detections),
            examples=len(state.images),
            per_class=per_class,
            per_video=per_video,
            unknown_labels=dict(sorted(state.unknown.items())),
            off_label_objects=state.off_label,
            files=files,
        )

    def _mask_metrics(self) -> MaskMetrics:
        per_class = {}
        for label in self.labels:
            sums = self._masks.per_class.get(label)
            if sums is None:
                continue
            union = sums.truth + sums.predicted - sums.intersection
            per_class[label] = MaskScores(
                iou=sums.intersection / union if union else None,
                dice=2 * sums.intersection / (sums.truth + sums.predicted) if union else None,
                pixel_accuracy=(sums.pixels - union + sums.intersection) / sums.pixels
                if sums.pixels
                else 1.0,
                examples=sums.examples,
                truth_pixels=sums.truth,
                predicted_pixels=sums.predicted,
                intersection_pixels=sums.intersection,
            )
        ious = [s.iou for s in per_class.values() if s.iou is not None]
        dices = [s.dice for s in per_class.values() if s.dice is not None]
        pixels = sum(s.pixels for s in self._masks.per_class.values())
        wrong = sum(
            s.truth + s.predicted - 2 * s.intersection for s in self._masks.per_class.values()
        )
        return MaskMetrics(
            examples=self._examples["segment"],
            mean_iou=sum(ious) / len(ious) if ious else None,
            mean_dice=sum(dices) / len(dices) if dices else None,
            pixel_accuracy=(pixels - wrong) / pixels if pixels else None,
            per_class=per_class,
            unknown_labels=dict(sorted(self._masks.unknown.items())),
            off_label_objects=self._masks.off_label,
        )

    def _count_metrics(self) -> CountMetrics:
        def scores(sums: _CountSums) -> CountScores:
            return CountScores(
                examples=sums.examples,
                accuracy=sums.exact / sums.examples,
                mae=sums.abs_error / sums.examples,
            )

        overall = scores(self._counts[""])
        return CountMetrics(
            examples=overall.examples,
            accuracy=overall.accuracy,
            mae=overall.mae,
            per_class={
                label: scores(self._counts[label]) for label in self.labels if label in self._counts
            },
        )


# --------------------------------------------------------------------------------------------
# COCOeval


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """pycocotools prints progress to stdout; a library must not."""
    return contextlib.redirect_stdout(io.StringIO())


def _coco_eval(dataset: dict[str, Any], detections: list[dict[str, Any]]) -> Any:
    """A bbox ``COCOeval`` over the in-memory ground truth and detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        if detections:
            # loadRes adds keys to the entries it is given: give it copies.
            results = truth.loadRes([dict(d) for d in detections])
        else:  # loadRes cannot read an empty list
            results = COCO()
            results.dataset = {
                "images": list(dataset["images"]),
                "categories": dataset["categories"],
                "annotations": [],
            }
            results.createIndex()
        evaluator = COCOeval(truth, results, "bbox")
    evaluator.params.areaRng = [evaluator.params.areaRng[_AREA_ALL]]
    evaluator.params.areaRngLbl = ["all"]
    evaluator.params.maxDets = [100]
    return evaluator


def _run(evaluator: Any) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate and accumulate over every image; return COCOeval's ``precision`` [T, R, K] and
    ``recall`` [T, K] at area "all", maxDets 100."""
    with _quiet():
        evaluator.evaluate()
        evaluator.accumulate()
    return _at_all_100(evaluator)


def _run_subset(evaluator: Any, image_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_run` restricted to ``image_ids`` (a video), reusing the per-image matches of the
    evaluated ``evaluator``: what ``COCOeval`` with ``params.imgIds = image_ids`` gives (tested),
    without matching every image again. ``evalImgs`` is laid out category, area range, image."""
    params = evaluator._paramsEval
    position = {image_id: i for i, image_id in enumerate(params.imgIds)}
    n_images = len(params.imgIds)
    blocks = len(params.catIds) * len(params.areaRng)
    subset = copy.copy(evaluator)
    subset.params = copy.deepcopy(evaluator.params)
    subset.params.imgIds = list(image_ids)
    subset._paramsEval = copy.deepcopy(subset.params)
    subset.evalImgs = [
        evaluator.evalImgs[block * n_images + position[image_id]]
        for block in range(blocks)
        for image_id in image_ids
    ]
    with _quiet():
        subset.accumulate()
    return _at_all_100(subset)


def _at_all_100(evaluator: Any) -> tuple[np.ndarray, np.ndarray]:
    precision = evaluator.eval["precision"][:, :, :, _AREA_ALL, _MAX_DETS_100]
    recall = evaluator.eval["recall"][:, :, _AREA_ALL, _MAX_DETS_100]
    return precision, recall


def _mean_defined(values: np.ndarray) -> float | None:
    """COCOeval's summary mean: over entries > -1; None (not -1) when there are none."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else None


def _scores(precision: np.ndarray, recall: np.ndarray, classes: slice) -> dict[str, float | None]:
    """mAP@[.5:.95], mAP50, mAP75 and AR@100 as ``COCOeval.summarize`` computes them, over the
    category columns ``classes``."""
    return {
        "map": _mean_defined(precision[:, :, classes]),
        "map50": _mean_defined(precision[0, :, classes]),
        "map75": _mean_defined(precision[5, :, classes]),
        "ar100": _mean_defined(recall[:, classes]),
    }


# --------------------------------------------------------------------------------------------
# Masks, on RLE only


def _truth_rle(truth: GroundTruth, obj: GroundTruthObject) -> Rle:
    if obj.segmentation is None:
        raise OptionsError(
            describe(
                f"image {truth.image_id!r}: the segment task needs the objects' masks; a "
                f"{obj.label!r} object has none",
                field="segmentation",
                fix="build the ground truth from canonical rows (metrics.ground_truth(row))",
            )
        )
    size = [int(v) for v in obj.segmentation["size"]]
    if size != [truth.height, truth.width]:
        raise OptionsError(
            describe(
                f"image {truth.image_id!r}: a {obj.label!r} mask is not at image size",
                field="segmentation.size",
                expected=[truth.height, truth.width],
                found=size,
                fix="rebuild the canonical dataset with `sam2-finetune convert --to hf`",
            )
        )
    return obj.segmentation


def _prediction_rles(objects: Sequence[AnswerObject], height: int, width: int) -> list[Any]:
    """Rasterise predicted polygons (an object without polygons: its box) to RLEs."""
    flat: list[list[float]] = []
    for obj in objects:
        if obj.polygons:
            flat.extend(
                [float(v) for point in polygon for v in point[:2]]
                for polygon in obj.polygons
                if len(polygon) >= 3
            )
        else:
            x, y, w, h = (float(v) for v in obj.bbox)
            flat.append([x, y, x + w, y, x + w, y + h, x, y + h])
    # Every entry has 6+ numbers, so frPyObjects reads them all as polygons (4 would be a box).
    return coco_mask.frPyObjects(flat, height, width) if flat else []


def _union(rles: Sequence[Any]) -> Any | None:
    if not rles:
        return None
    return coco_mask.merge(list(rles), intersect=False) if len(rles) > 1 else rles[0]


def _area(rle: Any | None) -> int:
    # One RLE per call: mask.area on a list overflows past 255 RLEs with numpy 2.
    return int(coco_mask.area(rle)) if rle is not None else 0


# --------------------------------------------------------------------------------------------
# Whole splits, summaries and baselines


def score_answers(
    examples: Iterable[tuple[GroundTruth, str, ParsedAnswer, str | None]],
    labels: Sequence[str],
    *,
    out_dir: str | Path | None = None,
) -> MetricsReport:
    """Score ``(truth, task, answer, asked label)`` examples (streamed) in one call."""
    accumulator = MetricsAccumulator(labels)
    for truth, task, answer, label in examples:
        accumulator.add(truth, task, answer, label)
    return accumulator.result(out_dir)


def summary(report: MetricsReport) -> dict[str, float]:
    """One flat dict of floats for logs and ``metric_for_best_model`` (e.g. ``"map50"``).

    Box metrics come from ``detect`` when it was scored, else from ``ground``: ``map``,
    ``map50``, ``map75``, ``ar100``, ``mean_iou`` and per class ``map/<label>``,
    ``map50/<label>``. Plus ``parse_failure_rate`` (all tasks), and when scored
    ``mask_iou``, ``mask_dice``, ``count_accuracy``, ``count_mae``. Undefined values are NaN
    here (logs need numbers), where :class:`MetricsReport` says ``None``.
    """

    def number(value: float | None) -> float:
        return float("nan") if value is None else float(value)

    out: dict[str, float] = {}
    boxes = report.detect or report.ground
    if boxes is not None:
        for key in ("map", "map50", "map75", "ar100", "mean_iou"):
            out[key] = number(getattr(boxes, key))
        for label, scores in boxes.per_class.items():
            out[f"map/{label}"] = number(scores.map)
            out[f"map50/{label}"] = number(scores.map50)
    out["parse_failure_rate"] = report.parse_failure_rate["all"]
    if report.segment is not None:
        out["mask_iou"] = number(report.segment.mean_iou)
        out["mask_dice"] = number(report.segment.mean_dice)
    if report.count is not None:
        out["count_accuracy"] = report.count.accuracy
        out["count_mae"] = report.count.mae
    return out


@dataclass(frozen=True)
class PriorBoxes:
    """Per training label: its mean box ``(x, y, w, h)`` normalised by image size (0-1), and
    its mean count in train images that have it, rounded (the prior's count answer)."""

    boxes: dict[str, tuple[float, float, float, float]]
    counts: dict[str, int]


def prior_from_rows(rows: Iterable[Mapping[str, Any]]) -> PriorBoxes:
    """The prior baseline's boxes and counts, from the train split's canonical rows (streamed).

    >>> cars = [{"label": "car", "bbox": [10, 10, 20, 10]}, {"label": "car",
    ...          "bbox": [30, 20, 40, 20]}]
    >>> rows = [{"width": 100, "height": 50, "objects": cars}]
    >>> prior_from_rows(rows)
    PriorBoxes(boxes={'car': (0.2, 0.3, 0.3, 0.3)}, counts={'car': 2})
    """
    sums: dict[str, np.ndarray] = {}
    objects: Counter[str] = Counter()
    images: Counter[str] = Counter()
    for row in rows:
        truth = ground_truth(row)
        scale = np.array([truth.width, truth.height, truth.width, truth.height], dtype=np.float64)
        for obj in truth.objects:
            sums.setdefault(obj.label, np.zeros(4))
            sums[obj.label] += np.asarray(obj.bbox, dtype=np.float64) / scale
            objects[obj.label] += 1
        for label in {obj.label for obj in truth.objects}:
            images[label] += 1
    boxes: dict[str, tuple[float, float, float, float]] = {}
    for label in sorted(sums):
        x, y, w, h = (round(float(v), 12) for v in sums[label] / objects[label])
        boxes[label] = (x, y, w, h)
    counts = {label: max(1, round(objects[label] / images[label])) for label in sorted(sums)}
    return PriorBoxes(boxes=boxes, counts=counts)


def baseline_answer(
    baseline: str, truth: GroundTruth, task: str, label: str | None, prior: PriorBoxes
) -> ParsedAnswer:
    """The answer a baseline gives to an example, as if parsed.

    ``empty``: no object, count 0. ``prior``: each training label's mean box scaled to the image
    (only the asked label's for ``ground`` / ``segment``; the box is its polygon for
    ``segment``), in label order; for ``count`` the label's prior count.
    """
    if baseline not in BASELINES:
        raise OptionsError(
            describe(
                "unknown baseline", field="baseline", expected=" | ".join(BASELINES), found=baseline
            )
        )
    if task == "count":
        count = 0 if baseline == "empty" or label is None else prior.counts.get(label, 0)
        return ParsedAnswer([], count, True, [])
    if baseline == "empty":
        return ParsedAnswer([], None, True, [])
    names = [label] if label is not None else list(prior.boxes)
    objects = []
    for name in names:
        if name not in prior.boxes:
            continue
        nx, ny, nw, nh = prior.boxes[name]
        box = (nx * truth.width, ny * truth.height, nw * truth.width, nh * truth.height)
        x, y, w, h = box
        polygons = [[(x, y), (x + w, y), (x + w, y + h), (x, y + h)]] if task == "segment" else None
        objects.append(AnswerObject(name, box, polygons))
    return ParsedAnswer(objects, None, True, [])


def score_baselines(
    examples: Iterable[tuple[GroundTruth, str, str | None]],
    labels: Sequence[str],
    prior: PriorBoxes,
) -> dict[str, MetricsReport]:
    """Score every baseline on the same ``(truth, task, asked label)`` examples as the model,
    the same way, so a report can put them side by side (streamed: one pass)."""
    accumulators = {name: MetricsAccumulator(labels) for name in BASELINES}
    for truth, task, label in examples:
        for name, accumulator in accumulators.items():
            accumulator.add(truth, task, baseline_answer(name, truth, task, label, prior), label)
    return {name: accumulator.result() for name, accumulator in accumulators.items()}


def below_baselines(
    model: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]], key: str = "map50"
) -> list[str]:
    """Names of the baselines whose ``summary()[key]`` the model's does not beat (a model that
    does no better than the prior has learned nothing about where things are). NaN never
    beats and is never beaten."""
    mine = model.get(key, float("nan"))
    return [
        name
        for name, scores in baselines.items()
        if not math.isnan(scores.get(key, float("nan")))
        and (math.isnan(mine) or mine <= scores[key])
    ]
