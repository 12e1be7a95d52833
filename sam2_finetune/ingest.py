"""Ingest: read SAM2 web-demo exports (ZIP or extracted folder) into one canonical, typed value.

The export format is documented in ``docs/ingest.md``; its traps (256 x 256 column-major count
strings with no size, boxes in 256-space, overlay PNGs, empty frames without images, re-zipped
folders, ``fps`` vs ``source_fps``) are handled here so no later stage sees them.

>>> export = read_export("sample_data/street_scene.zip")  # doctest: +SKIP
>>> export.video.width, len(export.frames)                 # doctest: +SKIP
(320, 12)
>>> frame = export.frames[0]; frame.objects[0].bbox        # doctest: +SKIP
(40.0, 22.5, 60.0, 45.0)

Frames are decoded lazily: ``export.frames[i]`` converts that frame's masks when asked, so memory
stays flat however long the video is. Images are never decoded until ``ImageRef.open()``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.errors import ExportError, MaskError, UnsafeArchiveError, describe
from sam2_finetune.masks import (
    Rle,
    decode_compressed_counts,
    encode_counts,
    parse_counts,
    resize_counts,
    rle_bbox,
    square_side,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
# Preference when one frame index has several candidate images.
_IMAGE_DIRS = ("images", "frames", "data")
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|\._)")
_TRAILING_NUMBER = re.compile(r"(\d+)$")

MaskForm = Literal["sam2_string", "coco_compressed", "coco_uncompressed"]
ImageKind = Literal["overlay", "raw"]


# --------------------------------------------------------------------------------------------
# Limits for untrusted archives
# --------------------------------------------------------------------------------------------


class ArchiveLimits(BaseModel):
    """Bounds that refuse zip bombs from the central directory alone, before reading a byte."""

    model_config = ConfigDict(frozen=True)

    max_total_bytes: int = Field(
        32 * 1024**3, gt=0, description="Largest total uncompressed size of an archive, in bytes."
    )
    max_ratio: float = Field(
        200.0,
        gt=1,
        description="Largest compression ratio of one member larger than 1 MiB "
        "(PNG and JSON exports stay far below it).",
    )
    max_members: int = Field(1_000_000, gt=0, description="Most entries an archive may hold.")
    max_nesting: int = Field(2, ge=0, description="How deep ZIPs inside ZIPs are followed.")


DEFAULT_LIMITS = ArchiveLimits()


# --------------------------------------------------------------------------------------------
# The canonical value
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the export says about its video. ``fps`` is metadata.json's ``fps`` (the source's frame
    rate) when present, else annotations.json's ``source_fps``; the tool writes 30.0 for both
    whatever the truth, so prefer ``frame_index`` over timestamps for ordering."""

    video_id: str
    file_name: str
    width: int
    height: int
    fps: float | None
    source_fps: float | None
    total_frames: int | None
    duration_sec: float | None
    target_fps: float | None


@dataclass(frozen=True, slots=True, eq=False)
class ImageRef:
    """A frame image, read only when asked. ``location`` is printable ("a.zip!images/x.png")."""

    location: str
    kind: ImageKind
    format: str
    _reader: Callable[[], bytes] = field(repr=False)

    @property
    def is_overlay(self) -> bool:
        return self.kind == "overlay"

    def read_bytes(self) -> bytes:
        """The encoded image file (PNG/JPEG) exactly as stored."""
        return self._reader()

    def open(self) -> Any:
        """Decode with Pillow and return a ``PIL.Image.Image`` in RGB."""
        from PIL import Image

        with Image.open(io.BytesIO(self.read_bytes())) as image:
            return image.convert("RGB")


