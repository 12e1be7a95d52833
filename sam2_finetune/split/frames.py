"""Reading what a split needs, without decoding images or holding them: the frame table, image
hashes, rows per video, the gap per video (fps inferred from frame indices and timestamps), and
the checks on the input."""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sam2_finetune.dataset import category_names, image_id
from sam2_finetune.errors import DatasetError, describe

if TYPE_CHECKING:
    import datasets


# The SAM2 export tool writes source_fps = 30 whatever the real rate; used when timestamps
# cannot give a rate (one frame, or all timestamps 0).
ASSUMED_FPS = 30.0


@dataclass
class Rows:
    """The columns a split needs, one entry per row, plus a hash of each image's bytes."""

    image_ids: list[str]
    video_ids: list[str]
    frame_index: np.ndarray
    timestamp: np.ndarray
    categories: list[tuple[int, ...]]  # class id of every visible object (area > 0)
    hashes: list[bytes | None]
    names: list[str]

    def __len__(self) -> int:
        return len(self.image_ids)

    def presence(self) -> list[frozenset[int]]:
        return [frozenset(c) for c in self.categories]


def read_rows(dataset: datasets.Dataset, names: list[str], with_objects: bool = True) -> Rows:
    """The columns a split needs. Without ``with_objects`` (the leakage checker, which may get a
    split made elsewhere) only ``video_id`` and ``frame_index`` are required: ``image_id``,
    ``timestamp_sec``, ``image`` and ``objects`` are read when present."""
    import pyarrow.compute as pc

    image_ids: list[str] = []
    video_ids: list[str] = []
    frames: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    categories: list[tuple[int, ...]] = []
    required = ["video_id", "frame_index"] + (["image_id", "objects"] if with_objects else [])
    optional = ["timestamp_sec"] + ([] if with_objects else ["image_id"])
    columns = required + [c for c in optional if c in dataset.column_names]
    table = dataset.select_columns(columns).with_format("arrow")
    for batch in table.iter(batch_size=4096):
        n = batch.num_rows
        batch_videos = batch.column("video_id").to_pylist()
        batch_frames = batch.column("frame_index").to_numpy().astype(np.int64)
        video_ids += batch_videos
        frames.append(batch_frames)
        image_ids += (
            batch.column("image_id").to_pylist()
            if "image_id" in columns
            else [image_id(str(v), int(f)) for v, f in zip(batch_videos, batch_frames, strict=True)]
        )
        stamps.append(
            batch.column("timestamp_sec").to_numpy().astype(np.float64)
            if "timestamp_sec" in columns
            else np.zeros(n)
        )
        if not with_objects:
            categories += [()] * n  # leakage needs no classes
            continue
        objects = batch.column("objects").combine_chunks()
        flat = pc.list_flatten(objects)
        parents = pc.list_parent_indices(objects).to_numpy()
        if len(flat):
            cats = flat.field("category").to_numpy(zero_copy_only=False)
            area = flat.field("area").to_numpy(zero_copy_only=False)
            # Lost / occluded objects keep an empty mask: they are not visible in the frame.
            keep = (area > 0) & (cats >= 0)
            per_row = np.bincount(parents[keep], minlength=n)
            chunks = np.split(cats[keep].astype(int), np.cumsum(per_row)[:-1])
            categories += [tuple(c.tolist()) for c in chunks]
        else:
            categories += [()] * n
    return Rows(
        image_ids=image_ids,
        video_ids=video_ids,
        frame_index=np.concatenate(frames) if frames else np.zeros(0, np.int64),
        timestamp=np.concatenate(stamps) if stamps else np.zeros(0),
        categories=categories,
        hashes=_image_hashes(dataset),
        names=names,
    )


def _image_hashes(dataset: datasets.Dataset) -> list[bytes | None]:
    """A digest of every row's encoded image, reading a small batch at a time. Images are
    ``{bytes, path}`` structs (``datasets.Image``) or plain path strings; no image, no digest."""
    if "image" not in dataset.column_names:
        return [None] * len(dataset)
    hashes: list[bytes | None] = []
    table = dataset.select_columns(["image"]).with_format("arrow")
    for batch in table.iter(batch_size=64):
        column = batch.column("image").combine_chunks()
        for item in column.to_pylist():
            if isinstance(item, str):
                item = {"bytes": None, "path": item}
            data = item.get("bytes") if isinstance(item, dict) else None
            path = item.get("path") if isinstance(item, dict) else None
            if data is None and path and Path(path).is_file():
                data = Path(path).read_bytes()
            hashes.append(hashlib.blake2b(data, digest_size=16).digest() if data else None)
    return hashes


