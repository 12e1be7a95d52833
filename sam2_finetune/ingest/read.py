"""Reading: annotations.json and metadata.json into an :class:`Export`, each object's mask form
detected and its frames built (masks rescaled to the image size) lazily.
"""

from __future__ import annotations

import codecs
import dataclasses
import gc
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from sam2_finetune.errors import ExportError, MaskError, OptionsError, describe
from sam2_finetune.ingest.archive import (
    DEFAULT_LIMITS,
    JUNK,
    ArchiveLimits,
    ArchiveSource,
    index_images,
)
from sam2_finetune.ingest.raw_frames import image_format_of, raw_frame_refs
from sam2_finetune.ingest.records import (
    Export,
    Frame,
    FrameSequence,
    ImageKind,
    ImageRef,
    MaskForm,
    ObjectAnnotation,
    VideoInfo,
)
from sam2_finetune.masks import (
    Rle,
    counts_to_rles,
    decode_compressed_counts,
    encode_counts,
    parse_counts,
    square_side,
)

_MASK_KEYS = ("mask_rle", "segmentation", "mask")
_SAM2_SIDE = 256


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _load_json(source: ArchiveSource, member: str) -> tuple[Any, bytes]:
    data = source.read(member)
    # The cyclic GC would traverse the growing tree again and again while json.loads builds
    # hundreds of thousands of containers (none of them cyclic): pause it, 1.5-3x faster.
    collecting = gc.isenabled()
    gc.disable()
    try:
        # Editors on Windows add a byte-order mark, which json.loads refuses on bytes.
        return json.loads(data.removeprefix(codecs.BOM_UTF8)), data
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(
            describe(
                f"not valid JSON ({exc})",
                file=source.label,
                member=source.member(member),
                fix="re-download the export; the file is damaged",
            )
        ) from None
    except RecursionError:
        raise ExportError(
            describe(
                "JSON nested too deeply",
                file=source.label,
                member=source.member(member),
                fix="pass a SAM2 export's own file",
            )
        ) from None
    finally:
        if collecting:
            gc.enable()


