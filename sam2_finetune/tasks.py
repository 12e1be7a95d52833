"""Tasks: the question an example asks about a frame, phrased from templates, answered in a format.

One annotated frame (a canonical row, see :mod:`sam2_finetune.dataset`) yields examples of four
tasks, chosen per example with a seeded ``random.Random``:

- ``detect``: every visible object, with its box;
- ``ground``: one label named in the prompt -> the boxes of its objects;
- ``segment``: one label -> the polygons (and boxes) of its objects;
- ``count``: one label -> how many objects carry it.

For ``ground`` / ``segment`` / ``count`` the label is one present in the frame; when the caller
passes the dataset's ``vocabulary``, a label absent from the frame is asked instead with
probability ``negative_rate`` (10 % by default), answered with the format's empty answer (or 0),
so the model learns to say "none" rather than invent boxes. A frame without visible objects and
without a vocabulary to draw from gets ``detect`` (an empty answer).

The same functions serve the LLaVA / ShareGPT converters and the training collator, so the
prompts a model trains on and the answers it is scored against are built in one place:
:class:`ExampleOptions` declares every example-building option once (``ConvertOptions`` and the
training config's ``data`` section both inherit it), and :func:`examples_for_row` turns one
canonical row into its examples, seeded per image (and per epoch, for the collator).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sam2_finetune.answer_formats import (
    ANSWER_FORMATS,
    TASKS,
    AnswerObject,
    get_format,
    render_answer,
)
from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.masks import Rle
from sam2_finetune.polygons import MIN_POINTS_PER_PART, mask_to_polygons, polygon_iou

__all__ = [
    "DEFAULT_TASK_MIX",
    "NEGATIVE_RATE",
    "QWEN_MAX_PIXELS",
    "QWEN_MIN_PIXELS",
    "TASKS",
    "TEMPLATES",
    "Example",
    "ExampleOptions",
    "Task",
    "TaskWeight",
    "answer_objects",
    "build_example",
    "choose_task",
    "default_task_mix",
    "example_rng",
    "examples_for_row",
    "parse_task_mix",
    "polygon_fidelity",
    "resized_size",
]

# Phrasings per task, chosen at random per example so the model does not tie the task to one
# sentence. ``{label}`` is the label asked about. Formats with fixed pretraining prompts
# (PaliGemma, Florence-2) use those instead (``AnswerFormat.task_prompts``).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "detect": (
        "Detect all objects in the image.",
        "Find every object in this image and give its bounding box.",
        "Locate each object in the picture.",
        "List all the objects you can see, with their bounding boxes.",
        "What objects are in this frame? Give a box for each.",
    ),
    "ground": (
        "Find every {label} in the image.",
        'Locate all instances of "{label}".',
        "Give the bounding boxes of each {label}.",
        "Detect {label}.",
        "Where are the objects labelled {label}? Answer with their boxes.",
    ),
    "segment": (
        "Segment every {label} in the image.",
        "Outline each {label} with a polygon.",
        'Give the polygon outline of all instances of "{label}".',
        "Trace the outline of every {label}.",
    ),
    "count": (
        'How many instances of "{label}" are in the image?',
        'Count the instances of "{label}".',
        "How many objects labelled {label} can you see?",
        "Count every {label} in this frame.",
    ),
}

DEFAULT_TASK_MIX: dict[str, float] = {"detect": 0.4, "ground": 0.3, "segment": 0.2, "count": 0.1}
NEGATIVE_RATE = 0.1

Task = Literal["detect", "ground", "segment", "count"]  # TASKS, as a type for options
TaskWeight = Annotated[float, Field(ge=0, le=1000)]

# The pixel bounds the Qwen2-VL / Qwen2.5-VL processors apply when an option leaves them unset:
# what the checkpoints' preprocessor_config.json states (min_pixels 3136, max_pixels 12845056),
# so what a model trained with the processor's defaults sees. transformers' class defaults
# (28 * 28 * 1280) are NOT what a loaded checkpoint uses.
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 12_845_056


class ExampleOptions(BaseModel):
    """How examples are built from a canonical row: declared once, inherited by
    ``ConvertOptions`` (``--to llava/sharegpt``) and the training config's ``data`` section, so
    a dataset converted and a run trained with the same values build the same examples (and
    resize Qwen images to the same size, which its answers' pixel coordinates depend on)."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    task_mix: dict[Task, TaskWeight] | None = Field(
        None,
        alias="tasks",  # the CLI flag (--tasks detect=0.5,ground=0.3); YAML writes task_mix
        description="Relative weight of each task (detect, ground, segment, count), e.g. "
        "{detect: 2, count: 1}, or on the command line --tasks detect=2,count=1 (or one --tasks "
        "per task; names alone weigh equally); default: 0.4 / 0.3 / 0.2 / 0.1, without segment "
        "for formats without polygons.",
    )
    min_pixels: int | None = Field(
        None,
        ge=784,
        le=100_000_000,
        description="Qwen families: fewest pixels per image; default: the processor's own "
        f"({QWEN_MIN_PIXELS}).",
    )
    max_pixels: int | None = Field(
        None,
        ge=784,
        le=100_000_000,
        description="Qwen families: most pixels per image; default: the processor's own "
        f"({QWEN_MAX_PIXELS}, as the Qwen2-VL / Qwen2.5-VL checkpoints state).",
    )
    negative_rate: float = Field(
        NEGATIVE_RATE,
        ge=0,
        le=1,
        description="Share of ground/segment/count examples that ask for a label absent from "
        "the frame.",
    )
    max_polygon_points: int = Field(
        32,
        ge=MIN_POINTS_PER_PART,  # a part keeps its 4 extreme points (its box)
        le=10_000,
        description="Most points per polygon of the segment task.",
    )
    examples_per_frame: int = Field(
        1, ge=1, le=1000, description="Examples per frame, each with its own task."
    )
    fixed_prompts: bool = Field(
        False,
        description="Ask each task in one phrasing (its first) instead of a random one per "
        "example: for a specialist model, or one trained from scratch (prompts of varying length "
        "move every image token relative to the answer; benchmarks/RESULTS.md).",
    )

    @field_validator("task_mix", mode="before")
    @classmethod
    def _task_mix_from_text(cls, value: Any) -> Any:
        # Text from the command line ("detect=0.5,ground=0.3", ["detect=2", "count=1"],
        # "detect count") is read by parse_task_mix, which reports every problem at once;
        # a mapping (YAML) is checked by the field's type and kept as written.
        if value is None or isinstance(value, Mapping):
            return value
        return parse_task_mix(value)

    def pixel_bounds(self) -> tuple[int, int]:
        """``(min_pixels, max_pixels)`` with the processor's defaults filled in."""
        return (self.min_pixels or QWEN_MIN_PIXELS, self.max_pixels or QWEN_MAX_PIXELS)

    def pixel_problem(self) -> str | None:
        """Why the pixel bounds cannot both hold, or None."""
        low, high = self.pixel_bounds()
        if low > high:
            return f"min_pixels must be <= max_pixels ({high})"
        return None

    def task_weights(self, answer_format: str) -> dict[str, float]:
        """The task mix normalised, checked against ``answer_format`` (``segment`` needs
        polygons); the format's default mix when none is set."""
        return parse_task_mix(
            self.task_mix or default_task_mix(answer_format), answer_format=answer_format
        )


