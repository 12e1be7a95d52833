"""Predict: a fine-tuned model answers new images and videos; videos become SAM2 exports.

``sam2-finetune predict --model RUN_OR_EXPORT INPUT... --out DIR`` (Python:
``predict(PredictOptions(...)) -> PredictResult``; ``docs/predict.md``). What it does:

- **Inputs.** Image files, folders of images (their images in natural order: ``frame2`` before
  ``frame10``), and video files (PyAV, the optional ``video`` extra). Every input is checked
  before the model loads: a missing, unreadable or unsupported file is one message naming it.
- **The model and its prompt.** The model is loaded with
  :func:`sam2_finetune.evaluate.loading.load_for_inference` (its training image settings, answer
  format and labels come from its record). Each image is asked ``--task`` (``detect`` by
  default; ``ground`` with ``--label``) with a prompt built by the training example builder
  (:func:`sam2_finetune.tasks.build_example` on a frame with no objects), so the phrasing is one
  the model was trained on, and answers are generated and parsed by
  :func:`sam2_finetune.evaluate.generate.generate_answers` (greedy by default). An unreadable
  answer is a prediction with ``parse_ok: false``, never an error.
- **Images** give one line each in ``predictions.jsonl`` (file, task, prompt, raw text, parsed
  objects, count) and an overlay PNG in ``overlays/`` (:func:`sam2_finetune.evaluate.pictures.
  draw_objects`); the command prints the same records as JSON lines.
- **Videos** are sampled at ``--fps`` (frame ``round(k * source_fps / fps)``, the SAM2 demo's
  rule) and become an export folder ``OUT/<video name>/`` in the SAM2 export schema
  (:mod:`sam2_finetune.ingest.write`): ``annotations.json`` with every sampled frame, its objects'
  masks (the predicted polygons rasterised, for ``segment``; the predicted box filled, for
  ``detect`` / ``ground``) and track ids linked by box IoU from frame to frame
  (:class:`sam2_finetune.evaluate.tracking.IouTracker`), plus the raw frames in ``frames/``.
  ``info``, ``validate`` and ``convert`` read it back (``--frames OUT/<video>/frames`` marks the
  frames as raw): annotate a few videos, train, pseudo-label the rest, correct, retrain.
- **Labels.** Predicted labels are matched to the training labels after the same normalisation
  as ``convert`` (:func:`sam2_finetune.dataset.normalize_label`); a label outside them is kept,
  counted in ``PredictResult.unknown_labels`` and reported, not dropped.

Everything is written into a temporary sibling of ``--out`` and renamed into place at the end.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune import __version__
from sam2_finetune.answer_formats import AnswerObject, get_format
from sam2_finetune.dataset import normalize_label
from sam2_finetune.errors import ExportError, OptionsError, describe
from sam2_finetune.evaluate.generate import Generated, GenerationOptions, generate_answers
from sam2_finetune.evaluate.tracking import IOU_THRESHOLD, MAX_GAP, IouTracker
from sam2_finetune.ingest.archive import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from sam2_finetune.ingest.write import ExportObject, ExportVideo, write_annotations
from sam2_finetune.masks import Rle, rle_area, rle_encode
from sam2_finetune.outputs import atomic_output_dir, ensure_writable
from sam2_finetune.polygons import polygons_to_rle
from sam2_finetune.tasks import Example, Task, build_example

__all__ = [
    "PREDICT_IMAGE_SUFFIXES",
    "ImagePrediction",
    "InputFile",
    "PredictOptions",
    "PredictResult",
    "VideoPrediction",
    "box_to_rle",
    "discover_inputs",
    "frame_indices_at",
    "natural_key",
    "predict",
    "predict_command",
    "prediction_example",
]

# What PIL reads that a user is likely to hold; exports only ever hold PNG / JPEG.
PREDICT_IMAGE_SUFFIXES = (*IMAGE_SUFFIXES, ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FPS = 5.0  # the SAM2 demo's default export rate
PREDICTIONS_NAME = "predictions.jsonl"
OVERLAYS_DIR = "overlays"
FRAMES_DIR = "frames"
EXPORTER = f"sam2-finetune {__version__} predict"


class PredictOptions(BaseModel):
    """Run a fine-tuned model on images, folders of images or videos: parsed objects as JSON,
    overlay PNGs, and for each video a SAM2 export (pseudo-labels to correct and train on)."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(
        description="A run folder (its best/ model, or --checkpoint), an adapter export or a "
        "merged export."
    )
    input: list[Path] = Field(
        min_length=1,
        description="Image files, folders of images, or video files (mp4, mov, ...; needs the "
        "video extra).",
        json_schema_extra={"positional": True},
    )
    out: Path = Field(description="Output folder (predictions.jsonl, overlays/, one per video).")
    task: Task | None = Field(
        None,
        description="What to ask: detect (every object), ground / segment / count (one --label); "
        "default: ground with --label, else detect.",
    )
    label: str | None = Field(
        None, description="The label asked by ground / segment / count (a training label)."
    )
    fps: float = Field(
        DEFAULT_FPS,
        gt=0,
        le=1000,
        description="Videos: frames per second to predict (the video's own rate at most).",
    )
    checkpoint: str | None = Field(
        None,
        description="With a run folder: best, last, N or checkpoint-N instead of its best/ model.",
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Images per generation batch.")
    device: str | None = Field(
        None, description="Device to run on (cpu, cuda, cuda:1); default: CUDA when present."
    )
    iou_threshold: float = Field(
        IOU_THRESHOLD,
        gt=0,
        le=1,
        description="Videos: least box IoU (same label) that links an object to the previous "
        "frame's track.",
    )
    max_gap: int = Field(
        MAX_GAP,
        ge=0,
        le=1000,
        description="Videos: frames a track may go unseen and still keep its id.",
    )
    generation: GenerationOptions = Field(default_factory=GenerationOptions)
    overwrite: bool = Field(False, description="Replace --out if it exists.")

    def resolved_task(self) -> str:
        """The task asked: ``task``, or ``ground`` when only a label is given, else ``detect``."""
        if self.task is not None:
            return self.task
        return "ground" if self.label else "detect"


# ---- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One image or video to predict, as found from the command line's INPUT."""

    path: Path
    kind: str  # "image" or "video"


def natural_key(name: str) -> list[Any]:
    """Sort key that orders numbers by value: ``frame2`` before ``frame10``.

    >>> sorted(["f10.png", "f2.png", "F1.png"], key=natural_key)
    ['F1.png', 'f2.png', 'f10.png']
    """
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def _check_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise OptionsError(
            describe(
                f"cannot read the image ({exc.__class__.__name__}: {exc})",
                file=path,
                fix="pass a readable PNG / JPEG / BMP / WebP / TIFF, or leave this file out",
            )
        ) from None


def discover_inputs(paths: Sequence[str | Path]) -> list[InputFile]:
    """The images and videos named by ``paths``, in order; a folder stands for the images in it
    (not its sub-folders), in natural order. Every image is opened (header only) and every video
    probed, so a bad input stops the run before the model loads.

    Raises:
        OptionsError: a path that does not exist, a file that is neither an image nor a video,
            an unreadable image, a folder without images.
        ExportError: a video PyAV cannot read, or PyAV missing (with the install command).
    """
    found: list[InputFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = sorted(
                (
                    p
                    for p in path.iterdir()
                    if p.is_file()
                    and p.suffix.lower() in PREDICT_IMAGE_SUFFIXES
                    and not p.name.startswith(".")
                ),
                key=lambda p: natural_key(p.name),
            )
            if not images:
                videos = [p.name for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES]
                raise OptionsError(
                    describe(
                        "the folder holds no images",
                        file=path,
                        expected=f"image files ({', '.join(PREDICT_IMAGE_SUFFIXES)})",
                        found=f"videos {videos[:3]}" if videos else "none",
                        fix="pass video files themselves as INPUT"
                        if videos
                        else "pass a folder of images, image files or videos",
                    )
                )
            for image in images:
                _check_image(image)
            found += [InputFile(p, "image") for p in images]
        elif path.is_file():
            suffix = path.suffix.lower()
            if suffix in PREDICT_IMAGE_SUFFIXES:
                _check_image(path)
                found.append(InputFile(path, "image"))
            elif suffix in VIDEO_SUFFIXES:
                video_facts(path)  # PyAV present, readable, has a video stream and a rate
                found.append(InputFile(path, "video"))
            else:
                raise OptionsError(
                    describe(
                        "unsupported input",
                        file=path,
                        expected="an image "
                        f"({', '.join(PREDICT_IMAGE_SUFFIXES)}), a folder of images, or a video "
                        f"({', '.join(VIDEO_SUFFIXES)})",
                        found=repr(suffix or path.name),
                        fix="convert the file, or leave it out",
                    )
                )
        else:
            raise OptionsError(
                describe(
                    "no such file or folder",
                    file=path,
                    field="INPUT",
                    fix="check the path (images, folders of images or videos)",
                )
            )
    return found


# ---- videos -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFacts:
    """What predict needs to know of a video: size, frame rate and frame count."""

    width: int
    height: int
    fps: float
    total_frames: int


def video_facts(path: Path) -> VideoFacts:
    """Size, rate and frame count of the video at ``path``.

    Raises :class:`ExportError` when PyAV is missing (naming ``pip install
    "sam2-finetune[video]"``), or the file is not a readable video with a frame rate.
    """
    from sam2_finetune.ingest.video import count_frames

    total = count_frames(path)  # the ingest stage's checks and messages (PyAV, stream)
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = stream.codec_context.width, stream.codec_context.height
    if not rate or not total:
        raise ExportError(
            describe(
                "the video states no frame rate or holds no frames",
                file=path,
                found=f"rate {rate}, {total} frames",
                fix="re-mux the video (ffmpeg -i in.mp4 -c copy out.mp4), or extract its frames "
                "to a folder and pass that",
            )
        )
    return VideoFacts(int(width), int(height), float(rate), int(total))


def frame_indices_at(total_frames: int, source_fps: float, fps: float) -> list[int]:
    """The frames sampled at ``fps`` from a ``source_fps`` video of ``total_frames``: frame
    ``round(k * source_fps / fps)``, the SAM2 demo's rule (every frame when ``fps`` is at
    least the video's rate).

    >>> frame_indices_at(30, 30.0, 5.0)
    [0, 6, 12, 18, 24]
    """
    step = max(source_fps / fps, 1.0)
    out: list[int] = []
    k = 0
    while (index := math.floor(k * step + 0.5)) < total_frames:
        if not out or index != out[-1]:
            out.append(index)
        k += 1
    return out


def box_to_rle(bbox: Sequence[float], height: int, width: int) -> Rle:
    """The mask of a box ``(x, y, w, h)``: the pixels between its edges rounded to the pixel
    grid, at least one pixel, clipped to the image."""
    x, y, w, h = (float(v) for v in bbox)
    x0 = min(max(math.floor(x + 0.5), 0), width - 1)
    y0 = min(max(math.floor(y + 0.5), 0), height - 1)
    x1 = min(max(math.floor(x + w + 0.5), x0 + 1), width)
    y1 = min(max(math.floor(y + h + 0.5), y0 + 1), height)
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return rle_encode(mask)


def object_mask(obj: AnswerObject, height: int, width: int) -> Rle:
    """An answer object's mask: its polygons rasterised (pycocotools) when it has any that
    cover a pixel, else its box filled."""
    if obj.polygons:
        rle = polygons_to_rle(obj.polygons, height, width)
        if int(rle_area([rle])[0]):
            return rle
    return box_to_rle(obj.bbox, height, width)


# ---- prompts and answers ---------------------------------------------------------------------


def prediction_example(
    answer_format: str,
    task: str,
    label: str | None,
    labels: Sequence[str],
    image_wh: tuple[int, int],
    *,
    resized_wh: tuple[int, int] | None = None,
    max_polygon_points: int = 32,
    fixed_prompt: bool = False,
) -> Example:
    """The example asking ``task`` (about ``label``) of an image, built by the training example
    builder on a frame without objects, so the prompt is phrased as in training (seeded: every
    image gets the same phrasing). Its answer is the format's empty answer, unused."""
    row = {"width": image_wh[0], "height": image_wh[1], "objects": []}
    return build_example(
        row,
        task=task,
        answer_format=answer_format,
        rng=random.Random(0),
        resized_wh=resized_wh,
        max_polygon_points=max_polygon_points,
        vocabulary=[label] if task != "detect" and label else list(labels),
        negative_rate=0.0,
        fixed_prompt=fixed_prompt,
    )


def _label_index(labels: Sequence[str]) -> dict[str, str]:
    return {normalize_label(label): label for label in labels}


def _named(obj: AnswerObject, known: dict[str, str]) -> AnswerObject:
    label = known.get(normalize_label(obj.label), obj.label)
    return AnswerObject(label, obj.bbox, obj.polygons)


def _object_dict(obj: AnswerObject, track_id: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"label": obj.label, "bbox": [round(float(v), 2) for v in obj.bbox]}
    if obj.polygons:
        out["polygons"] = [[[round(x, 2), round(y, 2)] for x, y in poly] for poly in obj.polygons]
    if track_id is not None:
        out["track_id"] = track_id
    return out


# ---- results ------------------------------------------------------------------------------------


@dataclass
class ImagePrediction:
    """One image's prediction: what predictions.jsonl holds and the command prints."""

    file: str
    task: str
    label: str | None
    prompt: str
    text: str
    parse_ok: bool
    problems: list[str]
    objects: list[AnswerObject]
    count: int
    overlay: Path | None = None
    frame_index: int | None = None
    track_ids: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this prediction (boxes ``[x, y, w, h]`` in image pixels)."""
        ids = self.track_ids or [None] * len(self.objects)
        out: dict[str, Any] = {"file": self.file}
        if self.frame_index is not None:
            out["frame_index"] = self.frame_index
        out.update(
            task=self.task,
            label=self.label,
            objects=[_object_dict(o, i) for o, i in zip(self.objects, ids, strict=True)],
            count=self.count,
            parse_ok=self.parse_ok,
            problems=self.problems,
            text=self.text,
            prompt=self.prompt,
        )
        if self.overlay is not None:
            out["overlay"] = str(self.overlay)
        return out


@dataclass
class VideoPrediction:
    """One video's pseudo-labels: the export folder written, its frames folder, and tallies."""

    source: Path
    export_dir: Path
    frames_dir: Path
    frames: int
    objects: int
    tracks: int
    parse_failures: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": str(self.source),
            "export": str(self.export_dir),
            "frames_dir": str(self.frames_dir),
            "frames": self.frames,
            "objects": self.objects,
            "tracks": self.tracks,
            "parse_failures": self.parse_failures,
        }


@dataclass
class PredictResult:
    """What :func:`predict` wrote: ``out_dir``, ``predictions.jsonl``, one
    :class:`ImagePrediction` per image (paths under ``out_dir``), one :class:`VideoPrediction`
    per video, answers that did not parse, and predicted labels outside the training labels."""

    out_dir: Path
    predictions_path: Path
    images: list[ImagePrediction] = field(default_factory=list)
    videos: list[VideoPrediction] = field(default_factory=list)
    parse_failures: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)


