"""The one view every validation rule reads: videos, each a stream of frame records.

SAM2 exports and converted (canonical) datasets are both turned into the same records, so each
rule is written once. Frames of a video arrive in ``frame_index`` order, one at a time; masks
stay compressed RLEs (areas and boxes come from pycocotools' RLE operations, never from a decoded
bitmap), and images are read only to hash them and to read their size from the header.

>>> for video, frames in iter_videos([Path("sample_data/kitchen.zip")]):  # doctest: +SKIP
...     for frame in frames:
...         print(video.video_id, frame.frame_index, len(frame.objects))
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2_finetune.dataset import DATASET_MARKERS
from sam2_finetune.errors import DatasetError, ExportError, OptionsError, describe
from sam2_finetune.ingest import (
    DEFAULT_LIMITS,
    ArchiveLimits,
    Export,
    ImageRef,
    expand_exports,
    frame_sources,
    read_export,
)
from sam2_finetune.masks import Rle, decode_compressed_counts, rle_area, rle_bbox

Box = tuple[float, float, float, float]  # [x, y, w, h] in image pixels

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Files the other `convert --to` formats write: validate reads only the canonical (hf) dataset.
_OTHER_FORMATS = {"llava.json": "llava", "sharegpt.json": "sharegpt", "instances.json": "coco"}


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """One object of one frame, as the rules see it.

    ``bbox`` is the box the source states, in image pixels (None when the source has none or it
    is not four numbers; ``raw_bbox`` keeps it as written, in the source's own units, for
    messages). ``mask_bbox`` is the mask's own box (None for an empty or unreadable mask).
    ``mask_size`` is the ``(h, w)`` the mask had in the source (SAM2 writes 256 x 256); ``rle``
    is the canonical mask at image size. ``error`` says why the mask could not be read.
    """

    track_id: int
    label: str
    bbox: Box | None
    raw_bbox: Any
    mask_bbox: Box | None
    area: int
    rle: Rle | None
    mask_size: tuple[int, int] | None
    mask_form: str | None
    error: str | None = None

    @property
    def is_broken(self) -> bool:
        return self.error is not None

    @property
    def is_empty(self) -> bool:
        """A readable mask with no pixel: SAM2 lost the object, or it is occluded."""
        return self.error is None and self.area == 0

    @property
    def is_visible(self) -> bool:
        return self.error is None and self.area > 0


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One listed frame. ``image_hash`` is a blake2b digest of the image file's bytes as stored;
    ``image_size`` is ``(w, h)`` read from its header (None with ``image_error`` when the header
    cannot be read)."""

    frame_index: int
    timestamp_sec: float | None
    width: int
    height: int
    image_location: str | None
    image_hash: bytes | None
    image_size: tuple[int, int] | None
    image_error: str | None
    image_is_overlay: bool
    objects: tuple[ObjectRecord, ...]


@dataclass(frozen=True, slots=True)
class VideoRecord:
    """One video of one input. ``written_order`` lists its frame indices in the order the source
    stores them (the frames themselves arrive sorted). ``fps`` and ``target_fps`` are None where
    the source does not say (converted datasets keep only timestamps). ``split`` names the split
    of a ``DatasetDict`` (``split`` output): one video cut into several splits is one record per
    split, all with the same ``video_id``."""

    source: str
    video_id: str
    width: int
    height: int
    fps: float | None
    target_fps: float | None
    written_order: Sequence[int]
    kind: str  # "export" or "dataset"
    split: str | None = None


def is_dataset(path: Path) -> bool:
    """True for a folder written by ``datasets``' ``save_to_disk`` (a converted dataset)."""
    return path.is_dir() and any((path / name).is_file() for name in DATASET_MARKERS)


