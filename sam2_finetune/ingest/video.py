"""Raw frames straight from the source video, for exports whose images are overlays.

``read_export(path, frames="video.mp4")`` calls :func:`video_frame_refs`: each listed frame
becomes an :class:`~sam2_finetune.ingest.ImageRef` that decodes that one frame when read (PyAV,
the optional ``video`` extra: ``pip install "sam2-finetune[video]"``). Nothing is decoded up
front; the video is only checked to hold the largest listed frame index.

A frame's index is its presentation time times the stream's frame rate (``frame_index`` in the
export is the frame number in the source video). Reads in increasing order, which is how the
converter walks an export, decode forward from the previous position; any other read seeks to the
nearest keyframe before the frame and decodes forward from there.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2_finetune.errors import ExportError, describe
from sam2_finetune.ingest.records import ImageRef

if TYPE_CHECKING:
    import av.container
    import av.video

INSTALL_HINT = 'pip install "sam2-finetune[video]"'
# Decoding forward is cheaper than a seek for gaps up to about one GOP; past that, seek.
_FORWARD_LIMIT = 120


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise ExportError(
            describe(
                "reading frames from a video needs PyAV, which is not installed",
                fix=f"{INSTALL_HINT}, or pass a folder of raw frames instead of the video",
            )
        ) from None
    return av


def _open(video_path: Path) -> av.container.InputContainer:
    av = _import_av()
    if not video_path.is_file():
        raise ExportError(
            describe("no such video file", file=video_path, fix="check the path given to --frames")
        )
    try:
        container = av.open(str(video_path))
    except av.error.FFmpegError as exc:
        raise ExportError(
            describe(
                f"not a readable video ({exc})",
                file=video_path,
                fix="pass the source video (mp4, mov, ...) or a folder of raw frames",
            )
        ) from None
    if not container.streams.video:
        container.close()
        raise ExportError(
            describe(
                "file has no video stream",
                file=video_path,
                fix="pass the source video the export was annotated on",
            )
        )
    return container


def _rate(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise ExportError(
            describe(
                "the video states no frame rate, so frame numbers cannot be found",
                file=str(stream.container.name),
                fix="re-mux the video with a frame rate (ffmpeg -i in.mp4 -c copy out.mp4), or "
                "extract its frames to a folder and pass that",
            )
        )
    return float(rate)


def count_frames(video_path: Path) -> int:
    """The number of frames in the video: the container's count when it states one, else the
    number of video packets (demuxed, not decoded)."""
    container = _open(video_path)
    try:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)
    finally:
        container.close()


class _VideoReader:
    """Decodes frames by index from one open container; thread-safe, forward reads are cheap."""

    def __init__(self, video_path: Path):
        self.path = video_path
        self._lock = threading.Lock()
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[Any] | None = None
        self._last = -1  # index of the frame the iterator returned last

    def _index_of(self, frame: Any, stream: Any) -> int:
        start = stream.start_time or 0
        return round((frame.pts - start) * float(stream.time_base) * _rate(stream))

    def _seek(self, index: int) -> None:
        assert self._container is not None
        stream = self._container.streams.video[0]
        start = stream.start_time or 0
        target = start + int(index / _rate(stream) / float(stream.time_base))
        # backward=True lands on the keyframe at or before the target.
        self._container.seek(max(target, start), stream=stream, backward=True, any_frame=False)
        self._frames = self._container.decode(stream)
        self._last = -1

    def png_bytes(self, index: int) -> bytes:
        with self._lock:
            if self._container is None:
                self._container = _open(self.path)
                self._container.streams.video[0].thread_type = "AUTO"
            stream = self._container.streams.video[0]
            if self._frames is None or not (self._last < index <= self._last + _FORWARD_LIMIT):
                self._seek(index)
            assert self._frames is not None
            for attempt in range(2):
                for frame in self._frames:
                    found = self._index_of(frame, stream)
                    self._last = found
                    if found == index:
                        return _to_png(frame)
                    if found > index:
                        break  # the seek overshot (a keyframe past the target): go back
                if attempt == 0:
                    # Rewind to the very start and decode forward: slow but always right.
                    self._container.seek(stream.start_time or 0, stream=stream, backward=True)
                    self._frames = self._container.decode(stream)
                    self._last = -1
            self._frames = None
            raise ExportError(
                describe(
                    "the video has no frame with this index",
                    file=self.path,
                    frame_index=index,
                    expected="a frame whose time x frame rate equals the index",
                    found=f"last frame decoded {self._last}",
                    fix="pass the video this export was annotated on, or a folder of raw frames",
                )
            )

    def close(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()
            self._container = None
            self._frames = None


def _to_png(frame: Any) -> bytes:
    buffer = io.BytesIO()
    # Level 1: these PNGs are read once by the converter; speed matters more than size.
    frame.to_image().save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def video_frame_refs(video_path: Path, indices: Sequence[int]) -> dict[int, ImageRef]:
    """Image references to the frames ``indices`` of ``video_path``, decoded when read.

    Raises:
        ExportError: PyAV is missing (with the install command), the file is not a readable
            video, or it has fewer frames than the largest listed index needs.

    >>> refs = video_frame_refs(Path("session.mp4"), [0, 6, 12])  # doctest: +SKIP
    >>> refs[6].open().size                                         # doctest: +SKIP
    (1920, 1080)
    """
    video_path = Path(video_path)
    total = count_frames(video_path)
    if indices and max(indices) >= total:
        raise ExportError(
            describe(
                "the video is shorter than the export: it lacks frames the export lists",
                file=video_path,
                frame_index=max(indices),
                expected=f"at least {max(indices) + 1} frames",
                found=f"{total} frames",
                fix="pass the video this export was annotated on (not a trimmed or re-timed "
                "copy), or a folder of its raw frames",
            )
        )
    reader = _VideoReader(video_path)
    return {
        i: ImageRef(
            location=f"{video_path}#frame={i}",
            kind="raw",
            format="png",
            _reader=(lambda i=i: reader.png_bytes(i)),
        )
        for i in indices
    }