# ---- the stage ----------------------------------------------------------------------------------


def _check_task(options: PredictOptions, record: Any) -> tuple[str, str | None]:
    """The task and the asked label as the model knows it; one message for each mistake."""
    task = options.resolved_task()
    label = options.label
    if task == "detect" and label:
        raise OptionsError(
            describe(
                "--label asks about one label, but the task is detect (every object)",
                field="label",
                found=label,
                fix="leave out --task (ground is then asked), or pass --task ground / segment / "
                "count, or leave out --label",
            )
        )
    if task != "detect" and not label:
        raise OptionsError(
            describe(
                f"the {task} task asks about one label",
                field="label",
                expected="--label NAME",
                found="none",
                fix=f"pass --label with one of the model's labels ({', '.join(record.labels)})",
            )
        )
    if label:
        known = _label_index(record.labels)
        if normalize_label(label) not in known:
            raise OptionsError(
                describe(
                    "the label is not one the model was trained on",
                    field="label",
                    expected=f"one of {', '.join(record.labels)}",
                    found=repr(label),
                    fix="pass a training label (the model's sam2_finetune.json lists them)",
                )
            )
        label = known[normalize_label(label)]
    if task == "segment" and not get_format(record.answer_format).supports_polygons:
        raise OptionsError(
            describe(
                f"the model's answer format {record.answer_format!r} has no polygons",
                field="task",
                found="segment",
                fix="ask --task ground (boxes) instead",
            )
        )
    return task, label