def _number(value: Any) -> float | None:
    # json.loads accepts NaN and Infinity; they are no fps or timestamp (and not valid JSON out).
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def json_int(value: Any) -> int | None:
    """``value`` when it is a JSON integer (not a boolean, which Python counts as one), else None.
    Shared with the ``info`` summary, which reads object ids the same way."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._") or "export"


def read_export(
    path: str | Path,
    *,
    frames: str | Path | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    strict: bool = True,
    video_id: str | None = None,
) -> Export:
    """Read one SAM2 export, a ZIP (also re-zipped or nested) or an extracted folder.

    Args:
        path: the ``sam2_export_*.zip`` or its folder.
        frames: raw frames replacing the overlay images: a folder of frame files named by frame
            index, or the source video (needs the ``video`` extra).
        limits: bounds for refusing hostile archives.
        strict: when False, a broken object (mask, object_id) does not raise: the object
            carries ``error`` instead, and raw frames missing from ``frames`` leave
            ``image=None`` (used by ``validate`` to report every problem at once).
        video_id: override the derived id (``<name>-<first 8 hex of sha1(annotations.json)>``).

    Raises:
        ExportError: (and subclasses) with a message naming archive, member, frame and object.

    >>> with read_export("sample_data/street_scene.zip") as export:  # doctest: +SKIP
    ...     for frame in export.frames:
    ...         print(frame.frame_index, [(o.label, o.bbox) for o in frame.visible_objects])
    """
    path = Path(path)
    source = ArchiveSource(path, limits)
    try:
        return _read(source, path, frames, strict, video_id)
    except BaseException:
        source.close()
        raise


def _read(
    source: ArchiveSource, path: Path, frames: str | Path | None, strict: bool, video_id: str | None
) -> Export:
    ann_member = source.member("annotations.json")
    if not source.has("annotations.json"):
        raise ExportError(
            describe("no annotations.json", file=source.label, fix="pass a SAM2 export")
        )
    annotations, ann_bytes = _load_json(source, "annotations.json")
    metadata = _load_json(source, "metadata.json")[0] if source.has("metadata.json") else None
    where = {"file": source.label, "member": ann_member}
    if not isinstance(annotations, dict) or not isinstance(annotations.get("annotations"), list):
        found = annotations.get("annotations") if isinstance(annotations, dict) else annotations
        raise ExportError(
            describe(
                "annotations.json has no 'annotations' list",
                **where,
                field="annotations",
                expected="a list of frames",
                found="nothing" if found is None else type(found).__name__,
                fix="pass a SAM2 export's annotations.json",
            )
        )
    video_json = _dict(annotations.get("video"))
    meta = _dict(metadata)
    meta_video = _dict(meta.get("video"))
    width = json_int(video_json.get("width", meta_video.get("width")))
    height = json_int(video_json.get("height", meta_video.get("height")))
    if not (width and height and width > 0 and height > 0):
        raise ExportError(
            describe(
                "video size is missing or invalid",
                **where,
                field="video.width/video.height",
                expected="positive integers",
                found=f"{video_json.get('width')!r} x {video_json.get('height')!r}",
                fix="add the video's width and height to annotations.json 'video'",
            )
        )
    source_fps = _number(video_json.get("source_fps", video_json.get("fps")))
    fps = _number(meta_video.get("fps")) or source_fps
    config = _dict(annotations.get("export_config")) or _dict(meta.get("export_config"))
    name = path.name if path.is_dir() else path.stem
    if path.is_dir() and not name:
        name = path.resolve().name
    file_name = str(video_json.get("filename") or meta_video.get("filename") or name)
    digest = hashlib.sha1(ann_bytes).hexdigest()[:8]
    del ann_bytes
    info = VideoInfo(
        video_id=video_id or f"{_slug(name)}-{digest}",
        file_name=file_name,
        width=width,
        height=height,
        fps=fps,
        source_fps=source_fps,
        total_frames=json_int(video_json.get("total_frames", meta_video.get("total_frames"))),
        duration_sec=_number(video_json.get("duration_sec", meta_video.get("duration_sec"))),
        target_fps=_number(config.get("target_fps")),
    )

    raw_frames: list[dict[str, Any]] = annotations["annotations"]
    for position, raw in enumerate(raw_frames):
        index = raw.get("frame_index") if isinstance(raw, dict) else None
        if json_int(index) is None or index < 0:
            raise ExportError(
                describe(
                    f"frame entry #{position} has no valid frame_index",
                    **where,
                    field=f"annotations[{position}].frame_index",
                    expected="a non-negative integer",
                    found=repr(index if isinstance(raw, dict) else raw)[:60],
                    fix="repair or re-export annotations.json",
                )
            )
        objects = raw.get("objects")
        if objects is not None and not isinstance(objects, list):
            raise ExportError(
                describe(
                    "'objects' is not a list",
                    **where,
                    frame_index=index,
                    field="objects",
                    expected="a list (possibly empty)",
                    found=type(objects).__name__,
                    fix="repair or re-export annotations.json",
                )
            )
    # Stable: frames listed twice with one index stay, in file order (validate reports them).
    written_order = [r["frame_index"] for r in raw_frames]
    raw_frames = sorted(raw_frames, key=lambda r: r["frame_index"])
    indices = [r["frame_index"] for r in raw_frames]

    image_index = index_images(source.names())
    images: dict[int, ImageRef] = {
        i: ImageRef(
            location=source.location(image_index[i]),
            kind="overlay",
            format=image_format_of(image_index[i]),
            _reader=partial(source.read, image_index[i]),
        )
        for i in indices
        if i in image_index
    }
    image_kind: ImageKind = "overlay"
    if frames is not None:
        images = raw_frame_refs(Path(frames), indices, strict)
        image_kind = "raw"

    build = partial(
        _build_frames,
        video=info,
        images=images,
        archive=source.label,
        member=ann_member,
        strict=strict,
    )
    return Export(
        source=path,
        video=info,
        frames=FrameSequence(raw_frames, build, source),
        raw_frames=raw_frames,
        images=images,
        image_kind=image_kind,
        has_metadata=metadata is not None,
        annotations_member=source.location("annotations.json"),
        written_order=written_order,
    )


def expand_exports(paths: Sequence[str | Path]) -> list[Path]:
    """The exports named by ``paths``, where a folder of exports stands for the exports it holds.

    A folder holding export ZIPs or export folders (``sample_data/``, a download folder) expands
    to them, sorted by name, so every command that takes exports takes such a folder too. A
    folder that IS an export (``annotations.json`` at its top, or in its one sub-folder as
    unzipping a re-zipped export gives) stays one export, as does any file.

    >>> expand_exports(["sample_data"])  # doctest: +SKIP
    [PosixPath('sample_data/kitchen.zip'), PosixPath('sample_data/street_scene.zip'), ...]
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir() or (path / "annotations.json").is_file():
            out.append(path)
            continue
        children = sorted(
            p
            for p in path.iterdir()
            if not JUNK.search(p.name + ("/" if p.is_dir() else ""))
            and (
                (p.is_file() and p.suffix.lower() == ".zip")
                or (p.is_dir() and (p / "annotations.json").is_file())
            )
        )
        zips = [p for p in children if p.is_file()]
        # One export folder one level down and nothing else: the folder is that export.
        out.extend(children if zips or len(children) > 1 else [path])
    return out


