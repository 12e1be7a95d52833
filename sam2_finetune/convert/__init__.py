"""Convert: SAM2 exports -> the canonical Hugging Face dataset, or LLaVA / ShareGPT / COCO files.

>>> from sam2_finetune.convert import ConvertOptions, convert
>>> result = convert(ConvertOptions(exports=["sample_data/street_scene.zip"], to="hf",
...                                 out="data/hf"))          # doctest: +SKIP
>>> result.rows, result.labels                                # doctest: +SKIP

Every format is written from the same canonical rows (:mod:`sam2_finetune.convert.rows`), one
frame at a time, into a temporary folder that replaces ``out`` in one rename at the end: an
interrupted conversion leaves nothing at ``out``. ``hf`` is format-free (boxes and masks only);
``llava`` and ``sharegpt`` render prompts and answers with ``--tasks`` and ``--answer-format``;
``coco`` is for detection tools and COCOeval. No torch import happens here.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from sam2_finetune.answer_formats import ANSWER_FORMATS
from sam2_finetune.convert.rows import (
    LabelMap,
    RowStats,
    export_labels,
    iter_rows,
    load_label_map,
    mapped_labels,
)
from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.ingest import (
    FRAMES_HELP,
    Export,
    LimitsOption,
    distinct_video_ids,
    expand_exports,
    frame_sources,
    iter_exports,
    read_exports,
)
from sam2_finetune.outputs import atomic_output_dir, ensure_writable
from sam2_finetune.tasks import ExampleOptions

Format = Literal["hf", "llava", "sharegpt", "coco"]


class ConvertOptions(ExampleOptions):
    """Convert SAM2 exports into the canonical Hugging Face dataset (--to hf, the input of
    validate/split/train), LLaVA or LLaMA-Factory ShareGPT conversations, or COCO instances.

    The example-building options (--tasks, --min-pixels, --max-pixels, --negative-rate,
    --max-polygon-points, --examples-per-frame) shape llava/sharegpt; they are declared once
    (tasks.ExampleOptions) and are the same options as the training config's data section."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    exports: list[Path] = Field(
        min_length=1,
        description="SAM2 export ZIPs or extracted folders (one per video), or folders "
        "holding them.",
        json_schema_extra={"positional": True},
    )
    to: Format = Field("hf", description="Output format.")
    out: Path = Field(description="Output folder (must be new or empty unless --overwrite).")
    frames: list[str | Path] | None = Field(None, description=FRAMES_HELP)
    label_map: Path | None = Field(
        None,
        description="YAML or JSON file {label as typed: new label} to rename or merge labels "
        "(null drops a label's objects).",
    )
    normalize_labels: bool = Field(
        False, description="Fold label case and whitespace ('Car ', 'car' -> 'car')."
    )
    keep_empty: bool = Field(
        False, description="Keep frames with an image but no object, as negatives."
    )
    answer_format: str = Field(
        "json",
        description="How answers write boxes and polygons (llava/sharegpt): "
        + ", ".join(ANSWER_FORMATS)
        + ".",
    )
    seed: int = Field(
        0, description="Seed of the task, label and phrasing choice (llava/sharegpt)."
    )
    dataset_name: str = Field(
        "sam2_finetune",
        min_length=1,
        description="Dataset name in LLaMA-Factory's dataset_info.json (sharegpt).",
    )
    drop_broken: bool = Field(
        False,
        description="Leave out objects whose mask cannot be read (counted in a warning) instead "
        "of stopping at the first one.",
    )
    overwrite: bool = Field(False, description="Replace a non-empty output folder.")
    limits: LimitsOption
    json_output: bool = Field(
        False,
        alias="json",
        description="Print the result as JSON (outputs, counts, labels, warnings) instead of text.",
    )