def _record_of(path: Path, checkpoint: str | None) -> Any:
    """The record :func:`load_for_inference` will use (the same folders, in the same order)."""
    from sam2_finetune.evaluate.loading import model_folder
    from sam2_finetune.models.record import RECORD_NAME, read_record

    folder, record_folder = model_folder(path, checkpoint)
    if not (record_folder / RECORD_NAME).is_file() and (folder / RECORD_NAME).is_file():
        record_folder = folder
    return read_record(record_folder)


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate.casefold())
    return candidate


def _open_rgb(path: Path) -> Any:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Run:
    """The loaded model and what every batch needs (one per :func:`predict` call)."""

    loaded: Any
    options: PredictOptions
    task: str
    label: str | None
    known: dict[str, str]
    unknown: Counter = field(default_factory=Counter)
    parse_failures: int = 0

    def answer(self, images: Sequence[Any]) -> list[tuple[Generated, list[AnswerObject]]]:
        from sam2_finetune.models.chat import processor_resized_wh

        record, processor = self.loaded.record, self.loaded.processor
        needs_resized = get_format(record.answer_format).needs_resized_wh
        items = []
        for image in images:
            wh = (int(image.size[0]), int(image.size[1]))
            example = prediction_example(
                record.answer_format,
                self.task,
                self.label,
                record.labels,
                wh,
                resized_wh=processor_resized_wh(processor, *wh) if needs_resized else None,
                max_polygon_points=record.max_polygon_points,
                fixed_prompt=record.fixed_prompts,
            )
            items.append((image, example))
        generated = generate_answers(
            self.loaded.model,
            processor,
            record.family,
            record.answer_format,
            items,
            batch_size=self.options.batch_size,
            labels=record.labels,
            options=self.options.generation,
            max_polygon_points=record.max_polygon_points,
        )
        out = []
        for answer in generated:
            objects = [_named(obj, self.known) for obj in answer.parsed.objects]
            self.unknown.update(o.label for o in objects if o.label not in self.known.values())
            self.parse_failures += not answer.parsed.ok
            out.append((answer, objects))
        return out

    def prediction(
        self, file: str, answer: Generated, objects: list[AnswerObject], **extra: Any
    ) -> ImagePrediction:
        count = answer.parsed.count if self.task == "count" else None
        return ImagePrediction(
            file=file,
            task=self.task,
            label=self.label,
            prompt=answer.prompt,
            text=answer.text,
            parse_ok=answer.parsed.ok,
            problems=list(answer.parsed.problems),
            objects=objects,
            count=int(count) if count is not None else len(objects),
            **extra,
        )


