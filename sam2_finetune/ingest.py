"""Ingest: read SAM2 web-demo exports (ZIP or extracted folder) into one canonical, typed value.

The export format is documented in ``docs/ingest.md``; its traps (256 x 256 column-major count
strings with no size, boxes in 256-space, overlay PNGs, empty frames without images, re-zipped
folders, ``fps`` vs ``source_fps``) are handled here so no later stage sees them.

>>> export = read_export("sample_data/street_scene.zip")  # doctest: +SKIP
>>> export.video.width, len(export.frames)                 # doctest: +SKIP
(320, 40)
>>> export.frames[0].is_empty          # listed with ``objects: []``  # doctest: +SKIP
True
>>> export.frames[1].objects[0].bbox  # x, y, w, h in video pixels   # doctest: +SKIP
(16.0, 156.0, 70.0, 33.0)

Frames are converted lazily: ``export.frames[i]`` rescales that frame's masks when asked, so
memory stays flat however long the video is. Images are never read until ``ImageRef.read_bytes()``
or ``ImageRef.open()``. Archives are read member by member, never extracted, and refused before
anything is read when their central directory looks hostile (see :class:`ArchiveLimits`).
"""

from __future__ import annotations

import codecs
import dataclasses
import gc
import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import IO, Any, Literal, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.errors import (
    ExportError,
    MaskError,
    OptionsError,
    UnsafeArchiveError,
    describe,
)
from sam2_finetune.masks import (
    Rle,
    counts_to_rles,
    decode_compressed_counts,
    encode_counts,
    parse_counts,
    square_side,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv")
# Preference when one frame index has several candidate images.
_IMAGE_DIRS = ("images", "frames", "data")
# macOS "Compress" adds __MACOSX/ (resource forks), .DS_Store and ._name files; Windows Thumbs.db.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|\._|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"(\d+)$")
# Ratios are only judged on members big enough to hurt; tiny members compress arbitrarily well.
_RATIO_MIN_BYTES = 1024**2
# Nested ZIPs are copied to an anonymous temporary file (memory first, disk past this size):
# zipfile needs random access, which a compressed member does not offer cheaply.
_SPOOL_BYTES = 64 * 1024**2
_MASK_KEYS = ("mask_rle", "segmentation", "mask")
_SAM2_SIDE = 256

MaskForm = Literal["sam2_string", "coco_compressed", "coco_uncompressed"]
ImageKind = Literal["overlay", "raw"]


# --------------------------------------------------------------------------------------------
# Limits for untrusted archives
# --------------------------------------------------------------------------------------------


class ArchiveLimits(BaseModel):
    """Bounds that refuse hostile archives from the central directory alone, before a byte of any
    member is decompressed. Raise them for a trusted export that trips one; the error says which.
    """

    model_config = ConfigDict(frozen=True)

    max_total_bytes: int = Field(
        64 * 1024**3, gt=0, description="Largest total uncompressed size of an archive, in bytes."
    )
    max_member_bytes: int = Field(
        4 * 1024**3,
        gt=0,
        description="Largest uncompressed size of one member (one member is read at a time).",
    )
    max_ratio: float = Field(
        200.0,
        gt=1,
        description="Largest compression ratio of a member over 1 MiB, and of the whole archive. "
        "Real exports stay below about 130 (a static scene's annotations.json); deflated zeros, "
        "the usual bomb, reach 230 even at the fastest level and 1000 at the default one.",
    )
    max_members: int = Field(200_000, gt=0, description="Most entries an archive may hold.")
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
        from PIL import Image, UnidentifiedImageError

        data = self.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" says nothing
            # to a user: show what the file starts with instead.
            found = (
                f"{len(data)} bytes starting {data[:8]!r}"
                if isinstance(exc, UnidentifiedImageError)
                else f"a damaged image ({exc})"
            )
            raise ExportError(
                describe(
                    "image cannot be decoded",
                    file=self.location,
                    expected=f"a {self.format.upper()} image",
                    found=found,
                    fix="re-export the video, or pass raw frames with --frames",
                )
            ) from None


@dataclass(frozen=True, slots=True)
class ObjectAnnotation:
    """One tracked object in one frame, in image pixels.

    ``mask`` is a compressed COCO RLE at the image size; ``bbox`` is the mask's own box
    ``[x, y, w, h]`` at image size (as ``pycocotools.mask.toBbox``: integers, inclusive extents);
    ``area`` counts the mask's pixels at image size. ``is_empty`` marks a lost or occluded object
    (all-zero mask; box and area 0). ``mask_form`` and ``mask_size`` say how the export stored it.
    ``error`` is set, and ``mask`` is None, only when reading with ``strict=False`` and the
    object is broken (its ``track_id`` is -1 when the export gives no integer ``object_id``).
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


# Frames converted together: their masks are rescaled in one vectorised batch, which costs about
# half as much per mask as one frame at a time. Memory stays bounded by one chunk.
_CHUNK_FRAMES = 16


class FrameSequence(Sequence[Frame]):
    """The export's frames, converted on access. Nothing is kept but the last chunk of frames
    read in order (memory stays flat); in-order reads, by iteration or by increasing index, are
    converted a chunk at a time, which is faster."""

    def __init__(
        self,
        raw: list[dict[str, Any]],
        build: Callable[[Sequence[dict[str, Any]]], list[Frame]],
        source: _Source | None = None,
    ):
        self._raw = raw
        self._build = build  # raw frame entries -> Frames
        self._source = source  # keeps the archive open while frames are read
        self._chunk: tuple[int, list[Frame]] = (0, [])

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> list[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        if isinstance(index, slice):
            return self._build(self._raw[index])
        n = len(self._raw)
        if not -n <= index < n:
            raise IndexError(f"frame position {index} out of range (the export lists {n})")
        index %= n
        start, frames = self._chunk
        if start <= index < start + len(frames):
            return frames[index - start]
        if index == start + len(frames):  # reading in order: convert the next chunk at once
            try:
                frames = self._build(self._raw[index : index + _CHUNK_FRAMES])
            except ExportError:
                pass  # a later frame of the chunk is broken: only its own read may raise
            else:
                self._chunk = (index, frames)
                return frames[0]
        return self._build(self._raw[index : index + 1])[0]

    def __iter__(self) -> Iterator[Frame]:
        for start in range(0, len(self._raw), _CHUNK_FRAMES):
            chunk = self._raw[start : start + _CHUNK_FRAMES]
            try:
                frames = self._build(chunk)
            except ExportError:
                # Yield the frames before the broken one, then raise at the broken one itself.
                frames = (self._build([raw])[0] for raw in chunk)
            yield from frames


@dataclass(frozen=True)
class Export:
    """One SAM2 export (one video): its video info and its frames sorted by ``frame_index``.

    ``raw_frames`` holds the annotations.json frame entries as parsed, sorted the same way (for
    the fast summary and for validation rules that look at the data as written); ``frames``
    converts them lazily; ``images`` maps frame index to its image (overlay or raw). Use it as a
    context manager, or call :meth:`close`, to release the archive.
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

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Sources: a ZIP (maybe nested) or a folder, read member by member, refusing hostile entries
# --------------------------------------------------------------------------------------------


def _unsafe(problem: str, name: str, member: str | None = None, **kw: Any) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        describe(f"{problem}; refusing the archive", file=name, member=member, **kw)
    )