FRAMES_HELP = (
    "Raw frames replacing the overlay images: one folder or video per export in order, or "
    "EXPORT=PATH pairs (EXPORT is the export's path, file name or stem) for some."
)


def frame_sources(
    exports: Sequence[Path], frames: Sequence[str | Path] | None
) -> list[str | Path | None] | None:
    """Match ``--frames`` values to exports: all by order, or ``EXPORT=PATH`` pairs for some."""
    if not frames:
        return None
    frames = [str(f) for f in frames]
    pairs = [f for f in frames if "=" in f]
    if not pairs:
        if len(frames) != len(exports):
            raise OptionsError(
                describe(
                    "--frames needs one source per export, in order",
                    field="frames",
                    expected=f"{len(exports)} frame sources",
                    found=len(frames),
                    fix="pass one folder or video per export, or EXPORT=PATH pairs",
                )
            )
        return list(frames)
    if len(pairs) != len(frames):
        raise OptionsError(
            describe(
                "--frames mixes ordered sources and EXPORT=PATH pairs",
                field="frames",
                found=" ".join(frames),
                fix="use only one of the two forms",
            )
        )
    sources: list[str | Path | None] = [None] * len(exports)
    for pair in pairs:
        key, _, path = pair.partition("=")
        hits = [
            i for i, export in enumerate(exports) if key in (str(export), export.name, export.stem)
        ]
        if len(hits) != 1:
            raise OptionsError(
                describe(
                    f"--frames {pair!r} matches {len(hits)} exports",
                    field="frames",
                    expected="exactly one export by path, file name or stem",
                    found=", ".join(str(exports[i]) for i in hits) or "none",
                    fix="write the export's path as given on the command line",
                )
            )
        sources[hits[0]] = path
    return sources


def read_exports(
    paths: Sequence[str | Path],
    *,
    frames: Sequence[str | Path | None] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    strict: bool = True,
) -> list[Export]:
    """Read several exports; their video ids are distinct and stable across runs.

    Ids are derived from the name and the content (``read_export``); an export given twice
    (or two with the same name and identical annotations) gets ``-2``, ``-3`` appended in the
    order given. On an error, the exports already opened are closed.
    """
    if frames is not None and len(frames) != len(paths):
        raise ExportError(
            describe(
                "one raw-frames source is needed per export",
                expected=f"{len(paths)} frame sources",
                found=len(frames),
                fix="pass --frames once per export, in the same order (or none)",
            )
        )
    exports: list[Export] = []
    try:
        for i, p in enumerate(paths):
            exports.append(
                read_export(p, frames=frames[i] if frames else None, limits=limits, strict=strict)
            )
    except BaseException:
        for export in exports:
            export.close()
        raise
    out = []
    for export, video_id in zip(
        exports, distinct_video_ids([e.video.video_id for e in exports]), strict=True
    ):
        if video_id != export.video.video_id:
            video = dataclasses.replace(export.video, video_id=video_id)
            export = dataclasses.replace(export, video=video)
        out.append(export)
    return out


