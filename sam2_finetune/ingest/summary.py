"""``sam2-finetune info``: a summary of exports, counted from the JSON without rescaling."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.ingest.archive import LimitsOption
from sam2_finetune.ingest.read import (
    FRAMES_HELP,
    MaskProblem,
    expand_exports,
    frame_sources,
    json_int,
    label_of,
    mask_counts,
    mask_value,
    read_exports,
)
from sam2_finetune.ingest.records import Export

# --------------------------------------------------------------------------------------------
# info: a summary without rescaling anything
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    """What ``sam2-finetune info`` prints for one export."""

    source: str
    video_id: str
    file_name: str
    width: int
    height: int
    fps: float | None
    target_fps: float | None
    frames_listed: int
    frames_with_objects: int
    frames_with_images: int
    images_are_overlays: bool
    tracks: dict[str, list[str]]  # track id -> labels seen, in order of appearance
    labels: dict[str, int]  # label -> object count (non-empty masks)
    mask_forms: dict[str, int]
    mask_sizes: dict[str, int]  # "256x256" -> count
    objects: int
    empty_masks: int
    broken_masks: int
    has_metadata: bool
    # track id -> its non-empty masks, and its empty (lost/occluded) ones where it has any
    track_objects: dict[str, int] = field(default_factory=dict)
    track_empty_masks: dict[str, int] = field(default_factory=dict)


def summarize_export(export: Export) -> ExportSummary:
    """Count what an export holds, from the JSON as written (no mask is rescaled)."""
    labels: Counter[str] = Counter()
    forms: Counter[str] = Counter()
    sizes: Counter[tuple[int, int]] = Counter()
    tracks: dict[str, list[str]] = {}
    track_objects: Counter[str] = Counter()
    track_empty: Counter[str] = Counter()
    objects = empty = broken = with_objects = 0
    video = export.video
    for raw in export.raw_frames:
        objs = raw.get("objects") or ()
        if objs:
            with_objects += 1
        for obj in objs:
            objects += 1
            if not isinstance(obj, dict) or json_int(obj.get("object_id")) is None:
                broken += 1
                continue
            track = str(obj["object_id"])
            label = label_of(obj, track)
            seen = tracks.setdefault(track, [])
            if label not in seen:
                seen.append(label)
            try:
                counts, size, form = mask_counts(mask_value(obj), video)
            except MaskProblem:
                broken += 1
                continue
            forms[form] += 1
            sizes[size] += 1
            # counts[1] > 0 answers for nearly every mask without a pass over the runs.
            if counts.size < 2 or (counts[1] == 0 and not counts[1::2].any()):
                empty += 1
                track_empty[track] += 1
            else:
                labels[label] += 1
                track_objects[track] += 1
    with_images = sum(
        1 for i in {r["frame_index"] for r in export.raw_frames} if i in export.images
    )
    return ExportSummary(
        source=str(export.source),
        video_id=video.video_id,
        file_name=video.file_name,
        width=video.width,
        height=video.height,
        fps=video.fps,
        target_fps=video.target_fps,
        frames_listed=len(export.raw_frames),
        frames_with_objects=with_objects,
        frames_with_images=with_images,
        images_are_overlays=export.image_kind == "overlay",
        tracks=tracks,
        labels=dict(labels.most_common()),
        mask_forms=dict(forms),
        mask_sizes={f"{h}x{w}": n for (h, w), n in sizes.items()},
        objects=objects,
        empty_masks=empty,
        broken_masks=broken,
        has_metadata=export.has_metadata,
        track_objects={track: track_objects[track] for track in tracks},
        track_empty_masks=dict(track_empty),
    )


def format_summary(summary: ExportSummary) -> str:
    """Human-readable text for one export."""
    fps = f"{summary.fps:g} fps" if summary.fps else "fps unknown"
    lines = [
        f"{summary.source}  (video id {summary.video_id})",
        f"  video        {summary.file_name}: {summary.width} x {summary.height}, {fps}"
        + (f", sampled at {summary.target_fps:g} fps" if summary.target_fps else ""),
        f"  frames       {summary.frames_listed} listed, {summary.frames_with_objects} with "
        f"objects, {summary.frames_with_images} with images",
        "  images       "
        + (
            "OVERLAYS (annotations drawn in; pass raw frames with --frames for training)"
            if summary.images_are_overlays
            else "raw frames"
        ),
        f"  objects      {summary.objects} ({summary.empty_masks} empty masks: lost/occluded"
        + (f", {summary.broken_masks} BROKEN" if summary.broken_masks else "")
        + ")",
        "  masks        "
        + (", ".join(f"{form} x{n}" for form, n in summary.mask_forms.items()) or "none")
        + "; sizes "
        + (", ".join(f"{size} x{n}" for size, n in summary.mask_sizes.items()) or "none"),
        f"  tracks       {len(summary.tracks)}: "
        + ", ".join(
            f"#{track} {'/'.join(labels)}"
            + (" (RENAMED)" if len(labels) > 1 else "")
            + f" x{summary.track_objects.get(track, 0)}"
            + (f" (+{n} empty)" if (n := summary.track_empty_masks.get(track)) else "")
            for track, labels in summary.tracks.items()
        ),
        "  labels       "
        + (", ".join(f"{label} x{n}" for label, n in summary.labels.items()) or "none"),
    ]
    if summary.broken_masks:
        lines.append(
            "  note         some objects cannot be read; `sam2-finetune validate` lists them"
        )
    if not summary.images_are_overlays and summary.frames_with_images < summary.frames_listed:
        missing = summary.frames_listed - summary.frames_with_images
        lines.append(
            f"  note         the raw frames lack {missing} listed frame(s); "
            "convert and validate name them"
        )
    if not summary.has_metadata:
        lines.append("  note         metadata.json is missing (fps taken from annotations.json)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class InfoOptions(BaseModel):
    """Print a summary of SAM2 exports: video, frames, images, tracks, labels, masks."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    exports: list[Path] = Field(
        description="SAM2 export ZIPs or extracted folders, or folders holding them.",
        json_schema_extra={"positional": True},
    )
    frames: list[str | Path] | None = Field(None, description=FRAMES_HELP)
    json_output: bool = Field(False, alias="json", description="Print JSON instead of text.")
    limits: LimitsOption


def info(options: InfoOptions) -> list[ExportSummary]:
    """Summaries of the given exports (the ``info`` stage). Masks are parsed, never rescaled.

    >>> summary, = info(InfoOptions(exports=["sample_data/street_scene.zip"]))  # doctest: +SKIP
    >>> summary.frames_listed  # doctest: +SKIP
    40
    """
    paths = expand_exports(options.exports)
    exports = read_exports(
        paths,
        frames=frame_sources(paths, options.frames),
        limits=options.limits,
        strict=False,
    )
    try:
        return [summarize_export(e) for e in exports]
    finally:
        for e in exports:
            e.close()


def info_command(options: InfoOptions) -> int:
    """``sam2-finetune info``: print :func:`info`'s summaries as text or JSON."""
    summaries = info(options)
    if options.json_output:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
    else:
        print("\n\n".join(format_summary(s) for s in summaries))
    return 0
