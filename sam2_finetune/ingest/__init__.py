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

The reading pipeline, one module per step:

- :mod:`~sam2_finetune.ingest.archive`: the ZIP (maybe nested) or folder, refused when hostile,
  read member by member; images indexed by frame number.
- :mod:`~sam2_finetune.ingest.records`: the canonical value (:class:`Export`, :class:`Frame`,
  :class:`ObjectAnnotation`, ...).
- :mod:`~sam2_finetune.ingest.raw_frames`: raw frames from a folder, or the video
  (:mod:`sam2_finetune.ingest.video`).
- :mod:`~sam2_finetune.ingest.read`: :func:`read_export`: the JSON, mask forms, frames built.
- :mod:`~sam2_finetune.ingest.summary`: the ``info`` stage (:func:`info`, :func:`summarize_export`).
"""

from sam2_finetune.ingest.archive import (
    DEFAULT_LIMITS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ArchiveLimits,
    LimitsOption,
    check_archive,
    limit_flag,
)
from sam2_finetune.ingest.read import (
    FRAMES_HELP,
    distinct_video_ids,
    expand_exports,
    frame_sources,
    iter_exports,
    label_of,
    mask_value,
    read_export,
    read_exports,
)
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
from sam2_finetune.ingest.summary import (
    ExportSummary,
    InfoOptions,
    format_summary,
    info,
    info_command,
    summarize_export,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FRAMES_HELP",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "ArchiveLimits",
    "Export",
    "ExportSummary",
    "Frame",
    "FrameSequence",
    "ImageKind",
    "ImageRef",
    "InfoOptions",
    "LimitsOption",
    "MaskForm",
    "ObjectAnnotation",
    "VideoInfo",
    "check_archive",
    "distinct_video_ids",
    "expand_exports",
    "format_summary",
    "frame_sources",
    "info",
    "info_command",
    "iter_exports",
    "label_of",
    "limit_flag",
    "mask_value",
    "read_export",
    "read_exports",
    "summarize_export",
]
