"""The canonical value: what ``read_export`` returns (video info, frames, objects, images)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from sam2_finetune.errors import ExportError, describe
from sam2_finetune.masks import Rle

if TYPE_CHECKING:
    from sam2_finetune.ingest.archive import ArchiveSource

MaskForm = Literal["sam2_string", "coco_compressed", "coco_uncompressed"]
ImageKind = Literal["overlay", "raw"]


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
        source: ArchiveSource | None = None,
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

    def release(self) -> None:
        """Close the archive and drop the parsed annotations (``raw_frames``, ``images`` and
        ``frames`` come out empty): for a reader done with this export that may still hold the
        value while it opens the next (``convert`` of many exports keeps memory flat so)."""
        self.close()
        self.raw_frames.clear()  # the list FrameSequence reads too
        self.images.clear()
        self.frames._chunk = (0, [])

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