def iter_exports(
    paths: Sequence[str | Path],
    *,
    frames: Sequence[str | Path | None] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    strict: bool = True,
    video_ids: Sequence[str] | None = None,
) -> Iterator[Export]:
    """Read exports one at a time: each is released (:meth:`Export.release`: closed, its
    parsed annotations dropped) when the next is asked for, or when the loop stops. Memory
    holds one export however many there are; ``read_exports`` holds them all.

    ``video_ids`` overrides the derived ids (pass :func:`distinct_video_ids` of a first pass to
    name them as ``read_exports`` does).
    """
    for i, path in enumerate(paths):
        export = read_export(
            path,
            frames=frames[i] if frames else None,
            limits=limits,
            strict=strict,
            video_id=video_ids[i] if video_ids is not None else None,
        )
        try:
            yield export
        finally:
            export.release()
            del export  # not held while the next one is read


def distinct_video_ids(ids: Sequence[str]) -> list[str]:
    """``ids`` (derived by :func:`read_export`, in the order the exports were given) made
    distinct: a repeated id gets ``-2``, ``-3``, ... as :func:`read_exports` names them (also
    used by ``convert``, which reads the exports one at a time)."""
    taken = set(ids)
    seen: Counter[str] = Counter()
    out = []
    for base in ids:
        seen[base] += 1
        if seen[base] == 1:
            out.append(base)
            continue
        n = seen[base]
        while f"{base}-{n}" in taken:
            n += 1
        seen[base] = n
        taken.add(f"{base}-{n}")
        out.append(f"{base}-{n}")
    return out


# --------------------------------------------------------------------------------------------
# Masks of one object -> canonical
# --------------------------------------------------------------------------------------------


class MaskProblem(ValueError):
    """Why one mask cannot be read, with what was expected and found (for ``describe``).
    Raised by :func:`mask_counts`; ``info``'s summary catches it to count broken masks."""

    def __init__(self, problem: str, expected: object = None, found: object = None):
        super().__init__(problem)
        self.problem = problem
        self.expected = expected
        self.found = found


def _infer_size(total: int, video: VideoInfo) -> tuple[int, int] | None:
    """The (h, w) of a count string that carries no size, from the sum of its runs: a square
    (SAM2's 256 x 256, or any n x n), the video's size, or the video's aspect ratio."""
    return _infer_size_of(total, video.height, video.width)