@dataclass(frozen=True, slots=True)
class ObjectAnnotation:
    """One tracked object in one frame, in image pixels.

    ``mask`` is a compressed COCO RLE at the image size; ``bbox`` is ``[x, y, w, h]`` scaled from
    the export's own box (or the mask's box when the export has none); ``area`` counts the mask's
    pixels at image size. ``is_empty`` marks a lost or occluded object (all-zero mask). ``error``
    is set, and ``mask`` is None, only when reading with ``strict=False`` and the mask is broken.
    """

    track_id: int
    label: str
    mask: Rle | None
    bbox: tuple[float, float, float, float]
    area: int
    is_empty: bool
    mask_form: MaskForm | None
    mask_size: tuple[int, int] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """One listed frame, in ``frame_index`` order. ``image`` is None when the export has no image
    for it (the tool writes none for frames without objects) and no raw frame was given."""

    frame_index: int
    timestamp_sec: float
    image: ImageRef | None
    objects: tuple[ObjectAnnotation, ...]

    @property
    def is_empty(self) -> bool:
        """True for frames listed with ``objects: []``."""
        return not self.objects

    @property
    def visible_objects(self) -> tuple[ObjectAnnotation, ...]:
        """Objects with a non-empty, readable mask."""
        return tuple(o for o in self.objects if not o.is_empty and o.mask is not None)


