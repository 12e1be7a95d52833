"""Exports -> canonical rows: the one record every output format of ``convert`` is written from.

A row is exactly what a row of the canonical dataset holds (see :mod:`sam2_finetune.dataset`), with
``objects`` as a list of dicts and ``category`` as an index into the sorted label list. Rows are
built one frame at a time from lazily read exports, so memory stays flat however many frames come
in. Labels go through a :class:`LabelMap` first (renames, merges, drops, case/whitespace).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam2_finetune.dataset import image_id, normalize_label
from sam2_finetune.errors import ExportError, OptionsError, describe
from sam2_finetune.files import read_mapping
from sam2_finetune.ingest import Export, label_of, mask_value
from sam2_finetune.masks import decode_compressed_counts, parse_counts

# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelMap:
    """How labels as typed become dataset labels.

    Each label is first normalized (when ``normalize``), then looked up in ``mapping`` (one hop,
    not transitive): a string renames it (several labels renamed to one merge), ``None`` drops
    its objects. Labels not in the mapping are kept. With ``normalize`` the mapping's keys and
    values are normalized too, so ``{"Car": "vehicle"}`` also catches ``"car "``.
    """

    mapping: Mapping[str, str | None] = field(default_factory=dict)
    normalize: bool = False

    def __call__(self, label: str) -> str | None:
        key = normalize_label(label) if self.normalize else label
        return self.mapping.get(key, key)

    def unused_keys(self, labels_seen: Sequence[str]) -> list[str]:
        """Keys of the mapping that no label of ``labels_seen`` (as typed) hit: likely typos."""
        hit = {normalize_label(x) if self.normalize else x for x in labels_seen}
        return sorted(k for k in self.mapping if k not in hit)


def load_label_map(path: str | Path | None, normalize: bool = False) -> LabelMap:
    """Read a label map file: YAML or JSON, one flat mapping ``{"label as typed": "new label"}``.

    A value of ``null`` drops the objects with that label. Every problem is reported at once.

    >>> load_label_map(None, normalize=True)("  Car ")
    'car'
    """
    if path is None:
        return LabelMap({}, normalize)
    # YAML is a superset of JSON: any suffix but .json is read as YAML, which reads both.
    data = read_mapping(
        path,
        "label map",
        shape="one flat mapping",
        expected='{"label as typed": "new label", ...}',
    )
    problems: list[str] = []
    mapping: dict[str, str | None] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key.strip():
            problems.append(f"key {key!r}: expected a non-empty label string")
            continue
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{key!r}: expected a new label (string) or null, found {value!r}")
            continue
        k = normalize_label(key) if normalize else key
        v = None if value is None else normalize_label(value) if normalize else value.strip()
        if k in mapping and mapping[k] != v:
            problems.append(
                f"{key!r}: normalizes to {k!r}, which is already mapped to {mapping[k]!r}, "
                f"not {v!r}"
            )
            continue
        mapping[k] = v
    if problems:
        raise OptionsError(
            f"{path}: {len(problems)} problem(s) in the label map:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nFix: correct the entries above (values are new labels, or null to drop)."
        )
    return LabelMap(mapping, normalize)


def _mask_is_visible(value: Any) -> bool:
    """Whether a mask as written in annotations.json has any pixel set, parsing as little as
    possible. A mask that cannot be read counts as visible: reading the frame reports it."""
    try:
        if isinstance(value, str):
            head = value.split(None, 2)
            if len(head) >= 2 and head[1].isdigit() and head[0].isdigit():
                # A count string: the first run of ones is usually non-empty.
                if head[1].strip("0"):
                    return True
                return bool(parse_counts(value)[1::2].any())
            if len(head) == 1 and head[0].isdigit():
                return False  # one run of zeros
            return bool(decode_compressed_counts(value)[1::2].any())
        if isinstance(value, dict):
            counts = value.get("counts")
            if isinstance(counts, str):
                return bool(decode_compressed_counts(counts)[1::2].any())
            if isinstance(counts, list):
                return any(counts[1::2])
    except ValueError:
        pass
    return True


def export_labels(export: Export) -> set[str]:
    """Labels as typed of the visible objects of the frames that have an image: the frames
    :func:`iter_rows` turns into rows. Read from the JSON as written (no mask is rescaled), so
    it costs a fraction of the conversion; all ``convert`` keeps of an export's first pass."""
    typed: set[str] = set()
    for raw in export.raw_frames:
        if raw["frame_index"] not in export.images:
            continue
        for obj in raw.get("objects") or []:
            if not isinstance(obj, dict):
                continue
            # Named and read exactly as ingest does (numeric labels become strings, unnamed
            # objects object_<id>): a label missing here would have no category in iter_rows.
            label = label_of(obj, obj.get("object_id"))
            if label not in typed and _mask_is_visible(mask_value(obj)):
                typed.add(label)
    return typed


def mapped_labels(typed: Iterable[str], label_map: LabelMap) -> list[str]:
    """The sorted dataset labels (the ClassLabel names) of labels as typed, after mapping."""
    return sorted({m for m in map(label_map, typed) if m is not None})