@dataclass(frozen=True)
class Example:
    """One training / evaluation example built from a frame.

    ``labels`` are the labels the example is about (the one asked for ``ground`` / ``segment``
    / ``count``; the ones present for ``detect``); ``objects`` what ``answer`` encodes, in image
    pixels (with polygons for ``segment``); ``count`` the number for the ``count`` task.
    """

    task: str
    prompt: str
    answer: str
    labels: tuple[str, ...]
    objects: tuple[AnswerObject, ...]
    count: int | None = None


def _row_objects(row: Mapping[str, Any]) -> list[dict]:
    objects = row.get("objects") or []
    if isinstance(objects, Mapping):  # a columnar struct (dict of lists), as some readers give
        keys = list(objects)
        objects = [
            dict(zip(keys, values, strict=True)) for values in zip(*objects.values(), strict=True)
        ]
    return list(objects)


def _visible(row: Mapping[str, Any]) -> list[tuple[AnswerObject, dict]]:
    """Visible objects (non-empty masks) as (box-only AnswerObject, raw object), in answer order:
    by label, then top-to-bottom, left-to-right."""
    out = []
    for obj in _row_objects(row):
        x, y, w, h = (float(v) for v in obj["bbox"])
        if w <= 0 or h <= 0 or obj.get("area", 1) == 0:
            continue  # lost / occluded: SAM2 keeps the track with an empty mask
        out.append((AnswerObject(str(obj["label"]), (x, y, w, h)), obj))
    out.sort(key=lambda pair: (pair[0].label, pair[0].bbox[1], pair[0].bbox[0], pair[0].bbox[3]))
    return out