def predict(options: PredictOptions) -> PredictResult:
    """Predict every input of ``options`` and write the results into ``options.out`` (see the
    module). Inputs, the output folder, the task and the label are checked before generating.

    >>> result = predict(PredictOptions(model="runs/quick_test/best",  # doctest: +SKIP
    ...                  input=["street.mp4"], out="pseudo"))
    >>> result.videos[0].export_dir  # doctest: +SKIP
    PosixPath('pseudo/street')
    """
    from sam2_finetune.evaluate.loading import load_for_inference

    task = options.resolved_task()
    inputs = discover_inputs(options.input)
    if task == "count" and any(item.kind == "video" for item in inputs):
        raise OptionsError(
            describe(
                "the count task gives no boxes, so a video cannot be pseudo-labelled with it",
                field="task",
                found="count",
                fix="ask --task detect, ground or segment for videos",
            )
        )
    out = Path(options.out)
    ensure_writable(out, options.overwrite)
    # The record first (a small JSON): a wrong --label stops the run before the model loads.
    task, label = _check_task(options, _record_of(options.model, options.checkpoint))
    loaded = load_for_inference(options.model, checkpoint=options.checkpoint, device=options.device)
    run = _Run(loaded, options, task, label, _label_index(loaded.record.labels))

    images = [item.path for item in inputs if item.kind == "image"]
    videos = [item.path for item in inputs if item.kind == "video"]
    result = PredictResult(out_dir=out, predictions_path=out / PREDICTIONS_NAME)
    with (
        atomic_output_dir(out, overwrite=options.overwrite) as tmp,
        (tmp / PREDICTIONS_NAME).open("w", encoding="utf-8") as lines,
    ):
        taken: set[str] = set()
        for batch in _chunks(images, options.batch_size):
            pictures = [_open_rgb(path) for path in batch]
            for path, image, (answer, objects) in zip(
                batch, pictures, run.answer(pictures), strict=True
            ):
                name = _unique_name(path.stem, taken)
                overlay = Path(OVERLAYS_DIR) / f"{name}.png"
                _draw(image, objects, loaded.record.labels, tmp / overlay)
                prediction = run.prediction(str(path), answer, objects, overlay=out / overlay)
                lines.write(json.dumps(prediction.to_dict()) + "\n")
                result.images.append(prediction)
        exports: set[str] = {OVERLAYS_DIR, PREDICTIONS_NAME}
        for video in videos:
            name = _unique_name(video.stem, exports)
            result.videos.append(_predict_video(run, video, tmp, out, name, lines))
    result.parse_failures = run.parse_failures
    result.unknown_labels = dict(run.unknown)
    return result