def iter_videos(
    inputs: Sequence[Path],
    frames: Sequence[str | Path] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Iterator[tuple[VideoRecord, Iterator[FrameRecord]]]:
    """Every video of every input with its frames, one video at a time.

    Consume a video's frames before asking for the next video. ``frames`` gives raw frames (a
    folder or a video) replacing overlay images, one per input in order or ``INPUT=PATH`` pairs
    for some (as ``convert --frames``); only exports can take them. A folder of exports stands
    for the exports it holds (:func:`~sam2_finetune.ingest.expand_exports`); ``limits`` bound
    the archives read.

    Raises:
        ExportError, DatasetError: an input cannot be read at all.
        OptionsError: ``frames`` matches the inputs neither by order nor by pairs, or one is
            given for a dataset.
    """
    inputs = [q for p in map(Path, inputs) for q in ([p] if is_dataset(p) else expand_exports([p]))]
    sources = frame_sources(inputs, frames)
    seen: dict[str, int] = {}
    for i, path in enumerate(inputs):
        raw = sources[i] if sources is not None else None
        if is_dataset(path):
            if raw is not None:
                raise OptionsError(
                    describe(
                        "raw frames replace the overlays of an export; a converted dataset "
                        "already holds its images",
                        file=path,
                        field="frames",
                        fix="convert the exports again with --frames, then validate the result",
                    )
                )
            yield from _dataset_videos(path, seen)
        else:
            _refuse_other_formats(path)
            yield from _export_videos(path, raw, seen, limits)


def _refuse_other_formats(path: Path) -> None:
    """A `convert --to llava/sharegpt/coco` folder is not an export: say what it is."""
    if not path.is_dir() or (path / "annotations.json").exists():
        return
    for name, form in _OTHER_FORMATS.items():
        if (path / name).is_file():
            raise DatasetError(
                describe(
                    f"this is a `convert --to {form}` output ({name}); validate reads SAM2 "
                    "exports and canonical datasets",
                    file=path,
                    fix="validate the exports, or a `sam2-finetune convert --to hf` dataset",
                )
            )


def _unique(video_id: str, seen: dict[str, int]) -> str:
    """The same export passed twice keeps distinct ids (as ``read_exports`` names them)."""
    seen[video_id] = seen.get(video_id, 0) + 1
    return video_id if seen[video_id] == 1 else f"{video_id}-{seen[video_id]}"


# --------------------------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------------------------


def _export_videos(
    path: Path, frames: str | Path | None, seen: dict[str, int], limits: ArchiveLimits
) -> Iterator[tuple[VideoRecord, Iterator[FrameRecord]]]:
    export = read_export(path, frames=frames, limits=limits, strict=False)
    try:
        info = export.video
        video = VideoRecord(
            source=str(path),
            video_id=_unique(info.video_id, seen),
            width=info.width,
            height=info.height,
            fps=info.fps,
            target_fps=info.target_fps,
            written_order=export.written_order,
            kind="export",
        )
        yield video, _export_frames(export)
    finally:
        export.close()


def _export_frames(export: Export) -> Iterator[FrameRecord]:
    width, height = export.video.width, export.video.height
    for position, raw in enumerate(export.raw_frames):
        index = raw["frame_index"]
        image = _read_image(export.images.get(index))
        # Converts this frame only; with strict=False an unreadable object becomes one with
        # ``error`` set instead of raising.
        frame = export.frames[position]
        raw_objects = raw.get("objects") or []
        objects = tuple(
            _export_object(obj, raw_obj, width, height)
            for obj, raw_obj in zip(frame.objects, raw_objects, strict=True)
        )
        timestamp = raw.get("timestamp_sec")
        stated = float(timestamp) if type(timestamp) in (int, float) else None
        if timestamp is not None and (stated is None or not math.isfinite(stated)):
            stated = math.nan  # written but no time ("0.6", NaN): timestamp-mismatch says so
        yield FrameRecord(index, stated, width, height, *image, objects)


def _export_object(obj: Any, raw: dict[str, Any], width: int, height: int) -> ObjectRecord:
    raw_bbox = raw.get("bbox") if isinstance(raw, dict) else None
    bbox: Box | None = None
    if _is_box(raw_bbox) and obj.mask_size is not None:
        # The export's box is in the mask's own space (256 x 256 for SAM2's strings).
        mh, mw = obj.mask_size
        sx, sy = width / mw, height / mh
        bbox = (raw_bbox[0] * sx, raw_bbox[1] * sy, raw_bbox[2] * sx, raw_bbox[3] * sy)
    # Ingest's box is the mask's own (toBbox) box, computed while rescaling: no second pass.
    mask_bbox = obj.bbox if obj.mask is not None and obj.area > 0 else None
    return ObjectRecord(
        track_id=obj.track_id,
        label=obj.label,
        bbox=bbox,
        raw_bbox=raw_bbox,
        mask_bbox=mask_bbox,
        area=obj.area,
        rle=obj.mask,
        mask_size=obj.mask_size,
        mask_form=obj.mask_form,
        error=obj.error,
    )


def _is_box(value: Any) -> bool:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return False
    # type() rather than isinstance(): JSON booleans are ints to isinstance. Python's json reads
    # NaN and Infinity, which are no coordinates.
    return all(type(v) is int or (type(v) is float and math.isfinite(v)) for v in value)


def _read_image(
    ref: ImageRef | None,
) -> tuple[str | None, bytes | None, tuple[int, int] | None, str | None, bool]:
    """(location, hash, (w, h), error, is_overlay) of one frame's image."""
    if ref is None:
        return None, None, None, None, False
    try:
        data = ref.read_bytes()
    except (OSError, ExportError, KeyError) as exc:
        return ref.location, None, None, f"cannot be read ({exc})", ref.is_overlay
    size, error = image_size(data)
    return ref.location, _digest(data), size, error, ref.is_overlay


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def image_size(data: bytes) -> tuple[tuple[int, int] | None, str | None]:
    """``((w, h), None)`` from an encoded image's header, or ``(None, reason)``; PNG headers are
    read directly, other formats through Pillow's lazy open (no pixel is decoded)."""
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return (int(width), int(height)), None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return (int(image.width), int(image.height)), None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return None, f"not a readable image ({exc})"


# --------------------------------------------------------------------------------------------
# Converted datasets
# --------------------------------------------------------------------------------------------


def _dataset_videos(
    path: Path, seen: dict[str, int]
) -> Iterator[tuple[VideoRecord, Iterator[FrameRecord]]]:
    from datasets import DatasetDict, Image

    from sam2_finetune.dataset import load_canonical

    loaded = load_canonical(path)
    splits = loaded.items() if isinstance(loaded, DatasetDict) else [(None, loaded)]
    # A video cut into splits keeps one id across them (it is one video); only the same video
    # in another input gets a suffix.
    ids: dict[str, str] = {}
    for split, dataset in splits:
        source = f"{path}[{split}]" if split is not None else str(path)
        missing = {"width", "height", "timestamp_sec"} - set(dataset.column_names)
        if missing:
            raise DatasetError(
                f"{source}: the canonical columns {sorted(missing)} are missing. Fix: convert "
                "the exports again with `sam2-finetune convert --to hf`."
            )
        # Images as stored (bytes), not decoded: validation hashes them and reads their header.
        dataset = dataset.cast_column("image", Image(decode=False))
        video_ids = np.asarray(dataset.data.column("video_id").to_pylist(), dtype=object)
        frame_indices = np.asarray(dataset.data.column("frame_index").to_numpy(), dtype=np.int64)
        # Rows may be in any order (a shuffled split); rules need each video's frames in time
        # order, so walk the rows sorted by (video, frame index) without copying the table.
        order = np.lexsort((frame_indices, video_ids.astype(str)))
        bounds = np.flatnonzero(video_ids[order][1:] != video_ids[order][:-1]) + 1
        for rows in np.split(order, bounds):
            if rows.size == 0:
                continue
            first = dataset[int(rows[0])]
            stored_id = str(video_ids[rows[0]])
            if stored_id not in ids:
                ids[stored_id] = _unique(stored_id, seen)
            video = VideoRecord(
                source=source,
                video_id=ids[stored_id],
                width=int(first["width"]),
                height=int(first["height"]),
                fps=None,
                target_fps=None,
                written_order=frame_indices[np.sort(rows)].tolist(),
                kind="dataset",
                split=split,
            )
            yield video, _dataset_frames(dataset, rows, source)


def _dataset_frames(dataset: Any, rows: np.ndarray, source: str) -> Iterator[FrameRecord]:
    subset = dataset.select(rows.tolist())
    for offset, row in enumerate(subset):
        width, height = int(row["width"]), int(row["height"])
        stored = row["image"]
        location = None
        image_hash = size = error = None
        if stored is not None and (stored.get("bytes") or stored.get("path")):
            location = stored.get("path") or f"{source} row {int(rows[offset])}"
            data = stored.get("bytes")
            if data is None:
                try:
                    data = Path(stored["path"]).read_bytes()
                except OSError as exc:
                    error = f"cannot be read ({exc})"
            if data is not None:
                image_hash = _digest(data)
                size, error = image_size(data)
        objects = tuple(_dataset_object(obj, width, height) for obj in row["objects"] or [])
        timestamp = row.get("timestamp_sec")
        yield FrameRecord(
            frame_index=int(row["frame_index"]),
            timestamp_sec=float(timestamp) if timestamp is not None else None,
            width=width,
            height=height,
            image_location=location,
            image_hash=image_hash,
            image_size=size,
            image_error=error,
            image_is_overlay=bool(row.get("image_is_overlay")),
            objects=objects,
        )


def _dataset_object(obj: dict[str, Any], width: int, height: int) -> ObjectRecord:
    raw_bbox = obj.get("bbox")
    bbox = tuple(float(v) for v in raw_bbox) if _is_box(raw_bbox) else None
    segmentation = obj.get("segmentation") or {}
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    track_id = int(obj.get("track_id") or 0)
    label = obj.get("label") or f"object_{track_id}"
    mask_size = (int(size[0]), int(size[1])) if size and len(size) == 2 else None
    error = None
    if mask_size is None or not isinstance(counts, str):
        error = f"segmentation has no valid size/counts (found size {size!r})"
    else:
        try:
            # pycocotools reads compressed strings without checking them; sum the runs here.
            total = int(decode_compressed_counts(counts).sum())
        except ValueError as exc:
            error = f"mask counts cannot be decoded ({exc})"
        else:
            if total != mask_size[0] * mask_size[1]:
                error = (
                    f"mask counts add up to {total}, not h x w = {mask_size[0]} x "
                    f"{mask_size[1]} = {mask_size[0] * mask_size[1]}"
                )
    if error is not None:
        return ObjectRecord(
            track_id, label, bbox, raw_bbox, None, 0, None, mask_size, "coco_compressed", error
        )
    rle: Rle = {"size": [mask_size[0], mask_size[1]], "counts": counts}
    area = int(rle_area([rle])[0])
    mask_bbox = rle_bbox(rle) if area > 0 else None
    return ObjectRecord(
        track_id, label, bbox, raw_bbox, mask_bbox, area, rle, mask_size, "coco_compressed"
    )