def answer_objects(
    row: Mapping[str, Any],
    *,
    label: str | None = None,
    polygons: bool = False,
    max_polygon_points: int = 32,
) -> list[AnswerObject]:
    """The visible objects of a canonical row in answer order, optionally only ``label``'s,
    optionally with polygons traced from their masks (decodes each mask once)."""
    out = []
    for answer, obj in _visible(row):
        if label is not None and answer.label != label:
            continue
        if polygons:
            segmentation: Rle = obj["segmentation"]
            answer = AnswerObject(
                answer.label, answer.bbox, mask_to_polygons(segmentation, max_polygon_points)
            )
        out.append(answer)
    return out


def build_example(
    row: Mapping[str, Any],
    *,
    task: str,
    answer_format: str,
    rng: random.Random,
    resized_wh: tuple[int, int] | None = None,
    max_polygon_points: int = 32,
    vocabulary: Sequence[str] | None = None,
    negative_rate: float = NEGATIVE_RATE,
    fixed_prompt: bool = False,
) -> Example:
    """Build one example of ``task`` from a canonical row, answered in ``answer_format``.

    Deterministic given the state of ``rng``; the random draws are the same whatever the format,
    so one seed gives the same tasks, labels and phrasings in every format. ``fixed_prompt``:
    the task's first phrasing instead of a random one (the same draws are made either way, so
    the tasks and labels do not change with it). ``vocabulary`` (the
    dataset's labels, ``dataset.category_names(ds)``) enables negative examples and fills
    PaliGemma's ``detect a ; b`` prompt. ``resized_wh`` is required by ``qwen2_5_vl``.

    >>> row = {"width": 100, "height": 50, "objects": [{"label": "car", "area": 6,
    ...        "bbox": [10, 10, 3, 2], "segmentation": {"size": [50, 100], "counts": "..."}}]}
    >>> ex = build_example(row, task="count", answer_format="json", rng=random.Random(0))
    >>> ex.prompt, ex.answer
    ('How many instances of "car" are in the image?', '{"count": 1}')
    """
    spec = get_format(answer_format)
    if task not in TASKS:
        raise OptionsError(
            describe("unknown task", field="task", expected=" | ".join(TASKS), found=repr(task))
        )
    if task == "segment" and not spec.supports_polygons:
        _check_tasks_for_format(["segment"], answer_format)
    image_wh = (int(row["width"]), int(row["height"]))
    visible = _visible(row)
    present = sorted({answer.label for answer, _ in visible})
    label = ""
    if task != "detect":
        absent = sorted(set(vocabulary or ()) - set(present))
        negative = rng.random() < negative_rate
        if present and not (negative and absent):
            label = rng.choice(present)
        elif absent:
            label = rng.choice(absent)
        else:
            task = "detect"  # nothing to name: an empty frame without a vocabulary
    template = rng.choice(TEMPLATES[task])
    if fixed_prompt:
        template = TEMPLATES[task][0]
    fixed = spec.task_prompts.get(task)
    if fixed is not None:
        listed = spec.prompt_label_separator.join(vocabulary or present)
        prompt = fixed.format(label=label, labels=listed).strip()
    else:
        prompt = template.format(label=label)
        if spec.prompt_hint and task != "count":
            prompt = f"{prompt} {spec.prompt_hint}"
    if task == "detect":
        objects = [answer for answer, _ in visible]
    else:
        objects = answer_objects(
            row, label=label, polygons=task == "segment", max_polygon_points=max_polygon_points
        )
    answer = render_answer(objects, answer_format, image_wh, resized_wh=resized_wh, task=task)
    return Example(
        task=task,
        prompt=prompt,
        answer=answer,
        labels=tuple(present) if task == "detect" else (label,),
        objects=tuple(objects),
        count=len(objects) if task == "count" else None,
    )


def example_rng(seed: int, image_id: str, epoch: int = 0) -> random.Random:
    """The random source of one row's examples: seeded by the seed and the row's ``image_id``
    (adding an export does not change the others' examples) and, past epoch 0, the epoch, so
    the training collator draws new tasks each epoch while epoch 0 is what convert wrote."""
    return random.Random(f"{seed}:{image_id}" if epoch == 0 else f"{seed}:{image_id}:{epoch}")


