"""``evaluate(options) -> EvaluateResult``: a model's answers on a split, parsed and scored.

Top to bottom: open the split (streamed, one row at a time) -> load the model
(:func:`~sam2_finetune.evaluate.loading.load_for_inference`: the run's processor and image
settings) -> for each frame, one example per task asked -> generate in batches
(:func:`~sam2_finetune.evaluate.generate.generate_answers`, left-padded, greedy by default) ->
normalise labels, score (:class:`sam2_finetune.metrics.MetricsAccumulator`) next to the prior
and empty baselines -> write the outputs.

The examples: each frame is asked each task of ``options.tasks`` (default: the tasks of the
model's training mix), one example per task, built by the same public builder as ``convert`` and
the training collator (:func:`sam2_finetune.tasks.examples_for_row` with that one task, the
record's image settings and polygon size, the options' seed): the label asked and the phrasing
are drawn deterministically from ``(seed, image_id)``, so the same split and seed ask the same
questions every time. A ``ground`` / ``segment`` / ``count`` example sometimes asks for a label
absent from the frame (``tasks.NEGATIVE_RATE``, as in training): a model that answers "nothing"
there is right.

Labels are compared after :func:`sam2_finetune.dataset.normalize_label` (as ``convert
--normalize-labels``): truth, asked labels and predicted labels alike. A predicted label outside
the model's training labels (``record.labels``) is counted in ``unknown_labels``, never dropped
silently. Answers carry no confidence: every detection scores 1 in answer order (see
``docs/metrics.md``).

The output folder (written atomically: a half-written evaluation never replaces a good one)::

    metrics.json           model, data, split, examples, metrics, report, baselines,
                           below_baselines, unknown_labels, record (the contract export reads)
    summary.md             the metrics next to the baselines; a loud flag below the prior
    predictions.jsonl      one line per example, streamed as generated: prompt, raw text,
                           parsed objects, the expected answer, per-example scores
    per_image.csv          the per-example scores, one row per example
    detect_ground_truth.json, detect_detections.json (and ground_*): the COCO files scored
    predictions.png        frames with predictions (dashed) over truth (solid)
    confusion_matrix.png   true vs predicted label of objects matched at IoU >= 0.5 (detect)
    ap_per_class.png       AP and AP50 per class
    training_curves.png    the run's losses and metrics (when --model is a run or in one)

Memory stays flat as the split grows: rows are decoded one batch at a time, predictions go to
disk as they are generated, and only boxes (a few numbers per object, for COCOeval at the end),
counters and the few pictures of the grid are kept.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sam2_finetune.answer_formats import AnswerObject, ParsedAnswer, get_format
from sam2_finetune.dataset import category_names, load_canonical, normalize_label, row_image
from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.evaluate.options import EvaluateOptions
from sam2_finetune.metrics import (
    BASELINES,
    GroundTruth,
    ImageScore,
    MetricsAccumulator,
    MetricsReport,
    PriorBoxes,
    baseline_answer,
    below_baselines,
    ground_truth,
    prior_from_rows,
    summary,
)
from sam2_finetune.models.record import InferenceRecord
from sam2_finetune.outputs import atomic_output_dir, ensure_writable
from sam2_finetune.tasks import ExampleOptions, examples_for_row, parse_task_mix

__all__ = [
    "METRICS_NAME",
    "PREDICTIONS_NAME",
    "EvaluateResult",
    "evaluate",
    "evaluate_command",
    "format_result",
]

METRICS_NAME = "metrics.json"
PREDICTIONS_NAME = "predictions.jsonl"
PER_IMAGE_NAME = "per_image.csv"
SUMMARY_NAME = "summary.md"
RUN_METRICS_NAME = "metrics.jsonl"  # what train's MetricsFileCallback writes in the run folder
# The metric a model must beat the baselines on, by what was scored (first present wins).
HEADLINE_METRICS = ("map50", "mask_iou", "count_accuracy")
# The metrics summary.md puts next to the baselines, in this order.
TABLE_METRICS = (
    "map",
    "map50",
    "map75",
    "ar100",
    "mean_iou",
    "mask_iou",
    "mask_dice",
    "count_accuracy",
    "count_mae",
    "parse_failure_rate",
)
_CSV_FIELDS = [f.name for f in fields(ImageScore)] + ["new_tokens", "truncated"]


@dataclass
class EvaluateResult:
    """What :func:`evaluate` measured and wrote.

    ``metrics`` and each of ``baselines`` are :func:`sam2_finetune.metrics.summary` dicts with
    undefined values as ``None`` (as in ``metrics.json``); ``below_baselines`` names the
    baselines the model does not beat on ``headline`` (``map50`` when boxes were scored);
    ``seconds``: time spent generating (``generation``), parsing and scoring (``scoring``), and
    in total.
    """

    out_dir: Path
    examples: int
    metrics: dict[str, float | None]
    baselines: dict[str, dict[str, float | None]]
    below_baselines: list[str]
    headline: str
    unknown_labels: dict[str, int]
    report: MetricsReport
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# ---- inputs ---------------------------------------------------------------------------------


def open_split(data: Path, split: str) -> tuple[Any, Any]:
    """``(the split's rows, the whole DatasetDict)`` of a split canonical dataset, or one
    :class:`DatasetError` saying which splits there are."""
    from datasets import DatasetDict

    dataset = load_canonical(data)
    if not isinstance(dataset, DatasetDict):
        raise DatasetError(
            describe(
                "the dataset has no splits (it is one set of frames, not train / validation / "
                "test)",
                file=data,
                field="split",
                found=split,
                fix=f"split it first (`sam2-finetune split {data} --out data/split`) and pass "
                "the split folder, or a run's data/split",
            )
        )
    if split not in dataset:
        raise DatasetError(
            describe(
                f"the dataset has no {split!r} split",
                file=data,
                field="split",
                expected=" | ".join(dataset),
                found=split,
                fix="pass --split with one of the splits listed",
            )
        )
    return dataset[split], dataset


def _tasks(options: EvaluateOptions, record: InferenceRecord) -> list[str]:
    if options.tasks:
        asked = list(dict.fromkeys(options.tasks))
        # Refuses a task the model's answer format cannot express (segment without polygons).
        parse_task_mix(dict.fromkeys(asked, 1.0), answer_format=record.answer_format)
        return asked
    mix = [task for task, weight in record.task_mix.items() if weight > 0]
    return mix or ["detect"]


def _frame_reader(
    frames: Sequence[str] | None, rows: Any, data: Path, split: str
) -> Callable[[Mapping[str, Any]], Any]:
    """``row -> PIL image``: the row's own image, or the raw frame from ``frames`` for the
    videos given there. Overlay rows (the annotation drawn in the image: the answer is visible)
    without a raw source are refused."""
    meta = rows.select_columns(
        [c for c in ("video_id", "frame_index", "image_is_overlay") if c in rows.column_names]
    )
    indices: dict[str, set[int]] = {}
    overlays: Counter[str] = Counter()
    for row in meta:
        indices.setdefault(str(row["video_id"]), set()).add(int(row["frame_index"]))
        if row.get("image_is_overlay"):
            overlays[str(row["video_id"])] += 1
    sources = _frame_sources(frames or [], sorted(indices))
    bare = sorted(set(overlays) - set(sources))
    if bare:
        raise DatasetError(
            describe(
                f"{sum(overlays[v] for v in bare)} frames of the {split!r} split are overlays "
                "(the annotations drawn into the image): the model would read the answer off "
                "the picture",
                file=data,
                field="image_is_overlay",
                found=f"videos {bare[:5]}",
                fix="pass the raw frames with --frames VIDEO=PATH (a folder of frames or the "
                "video), or convert the exports with --frames and split again",
            )
        )
    if not sources:
        return row_image
    from sam2_finetune.ingest.raw_frames import raw_frame_refs

    refs = {
        video: raw_frame_refs(Path(path), sorted(indices[video]), strict=True)
        for video, path in sources.items()
    }

    def read(row: Mapping[str, Any]) -> Any:
        video = str(row["video_id"])
        if video not in refs:
            return row_image(row)
        image = refs[video][int(row["frame_index"])].open()
        if image.size != (int(row["width"]), int(row["height"])):
            raise DatasetError(
                describe(
                    "a raw frame is not the size of the annotated frame, so its boxes would "
                    "not fall on it",
                    file=sources[video],
                    frame_index=int(row["frame_index"]),
                    expected=f"{row['width']}x{row['height']}",
                    found=f"{image.size[0]}x{image.size[1]}",
                    fix="pass the frames of the video the export was annotated on",
                )
            )
        return image

    return read


def _frame_sources(frames: Sequence[str], videos: Sequence[str]) -> dict[str, str]:
    """``video_id -> path`` from ``--frames`` values ``VIDEO=PATH`` (a video id or its export
    name, the id without its ``-hash`` suffix) or one bare ``PATH`` for a single video."""
    sources: dict[str, str] = {}
    for value in frames:
        name, sep, path = value.partition("=")
        if not sep:
            if len(videos) != 1:
                raise OptionsError(
                    describe(
                        "a bare --frames PATH needs a split of one video",
                        field="frames",
                        found=value,
                        expected=f"VIDEO=PATH for each of {len(videos)} videos",
                        fix="write --frames VIDEO=PATH, VIDEO one of " + ", ".join(videos[:5]),
                    )
                )
            sources[videos[0]] = value
            continue
        matches = [v for v in videos if name in (v, v.rsplit("-", 1)[0])]
        if not matches:
            raise OptionsError(
                describe(
                    "no video of the split has this name",
                    field="frames",
                    found=name,
                    expected=" | ".join(videos[:10]),
                    fix="name a video id of the split, or its export name",
                )
            )
        for video in matches:
            sources[video] = path
    return sources


def _normalised_truth(row: Mapping[str, Any]) -> GroundTruth:
    truth = ground_truth(row)
    objects = tuple(replace(o, label=normalize_label(o.label)) for o in truth.objects)
    return replace(truth, objects=objects)


def _normalised_answer(answer: ParsedAnswer) -> ParsedAnswer:
    objects = [AnswerObject(normalize_label(o.label), o.bbox, o.polygons) for o in answer.objects]
    return ParsedAnswer(objects, answer.count, answer.ok, list(answer.problems))


def _train_prior(dataset: Any) -> PriorBoxes | None:
    """The prior baseline's boxes from the train split, labels normalised (no image decoded)."""
    if "train" not in dataset or len(dataset["train"]) == 0:
        return None
    rows = dataset["train"].select_columns(["width", "height", "objects"])
    return prior_from_rows(
        {
            "width": row["width"],
            "height": row["height"],
            "objects": [{**o, "label": normalize_label(o["label"])} for o in row["objects"]],
        }
        for row in rows
    )


def _rows(rows: Any, batch: int) -> Iterator[list[Mapping[str, Any]]]:
    for start in range(0, len(rows), batch):
        chunk = rows.select(range(start, min(len(rows), start + batch)))
        yield [chunk[i] for i in range(len(chunk))]


# ---- confusion ---------------------------------------------------------------------------------


def _confusion(
    counts: Counter[tuple[str, str]], truth: GroundTruth, predicted: Sequence[AnswerObject]
) -> None:
    """Match predicted boxes to true ones one-to-one at IoU >= 0.5, labels ignored, greedily by
    IoU; count ``(true label, predicted label)`` pairs, misses and unmatched predictions."""
    from pycocotools import mask as coco_mask

    from sam2_finetune.evaluate.charts import MISSED, NOTHING

    pairs = []
    if predicted and truth.objects:
        iou = coco_mask.iou(
            [[float(v) for v in o.bbox] for o in predicted],
            [[float(v) for v in o.bbox] for o in truth.objects],
            [0] * len(truth.objects),
        )
        pairs = sorted(
            (
                (float(iou[i][j]), i, j)
                for i in range(len(predicted))
                for j in range(len(truth.objects))
                if iou[i][j] >= 0.5
            ),
            reverse=True,
        )
    used_p: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            counts[(truth.objects[j].label, predicted[i].label)] += 1
    for j, obj in enumerate(truth.objects):
        if j not in used_t:
            counts[(obj.label, MISSED)] += 1
    for i, obj in enumerate(predicted):
        if i not in used_p:
            counts[(NOTHING, obj.label)] += 1


# ---- outputs ------------------------------------------------------------------------------------


def _defined(values: Mapping[str, float]) -> dict[str, float | None]:
    """A summary dict for JSON: NaN (undefined) as ``None``."""
    return {
        key: None if isinstance(value, float) and math.isnan(value) else value
        for key, value in values.items()
    }


def _run_metrics(model: Path, source: Path) -> list[dict[str, Any]]:
    """The records of the run's ``metrics.jsonl`` when the model is a run folder or one of its
    ``best/`` / ``checkpoints/checkpoint-N`` (empty otherwise)."""
    for folder in (model, source.parent, source.parent.parent):
        path = folder / RUN_METRICS_NAME
        if path.is_file():
            return [
                json.loads(line)
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
    return []


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _summary_markdown(
    options: EvaluateOptions,
    metrics: dict[str, float | None],
    baselines: dict[str, dict[str, float | None]],
    below: list[str],
    headline: str,
    report: MetricsReport,
    unknown: dict[str, int],
    pictures: Sequence[str],
    tasks: Sequence[str],
) -> str:
    examples = sum(report.examples.values())
    lines = [
        f"# Evaluation of `{options.model}`",
        "",
        f"- data: `{options.data}`, split `{options.split}`, {examples} examples "
        f"({', '.join(f'{n} {task}' for task, n in report.examples.items())})",
        f"- tasks asked per frame: {', '.join(tasks)}",
        "",
    ]
    if below:
        mine = metrics.get(headline)
        worst = ", ".join(f"{name} {_number(baselines[name].get(headline))}" for name in below)
        lines += [
            f"> **WARNING: the model does not beat the {' and '.join(below)} baseline"
            f"{'s' if len(below) > 1 else ''} on {headline}** (model {_number(mine)}, {worst}).",
            "> The prior answers every frame with each label's mean training box: a model at or",
            "> below it has not learnt where objects are. Train longer or on more data, check",
            "> that the split matches the training data, and look at predictions.png.",
            "",
        ]
    names = list(baselines)
    lines += [
        "| metric | model | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for key in TABLE_METRICS:
        if key in metrics:
            cells = [_number(baselines[name].get(key)) for name in names]
            lines.append(f"| {key} | {_number(metrics[key])} | " + " | ".join(cells) + " |")
    boxes = report.detect or report.ground
    if boxes is not None and boxes.per_class:
        lines += [
            "",
            f"Per class ({'detect' if report.detect else 'ground'}):",
            "",
            "| class | AP | AP50 | mean IoU | true | predicted |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label, scores in boxes.per_class.items():
            lines.append(
                f"| {label} | {_number(scores.map)} | {_number(scores.map50)} | "
                f"{_number(scores.mean_iou)} | {scores.truth_objects} | "
                f"{scores.predicted_objects} |"
            )
    lines += [
        "",
        "Parse failures: "
        + ", ".join(
            f"{task} {report.parse_failures[task]}/{report.examples[task]}"
            for task in report.examples
        ),
    ]
    if unknown:
        lines.append(
            "Predicted labels outside the training labels (not scored as any class): "
            + ", ".join(f"{label!r} x{n}" for label, n in unknown.items())
        )
    lines += [
        "",
        "Answers carry no confidence: every detection scores 1, in answer order, so AP is "
        "measured at the one operating point the model chose (docs/metrics.md).",
        "",
    ]
    lines += [f"![{name}]({name})" for name in pictures]
    return "\n".join(lines) + "\n"


# ---- the stage ----------------------------------------------------------------------------------


def evaluate(options: EvaluateOptions) -> EvaluateResult:
    """Evaluate ``options.model`` on ``options.split`` of ``options.data``; see the module.

    >>> result = evaluate(EvaluateOptions(model="runs/quick_test", data="runs/quick_test/data/"
    ...                                   "split", out="eval"))  # doctest: +SKIP
    >>> result.metrics["map50"], result.below_baselines  # doctest: +SKIP
    """
    from sam2_finetune.evaluate.loading import load_for_inference

    started = time.perf_counter()
    ensure_writable(options.out, options.overwrite)  # before minutes of loading
    rows, dataset = open_split(options.data, options.split)
    if options.limit is not None:
        rows = rows.select(range(min(options.limit, len(rows))))
    if len(rows) == 0:
        raise DatasetError(
            describe(
                f"the {options.split!r} split has no frames: there is nothing to evaluate",
                file=options.data,
                field="split",
                fix="pass another --split, or split the data again with a test share above 0",
            )
        )
    read_image = _frame_reader(options.frames, rows, options.data, options.split)
    loaded = load_for_inference(options.model, checkpoint=options.checkpoint, device=options.device)
    with _threads_for(loaded):
        return _evaluate(options, rows, dataset, read_image, loaded, started)


@contextlib.contextmanager
def _threads_for(loaded: Any) -> Iterator[None]:
    """One torch thread for a tiny model on the CPU (as train does): its 64-wide matrices are
    too small to split, and two threads on a busy 2-core machine generated ~10x slower."""
    import torch

    from sam2_finetune.models.tiny import TINY_PREFIX

    threads = torch.get_num_threads()
    tiny = loaded.record.base_model.startswith(TINY_PREFIX)
    if tiny and next(loaded.model.parameters()).device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _evaluate(
    options: EvaluateOptions,
    rows: Any,
    dataset: Any,
    read_image: Callable[[Mapping[str, Any]], Any],
    loaded: Any,
    started: float,
) -> EvaluateResult:
    """The body of :func:`evaluate` once the split and the model are open."""
    from tqdm.auto import tqdm

    from sam2_finetune.evaluate.charts import (
        class_ap_bars,
        confusion_matrix,
        predictions_grid,
        training_curves,
    )
    from sam2_finetune.evaluate.generate import generate_answers
    from sam2_finetune.evaluate.pictures import draw_objects
    from sam2_finetune.models.chat import processor_resized_wh

    record = loaded.record
    tasks = _tasks(options, record)
    trained = [normalize_label(label) for label in record.labels]
    categories = list(dict.fromkeys([*trained, *map(normalize_label, category_names(dataset))]))
    prior = _train_prior(dataset)
    example_options = [
        ExampleOptions(
            task_mix={task: 1.0},
            min_pixels=record.image.min_pixels,
            max_pixels=record.image.max_pixels,
            max_polygon_points=record.max_polygon_points,
            fixed_prompts=record.fixed_prompts,
        )
        for task in tasks
    ]
    needs_resized = get_format(record.answer_format).needs_resized_wh
    model_scores = MetricsAccumulator(categories)
    baseline_scores = {
        name: MetricsAccumulator(categories)
        for name in BASELINES
        if name != "prior" or prior is not None
    }
    known = set(trained)
    unknown: Counter[str] = Counter()
    confusion: Counter[tuple[str, str]] = Counter()
    grid: list[tuple[str, Any]] = []
    grid_task = "detect" if "detect" in tasks else tasks[0]
    seconds = {"generation": 0.0, "scoring": 0.0}

    with atomic_output_dir(options.out, options.overwrite) as tmp:
        with (
            (tmp / PREDICTIONS_NAME).open("w", encoding="utf-8") as predictions,
            (tmp / PER_IMAGE_NAME).open("w", encoding="utf-8", newline="") as per_image,
        ):
            table = csv.DictWriter(per_image, fieldnames=_CSV_FIELDS)
            table.writeheader()
            progress = tqdm(total=len(rows), desc="evaluate", unit="frame", disable=None)
            for chunk in _rows(rows, options.batch_size):
                frames = []
                for row in chunk:
                    wh = (int(row["width"]), int(row["height"]))
                    resized = processor_resized_wh(loaded.processor, *wh) if needs_resized else None
                    frames.append((row, read_image(row), _normalised_truth(row), resized))
                # Grouped by task: a batch's answers are bounded by its longest task's budget
                # (a segment answer's room is ~10x a count's), so mixing tasks wastes steps.
                items = []
                for task_options in example_options:
                    for row, image, truth, resized in frames:
                        (example,) = examples_for_row(
                            row,
                            task_options,
                            record.answer_format,
                            seed=options.seed,
                            vocabulary=record.labels,
                            resized_wh=resized,
                        )
                        items.append((row, image, example, truth))
                tick = time.perf_counter()
                generated = generate_answers(
                    loaded.model,
                    loaded.processor,
                    record.family,
                    record.answer_format,
                    [(image, example) for _, image, example, _ in items],
                    batch_size=options.batch_size,
                    labels=record.labels,
                    options=options.generation,
                    max_polygon_points=record.max_polygon_points,
                )
                tock = time.perf_counter()
                seconds["generation"] += tock - tick
                for (row, image, example, truth), answer in zip(items, generated, strict=True):
                    parsed = _normalised_answer(answer.parsed)
                    asked = None if example.task == "detect" else normalize_label(example.labels[0])
                    unknown.update(o.label for o in parsed.objects if o.label not in known)
                    score = model_scores.add(truth, example.task, parsed, asked)
                    for name, accumulator in baseline_scores.items():
                        accumulator.add(
                            truth,
                            example.task,
                            baseline_answer(
                                name, truth, example.task, asked, prior or PriorBoxes({}, {})
                            ),
                            asked,
                        )
                    if example.task == "detect":
                        _confusion(confusion, truth, parsed.objects)
                    line = {
                        "image_id": truth.image_id,
                        "video_id": truth.video_id,
                        "frame_index": int(row["frame_index"]),
                        "task": example.task,
                        "label": asked,
                        "prompt": example.prompt,
                        "text": answer.text,
                        "parse_ok": parsed.ok,
                        "problems": parsed.problems,
                        "truncated": answer.truncated,
                        "new_tokens": answer.new_tokens,
                        "objects": [
                            {
                                "label": o.label,
                                "bbox": [round(float(v), 2) for v in o.bbox],
                                **({"polygons": o.polygons} if o.polygons else {}),
                            }
                            for o in parsed.objects
                        ],
                        "count": parsed.count,
                        "expected": example.answer,
                        "scores": asdict(score),
                    }
                    predictions.write(json.dumps(line) + "\n")
                    extra = {"new_tokens": answer.new_tokens, "truncated": answer.truncated}
                    table.writerow({**asdict(score), **extra})
                    if example.task == grid_task and len(grid) < options.pictures:
                        shown = [o for o in truth.objects if asked is None or o.label == asked]
                        picture = draw_objects(image, parsed.objects, shown, categories)
                        picture.thumbnail((640, 640))
                        title = f"{truth.image_id} ({example.task}{', ' + asked if asked else ''})"
                        grid.append((title, picture))
                seconds["scoring"] += time.perf_counter() - tock
                predictions.flush()
                progress.update(len(chunk))
            progress.close()

        tick = time.perf_counter()
        report = model_scores.result(tmp)
        baseline_reports = {name: acc.result() for name, acc in baseline_scores.items()}
        seconds["scoring"] += time.perf_counter() - tick
        metrics = _defined(summary(report))
        baselines = {name: _defined(summary(r)) for name, r in baseline_reports.items()}
        headline = next((key for key in HEADLINE_METRICS if key in metrics), "map50")
        nan = float("nan")
        below = below_baselines(
            {headline: nan if metrics.get(headline) is None else metrics[headline]},
            {
                name: {headline: nan if values.get(headline) is None else values[headline]}
                for name, values in baselines.items()
            },
            key=headline,
        )
        unknown_labels = dict(sorted(unknown.items()))

        pictures = [predictions_grid(grid, tmp / "predictions.png").name]
        if report.detect is not None:
            matrix = confusion_matrix(confusion, categories, tmp / "confusion_matrix.png")
            pictures.append(matrix.name)
        boxes = report.detect or report.ground
        if boxes is not None:
            per_class = {label: asdict(scores) for label, scores in boxes.per_class.items()}
            pictures.append(class_ap_bars(per_class, tmp / "ap_per_class.png").name)
        curves = training_curves(
            _run_metrics(Path(options.model), loaded.source), tmp / "training_curves.png"
        )
        if curves is not None:
            pictures.append(curves.name)

        examples = sum(report.examples.values())
        document = {
            "model": str(options.model),
            "checkpoint": options.checkpoint,
            "source": str(loaded.source),
            "data": str(options.data),
            "split": options.split,
            "examples": examples,
            "frames": len(rows),
            "tasks": tasks,
            "metrics": metrics,
            "headline": headline,
            "report": report.to_dict(),
            "baselines": baselines,
            "below_baselines": below,
            "unknown_labels": unknown_labels,
            "record": record.model_dump(mode="json"),
            "generation": options.generation.model_dump(mode="json"),
            "seed": options.seed,
        }
        (tmp / METRICS_NAME).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        (tmp / SUMMARY_NAME).write_text(
            _summary_markdown(
                options, metrics, baselines, below, headline, report, unknown_labels, pictures,
                tasks,
            ),
            encoding="utf-8",
        )  # fmt: skip
        names = sorted(p.name for p in tmp.iterdir())
    seconds["total"] = time.perf_counter() - started
    out = Path(options.out)
    return EvaluateResult(
        out_dir=out,
        examples=examples,
        metrics=metrics,
        baselines=baselines,
        below_baselines=below,
        headline=headline,
        unknown_labels=unknown_labels,
        report=report,
        files={name: out / name for name in names},
        seconds={key: round(value, 3) for key, value in seconds.items()},
    )


# ---- the command ------------------------------------------------------------------------------


def format_result(result: EvaluateResult) -> str:
    """What ``sam2-finetune evaluate`` prints: the headline metrics next to the baselines, and
    where the outputs are."""
    keys = [key for key in TABLE_METRICS if key in result.metrics]
    names = list(result.baselines)
    lines = [f"{'metric':<20}{'model':>10}" + "".join(f"{name:>10}" for name in names)]
    for key in keys:
        cells = "".join(f"{_number(result.baselines[n].get(key)):>10}" for n in names)
        lines.append(f"{key:<20}{_number(result.metrics[key]):>10}" + cells)
    lines.append(f"examples {result.examples}; outputs in {result.out_dir}")
    if result.unknown_labels:
        lines.append(f"unknown labels predicted: {result.unknown_labels}")
    return "\n".join(lines)


def evaluate_command(options: EvaluateOptions) -> int:
    """``sam2-finetune evaluate``: 0 when the evaluation was written (also when the model does
    not beat a baseline, which is reported loudly on stderr)."""
    import sys

    result = evaluate(options)
    if options.json_output:
        print((result.out_dir / METRICS_NAME).read_text(encoding="utf-8"), end="")
    else:
        print(format_result(result))
    below = result.below_baselines
    if below:
        print(
            f"WARNING: the model does not beat the {' and '.join(below)} "
            f"baseline{'s' if len(below) > 1 else ''} on {result.headline}: it has not learnt "
            f"where objects are (see {result.out_dir / SUMMARY_NAME}).",
            file=sys.stderr,
        )
    return 0