@dataclass(frozen=True)
class ConvertResult:
    """What ``convert`` wrote. ``paths`` names the main files (``dataset``, ``llava_json``, ...)."""

    out: Path
    to: Format
    rows: int
    objects: int
    labels: list[str]
    videos: list[str]
    paths: dict[str, Path]
    overlay_rows: int
    empty_rows: int
    skipped_no_image: int
    skipped_no_objects: int
    objects_dropped_by_label_map: int
    seconds: float
    polygon_fidelity: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    objects_dropped_broken: int = 0  # objects with an unreadable mask, left out (--drop-broken)

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready values (paths as strings): what ``convert --json`` prints."""
        value = asdict(self)
        value["out"] = str(self.out)
        value["paths"] = {name: str(path) for name, path in self.paths.items()}
        value["seconds"] = round(self.seconds, 3)
        return value


def _check_chat_options(options: ConvertOptions) -> None:
    """Fail before reading anything on a bad answer format, task mix or pixel bounds (all
    problems of the mix at once)."""
    options.task_weights(options.answer_format)  # checks the answer format too
    problem = options.pixel_problem()
    if problem:
        raise OptionsError(
            describe(
                problem,
                field="min_pixels",
                found=options.min_pixels,
                fix="lower --min-pixels or raise --max-pixels",
            )
        )


def _check_inputs_outside_out(options: ConvertOptions, inputs: list[str | Path]) -> None:
    """Refuse an ``out`` that is, or holds, an input: replacing it would delete that input."""
    out = options.out.resolve()
    inside = [
        str(p)
        for p in [*inputs, options.label_map]
        if p is not None and (out == Path(p).resolve() or out in Path(p).resolve().parents)
    ]
    if inside:
        raise OptionsError(
            describe(
                "the output folder is or holds an input, which the conversion would delete "
                "when it puts its result in place",
                field="out",
                found=f"{options.out} holds {', '.join(inside)}",
                fix="choose an output folder outside the exports, --frames and --label-map",
            )
        )


def convert(options: ConvertOptions) -> ConvertResult:
    """Run the convert stage: read ``options.exports`` and write ``options.out`` as ``options.to``.

    Raises:
        OutputExistsError: ``out`` is not empty and ``overwrite`` is false (checked first).
        ExportError: an export or raw-frames source cannot be read.
        OptionsError: a bad label map, ``--frames`` value, task or answer format.
        DatasetError: no frame qualifies as a row.
    """
    started = time.perf_counter()
    ensure_writable(options.out, options.overwrite)
    # Checked for every output: a typo in --tasks must not pass silently because --to is hf.
    _check_chat_options(options)
    paths = expand_exports(options.exports)
    sources = frame_sources(paths, options.frames)
    _check_inputs_outside_out(options, [*paths, *(s for s in sources or () if s)])
    label_map = load_label_map(options.label_map, options.normalize_labels)
    read = partial(
        iter_exports, paths, frames=sources, limits=options.limits, strict=not options.drop_broken
    )
    # A first pass keeps only what the label table (ClassLabel names, category ids) and the
    # video ids need; the rows are then written export by export, each released once its rows
    # are written: peak memory is one export's whatever their number.
    if len(paths) == 1:  # one export is read once, and kept from the first pass to its rows
        (export,) = read_exports(
            paths, frames=sources, limits=options.limits, strict=not options.drop_broken
        )
        try:
            typed, videos, overlay = _first_pass([export])
            return _convert(options, iter([export]), videos, overlay, typed, label_map, started)
        finally:
            export.release()
    typed, videos, overlay = _first_pass(read())
    with closing(read(video_ids=videos)) as exports:
        return _convert(options, exports, videos, overlay, typed, label_map, started)


def _first_pass(exports: Iterable[Export]) -> tuple[set[str], list[str], list[bool]]:
    """(labels as typed, distinct video ids, whether each export's images are overlays)."""
    typed: set[str] = set()
    derived: list[str] = []
    overlay: list[bool] = []
    for export in exports:
        typed |= export_labels(export)
        derived.append(export.video.video_id)
        overlay.append(export.image_kind == "overlay")
    return typed, distinct_video_ids(derived), overlay


def _convert(
    options: ConvertOptions,
    exports: Iterator[Export],
    videos: list[str],
    overlay: list[bool],
    typed: set[str],
    label_map: LabelMap,
    started: float,
) -> ConvertResult:
    labels = mapped_labels(typed, label_map)
    if options.to in ("llava", "sharegpt"):
        from sam2_finetune.answer_formats import check_labels
        from sam2_finetune.convert.chat import IMAGE_TOKEN

        check_labels(labels, options.answer_format)
        # Checked here, before anything is written, whatever examples the seed would draw.
        with_token = [label for label in labels if IMAGE_TOKEN in label]
        if with_token:
            raise OptionsError(
                describe(
                    f"labels holding {IMAGE_TOKEN}, which would put a second image token in "
                    "the conversation",
                    field="label",
                    found=", ".join(map(repr, with_token)),
                    fix="rename those labels with --label-map",
                )
            )
    stats = RowStats()
    rows = iter_rows(exports, labels, label_map, keep_empty=options.keep_empty, stats=stats)

    polygon_fidelity = None
    with atomic_output_dir(options.out, overwrite=options.overwrite) as tmp:
        if options.to == "hf":
            from sam2_finetune.convert.hf import rows_to_hf

            rows_to_hf(rows, labels, tmp)
            paths = {"dataset": options.out}
        elif options.to == "coco":
            from sam2_finetune.convert.coco import rows_to_coco

            written = rows_to_coco(rows, labels, tmp)
            paths = {"coco": options.out / written.name, "images": options.out / "images"}
        else:
            from sam2_finetune.convert.chat import rows_to_chat

            written_paths, polygon_fidelity = rows_to_chat(rows, labels, tmp, options)
            paths = {name: options.out / p.relative_to(tmp) for name, p in written_paths.items()}
        if stats.rows == 0:
            raise DatasetError(
                describe(
                    f"no frame qualifies as a row ({stats.frames_listed} frames listed: "
                    f"{stats.skipped_no_image} without an image, {stats.skipped_no_objects} "
                    "without a non-empty object)",
                    file=", ".join(map(str, options.exports)),
                    fix="check the exports with `sam2-finetune info`; pass --frames for raw "
                    "frames, or --keep-empty to keep frames without objects",
                )
            )
    warnings = []
    chat_only = {"answer_format", *ExampleOptions.model_fields}
    ignored = chat_only & options.model_fields_set if options.to in ("hf", "coco") else set()
    if ignored:
        fields = ConvertOptions.model_fields
        flags = sorted(f"--{(fields[o].alias or o).replace('_', '-')}" for o in ignored)
        named = ", ".join(flags[:-1]) + " and " + flags[-1] if len(flags) > 1 else flags[0]
        was, shape = ("were", "they only shape") if len(flags) > 1 else ("was", "it only shapes")
        warnings.append(
            f"{named} {was} ignored: {shape} the prompts and answers of "
            f"--to llava and --to sharegpt, and --to {options.to} writes none (the canonical "
            "dataset stays format-free; the training collator applies them)"
        )
    overlay_videos = [video for video, drawn in zip(videos, overlay, strict=True) if drawn]
    if overlay_videos and stats.overlay_rows:
        warnings.append(
            f"{stats.overlay_rows} of {stats.rows} rows use OVERLAY images (the annotations are "
            f"drawn in, which leaks the answer into the input) from {', '.join(overlay_videos)}. "
            "Pass the raw frames or the video with --frames to train on clean images."
        )
    if stats.broken_objects:
        warnings.append(
            f"{len(stats.broken_objects)} object(s) with a mask that cannot be read were left out "
            f"(--drop-broken); the first: {stats.broken_objects[0]}"
        )
    unused = label_map.unused_keys(sorted(typed))
    if unused:
        warnings.append(f"label map entries that matched no label: {', '.join(unused)}")
    never = sorted(set(labels) - stats.labels_used)
    if never:
        warnings.append(f"labels with no object in any row (frames without images?): {never}")
    return ConvertResult(
        out=options.out,
        to=options.to,
        rows=stats.rows,
        objects=stats.objects,
        labels=labels,
        videos=videos,
        paths=paths,
        overlay_rows=stats.overlay_rows,
        empty_rows=stats.empty_rows,
        skipped_no_image=stats.skipped_no_image,
        skipped_no_objects=stats.skipped_no_objects,
        objects_dropped_by_label_map=stats.objects_dropped_by_label_map,
        objects_dropped_broken=len(stats.broken_objects),
        seconds=time.perf_counter() - started,
        polygon_fidelity=polygon_fidelity,
        warnings=warnings,
    )


def convert_command(options: ConvertOptions) -> int:
    """``sam2-finetune convert``: run :func:`convert` and print what was written."""
    result = convert(options)
    if options.json_output:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        for warning in result.warnings:  # also in the JSON; stderr keeps them in sight
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    print(
        f"wrote {result.rows} rows ({result.objects} objects, {len(result.labels)} labels, "
        f"{len(result.videos)} video(s)) as {result.to} to {result.out} in {result.seconds:.1f} s"
    )
    print(
        f"  skipped {result.skipped_no_image} frames without an image and "
        f"{result.skipped_no_objects} without objects; kept {result.empty_rows} empty frames"
    )
    print("  labels: " + ", ".join(result.labels))
    for name, path in result.paths.items():
        print(f"  {name}: {path}")
    fidelity = result.polygon_fidelity
    if fidelity and fidelity["objects"]:
        print(
            f"  polygon fidelity ({fidelity['objects']} objects, up to {fidelity['max_points']} "
            f"points): mean IoU {fidelity['mean_iou']:.3f}, min {fidelity['min_iou']:.3f}, "
            f"{fidelity['below_0_9']} below 0.9"
        )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