def resized_size(
    answer_format: str, width: int, height: int, options: ExampleOptions | None = None
) -> tuple[int, int] | None:
    """``(width, height)`` the Qwen processor resizes a ``width`` x ``height`` frame to, under
    ``options``' pixel bounds, for answer formats whose coordinates are in resized pixels;
    None for the others."""
    if not get_format(answer_format).needs_resized_wh:
        return None
    from sam2_finetune.answer_formats import qwen_smart_resize

    low, high = (options or ExampleOptions()).pixel_bounds()
    h, w = qwen_smart_resize(height, width, min_pixels=low, max_pixels=high)
    return (w, h)


def examples_for_row(
    row: Mapping[str, Any],
    options: ExampleOptions,
    answer_format: str,
    *,
    seed: int,
    epoch: int = 0,
    vocabulary: Sequence[str] | None = None,
    resized_wh: tuple[int, int] | None = None,
) -> list[Example]:
    """The ``options.examples_per_frame`` examples of one canonical row (the dict a canonical
    ``datasets`` dataset yields, or :func:`sam2_finetune.convert.rows.iter_rows`' row).

    ``resized_wh``: the size a loaded processor really resizes this frame to (the training
    collator asks its processor); by default the Qwen arithmetic under ``options``' pixel bounds,
    which is what the real checkpoints' processors do.

    Each example's task is drawn from ``options``' task mix, then built by
    :func:`build_example`, all from :func:`example_rng` ``(seed, image_id, epoch)``: the same
    row, options and seed give the same examples in ``convert --to llava/sharegpt`` (epoch 0)
    and in the training collator, which passes the epoch to vary the draw. ``vocabulary`` (the
    dataset's labels) enables negative examples.

    >>> row = {"image_id": "v/000000", "width": 100, "height": 50, "objects": [{"label": "car",
    ...        "area": 6, "bbox": [10, 10, 3, 2], "segmentation": {"size": [50, 100],
    ...        "counts": "..."}}]}
    >>> [e.task for e in examples_for_row(row, ExampleOptions(task_mix={"count": 1}), "json",
    ...                                   seed=0)]
    ['count']
    """
    mix = options.task_weights(answer_format)
    rng = example_rng(seed, str(row["image_id"]), epoch)
    resized = resized_size(answer_format, int(row["width"]), int(row["height"]), options)
    if resized is not None and resized_wh is not None:
        resized = resized_wh
    return [
        build_example(
            row,
            task=choose_task(rng, mix),
            answer_format=answer_format,
            rng=rng,
            resized_wh=resized,
            max_polygon_points=options.max_polygon_points,
            vocabulary=vocabulary,
            negative_rate=options.negative_rate,
            fixed_prompt=options.fixed_prompts,
        )
        for _ in range(options.examples_per_frame)
    ]


def choose_task(rng: random.Random, mix: Mapping[str, float]) -> str:
    """Draw a task with probability proportional to its weight in ``mix`` (one ``rng`` draw)."""
    unknown = sorted(set(mix) - set(TASKS))
    weights = [(task, float(mix.get(task, 0.0))) for task in TASKS]
    total = sum(w for _, w in weights if w > 0)
    if unknown or total <= 0:
        raise OptionsError(
            describe(
                "a task mix needs known tasks with a positive total weight",
                field="tasks",
                expected=" | ".join(TASKS),
                found=dict(mix),
            )
        )
    point = rng.random() * total
    for task, weight in weights:
        if weight <= 0:
            continue
        point -= weight
        if point < 0:
            return task
    return next(task for task, weight in reversed(weights) if weight > 0)


def default_task_mix(answer_format: str) -> dict[str, float]:
    """:data:`DEFAULT_TASK_MIX` without ``segment`` for formats that cannot write polygons."""
    mix = dict(DEFAULT_TASK_MIX)
    if not get_format(answer_format).supports_polygons:
        mix.pop("segment")
    total = sum(mix.values())
    return {task: weight / total for task, weight in mix.items()}