@lru_cache(maxsize=64)  # one export has one or two mask sizes: computed once, not per mask
def _infer_size_of(total: int, height: int, width: int) -> tuple[int, int] | None:
    side = square_side(total)
    if side is not None:
        return (side, side)
    if total == width * height:
        return (height, width)
    # h' / w' = h / w and h' * w' = total  =>  h'^2 = total * h / w
    h2, rest = divmod(total * height, width)
    h = square_side(h2) if rest == 0 else None
    if h is not None and total % h == 0:
        return (h, total // h)
    return None


def _size_expected(video: VideoInfo) -> str:
    return (
        f"a sum of {_SAM2_SIDE * _SAM2_SIDE} (256 x 256) or any n x n, or the video's "
        f"{video.width} x {video.height} = {video.width * video.height}"
    )


def mask_counts(value: Any, video: VideoInfo) -> tuple[np.ndarray, tuple[int, int], MaskForm]:
    """Detect the form of one mask and return (uncompressed counts, (h, w), form).

    Raises ``MaskProblem`` (a ``ValueError``) saying what was expected and found.
    """
    if isinstance(value, str):
        try:
            counts: np.ndarray | None = parse_counts(value)
        except ValueError:
            counts = None
        if counts is not None:
            total = int(counts.sum())
            size = _infer_size(total, video)
            if size is not None:
                return counts, size, "sam2_string"
        # Not a count string (or one of an impossible size): maybe a bare compressed string.
        try:
            compressed = decode_compressed_counts(value)
        except ValueError:
            compressed = None
        if compressed is not None and compressed.size:
            size = _infer_size(int(compressed.sum()), video)
            if size is not None:
                return compressed, size, "coco_compressed"
        if counts is not None:
            raise MaskProblem(
                "mask counts do not add up to a known mask size",
                expected=_size_expected(video),
                found=f"{len(counts)} runs adding up to {int(counts.sum())}",
            )
        raise MaskProblem(
            "mask string is neither space-separated run lengths nor a COCO compressed string",
            expected='"<zeros> <ones> <zeros> ..." (SAM2) or a COCO counts string',
            found=repr(value[:40]) + ("..." if len(value) > 40 else ""),
        )
    if isinstance(value, dict) and "counts" in value:
        size_value = value.get("size")
        if not (
            isinstance(size_value, (list, tuple))
            and len(size_value) == 2
            and all(json_int(v) is not None and v > 0 for v in size_value)
        ):
            raise MaskProblem(
                "COCO mask has no valid 'size'",
                expected="[height, width], positive integers",
                found=repr(size_value)[:40],
            )
        h, w = int(size_value[0]), int(size_value[1])
        raw = value["counts"]
        form: MaskForm
        if isinstance(raw, str):
            try:
                counts = decode_compressed_counts(raw)
            except ValueError as exc:
                raise MaskProblem(
                    f"COCO compressed counts cannot be decoded ({exc})",
                    expected="a pycocotools counts string",
                    found=repr(raw[:40]),
                ) from None
            form = "coco_compressed"
        elif isinstance(raw, list):
            counts = np.asarray(raw) if raw else np.zeros(0, np.int64)
            if counts.dtype.kind not in "iu" or counts.ndim != 1:
                raise MaskProblem(
                    "COCO counts list holds something else than integers",
                    expected="a flat list of non-negative integers",
                    found=repr(raw[:6])[:60],
                )
            counts = counts.astype(np.int64)
            if counts.size and counts.min() < 0:
                raise MaskProblem(
                    "COCO counts list holds negative run lengths",
                    expected="non-negative integers",
                    found=int(counts.min()),
                )
            form = "coco_uncompressed"
        else:
            raise MaskProblem(
                "COCO 'counts' must be a string or a list",
                expected="str or list",
                found=type(raw).__name__,
            )
        total = int(counts.sum())
        if total != h * w:
            raise MaskProblem(
                "mask counts do not add up to the mask's size",
                expected=f"{h} x {w} = {h * w}",
                found=total,
            )
        return counts, (h, w), form
    raise MaskProblem(
        "unknown mask form" if value is not None else "object has no mask",
        expected='a count string ("mask_rle") or a COCO RLE dict {"size", "counts"}',
        found="nothing" if value is None else type(value).__name__,
    )


def mask_value(obj: dict[str, Any]) -> Any:
    """An object entry's mask as written, under the first of ``mask_rle``, ``segmentation``,
    ``mask`` it holds; None when it holds none."""
    for key in _MASK_KEYS:
        if key in obj:
            return obj[key]
    return None


def label_of(obj: dict[str, Any], track_id: object) -> str:
    """An object entry's label as text (a number becomes its string); ``object_<track_id>``
    when it has none."""
    label = obj.get("label")
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        label = str(label)
    return label if isinstance(label, str) and label else f"object_{track_id}"


def _broken(track_id: int, label: str, message: str) -> ObjectAnnotation:
    return ObjectAnnotation(
        track_id, label, None, (0.0, 0.0, 0.0, 0.0), 0, True, None, None, message
    )


def _build_frames(
    raws: Sequence[dict[str, Any]],
    *,
    video: VideoInfo,
    images: dict[int, ImageRef],
    archive: str,
    member: str,
    strict: bool,
) -> list[Frame]:
    """Canonical records of some frames: all their masks rescaled and compressed in one batch."""
    height, width = video.height, video.width
    slots: list[list[ObjectAnnotation | None]] = []
    # mask size -> (frame, position) slot and what the object needs, for masks to rescale
    pending: dict[tuple[int, int], list[tuple[list, int, np.ndarray, int, str, MaskForm]]] = {}
    for raw in raws:
        objects: list[ObjectAnnotation | None] = []
        slots.append(objects)
        index = raw["frame_index"]
        for position, obj in enumerate(raw.get("objects") or ()):
            built = _object_or_counts(obj, position, video, archive, member, index, strict)
            if isinstance(built, ObjectAnnotation):
                objects.append(built)
                continue
            counts, size, form, track_id, label = built
            pending.setdefault(size, []).append(
                (objects, len(objects), counts, track_id, label, form)
            )
            objects.append(None)
    for size, items in pending.items():
        rescaled = counts_to_rles([item[2] for item in items], size, (height, width))
        boxes = rescaled.bboxes.tolist()
        areas = rescaled.areas.tolist()
        for (objects, slot, _, track_id, label, form), rle, box, area in zip(
            items, rescaled.rles, boxes, areas, strict=True
        ):
            # A tiny mask can vanish when downscaled: then it is empty, like a lost object.
            objects[slot] = ObjectAnnotation(
                track_id, label, rle, tuple(box), area, area == 0, form, size
            )  # type: ignore[arg-type]
    frames = []
    for raw, objects in zip(raws, slots, strict=True):
        index = raw["frame_index"]
        timestamp = _number(raw.get("timestamp_sec"))
        if timestamp is None:
            timestamp = index / video.fps if video.fps else 0.0
        frames.append(Frame(index, timestamp, images.get(index), tuple(objects)))  # type: ignore[arg-type]
    return frames


def _object_or_counts(
    obj: Any,
    position: int,
    video: VideoInfo,
    archive: str,
    member: str,
    frame_index: int,
    strict: bool,
) -> ObjectAnnotation | tuple[np.ndarray, tuple[int, int], MaskForm, int, str]:
    """An object's finished record (empty or broken), or its parsed mask still to rescale."""
    where = {"file": archive, "member": member, "frame_index": frame_index}
    if not isinstance(obj, dict):
        message = describe(
            f"object entry #{position} is not a JSON object",
            **where,
            expected='{"object_id": ..., "label": ..., "mask_rle": ...}',
            found=repr(obj)[:40],
            fix="repair or re-export annotations.json",
        )
        if strict:
            raise ExportError(message)
        return _broken(-1, "object_-1", message)
    track_id = json_int(obj.get("object_id"))
    if track_id is None:
        message = describe(
            f"object entry #{position} has no integer object_id",
            **where,
            field="object_id",
            expected="an integer track id",
            found=repr(obj.get("object_id"))[:40],
            fix="repair or re-export annotations.json",
        )
        if strict:
            raise ExportError(message)
        return _broken(-1, label_of(obj, -1), message)
    label = label_of(obj, track_id)
    try:
        counts, size, form = mask_counts(mask_value(obj), video)
    except MaskProblem as exc:
        message = describe(
            exc.problem,
            **where,
            object_id=track_id,
            field=next((k for k in _MASK_KEYS if k in obj), "mask_rle"),
            expected=exc.expected,
            found=exc.found,
            fix="re-export the video, delete this object from annotations.json, or convert with "
            "--drop-broken to leave such objects out; `sam2-finetune validate` lists every "
            "broken mask",
        )
        if strict:
            raise MaskError(message) from None
        return _broken(track_id, label, message)
    if counts.size < 2 or counts[0] >= size[0] * size[1]:  # the counts add up to h * w
        empty = _empty_rle(video.height, video.width)
        return ObjectAnnotation(track_id, label, empty, (0.0, 0.0, 0.0, 0.0), 0, True, form, size)
    return counts, size, form, track_id, label


_EMPTY_RLES: dict[tuple[int, int], str] = {}


def _empty_rle(height: int, width: int) -> Rle:
    counts = _EMPTY_RLES.get((height, width))
    if counts is None:
        counts = _EMPTY_RLES[(height, width)] = encode_counts([height * width], height, width)[
            "counts"
        ]
    return {"size": [height, width], "counts": counts}
