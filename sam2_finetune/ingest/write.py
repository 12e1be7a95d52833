"""Writing a SAM2 export: the schema :func:`sam2_finetune.ingest.read_export` reads, for data made
here (pseudo-labels from ``sam2-finetune predict``) rather than by the SAM2 demo.

What it writes, in an export folder (``docs/predict.md`` shows one):

- ``annotations.json``: the ``video`` block, ``export_config`` (``frame_indices``, ``target_fps``)
  and one entry per listed frame, also the frames without objects (``objects: []``), as the demo
  does. Each object is ``{"object_id", "label", "mask_rle", "bbox", "area", "confidence"}``
  where ``mask_rle`` is a COCO compressed RLE **at video size** (``{"size": [h, w], "counts":
  str}``, one of the mask forms ingest accepts; the demo's 256 x 256 count string would throw
  away resolution), and ``bbox`` / ``area`` are computed from that mask in video pixels, so box,
  area and mask always agree. ``confidence`` is ``null``: a generated answer carries no score
  (the demo writes a constant 0.95, which says nothing either).
- ``metadata.json``: the demo's summary block (``export_info``, ``video`` with ``fps``,
  ``export_config``, ``statistics``), ``exporter`` naming who wrote it.

The frame images are the caller's business (predict writes the raw frames to ``frames/``).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2_finetune.masks import Rle, rle_area, rle_bbox
from sam2_finetune.outputs import atomic_write_text

__all__ = ["ExportObject", "ExportVideo", "object_entry", "write_annotations"]


@dataclass(frozen=True)
class ExportObject:
    """One object of one frame: its track id, label, and mask at video size."""

    track_id: int
    label: str
    rle: Rle


@dataclass(frozen=True)
class ExportVideo:
    """The ``video`` block: the source video's name, size, frame rate and length, and the rate
    frames were sampled at (``target_fps``)."""

    filename: str
    width: int
    height: int
    source_fps: float
    total_frames: int
    target_fps: float


def object_entry(obj: ExportObject) -> dict[str, Any]:
    """``obj`` as an entry of a frame's ``objects`` list (box and area from its mask)."""
    area = int(rle_area([obj.rle])[0])
    bbox = [round(v) for v in rle_bbox(obj.rle)] if area else [0, 0, 0, 0]
    return {
        "object_id": int(obj.track_id),
        "label": obj.label,
        "mask_rle": {"size": [int(v) for v in obj.rle["size"]], "counts": obj.rle["counts"]},
        "bbox": bbox,
        "area": area,
        "confidence": None,
    }


def write_annotations(
    folder: str | Path,
    video: ExportVideo,
    frames: Sequence[tuple[int, Sequence[ExportObject]]],
    *,
    exporter: str,
) -> Path:
    """Write ``annotations.json`` and ``metadata.json`` of an export into ``folder`` (created),
    one entry per ``(frame_index, objects)`` of ``frames``, sorted by frame index. Returns
    the ``annotations.json`` path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    ordered = sorted(frames, key=lambda item: item[0])
    indices = [int(index) for index, _ in ordered]
    entries = [
        {
            "frame_index": int(index),
            "timestamp_sec": index / video.source_fps if video.source_fps else 0.0,
            "objects": [object_entry(obj) for obj in objects],
        }
        for index, objects in ordered
    ]
    video_block = {
        "filename": video.filename,
        "width": int(video.width),
        "height": int(video.height),
        "source_fps": float(video.source_fps),
        "total_frames": int(video.total_frames),
        "duration_sec": video.total_frames / video.source_fps if video.source_fps else 0.0,
    }
    annotations = {
        "video": video_block,
        "export_config": {
            "target_fps": float(video.target_fps),
            "total_exported_frames": len(indices),
            "frame_indices": indices,
            "export_timestamp": now,
            "exporter_version": exporter,
        },
        "annotations": entries,
    }
    objects = sum(len(entry["objects"]) for entry in entries)
    tracks = {obj["object_id"] for entry in entries for obj in entry["objects"]}
    metadata = {
        "export_info": {"created_at": now, "format_version": "1.0", "exporter": exporter},
        "video": {
            **{k: v for k, v in video_block.items() if k != "source_fps"},
            "fps": float(video.source_fps),
        },
        "export_config": {"target_fps": float(video.target_fps), "frame_indices": indices},
        "statistics": {
            "total_frames": len(indices),
            "total_objects": objects,
            "unique_objects": len(tracks),
            "objects_per_frame": round(objects / max(len(indices), 1), 2),
        },
    }
    path = folder / "annotations.json"
    atomic_write_text(path, json.dumps(annotations, indent=2) + "\n", overwrite=True)
    atomic_write_text(folder / "metadata.json", json.dumps(metadata, indent=2) + "\n", True)
    return path