def parse_task_mix(
    spec: str | Sequence[str] | Mapping[str, float], *, answer_format: str | None = None
) -> dict[str, float]:
    """Read a task mix: ``"detect=0.5,ground=0.3,segment=0.1,count=0.1"``, ``"detect,count"``
    (equal weights), a list of such items (``--tasks detect=2 --tasks ground=1``) or a mapping.

    Returns weights normalised to sum to 1, in :data:`TASKS` order. Every problem (unknown task,
    bad or negative weight, repeated task, ``segment`` with a format without polygons) is
    reported at once in one :class:`OptionsError`.

    >>> parse_task_mix("detect=3,count=1")
    {'detect': 0.75, 'count': 0.25}
    """
    problems: list[str] = []
    items: list[tuple[str, object]] = []
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        for chunk in [spec] if isinstance(spec, str) else list(spec):
            for item in re.split(r"[,\s]+", str(chunk).strip()):
                if not item:
                    continue
                name, sep, weight = item.partition("=") if "=" in item else item.partition(":")
                items.append((name.strip(), weight.strip() if sep else 1.0))
    weights: dict[str, float] = {}
    seen: set[str] = set()
    for name, raw in items:
        if name not in TASKS:
            problems.append(f"unknown task {name!r} (expected one of {', '.join(TASKS)})")
            continue
        if name in seen:
            problems.append(f"task {name!r} given twice")
            continue
        seen.add(name)
        try:
            weight = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            problems.append(f"weight of {name!r} is not a number: {raw!r}")
            continue
        if not math.isfinite(weight) or weight < 0:
            problems.append(f"weight of {name!r} must be a finite number >= 0, found {raw!r}")
            continue
        weights[name] = weight
    if not problems and sum(weights.values()) <= 0:
        problems.append("no task has a positive weight")
    fixes = ['write it as "detect=0.5,ground=0.3,segment=0.1,count=0.1"'] if problems else []
    if answer_format is not None:
        # Plain phrases, not a nested error message: the whole mix is reported in one sentence.
        if not isinstance(answer_format, str) or answer_format not in ANSWER_FORMATS:
            problems.append(f"unknown answer format {answer_format!r}")
            fixes.append(f"use an answer format of {', '.join(ANSWER_FORMATS)}")
        elif weights.get("segment", 0) > 0 and not ANSWER_FORMATS[answer_format].supports_polygons:
            able = [name for name, row in ANSWER_FORMATS.items() if row.supports_polygons]
            problems.append(
                f"answer format {answer_format!r} has no polygon syntax, so it cannot train the "
                "segment task"
            )
            fixes.append(f"drop 'segment' from the tasks, or use one of {', '.join(able)}")
    if problems:
        raise OptionsError(
            describe(
                "invalid task mix: " + "; ".join(problems),
                field="tasks",
                found=repr(spec),
                fix="; ".join(fixes),
            )
        )
    total = sum(weights.values())
    return {task: weights[task] / total for task in TASKS if weights.get(task, 0) > 0}


def _check_tasks_for_format(tasks: Iterable[str], answer_format: str) -> None:
    spec = get_format(answer_format)
    if "segment" in tasks and not spec.supports_polygons:
        able = [name for name, row in ANSWER_FORMATS.items() if row.supports_polygons]
        raise OptionsError(
            describe(
                f"answer format {answer_format!r} has no polygon syntax, so it cannot train the "
                "segment task",
                field="tasks",
                fix=f"drop 'segment' from the tasks, or use one of {able}",
            )
        )


def polygon_fidelity(
    rows: Iterable[Mapping[str, Any]], *, max_points: int = 32, min_area: int = 4
) -> dict[str, Any]:
    """How faithfully the simplified polygons redraw the masks (for the convert report).

    Streams over ``rows`` (canonical rows; one mask decoded at a time) and returns ``objects``
    (visible objects measured), ``mean_iou``, ``median_iou``, ``min_iou`` (rasterised polygons vs
    mask), ``below_0_9`` (objects under 0.9 IoU), ``mean_points``, ``multi_part`` (objects drawn
    as several polygons) and ``worst`` (image id, track id, label, IoU). IoUs are None when no
    object was measured. Costs a few ms per 720p object: sample rows for large datasets.
    """
    ious: list[float] = []
    points = 0
    multi_part = 0
    worst: dict[str, Any] | None = None
    for row in rows:
        for answer, obj in _visible(row):
            segmentation: Rle = obj["segmentation"]
            polygons = mask_to_polygons(segmentation, max_points, min_area=min_area)
            iou = polygon_iou(polygons, segmentation)
            ious.append(iou)
            points += sum(len(p) for p in polygons)
            multi_part += len(polygons) > 1
            if worst is None or iou < worst["iou"]:
                worst = {
                    "image_id": row.get("image_id"),
                    "track_id": obj.get("track_id"),
                    "label": answer.label,
                    "iou": iou,
                }
    ordered = sorted(ious)
    n = len(ordered)
    return {
        "objects": n,
        "max_points": max_points,
        "mean_iou": sum(ordered) / n if n else None,
        "median_iou": ordered[n // 2] if n else None,
        "min_iou": ordered[0] if n else None,
        "below_0_9": sum(v < 0.9 for v in ordered),
        "mean_points": points / n if n else None,
        "multi_part": multi_part,
        "worst": worst,
    }