def _draw(image: Any, objects: Sequence[AnswerObject], labels: Sequence[str], path: Path) -> None:
    from sam2_finetune.evaluate.pictures import draw_objects

    path.parent.mkdir(parents=True, exist_ok=True)
    draw_objects(image, objects, labels=labels).save(path, format="PNG")


def _predict_video(
    run: _Run, video: Path, tmp: Path, out: Path, name: str, lines: io.TextIOBase
) -> VideoPrediction:
    from PIL import Image

    from sam2_finetune.ingest.video import video_frame_refs

    facts = video_facts(video)
    indices = frame_indices_at(facts.total_frames, facts.fps, run.options.fps)
    refs = video_frame_refs(video, indices)
    folder = tmp / name
    frames_dir = folder / FRAMES_DIR
    frames_dir.mkdir(parents=True)
    tracker = IouTracker(run.options.iou_threshold, run.options.max_gap)
    frames: list[tuple[int, list[ExportObject]]] = []
    objects_total, failures_before = 0, run.parse_failures
    for batch in _chunks(indices, run.options.batch_size):
        pictures = []
        for index in batch:
            png = refs[index].read_bytes()
            (frames_dir / f"frame_{index:06d}.png").write_bytes(png)
            with Image.open(io.BytesIO(png)) as image:
                pictures.append(image.convert("RGB"))
        for index, image, (answer, objects) in zip(
            batch, pictures, run.answer(pictures), strict=True
        ):
            height, width = image.size[1], image.size[0]
            ids = tracker.update(objects)
            frames.append(
                (
                    index,
                    [
                        ExportObject(track_id, obj.label, object_mask(obj, height, width))
                        for track_id, obj in zip(ids, objects, strict=True)
                    ],
                )
            )
            objects_total += len(objects)
            prediction = run.prediction(
                f"{video}#frame={index}", answer, objects, frame_index=index, track_ids=ids
            )
            lines.write(json.dumps(prediction.to_dict()) + "\n")
    write_annotations(
        folder,
        ExportVideo(
            filename=video.name,
            width=facts.width,
            height=facts.height,
            source_fps=facts.fps,
            total_frames=facts.total_frames,
            target_fps=min(run.options.fps, facts.fps),
        ),
        frames,
        exporter=EXPORTER,
    )
    return VideoPrediction(
        source=video,
        export_dir=out / name,
        frames_dir=out / name / FRAMES_DIR,
        frames=len(indices),
        objects=objects_total,
        tracks=len({obj.track_id for _, objs in frames for obj in objs}),
        parse_failures=run.parse_failures - failures_before,
    )


def predict_command(options: PredictOptions) -> int:
    """``sam2-finetune predict``: :func:`predict`, then one JSON line per image (and per video:
    its export folder) on stdout; parse failures and unknown labels on stderr."""
    import sys

    result = predict(options)
    for image in result.images:
        print(json.dumps(image.to_dict()))
    for video in result.videos:
        print(json.dumps(video.to_dict()))
    if result.parse_failures:
        print(
            f"note: {result.parse_failures} answer(s) could not be read (parse_ok false in "
            f"{result.predictions_path})",
            file=sys.stderr,
        )
    if result.unknown_labels:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(result.unknown_labels.items()))
        print(f"note: labels outside the model's training labels: {listed}", file=sys.stderr)
    print(f"wrote {result.out_dir}", file=sys.stderr)
    return 0
