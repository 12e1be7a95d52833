"""Raw frames replacing the overlay images: a folder of frame files, or the source video
(handed to :mod:`sam2_finetune.ingest.video`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from sam2_finetune.errors import ExportError, describe
from sam2_finetune.ingest.archive import JUNK, VIDEO_SUFFIXES, index_images
from sam2_finetune.ingest.records import ImageRef

# --------------------------------------------------------------------------------------------
# Raw frames: a folder of frame files or the source video
# --------------------------------------------------------------------------------------------


def raw_frame_refs(frames: Path, indices: Sequence[int], strict: bool) -> dict[int, ImageRef]:
    """Images of the listed frame ``indices`` from a raw-frames folder or video (``--frames``).

    With ``strict`` a folder lacking listed frames raises (naming the first missing index and,
    when the files are numbered from 1, the ffmpeg fix); without it they are left out."""
    if frames.is_dir():
        names = [
            p.relative_to(frames).as_posix()
            for p in sorted(frames.rglob("*"))
            if p.is_file() and not JUNK.search(p.relative_to(frames).as_posix())
        ]
        index = index_images(names)
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
                format=image_format_of(index[i]),
                _reader=partial(_read_file, frames / index[i]),
            )
            for i in wanted
            if i in index
        }
    if frames.suffix.lower() in VIDEO_SUFFIXES:
        from sam2_finetune.ingest.video import video_frame_refs

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


def image_format_of(name: str) -> str:
    """``"png"`` or ``"jpeg"`` from an image file name (names were filtered by suffix first)."""
    return "png" if name.lower().endswith(".png") else "jpeg"