def check_archive(
    archive: zipfile.ZipFile,
    name: str,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    archive_bytes: int | None = None,
) -> None:
    """Refuse path traversal, absolute paths, symlinks and zip bombs, from the directory alone.

    ``archive_bytes`` (the ZIP file's own size) adds two checks: members whose data would lie
    past the end of the file, and members sharing their compressed data (overlapping entries,
    the construction of the biggest known bombs), both betrayed by compressed sizes that add up
    to more than the file holds.
    """
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise _unsafe(
            "archive has too many entries",
            name,
            expected=f"at most {limits.max_members}",
            found=len(infos),
            fix="check the file is a SAM2 export; raise ArchiveLimits.max_members if it is",
        )
    relative_fix = "re-create the ZIP from the export folder with relative paths"
    total = 0
    compressed = 0
    for info in infos:
        member = info.filename
        posix = member.replace("\\", "/")
        if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
            raise _unsafe("entry has an absolute path", name, member, fix=relative_fix)
        if ".." in posix.split("/"):
            raise _unsafe(
                "entry climbs out of the archive with '..'", name, member, fix=relative_fix
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _unsafe(
                "entry is a symbolic link",
                name,
                member,
                fix="re-create the ZIP without links (zip without --symlinks)",
            )
        if info.file_size > limits.max_member_bytes:
            raise _unsafe(
                "entry would expand past the size limit of one member (zip bomb?)",
                name,
                member,
                expected=f"at most {limits.max_member_bytes} bytes",
                found=f"{info.file_size} bytes",
                fix="if the file is trusted, raise ArchiveLimits.max_member_bytes",
            )
        if info.file_size > _RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise _unsafe(
                "entry expands far more than real exports do (zip bomb?)",
                name,
                member,
                expected=f"compression ratio at most {limits.max_ratio:g}",
                found=f"{info.file_size / max(info.compress_size, 1):.0f}",
                fix="if the file is trusted, raise ArchiveLimits.max_ratio",
            )
        total += info.file_size
        compressed += info.compress_size
        if archive_bytes is not None and info.header_offset + info.compress_size > archive_bytes:
            raise _unsafe(
                "entry's data lies past the end of the file (truncated or forged)",
                name,
                member,
                expected=f"data within the file's {archive_bytes} bytes",
                found=f"offset {info.header_offset} + {info.compress_size} bytes",
                fix="download the export again",
            )
    if total > limits.max_total_bytes:
        raise _unsafe(
            "archive would expand past the size limit (zip bomb?)",
            name,
            expected=f"at most {limits.max_total_bytes} bytes",
            found=f"{total} bytes",
            fix="if the file is trusted, raise ArchiveLimits.max_total_bytes",
        )
    if archive_bytes is not None:
        if compressed > archive_bytes:
            raise _unsafe(
                "entries share their compressed data (overlapping entries: a zip bomb)",
                name,
                expected=f"compressed sizes adding up to at most the file's {archive_bytes} bytes",
                found=f"{compressed} bytes",
                fix="do not use this file",
            )
        if total > _RATIO_MIN_BYTES and total > limits.max_ratio * max(archive_bytes, 1):
            raise _unsafe(
                "archive expands far more than real exports do (zip bomb?)",
                name,
                expected=f"compression ratio at most {limits.max_ratio:g}",
                found=f"{total / max(archive_bytes, 1):.0f}",
                fix="if the file is trusted, raise ArchiveLimits.max_ratio",
            )


def _spool_member(archive: zipfile.ZipFile, member: str, label: str) -> IO[bytes]:
    """Copy one member (a nested ZIP) to an anonymous temporary file, streaming."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (returned)
    try:
        with archive.open(member) as stream:
            shutil.copyfileobj(stream, spool, 1024**2)
    except _READ_ERRORS as exc:
        spool.close()
        raise _read_error(exc, label, member) from None
    spool.seek(0)
    return spool


# What reading a damaged member raises: zipfile's own errors, zlib/bz2/lzma errors, EOF on a
# truncated file, RuntimeError for encrypted members, NotImplementedError for unknown methods.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
)


def _read_error(exc: BaseException, label: str, member: str) -> ExportError:
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return ExportError(
            describe(
                "member is encrypted",
                file=label,
                member=member,
                fix="re-create the ZIP without a password",
            )
        )
    return ExportError(
        describe(
            f"member cannot be read ({type(exc).__name__}: {exc})",
            file=label,
            member=member,
            fix="download the export again; the archive is damaged (or forged)",
        )
    )


class _Source:
    """Members of an export root inside a ZIP (possibly inside another ZIP) or a folder.

    Picklable: a copy reopens the same path (so exports can cross process boundaries).
    """

    def __init__(self, path: Path, limits: ArchiveLimits):
        self.path = path
        self.limits = limits
        self._zip: zipfile.ZipFile | None = None
        self._spools: list[IO[bytes]] = []
        self._dir: Path | None = None
        self.root = ""  # prefix of the export inside the ZIP, "" or "folder/"
        self.label = str(path)
        if path.is_dir():
            self._open_folder(path)
        elif path.exists():
            self._open_zip()
        else:
            raise ExportError(
                describe(
                    "no such file or folder",
                    file=path,
                    fix="check the path (a sam2_export_*.zip or its extracted folder)",
                )
            )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Source, (self.path, self.limits))

    # -- folders ------------------------------------------------------------------------------
    def _open_folder(self, folder: Path) -> None:
        if (folder / "annotations.json").is_file():
            self._dir = folder
        else:
            # An export one level down: what unzipping a re-zipped export gives.
            candidates = sorted(
                p.parent
                for p in folder.glob("*/annotations.json")
                if not _JUNK.search(p.relative_to(folder).as_posix())
            )
            if len(candidates) != 1:
                zips = sorted(p.name for p in folder.glob("*.zip"))
                raise ExportError(
                    describe(
                        "the folder holds several exports"
                        if candidates
                        else "no annotations.json in the export folder",
                        file=folder,
                        expected="annotations.json at the top or in one sub-folder",
                        found=", ".join(c.name for c in candidates[:5])
                        or (
                            f"no annotations.json; ZIPs: {', '.join(zips[:3])}" if zips else "none"
                        ),
                        fix="pass each export separately"
                        if candidates
                        else "pass the folder holding annotations.json, or the export ZIP itself",
                    )
                )
            self._dir = candidates[0]
            self.label = str(self._dir)
            if self._dir.is_symlink():  # found by the search, not named by the user
                raise UnsafeArchiveError(
                    describe(
                        "the export's sub-folder is a symbolic link; refusing it",
                        file=folder,
                        member=self._dir.name,
                        fix="pass the folder the link points to, or copy the export there",
                    )
                )
        links = []
        for dirpath, dirnames, filenames in os.walk(self._dir):
            here = Path(dirpath)
            links += [here / n for n in dirnames + filenames if (here / n).is_symlink()]
        if links:
            raise UnsafeArchiveError(
                describe(
                    "export folder holds symbolic links; refusing it",
                    file=self._dir,
                    member=links[0].relative_to(self._dir).as_posix(),
                    found=f"{len(links)} link(s)",
                    fix="copy the real files into the export folder instead of linking them",
                )
            )

    # -- ZIPs ---------------------------------------------------------------------------------
    def _open_zip(self) -> None:
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ExportError(
                describe(
                    f"not a readable ZIP ({exc})",
                    file=self.path,
                    fix="pass the sam2_export_*.zip the SAM2 demo wrote, or its extracted folder",
                )
            ) from None
        label = str(self.path)
        size = self.path.stat().st_size
        depth = 0
        try:
            while True:
                check_archive(archive, label, self.limits, size)
                names = [n for n in archive.namelist() if not _JUNK.search(n)]
                annotations = [n for n in names if n.rpartition("/")[2] == "annotations.json"]
                if len(annotations) == 1:
                    self._zip = archive
                    self.label = label
                    self.root = annotations[0][: -len("annotations.json")]
                    return
                if len(annotations) > 1:
                    raise ExportError(
                        describe(
                            "archive holds several annotations.json",
                            file=label,
                            expected="one export (one annotations.json) per ZIP",
                            found=", ".join(annotations[:5]),
                            fix="pass each export separately (one ZIP or folder per video)",
                        )
                    )
                inner = [n for n in names if n.lower().endswith(".zip")]
                if len(inner) != 1:
                    raise ExportError(
                        describe(
                            "no annotations.json in the archive",
                            file=label,
                            expected="annotations.json (at the top, in one folder, or in one "
                            "ZIP inside)",
                            found=f"{len(inner)} ZIPs inside" if inner else "none",
                            fix="pass the sam2_export_*.zip the SAM2 demo wrote",
                        )
                    )
                if depth == self.limits.max_nesting:
                    raise _unsafe(
                        "ZIPs are nested deeper than allowed",
                        label,
                        inner[0],
                        expected=f"at most {self.limits.max_nesting} ZIP(s) inside the ZIP",
                        found="one more",
                        fix="pass the inner export ZIP itself, or raise ArchiveLimits.max_nesting",
                    )
                spool = _spool_member(archive, inner[0], label)
                self._spools.append(spool)
                size = spool.seek(0, io.SEEK_END)
                spool.seek(0)
                archive.close()
                label = f"{label}!{inner[0]}"
                depth += 1
                try:
                    archive = zipfile.ZipFile(spool)  # type: ignore[arg-type]
                except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                    raise ExportError(
                        describe(
                            f"nested ZIP is not readable ({exc})",
                            file=label,
                            fix="re-create the outer ZIP, or pass the inner export directly",
                        )
                    ) from None
        except BaseException:
            archive.close()
            self.close()
            raise

    # -- reading ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Member paths relative to the export root, junk (macOS metadata) left out."""
        if self._dir is not None:
            out = []
            for dirpath, dirnames, filenames in os.walk(self._dir):
                rel = Path(dirpath).relative_to(self._dir).as_posix()
                prefix = "" if rel == "." else rel + "/"
                dirnames[:] = sorted(d for d in dirnames if not _JUNK.search(prefix + d + "/"))
                out.extend(prefix + f for f in filenames if not _JUNK.search(prefix + f))
            return sorted(out)
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
        """One member's bytes (the ZIP's member, or the folder's file)."""
        if self._dir is not None:
            path = self._dir / member
            if path.is_symlink():
                raise UnsafeArchiveError(
                    describe(
                        "file is a symbolic link; refusing it",
                        file=self.label,
                        member=member,
                        fix="copy the real file into the export folder",
                    )
                )
            try:
                size = path.stat().st_size
                # The bound of a ZIP member holds for a folder's file too: one file is read
                # whole into memory (annotations.json, an image).
                if size > self.limits.max_member_bytes:
                    raise _unsafe(
                        "file is larger than the size limit of one member",
                        self.label,
                        member,
                        expected=f"at most {self.limits.max_member_bytes} bytes",
                        found=f"{size} bytes",
                        fix="if the file is trusted, raise ArchiveLimits.max_member_bytes",
                    )
                return path.read_bytes()
            except OSError as exc:
                raise ExportError(
                    describe(
                        f"cannot read the file ({exc.strerror or exc})",
                        file=self.label,
                        member=member,
                        fix="check the file exists and is readable",
                    )
                ) from None
        if self._zip is None:
            raise ExportError(
                describe(
                    "the export was closed",
                    file=self.label,
                    member=member,
                    fix="read images before calling Export.close() (or leave the with block)",
                )
            )
        try:
            info = self._zip.getinfo(self.root + member)
            # Never more than the declared size: ZipFile.read() inflates a member's whole stream
            # in one call, so a member forged to declare 100 bytes could still expand to GBs.
            with self._zip.open(info) as stream:
                return stream.read(info.file_size)
        except KeyError:
            raise ExportError(
                describe("no such member", file=self.label, member=self.root + member)
            ) from None
        except _READ_ERRORS as exc:
            raise _read_error(exc, self.label, self.root + member) from None

    def member(self, name: str) -> str:
        """How a member is named in messages (its path inside the archive or folder)."""
        return self.root + name

    def location(self, member: str) -> str:
        if self._dir is not None:
            return str(self._dir / member)
        return f"{self.label}!{self.root}{member}"

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        for spool in self._spools:
            spool.close()
        self._spools = []


def _index_images(names: Sequence[str]) -> dict[int, str]:
    """Map frame index -> image member, from names like images/frame_000006.png, 000006.png,
    frames/frame_0006.jpg. Prefers images/ over frames/ over data/ over elsewhere, PNG over JPG."""
    best: dict[int, tuple[tuple[int, int, str], str]] = {}
    # String operations, not pathlib: this runs once per member (thousands).
    for name in names:
        folder, _, base = name.rpartition("/")
        stem, dot, suffix = base.rpartition(".")
        suffix = suffix.lower()
        if not dot or "." + suffix not in IMAGE_SUFFIXES:
            continue
        match = _TRAILING_NUMBER.search(stem)
        if not match:
            continue
        top = folder.partition("/")[0].lower()
        rank = (
            _IMAGE_DIRS.index(top) if top in _IMAGE_DIRS else len(_IMAGE_DIRS),
            0 if suffix == "png" else 1,
            name,
        )
        index = int(match.group(1))
        if index not in best or rank < best[index][0]:
            best[index] = (rank, name)
    return {index: name for index, (_, name) in best.items()}


# --------------------------------------------------------------------------------------------
# Raw frames: a folder of frame files or the source video
# --------------------------------------------------------------------------------------------


def _raw_frame_refs(frames: Path, indices: Sequence[int], strict: bool) -> dict[int, ImageRef]:
    if frames.is_dir():
        names = [
            p.relative_to(frames).as_posix()
            for p in sorted(frames.rglob("*"))
            if p.is_file() and not _JUNK.search(p.relative_to(frames).as_posix())
        ]
        index = _index_images(names)
        wanted = sorted(set(indices))
        missing = [i for i in wanted if i not in index]
        if missing and strict:
            shifted = all(i + 1 in index for i in wanted)
            raise ExportError(
                describe(
                    f"raw frames folder lacks {len(missing)} of the {len(wanted)} frames the "
                    "export lists",
                    file=frames,
                    frame_index=missing[0],
                    expected="one image per listed frame, named by its frame index "
                    "(frame_000006.png, 000006.jpg, ...)",
                    found=f"{len(index)} images; first missing indices {missing[:5]}",
                    fix=(
                        "the files are numbered from 1 (ffmpeg's default): re-extract with "
                        "ffmpeg -i video.mp4 -start_number 0 frames/frame_%06d.png"
                        if shifted
                        else "extract every frame of the video (ffmpeg -i video.mp4 "
                        "-start_number 0 frames/frame_%06d.png) or pass the video itself"
                    ),
                )
            )
        return {
            i: ImageRef(
                location=str(frames / index[i]),
                kind="raw",
                format=_format_of(index[i]),
                _reader=partial(_read_file, frames / index[i]),
            )
            for i in wanted
            if i in index
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


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ExportError(
            describe(
                f"cannot read the raw frame ({exc.strerror or exc})",
                file=path,
                fix="check the frames folder given to --frames",
            )
        ) from None


def _format_of(name: str) -> str:
    return "png" if name.lower().endswith(".png") else "jpeg"


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _load_json(source: _Source, member: str) -> tuple[Any, bytes]:
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


def _integer(value: Any) -> int | None:
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
    source = _Source(path, limits)
    try:
        return _read(source, path, frames, strict, video_id)
    except BaseException:
        source.close()
        raise


def _read(
    source: _Source, path: Path, frames: str | Path | None, strict: bool, video_id: str | None
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
    width = _integer(video_json.get("width", meta_video.get("width")))
    height = _integer(video_json.get("height", meta_video.get("height")))
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
        total_frames=_integer(video_json.get("total_frames", meta_video.get("total_frames"))),
        duration_sec=_number(video_json.get("duration_sec", meta_video.get("duration_sec"))),
        target_fps=_number(config.get("target_fps")),
    )

    raw_frames: list[dict[str, Any]] = annotations["annotations"]
    for position, raw in enumerate(raw_frames):
        index = raw.get("frame_index") if isinstance(raw, dict) else None
        if _integer(index) is None or index < 0:
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

    image_index = _index_images(source.names())
    images: dict[int, ImageRef] = {
        i: ImageRef(
            location=source.location(image_index[i]),
            kind="overlay",
            format=_format_of(image_index[i]),
            _reader=partial(source.read, image_index[i]),
        )
        for i in indices
        if i in image_index
    }
    image_kind: ImageKind = "overlay"
    if frames is not None:
        images = _raw_frame_refs(Path(frames), indices, strict)
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
    taken = {e.video.video_id for e in exports}
    seen: Counter[str] = Counter()
    out = []
    for export in exports:
        base = export.video.video_id
        seen[base] += 1
        if seen[base] > 1:
            n = seen[base]
            while f"{base}-{n}" in taken:
                n += 1
            seen[base] = n
            taken.add(f"{base}-{n}")
            video = dataclasses.replace(export.video, video_id=f"{base}-{n}")
            export = dataclasses.replace(export, video=video)
        out.append(export)
    return out


# --------------------------------------------------------------------------------------------
# Masks of one object -> canonical
# --------------------------------------------------------------------------------------------


class _MaskProblem(ValueError):
    """Why one mask cannot be read, with what was expected and found (for ``describe``)."""

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


def _mask_counts(value: Any, video: VideoInfo) -> tuple[np.ndarray, tuple[int, int], MaskForm]:
    """Detect the form of one mask and return (uncompressed counts, (h, w), form).

    Raises ``_MaskProblem`` (a ``ValueError``) saying what was expected and found.
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
            raise _MaskProblem(
                "mask counts do not add up to a known mask size",
                expected=_size_expected(video),
                found=f"{len(counts)} runs adding up to {int(counts.sum())}",
            )
        raise _MaskProblem(
            "mask string is neither space-separated run lengths nor a COCO compressed string",
            expected='"<zeros> <ones> <zeros> ..." (SAM2) or a COCO counts string',
            found=repr(value[:40]) + ("..." if len(value) > 40 else ""),
        )
    if isinstance(value, dict) and "counts" in value:
        size_value = value.get("size")
        if not (
            isinstance(size_value, (list, tuple))
            and len(size_value) == 2
            and all(_integer(v) is not None and v > 0 for v in size_value)
        ):
            raise _MaskProblem(
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
                raise _MaskProblem(
                    f"COCO compressed counts cannot be decoded ({exc})",
                    expected="a pycocotools counts string",
                    found=repr(raw[:40]),
                ) from None
            form = "coco_compressed"
        elif isinstance(raw, list):
            counts = np.asarray(raw) if raw else np.zeros(0, np.int64)
            if counts.dtype.kind not in "iu" or counts.ndim != 1:
                raise _MaskProblem(
                    "COCO counts list holds something else than integers",
                    expected="a flat list of non-negative integers",
                    found=repr(raw[:6])[:60],
                )
            counts = counts.astype(np.int64)
            if counts.size and counts.min() < 0:
                raise _MaskProblem(
                    "COCO counts list holds negative run lengths",
                    expected="non-negative integers",
                    found=int(counts.min()),
                )
            form = "coco_uncompressed"
        else:
            raise _MaskProblem(
                "COCO 'counts' must be a string or a list",
                expected="str or list",
                found=type(raw).__name__,
            )
        total = int(counts.sum())
        if total != h * w:
            raise _MaskProblem(
                "mask counts do not add up to the mask's size",
                expected=f"{h} x {w} = {h * w}",
                found=total,
            )
        return counts, (h, w), form
    raise _MaskProblem(
        "unknown mask form" if value is not None else "object has no mask",
        expected='a count string ("mask_rle") or a COCO RLE dict {"size", "counts"}',
        found="nothing" if value is None else type(value).__name__,
    )


def _mask_value(obj: dict[str, Any]) -> Any:
    for key in _MASK_KEYS:
        if key in obj:
            return obj[key]
    return None


def _label_of(obj: dict[str, Any], track_id: object) -> str:
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
    track_id = _integer(obj.get("object_id"))
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
        return _broken(-1, _label_of(obj, -1), message)
    label = _label_of(obj, track_id)
    try:
        counts, size, form = _mask_counts(_mask_value(obj), video)
    except _MaskProblem as exc:
        message = describe(
            exc.problem,
            **where,
            object_id=track_id,
            field=next((k for k in _MASK_KEYS if k in obj), "mask_rle"),
            expected=exc.expected,
            found=exc.found,
            fix="drop this object or re-export the video; `sam2-finetune validate` lists "
            "every broken mask",
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
            if not isinstance(obj, dict) or _integer(obj.get("object_id")) is None:
                broken += 1
                continue
            track = str(obj["object_id"])
            label = _label_of(obj, track)
            seen = tracks.setdefault(track, [])
            if label not in seen:
                seen.append(label)
            try:
                counts, size, form = _mask_counts(_mask_value(obj), video)
            except _MaskProblem:
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
        description="SAM2 export ZIPs or extracted folders.", json_schema_extra={"positional": True}
    )
    frames: list[str | Path] | None = Field(None, description=FRAMES_HELP)
    json_output: bool = Field(False, alias="json", description="Print JSON instead of text.")
    limits: ArchiveLimits = Field(
        default_factory=ArchiveLimits,
        description="Bounds refusing hostile archives (--limits.max-ratio 500, ...).",
    )


def info(options: InfoOptions) -> list[ExportSummary]:
    """Summaries of the given exports (the ``info`` stage). Masks are parsed, never rescaled.

    >>> summary, = info(InfoOptions(exports=["sample_data/street_scene.zip"]))  # doctest: +SKIP
    >>> summary.frames_listed  # doctest: +SKIP
    40
    """
    exports = read_exports(
        options.exports,
        frames=frame_sources(options.exports, options.frames),
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