class FrameSequence(Sequence[Frame]):
    """The export's frames, converted on access (nothing is cached: memory stays flat)."""

    def __init__(
        self,
        raw: list[dict[str, Any]],
        build: Callable[[dict[str, Any]], Frame],
        source: _Source | None = None,
    ):
        self._raw = raw
        self._build = build
        self._source = source  # keeps the archive open while frames are read

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> list[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        if isinstance(index, slice):
            return [self._build(r) for r in self._raw[index]]
        return self._build(self._raw[index])

    def __iter__(self) -> Iterator[Frame]:
        for raw in self._raw:
            yield self._build(raw)


@dataclass(frozen=True)
class Export:
    """One SAM2 export (one video): its video info and its frames sorted by ``frame_index``.

    ``raw_frames`` holds the annotations.json frame entries as parsed (for the fast summary and for
    validation rules that look at the data as written); ``frames`` converts them lazily;
    ``images`` maps frame index to its image (overlay or raw).
    """

    source: Path
    video: VideoInfo
    frames: FrameSequence
    raw_frames: list[dict[str, Any]] = field(repr=False)
    images: dict[int, ImageRef] = field(repr=False)
    image_kind: ImageKind
    has_metadata: bool
    annotations_member: str
    # Frame indices in the order annotations.json lists them (``raw_frames`` is sorted); lets
    # ``validate`` report frames written out of order.
    written_order: list[int] = field(default_factory=list, repr=False)

    @property
    def frame_indices(self) -> list[int]:
        return [int(r["frame_index"]) for r in self.raw_frames]

    def close(self) -> None:
        """Release the open archive handle (also released when the value is garbage-collected)."""
        if self.frames._source is not None:
            self.frames._source.close()


# --------------------------------------------------------------------------------------------
# Sources: a ZIP (maybe nested) or a folder, read member by member, refusing hostile entries
# --------------------------------------------------------------------------------------------


def check_archive(archive: zipfile.ZipFile, name: str, limits: ArchiveLimits) -> None:
    """Refuse path traversal, absolute paths, symlinks and zip bombs, from the directory alone."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchiveError(
            describe(
                "archive has too many entries",
                file=name,
                expected=f"at most {limits.max_members}",
                found=len(infos),
                fix="check the file is a SAM2 export; raise ArchiveLimits.max_members if it is",
            )
        )
    total = 0
    for info in infos:
        member = info.filename
        parts = PurePosixPath(member.replace("\\", "/")).parts
        if member.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member):
            raise UnsafeArchiveError(
                describe(
                    "entry has an absolute path; refusing the archive",
                    file=name,
                    member=member,
                    fix="re-create the ZIP from the export folder with relative paths",
                )
            )
        if ".." in parts:
            raise UnsafeArchiveError(
                describe(
                    "entry climbs out of the archive with '..'; refusing the archive",
                    file=name,
                    member=member,
                    fix="re-create the ZIP from the export folder with relative paths",
                )
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(
                describe(
                    "entry is a symbolic link; refusing the archive",
                    file=name,
                    member=member,
                    fix="re-create the ZIP without links (zip without --symlinks)",
                )
            )
        total += info.file_size
        if info.file_size > 1024**2 and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise UnsafeArchiveError(
                describe(
                    "entry expands far more than real exports do (zip bomb?); refusing the archive",
                    file=name,
                    member=member,
                    expected=f"compression ratio at most {limits.max_ratio:g}",
                    found=f"{info.file_size / max(info.compress_size, 1):.0f}",
                    fix="if the file is trusted, raise ArchiveLimits.max_ratio",
                )
            )
    if total > limits.max_total_bytes:
        raise UnsafeArchiveError(
            describe(
                "archive would expand past the size limit (zip bomb?); refusing the archive",
                file=name,
                expected=f"at most {limits.max_total_bytes} bytes",
                found=f"{total} bytes",
                fix="if the file is trusted, raise ArchiveLimits.max_total_bytes",
            )
        )


class _Source:
    """Members of an export root inside a ZIP (possibly inside another ZIP) or a folder."""

    def __init__(self, path: Path, limits: ArchiveLimits):
        self.path = path
        self.limits = limits
        self._zip: zipfile.ZipFile | None = None
        self.root = ""  # prefix of the export inside the ZIP, "" or "folder/"
        self.label = str(path)
        if path.is_dir():
            self._dir: Path | None = path
            self._open_folder()
        else:
            self._dir = None
            self._open_zip()

    # -- folders ------------------------------------------------------------------------------
    def _open_folder(self) -> None:
        assert self._dir is not None
        if (self._dir / "annotations.json").is_file():
            return
        candidates = sorted(
            p.parent
            for p in self._dir.glob("*/annotations.json")
            if not _JUNK.search(p.relative_to(self._dir).as_posix())
        )
        if len(candidates) == 1:
            self._dir = candidates[0]
            self.label = str(self._dir)
            return
        raise ExportError(
            describe(
                "no annotations.json in the export folder",
                file=self.path,
                expected="annotations.json at the top or in one sub-folder",
                found=f"{len(candidates)} candidates" if candidates else "none",
                fix="pass the folder that holds annotations.json, or the ZIP the SAM2 demo wrote",
            )
        )

    # -- ZIPs ---------------------------------------------------------------------------------
    def _open_zip(self) -> None:
        try:
            archive = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise ExportError(
                describe("no such file", file=self.path, fix="check the path")
            ) from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise ExportError(
                describe(
                    f"not a readable ZIP ({exc})",
                    file=self.path,
                    fix="pass the sam2_export_*.zip the SAM2 demo wrote, or its extracted folder",
                )
            ) from None
        label = str(self.path)
        for depth in range(self.limits.max_nesting + 1):
            check_archive(archive, label, self.limits)
            names = [n for n in archive.namelist() if not _JUNK.search(n)]
            annotations = [n for n in names if PurePosixPath(n).name == "annotations.json"]
            if len(annotations) == 1:
                self._zip = archive
                self.label = label
                parent = str(PurePosixPath(annotations[0]).parent)
                self.root = "" if parent == "." else parent + "/"
                return
            if len(annotations) > 1:
                raise ExportError(
                    describe(
                        "archive holds several exports",
                        file=label,
                        expected="one annotations.json",
                        found=", ".join(annotations[:5]),
                        fix="pass each export separately (one ZIP or folder per video)",
                    )
                )
            inner = [n for n in names if n.lower().endswith(".zip")]
            if len(inner) != 1 or depth == self.limits.max_nesting:
                break
            data = archive.read(inner[0])
            archive.close()
            label = f"{label}!{inner[0]}"
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                raise ExportError(
                    describe("nested ZIP is not readable", file=label, fix="re-export the video")
                ) from None
        archive.close()
        raise ExportError(
            describe(
                "no annotations.json in the archive",
                file=label,
                expected="annotations.json (at the top, in one folder, or in one ZIP inside)",
                found="none",
                fix="pass the sam2_export_*.zip the SAM2 demo wrote",
            )
        )

    # -- reading ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Member paths relative to the export root, junk (macOS metadata) left out."""
        if self._dir is not None:
            root = self._dir
            out = []
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(root).as_posix()
                if p.is_file() and not p.is_symlink() and not _JUNK.search(rel):
                    out.append(rel)
            return out
        assert self._zip is not None
        n = len(self.root)
        return [
            name[n:]
            for name in self._zip.namelist()
            if name.startswith(self.root) and not name.endswith("/") and not _JUNK.search(name)
        ]

    def has(self, member: str) -> bool:
        if self._dir is not None:
            return (self._dir / member).is_file()
        assert self._zip is not None
        try:
            self._zip.getinfo(self.root + member)
        except KeyError:
            return False
        return True

    def read(self, member: str) -> bytes:
        if self._dir is not None:
            path = self._dir / member
            if path.is_symlink() or not path.resolve().is_relative_to(self._dir.resolve()):
                raise UnsafeArchiveError(
                    describe(
                        "file is a symbolic link or lies outside the export folder; refusing it",
                        file=self.label,
                        member=member,
                        fix="copy the real file into the export folder",
                    )
                )
            return path.read_bytes()
        assert self._zip is not None
        return self._zip.read(self.root + member)

    def location(self, member: str) -> str:
        if self._dir is not None:
            return str(self._dir / member)
        return f"{self.label}!{self.root}{member}"

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _index_images(names: Sequence[str]) -> dict[int, str]:
    """Map frame index -> image member, from names like images/frame_000006.png, 000006.png,
    frames/frame_0006.jpg. Prefers images/ over frames/ over data/ over elsewhere, PNG over JPG."""
    best: dict[int, tuple[tuple[int, int, str], str]] = {}
    for name in names:
        path = PurePosixPath(name)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = _TRAILING_NUMBER.search(path.stem)
        if not match:
            continue
        top = path.parts[0] if len(path.parts) > 1 else ""
        rank = (
            _IMAGE_DIRS.index(top) if top in _IMAGE_DIRS else len(_IMAGE_DIRS),
            0 if path.suffix.lower() == ".png" else 1,
            name,
        )
        index = int(match.group(1))
        if index not in best or rank < best[index][0]:
            best[index] = (rank, name)
    return {index: name for index, (_, name) in best.items()}


# --------------------------------------------------------------------------------------------
# Raw frames: a folder of frame files or the source video
# --------------------------------------------------------------------------------------------


def _raw_frame_refs(frames: Path, indices: Sequence[int]) -> dict[int, ImageRef]:
    if frames.is_dir():
        names = [
            p.relative_to(frames).as_posix()
            for p in sorted(frames.rglob("*"))
            if p.is_file() and not p.is_symlink()
        ]
        index = _index_images(names)
        missing = [i for i in indices if i not in index]
        if missing:
            raise ExportError(
                describe(
                    f"raw frames folder lacks frames the export lists ({len(missing)} missing)",
                    file=frames,
                    frame_index=missing[0],
                    expected="one image per listed frame, named by frame index "
                    "(frame_000006.png, 000006.jpg, ...)",
                    found=f"{len(index)} images; first missing indices {missing[:5]}",
                    fix="export every frame of the video (e.g. ffmpeg -i video.mp4 "
                    "frames/frame_%06d.png, numbered from 0) or pass the video itself",
                )
            )
        return {
            i: ImageRef(
                location=str(frames / index[i]),
                kind="raw",
                format=_format_of(index[i]),
                _reader=(lambda p=frames / index[i]: p.read_bytes()),
            )
            for i in indices
        }
    if frames.suffix.lower() in VIDEO_SUFFIXES:
        from sam2_finetune.video import video_frame_refs

        return video_frame_refs(frames, indices)
    raise ExportError(
        describe(
            "raw frames must be a folder of images or a video file",
            file=frames,
            expected=f"a folder, or a video ({', '.join(VIDEO_SUFFIXES)})",
            found="neither" if frames.exists() else "no such path",
            fix="check the path given to --frames",
        )
    )


def _format_of(name: str) -> str:
    return "png" if name.lower().endswith(".png") else "jpeg"


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _load_json(source: _Source, member: str) -> Any:
    data = source.read(member)
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(
            describe(
                f"not valid JSON ({exc})",
                file=source.label,
                member=member,
                fix="re-download the export; the file is damaged",
            )
        ) from None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
        strict: when False, a broken mask does not raise; the object carries ``error`` instead
            (used by ``validate`` to report every problem at once).
        video_id: override the derived id (``<name>-<hash of annotations.json>``).

    Raises:
        ExportError: (and subclasses) with a message naming archive, member, frame and object.
    """
    path = Path(path)
    source = _Source(path, limits)
    if not source.has("annotations.json"):
        raise ExportError(
            describe("no annotations.json", file=source.label, fix="pass a SAM2 export")
        )
    ann_bytes = source.read("annotations.json")
    try:
        annotations = json.loads(ann_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(
            describe(
                f"not valid JSON ({exc})",
                file=source.label,
                member="annotations.json",
                fix="re-download the export; the file is damaged",
            )
        ) from None
    metadata = _load_json(source, "metadata.json") if source.has("metadata.json") else None
    where = {"file": source.label, "member": "annotations.json"}
    if not isinstance(annotations, dict) or not isinstance(annotations.get("annotations"), list):
        raise ExportError(
            describe(
                "annotations.json has no 'annotations' list",
                **where,
                field="annotations",
                expected="a list of frames",
                found=type(
                    annotations.get("annotations") if isinstance(annotations, dict) else annotations
                ).__name__,
                fix="pass a SAM2 export's annotations.json",
            )
        )
    video_json = annotations.get("video") or {}
    meta_video = (metadata or {}).get("video") or {}
    width = video_json.get("width", meta_video.get("width"))
    height = video_json.get("height", meta_video.get("height"))
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ExportError(
            describe(
                "video size is missing or invalid",
                **where,
                field="video.width/video.height",
                expected="positive integers",
                found=f"{width!r} x {height!r}",
                fix="add the video's width and height to annotations.json 'video'",
            )
        )
    source_fps = _number(video_json.get("source_fps", video_json.get("fps")))
    fps = _number(meta_video.get("fps")) or source_fps
    config = annotations.get("export_config") or (metadata or {}).get("export_config") or {}
    file_name = str(video_json.get("filename") or meta_video.get("filename") or path.stem)
    digest = hashlib.sha1(ann_bytes).hexdigest()[:8]
    info = VideoInfo(
        video_id=video_id or f"{_slug(path.stem if path.suffix else path.name)}-{digest}",
        file_name=file_name,
        width=width,
        height=height,
        fps=fps,
        source_fps=source_fps,
        total_frames=video_json.get("total_frames", meta_video.get("total_frames")),
        duration_sec=_number(video_json.get("duration_sec", meta_video.get("duration_sec"))),
        target_fps=_number(config.get("target_fps")),
    )

    raw_frames = annotations["annotations"]
    for position, raw in enumerate(raw_frames):
        if not isinstance(raw, dict) or not isinstance(raw.get("frame_index"), int):
            raise ExportError(
                describe(
                    f"frame entry #{position} has no integer frame_index",
                    **where,
                    field=f"annotations[{position}].frame_index",
                    expected="an integer",
                    found=repr(raw.get("frame_index") if isinstance(raw, dict) else raw)[:60],
                    fix="repair or re-export annotations.json",
                )
            )
        if not isinstance(raw.get("objects", []), list):
            raise ExportError(
                describe(
                    "'objects' is not a list",
                    **where,
                    frame_index=raw["frame_index"],
                    field="objects",
                    expected="a list",
                    found=type(raw["objects"]).__name__,
                    fix="repair or re-export annotations.json",
                )
            )
    written_order = [r["frame_index"] for r in raw_frames]
    raw_frames = sorted(raw_frames, key=lambda r: r["frame_index"])
    indices = [r["frame_index"] for r in raw_frames]

    image_index = _index_images(source.names())
    images: dict[int, ImageRef] = {
        i: ImageRef(
            location=source.location(image_index[i]),
            kind="overlay",
            format=_format_of(image_index[i]),
            _reader=(lambda m=image_index[i]: source.read(m)),
        )
        for i in indices
        if i in image_index
    }
    image_kind: ImageKind = "overlay"
    if frames is not None:
        images = _raw_frame_refs(Path(frames), indices)
        image_kind = "raw"

    def build(raw: dict[str, Any]) -> Frame:
        return _build_frame(raw, info, images.get(raw["frame_index"]), source.label, strict)

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


def read_exports(
    paths: Sequence[str | Path],
    *,
    frames: Sequence[str | Path | None] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    strict: bool = True,
) -> list[Export]:
    """Read several exports; their video ids are distinct (a ``-2``, ``-3`` suffix is added to
    repeats, e.g. the same ZIP passed twice) and stable across runs."""
    if frames is not None and len(frames) != len(paths):
        raise ExportError(
            describe(
                "one raw-frames source is needed per export",
                expected=f"{len(paths)} frame sources",
                found=len(frames),
                fix="pass --frames once per export, in the same order (or none)",
            )
        )
    exports = []
    seen: Counter[str] = Counter()
    for i, p in enumerate(paths):
        export = read_export(p, frames=frames[i] if frames else None, limits=limits, strict=strict)
        base = export.video.video_id
        seen[base] += 1
        if seen[base] > 1:
            video = VideoInfo(**{**asdict(export.video), "video_id": f"{base}-{seen[base]}"})
            export = Export(**{**export.__dict__, "video": video})
        exports.append(export)
    return exports


# --------------------------------------------------------------------------------------------
# Masks of one object -> canonical
# --------------------------------------------------------------------------------------------


def _mask_counts(value: Any, video: VideoInfo) -> tuple[np.ndarray, tuple[int, int], MaskForm]:
    """Detect the form of one mask and return (uncompressed counts, (h, w), form)."""
    if isinstance(value, str):
        try:
            counts = parse_counts(value)
        except ValueError:
            # Not a count string: a bare compressed COCO string at image size.
            counts = decode_compressed_counts(value)
            return counts, (video.height, video.width), "coco_compressed"
        total = int(counts.sum())
        side = square_side(total)
        if side is not None:
            return counts, (side, side), "sam2_string"
        if total == video.width * video.height:
            return counts, (video.height, video.width), "sam2_string"
        raise ValueError(
            f"counts add up to {total}, which is neither a square (256 x 256 = 65536) "
            f"nor the video size {video.width} x {video.height}"
        )
    if isinstance(value, dict) and "counts" in value:
        size = value.get("size")
        if not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)
        ):
            raise ValueError(f"COCO mask has no valid 'size' [h, w] (found {size!r})")
        h, w = int(size[0]), int(size[1])
        raw = value["counts"]
        if isinstance(raw, str):
            counts = decode_compressed_counts(raw)
            form: MaskForm = "coco_compressed"
        elif isinstance(raw, list):
            counts = np.asarray(raw, dtype=np.int64)
            if counts.size and counts.min() < 0:
                raise ValueError("negative run length")
            form = "coco_uncompressed"
        else:
            raise ValueError(
                f"COCO 'counts' must be a string or a list (found {type(raw).__name__})"
            )
        if int(counts.sum()) != h * w:
            raise ValueError(f"counts add up to {int(counts.sum())}, not h x w = {h * w}")
        return counts, (h, w), form
    raise ValueError(
        f"unknown mask form {type(value).__name__}: expected a count string or a COCO RLE dict"
    )


def _build_object(
    obj: dict[str, Any], video: VideoInfo, archive: str, frame_index: int, strict: bool
) -> ObjectAnnotation:
    track_id = obj.get("object_id")
    label = obj.get("label")
    if not isinstance(track_id, int):
        raise ExportError(
            describe(
                "object has no integer object_id",
                file=archive,
                member="annotations.json",
                frame_index=frame_index,
                field="object_id",
                expected="an integer track id",
                found=repr(track_id),
                fix="repair or re-export annotations.json",
            )
        )
    if not isinstance(label, str) or not label:
        label = f"object_{track_id}"
    mask_value = obj.get("mask_rle", obj.get("segmentation", obj.get("mask")))
    try:
        counts, (mh, mw), form = _mask_counts(mask_value, video)
    except ValueError as exc:
        message = describe(
            f"mask cannot be read: {exc}",
            file=archive,
            member="annotations.json",
            frame_index=frame_index,
            object_id=track_id,
            field="mask_rle",
            fix="drop this object or re-export the video; `sam2-finetune validate` lists all "
            "broken masks",
        )
        if strict:
            raise MaskError(message) from None
        return ObjectAnnotation(
            track_id, label, None, (0.0, 0.0, 0.0, 0.0), 0, True, None, None, message
        )
    height, width = video.height, video.width
    scaled = resize_counts(counts, (mh, mw), (height, width))
    area = int(scaled[1::2].sum())
    if area == 0:
        return ObjectAnnotation(
            track_id,
            label,
            encode_counts(scaled, height, width),
            (0.0, 0.0, 0.0, 0.0),
            0,
            True,
            form,
            (mh, mw),
        )
    rle = encode_counts(scaled, height, width)
    box = obj.get("bbox")
    if (
        isinstance(box, (list, tuple))
        and len(box) == 4
        and all(_number(v) is not None for v in box)
        and box[2] > 0
        and box[3] > 0
    ):
        sx, sy = width / mw, height / mh
        bbox = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    else:
        bbox = rle_bbox(rle)
    return ObjectAnnotation(
        track_id, label, rle, tuple(float(v) for v in bbox), area, False, form, (mh, mw)
    )  # type: ignore[arg-type]


def _build_frame(
    raw: dict[str, Any], video: VideoInfo, image: ImageRef | None, archive: str, strict: bool
) -> Frame:
    index = raw["frame_index"]
    timestamp = _number(raw.get("timestamp_sec"))
    if timestamp is None:
        timestamp = index / video.fps if video.fps else 0.0
    objects = tuple(
        _build_object(o if isinstance(o, dict) else {}, video, archive, index, strict)
        for o in raw.get("objects") or []
    )
    return Frame(index, timestamp, image, objects)


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


def summarize_export(export: Export) -> ExportSummary:
    """Count what an export holds, from the JSON as written (no mask is rescaled)."""
    labels: Counter[str] = Counter()
    forms: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    tracks: dict[str, list[str]] = {}
    objects = empty = broken = with_objects = 0
    video = export.video
    for raw in export.raw_frames:
        objs = raw.get("objects") or []
        if objs:
            with_objects += 1
        for obj in objs:
            objects += 1
            track = str(obj.get("object_id"))
            label = obj.get("label") or f"object_{track}"
            seen = tracks.setdefault(track, [])
            if label not in seen:
                seen.append(label)
            try:
                counts, (h, w), form = _mask_counts(
                    obj.get("mask_rle", obj.get("segmentation", obj.get("mask"))), video
                )
            except ValueError:
                broken += 1
                continue
            forms[form] += 1
            sizes[f"{h}x{w}"] += 1
            if int(counts[1::2].sum()) == 0:
                empty += 1
            else:
                labels[label] += 1
    with_images = sum(1 for i in export.frame_indices if i in export.images)
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
        mask_sizes=dict(sizes),
        objects=objects,
        empty_masks=empty,
        broken_masks=broken,
        has_metadata=export.has_metadata,
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
        + ", ".join(f"{form} x{n}" for form, n in summary.mask_forms.items())
        + "; sizes "
        + ", ".join(f"{size} x{n}" for size, n in summary.mask_sizes.items()),
        f"  tracks       {len(summary.tracks)}: "
        + ", ".join(
            f"#{track} {'/'.join(labels)}" + (" (RENAMED)" if len(labels) > 1 else "")
            for track, labels in summary.tracks.items()
        ),
        "  labels       " + ", ".join(f"{label} x{n}" for label, n in summary.labels.items()),
    ]
    if not summary.has_metadata:
        lines.append("  note         metadata.json is missing (fps taken from annotations.json)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class InfoOptions(BaseModel):
    """Print a summary of SAM2 exports: video, frames, images, tracks, labels, masks."""

    model_config = ConfigDict(extra="forbid")

    exports: list[Path] = Field(
        description="SAM2 export ZIPs or extracted folders.", json_schema_extra={"positional": True}
    )
    frames: list[Path] | None = Field(
        None, description="Raw frames (folder or video) per export, replacing overlays."
    )
    json_output: bool = Field(False, alias="json", description="Print JSON instead of text.")


def info(options: InfoOptions) -> list[ExportSummary]:
    """Summaries of the given exports (the ``info`` stage)."""
    exports = read_exports(options.exports, frames=options.frames)
    try:
        return [summarize_export(e) for e in exports]
    finally:
        for e in exports:
            e.close()


def info_command(options: InfoOptions) -> int:
    summaries = info(options)
    if options.json_output:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
    else:
        print("\n\n".join(format_summary(s) for s in summaries))
    return 0