def rows_by_video(rows: Rows, members: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Row indices per video, sorted by (frame_index, image_id); videos in sorted order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in range(len(rows)) if members is None else members:
        groups[rows.video_ids[i]].append(i)
    return {
        video: np.array(
            sorted(idx, key=lambda i: (int(rows.frame_index[i]), rows.image_ids[i])), dtype=int
        )
        for video, idx in sorted(groups.items())
    }


def video_gaps(
    rows: Rows, gap_seconds: float, gap_frames: int | None, fps: float | None
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """The gap in source frame indices per video, and how each was obtained (for the manifest).

    Frame indices are exact; timestamps are frame_index / the fps the export claims. The rate is
    the median of d(frame_index) / d(timestamp) over consecutive frames, so one odd timestamp does
    not move it.
    """
    gaps: dict[str, int] = {}
    info: dict[str, dict[str, Any]] = {}
    for video, idx in rows_by_video(rows).items():
        if gap_frames is not None:
            gaps[video] = gap_frames
            info[video] = {"fps": None, "fps_from": "gap_frames option", "frames": gap_frames}
            continue
        if fps is not None:
            rate, source = fps, "fps option"
        else:
            df = np.diff(rows.frame_index[idx]).astype(float)
            dt = np.diff(rows.timestamp[idx])
            ok = (df > 0) & (dt > 0)
            if ok.any():
                rate, source = float(np.median(df[ok] / dt[ok])), "timestamps"
            else:
                rate, source = ASSUMED_FPS, "assumed (timestamps give no rate)"
        frames = math.ceil(gap_seconds * rate - 1e-9)
        gaps[video] = frames
        info[video] = {"fps": round(rate, 6), "fps_from": source, "frames": frames}
    return gaps, info


def concat_rows(parts: list[Rows], names: list[str]) -> Rows:
    return Rows(
        image_ids=[i for p in parts for i in p.image_ids],
        video_ids=[v for p in parts for v in p.video_ids],
        frame_index=np.concatenate([p.frame_index for p in parts]),
        timestamp=np.concatenate([p.timestamp for p in parts]),
        categories=[c for p in parts for c in p.categories],
        hashes=[h for p in parts for h in p.hashes],
        names=names,
    )


def check_poolable(parts: datasets.DatasetDict, path: Path) -> None:
    """The splits of a DatasetDict can be pooled only with the same columns and labels."""
    (first, reference), *others = parts.items()
    for name, part in others:
        if part.features == reference.features:
            continue
        if set(part.column_names) != set(reference.column_names):
            found = f"columns {sorted(part.column_names)}"
            expected = f"columns {sorted(reference.column_names)} as in {first!r}"
        elif category_names(part) != category_names(reference):
            found = f"labels {category_names(part)}"
            expected = f"labels {category_names(reference)} as in {first!r}"
        else:
            found = f"features {part.features}"
            expected = f"the features of {first!r}"
        raise DatasetError(
            describe(
                f"split {name!r} cannot be pooled with the others to split again",
                file=path,
                expected=expected,
                found=found,
                fix="convert all the exports together (`sam2-finetune convert A.zip B.zip --to "
                "hf`) and split that",
            )
        )


def check_rows(rows: Rows, path: Path) -> None:
    if not len(rows):
        raise DatasetError(
            describe(
                "the dataset has no frames",
                file=path,
                fix="convert exports that have annotated frames",
            )
        )
    seen: Counter[str] = Counter(rows.image_ids)
    repeated = sorted(i for i, n in seen.items() if n > 1)
    if repeated:
        raise DatasetError(
            describe(
                "image ids repeat, so a frame could land in two splits",
                file=path,
                field="image_id",
                expected="unique ids",
                found=f"{len(repeated)} repeated, e.g. {repeated[:3]}",
                fix="convert each export once (video ids are unique per export)",
            )
        )