def dataset_labels(exports: Sequence[Export], label_map: LabelMap) -> tuple[list[str], list[str]]:
    """(sorted dataset labels after mapping, sorted labels as typed) of ``exports``
    (:func:`export_labels` of each)."""
    typed = set().union(*(export_labels(e) for e in exports))
    return mapped_labels(typed, label_map), sorted(typed)


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


@dataclass
class RowStats:
    """What happened to the listed frames while rows were produced."""

    frames_listed: int = 0
    rows: int = 0
    objects: int = 0
    overlay_rows: int = 0
    empty_rows: int = 0
    skipped_no_image: int = 0
    skipped_no_objects: int = 0
    objects_dropped_by_label_map: int = 0
    broken_objects: list[str] = field(default_factory=list)  # messages, with --drop-broken
    labels_used: set[str] = field(default_factory=set)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_format(data: bytes, location: str) -> tuple[str, int, int]:
    """(``"png"`` or ``"jpeg"``, width, height) from the image header, without decoding pixels."""
    # A PNG states its size in the IHDR chunk, which must come first: no need for Pillow.
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ExportError(
            describe(
                f"the frame image cannot be read ({exc})",
                file=location,
                fix="replace the damaged image, or re-export the video",
            )
        ) from None
    if fmt not in ("png", "jpeg"):
        raise ExportError(
            describe(
                "unsupported image format",
                file=location,
                expected="PNG or JPEG",
                found=fmt or "unknown",
                fix="convert the frames to PNG or JPEG",
            )
        )
    return fmt, width, height


def iter_rows(
    exports: Iterable[Export],
    labels: Sequence[str],
    label_map: LabelMap,
    *,
    keep_empty: bool = False,
    stats: RowStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Canonical rows of ``exports``, export by export, in ``frame_index`` order.

    ``exports`` may be a generator that opens each export when asked and closes it when the
    next is asked (as ``convert`` does): nothing of a finished export is kept here.

    A frame becomes a row when it has an image and at least one non-empty object after the label
    map (``keep_empty`` also keeps frames with an image and no object, as negatives). Lost or
    occluded objects (empty masks) are left out of ``objects``. ``image`` holds the source bytes.
    """
    stats = stats if stats is not None else RowStats()
    category = {label: i for i, label in enumerate(labels)}
    for export in exports:
        video = export.video
        # Every frame in order (ingest converts them in chunks; frames without an image are
        # the demo's empty ones, cheap to convert).
        seen: set[int] = set()
        for frame in export.frames:
            stats.frames_listed += 1
            index = frame.frame_index
            if index in seen:  # two rows with one image_id would break splits and evaluation
                raise ExportError(
                    describe(
                        "frame_index listed more than once in annotations.json",
                        file=export.annotations_member,
                        frame_index=index,
                        expected="one entry per frame_index",
                        found="a second entry",
                        fix="keep one entry per frame (`sam2-finetune validate` lists them all)",
                    )
                )
            seen.add(index)
            # Only read leniently (convert --drop-broken): objects whose mask cannot be read.
            stats.broken_objects.extend(o.error for o in frame.objects if o.error)
            ref = frame.image
            if ref is None:
                stats.skipped_no_image += 1
                continue
            objects = []
            for obj in frame.visible_objects:
                label = label_map(obj.label)
                if label is None:
                    stats.objects_dropped_by_label_map += 1
                    continue
                assert obj.mask is not None  # visible objects have a mask
                objects.append(
                    {
                        "track_id": obj.track_id,
                        "label": label,
                        "category": category[label],
                        "bbox": list(obj.bbox),
                        "area": obj.area,
                        "segmentation": {
                            "size": list(obj.mask["size"]),
                            "counts": obj.mask["counts"],
                        },
                    }
                )
            if not objects and not keep_empty:
                stats.skipped_no_objects += 1
                continue
            data = ref.read_bytes()
            _, width, height = image_format(data, ref.location)
            if (width, height) != (video.width, video.height):
                raise ExportError(
                    describe(
                        "the frame image does not have the video's size, so masks and boxes "
                        "would not line up",
                        file=ref.location,
                        frame_index=index,
                        expected=f"{video.width} x {video.height}",
                        found=f"{width} x {height}",
                        fix="extract the raw frames at the video's full resolution",
                    )
                )
            stats.rows += 1
            stats.objects += len(objects)
            stats.overlay_rows += ref.is_overlay
            stats.empty_rows += not objects
            stats.labels_used.update(o["label"] for o in objects)
            yield {
                "image": {"bytes": data, "path": None},
                "image_id": image_id(video.video_id, index),
                "video_id": video.video_id,
                "frame_index": index,
                "timestamp_sec": float(frame.timestamp_sec),
                "width": video.width,
                "height": video.height,
                "image_is_overlay": ref.is_overlay,
                "objects": objects,
            }


def save_image(row: dict[str, Any], images_dir: Path) -> str:
    """Copy the row's image bytes (not re-encoded) to ``images_dir/<video_id>/frame_<index>.<ext>``
    and return that path relative to ``images_dir`` (POSIX separators)."""
    data = row["image"]["bytes"]
    # iter_rows admitted only PNG and JPEG: the signature tells them apart.
    suffix = "png" if data.startswith(_PNG_SIGNATURE) else "jpg"
    name = f"{row['video_id']}/frame_{row['frame_index']:06d}.{suffix}"
    target = images_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return name
