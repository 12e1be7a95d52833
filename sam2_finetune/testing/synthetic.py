"""Synthetic SAM2 exports: deterministic writers of the exact schema the SAM2 demo exports.

Used by the tests, ``sample_data/generate.py`` and the benchmarks. Nothing here is needed to use
the package on real data. Every output is a pure function of the arguments: the same call writes
byte-identical files (fixed ZIP timestamps and attributes, seeded randomness, sorted JSON order),
except :func:`write_raw_video`'s H.264 bytes (see there): compare videos decoded.

A scene is a few flat-coloured shapes (:class:`TrackSpec`) moving over a static background. For
each listed frame the writer rasterises every shape twice: into SAM2's 256 x 256 low-res mask
(the frame squashed to a square, as the demo does) and at video resolution (for the overlay image
and the COCO-dict mask forms). Overlapping shapes occlude each other: a later track is drawn on
top and removed from the masks of earlier ones.

>>> from sam2_finetune.testing.synthetic import TrackSpec, write_export
>>> car = TrackSpec(1, "car", "rect", (200, 40, 40), (0.2, 0.6), (0.05, 0.0), (0.2, 0.15))
>>> write_export(tmp / "export.zip", [car])  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sam2_finetune.masks import decode_compressed_counts, rle_bbox, rle_encode
from sam2_finetune.outputs import atomic_output_dir, ensure_writable

Shape = Literal["rect", "ellipse", "triangle"]
MaskForm = Literal["sam2_string", "coco_compressed", "coco_uncompressed"]
Layout = Literal["zip", "folder", "rezipped", "nested_zip"]

MASK_SIDE = 256  # SAM2's low-resolution mask side, whatever the video size
EXPORT_TIMESTAMP = "2025-11-19T08:25:26Z"
EXPORTER_VERSION = "1.0.0"
CONFIDENCE = 0.95  # the demo writes this constant for every object
# Fixed member timestamp so that ZIPs are byte-identical across runs (ZipInfo default is "now").
_ZIP_DATE_TIME = (2025, 11, 19, 8, 25, 26)
# Overlay colours the demo cycles through per object id (its palette, approximately).
_OVERLAY_PALETTE: tuple[tuple[int, int, int], ...] = (
    (30, 144, 255),
    (255, 64, 64),
    (50, 205, 50),
    (255, 165, 0),
    (186, 85, 211),
    (0, 206, 209),
    (255, 215, 0),
    (255, 105, 180),
)
_OVERLAY_ALPHA = 0.3


@dataclass(frozen=True)
class TrackSpec:
    """One object of a synthetic scene: a flat-coloured shape moving at constant speed.

    Positions and sizes are fractions of the frame (so the same spec works at any resolution);
    ``velocity_xy`` is in frame widths/heights per second. ``start_xy`` is the shape's centre at
    frame 0. ``hidden`` lists half-open frame-index ranges ``[start, stop)`` where the object is
    occluded: it is not drawn and stays listed with an empty mask. ``renamed`` is
    ``(from_frame_index, new_label)``: the user renamed the track mid-session. An object that
    moves fully out of the frame also gets an empty mask (SAM2 lost it).
    """

    track_id: int
    label: str
    shape: Shape
    color: tuple[int, int, int]
    start_xy: tuple[float, float]
    velocity_xy: tuple[float, float]
    size_wh: tuple[float, float]
    hidden: tuple[tuple[int, int], ...] = ()
    renamed: tuple[int, str] | None = None

    def label_at(self, frame_index: int) -> str:
        """The label the export writes for this track at ``frame_index``."""
        if self.renamed is not None and frame_index >= self.renamed[0]:
            return self.renamed[1]
        return self.label

    def is_hidden(self, frame_index: int) -> bool:
        return any(start <= frame_index < stop for start, stop in self.hidden)

    def box_at(self, t_sec: float) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in frame fractions at time ``t_sec``."""
        cx = self.start_xy[0] + self.velocity_xy[0] * t_sec
        cy = self.start_xy[1] + self.velocity_xy[1] * t_sec
        w, h = self.size_wh
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def sampled_frame_indices(total_frames: int, source_fps: float, target_fps: float) -> list[int]:
    """Frame indices the demo exports: ``round(k * source_fps / target_fps)`` below the total.

    >>> sampled_frame_indices(30, 30.0, 5.0)
    [0, 6, 12, 18, 24]
    """
    step = source_fps / target_fps
    out: list[int] = []
    k = 0
    while (index := round(k * step)) < total_frames:
        if not out or index != out[-1]:
            out.append(index)
        k += 1
    return out


# --------------------------------------------------------------------------------------------
# Rasterising a scene
# --------------------------------------------------------------------------------------------


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: Shape,
    box: tuple[float, float, float, float],
    width: int,
    height: int,
    fill: Any,
) -> None:
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    # PIL includes both end pixels; shrink by one so a w-pixel box covers w pixels.
    if shape == "rect":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape == "ellipse":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape == "triangle":
        draw.polygon(((x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}: expected rect, ellipse or triangle")


def _shape_mask(
    shape: Shape, box: tuple[float, float, float, float], width: int, height: int
) -> np.ndarray:
    image = Image.new("L", (width, height), 0)
    _draw_shape(ImageDraw.Draw(image), shape, box, width, height, 1)
    return np.asarray(image, dtype=np.uint8)


def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A static, flat background (sky, ground, a few blocks) that compresses well."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(150, 220, 3)))
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.35, 0.5))
    draw.rectangle(
        (0, horizon, width, height), fill=tuple(int(v) for v in rng.integers(70, 130, 3))
    )
    for _ in range(5):
        x = int(rng.integers(0, width))
        w = int(rng.integers(width // 12, width // 5))
        h = int(rng.integers(height // 8, horizon))
        shade = tuple(int(v) for v in rng.integers(90, 190, 3))
        draw.rectangle((x, horizon - h, x + w, horizon), fill=shade)
    return np.asarray(image, dtype=np.uint8).copy()


@dataclass(frozen=True)
class _Visible:
    track: TrackSpec
    mask_small: np.ndarray  # 256 x 256 uint8
    mask_full: np.ndarray  # height x width uint8


class _Scene:
    """Renders frames and masks of a list of tracks (masks occluded by the tracks drawn later)."""

    def __init__(
        self,
        tracks: Sequence[TrackSpec],
        width: int,
        height: int,
        source_fps: float,
        empty_frames: Collection[int],
        seed: int,
    ):
        ids = [t.track_id for t in tracks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"track ids must be distinct, got {ids}")
        self.tracks = list(tracks)
        self.width = width
        self.height = height
        self.source_fps = source_fps
        self.empty_frames = frozenset(empty_frames)
        self.background = _background(width, height, seed)

    def visible(self, frame_index: int) -> dict[int, _Visible]:
        """Track id -> masks of every track drawn in this frame (empty masks left out)."""
        if frame_index in self.empty_frames:
            return {}
        t = frame_index / self.source_fps
        out: dict[int, _Visible] = {}
        later_small = np.zeros((MASK_SIDE, MASK_SIDE), dtype=np.uint8)
        later_full = np.zeros((self.height, self.width), dtype=np.uint8)
        for track in reversed(self.tracks):  # topmost first, to subtract what it covers
            if track.is_hidden(frame_index):
                continue
            box = track.box_at(t)
            small = _shape_mask(track.shape, box, MASK_SIDE, MASK_SIDE) & (1 - later_small)
            full = _shape_mask(track.shape, box, self.width, self.height) & (1 - later_full)
            later_small |= small
            later_full |= full
            if small.any() and full.any():
                out[track.track_id] = _Visible(track, small, full)
        return out

    def raw_frame(self, visible: dict[int, _Visible]) -> np.ndarray:
        frame = self.background.copy()
        for track in self.tracks:
            if track.track_id in visible:
                frame[visible[track.track_id].mask_full.astype(bool)] = track.color
        return frame


def _overlay(
    frame: np.ndarray, visible: dict[int, _Visible], labels: dict[int, str]
) -> Image.Image:
    """The demo's export image: ~30 % colour fill, a contour, and the label burned in."""
    out = frame.astype(np.float32)
    for track_id, vis in visible.items():
        color = np.array(_OVERLAY_PALETTE[(track_id - 1) % len(_OVERLAY_PALETTE)], np.float32)
        m = vis.mask_full.astype(bool)
        out[m] = (1 - _OVERLAY_ALPHA) * out[m] + _OVERLAY_ALPHA * color
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        out[m & ~inner] = color
    image = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for track_id, vis in visible.items():
        ys, xs = np.nonzero(vis.mask_full)
        x, y = int(xs.min()), max(int(ys.min()) - 11, 0)
        draw.text((x + 1, y), f"{labels[track_id]} #{track_id}", fill=(255, 255, 255), font=font)
    return image


def _encode_image(image: Image.Image, image_format: Literal["png", "jpg"]) -> bytes:
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG", compress_level=9)
    else:
        image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Masks in the export's forms
# --------------------------------------------------------------------------------------------


def sam2_count_string(mask: np.ndarray) -> str:
    """SAM2's ``mask_rle``: uncompressed column-major run lengths, first run counting zeros.

    >>> sam2_count_string(np.zeros((256, 256), np.uint8))
    '65536'
    """
    rle = rle_encode(mask)
    return " ".join(str(int(v)) for v in decode_compressed_counts(rle["counts"]))


def _object_entry(
    track_id: int, label: str, vis: _Visible | None, mask_form: MaskForm, height: int, width: int
) -> dict[str, Any]:
    if mask_form == "sam2_string":
        mask = vis.mask_small if vis is not None else np.zeros((MASK_SIDE, MASK_SIDE), np.uint8)
        rle = rle_encode(mask)
        value: Any = " ".join(str(int(v)) for v in decode_compressed_counts(rle["counts"]))
    else:
        mask = vis.mask_full if vis is not None else np.zeros((height, width), np.uint8)
        rle = rle_encode(mask)
        counts: Any = rle["counts"]
        if mask_form == "coco_uncompressed":
            counts = [int(v) for v in decode_compressed_counts(counts)]
        value = {"size": [height, width], "counts": counts}
    area = int(mask.sum())
    bbox = [int(v) for v in rle_bbox(rle)] if area else [0, 0, 0, 0]
    return {
        "object_id": track_id,
        "label": label,
        "mask_rle": value,
        "bbox": bbox,
        "area": area,
        "confidence": CONFIDENCE,
    }


# --------------------------------------------------------------------------------------------
# Writing members deterministically
# --------------------------------------------------------------------------------------------


def _zip_info(name: str, compress: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    info.compress_type = compress
    info.create_system = 3  # Unix, whatever machine writes it
    info.external_attr = (0o100644 if not name.endswith("/") else 0o040755) << 16
    return info


def _zip_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(_zip_info(name), data)
    return buffer.getvalue()


@contextmanager
def _atomic_file(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling of ``out`` renamed onto it on success (large files are streamed)."""
    ensure_writable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_layout(
    out: Path, members: Sequence[tuple[str, bytes]], layout: Layout, overwrite: bool
) -> None:
    if layout == "folder":
        with atomic_output_dir(out, overwrite=overwrite) as tmp:
            for name, data in members:
                path = tmp / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        return
    if layout == "zip":
        data = _zip_bytes(members)
    elif layout == "rezipped":
        # What "Compress" on macOS makes of an extracted export: one folder, plus junk entries.
        root = f"{out.stem} (copy)/"
        data = _zip_bytes(
            [
                *[(root + name, payload) for name, payload in members],
                (root + ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(16)),
                (f"__MACOSX/{root}._annotations.json", b"\x00\x05\x16\x07" + bytes(28)),
            ]
        )
    elif layout == "nested_zip":
        data = _zip_bytes([(f"{out.stem}/sam2_export_{out.stem}.zip", _zip_bytes(members))])
    else:
        raise ValueError(f"unknown layout {layout!r}: expected zip, folder, rezipped, nested_zip")
    with _atomic_file(out, overwrite) as tmp:
        tmp.write_bytes(data)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------------
# The writers
# --------------------------------------------------------------------------------------------


def write_export(
    out: str | os.PathLike[str],
    tracks: Sequence[TrackSpec],
    *,
    width: int = 320,
    height: int = 240,
    source_fps: float = 30.0,
    target_fps: float = 5.0,
    duration_sec: float = 8.0,
    empty_frames: Collection[int] = (),
    seed: int = 0,
    mask_form: MaskForm = "sam2_string",
    image_format: Literal["png", "jpg"] = "png",
    image_dir: str = "images",
    image_name: str = "frame_{:06d}",
    with_metadata: bool = True,
    layout: Layout = "zip",
    video_filename: str | None = None,
    raw_frames_dir: str | os.PathLike[str] | None = None,
    raw_video: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one synthetic SAM2 export of ``tracks`` and return its path.

    Args:
        out: the ZIP (``layout`` zip, rezipped, nested_zip) or folder (``layout="folder"``).
        tracks: the moving shapes; each becomes one SAM2 track (``object_id = track_id``).
        width, height: video size in pixels (overlay images are written at this size).
        source_fps, target_fps, duration_sec: the video has ``round(duration_sec * source_fps)``
            frames; frames ``round(k * source_fps / target_fps)`` are listed.
        empty_frames: listed frame indices written with ``objects: []`` (and nothing drawn in the
            raw frame); they get no image, as in the demo.
        seed: seeds the background.
        mask_form: ``sam2_string`` (the demo: 256 x 256 count string, bbox and area in 256-space)
            or a COCO dict at video size (``coco_compressed`` / ``coco_uncompressed``, bbox and
            area in video pixels), as users' scripts write.
        image_format, image_dir, image_name: overlay images are
            ``{image_dir}/{image_name.format(frame_index)}.{png|jpg}`` (``image_dir=""`` puts
            them at the top).
        with_metadata: write ``metadata.json`` (real exports sometimes lack it).
        layout: ``zip`` as downloaded; ``folder`` extracted; ``rezipped`` everything under one
            folder plus ``__MACOSX/`` and ``.DS_Store`` junk; ``nested_zip`` the export ZIP
            inside another ZIP.
        video_filename: ``video.filename`` in the JSON (default ``session_<seed>.mp4``).
        raw_frames_dir: also write the raw frames (no overlay) of every listed frame there,
            named ``frame_{i:06d}.png``.
        raw_video: also write the raw video with every source frame (needs PyAV; ``libx264``
            when available, else ``mpeg4``), at ``source_fps``.
        overwrite: replace existing outputs (otherwise :class:`OutputExistsError`).

    Raises:
        ValueError: for inconsistent arguments (duplicate track ids, an empty frame that is not
            listed, an unknown shape, form or layout).
    """
    out = Path(out)
    total_frames = round(duration_sec * source_fps)
    indices = sampled_frame_indices(total_frames, source_fps, target_fps)
    unlisted = sorted(set(empty_frames) - set(indices))
    if unlisted:
        raise ValueError(f"empty_frames {unlisted} are not listed frames (listed: {indices})")
    scene = _Scene(tracks, width, height, source_fps, empty_frames, seed)
    suffix = "png" if image_format == "png" else "jpg"
    prefix = f"{image_dir.strip('/')}/" if image_dir.strip("/") else ""
    filename = video_filename or f"session_{seed:04d}.mp4"

    frames_json: list[dict[str, Any]] = []
    members: list[tuple[str, bytes]] = []
    raw_members: list[tuple[str, bytes]] = []
    total_objects = 0
    for index in indices:
        visible = scene.visible(index)
        objects: list[dict[str, Any]] = []
        labels: dict[int, str] = {}
        if index not in scene.empty_frames:
            for track in tracks:
                labels[track.track_id] = track.label_at(index)
                objects.append(
                    _object_entry(
                        track.track_id,
                        labels[track.track_id],
                        visible.get(track.track_id),
                        mask_form,
                        height,
                        width,
                    )
                )
        total_objects += len(objects)
        frames_json.append(
            {"frame_index": index, "timestamp_sec": index / source_fps, "objects": objects}
        )
        raw = scene.raw_frame(visible)
        if objects:  # the demo writes an image only for frames with objects
            image = _overlay(raw, visible, labels)
            name = f"{prefix}{image_name.format(index)}.{suffix}"
            members.append((name, _encode_image(image, image_format)))
        if raw_frames_dir is not None:
            raw_members.append(
                (f"frame_{index:06d}.png", _encode_image(Image.fromarray(raw), "png"))
            )

    video = {
        "filename": filename,
        "width": width,
        "height": height,
        "source_fps": source_fps,
        "total_frames": total_frames,
        "duration_sec": duration_sec,
    }
    annotations = {
        "video": video,
        "export_config": {
            "target_fps": target_fps,
            "total_exported_frames": len(indices),
            "frame_indices": indices,
            "export_timestamp": EXPORT_TIMESTAMP,
            "exporter_version": EXPORTER_VERSION,
        },
        "annotations": frames_json,
    }
    head = [("annotations.json", _json_bytes(annotations))]
    if with_metadata:
        metadata = {
            "export_info": {
                "created_at": EXPORT_TIMESTAMP,
                "format_version": "1.0",
                "exporter": "SAM2 Demo Export Tool",
            },
            "video": {
                "filename": filename,
                "width": width,
                "height": height,
                "fps": source_fps,  # "fps" here, "source_fps" in annotations.json
                "total_frames": total_frames,
                "duration_sec": duration_sec,
            },
            "export_config": {"target_fps": target_fps, "frame_indices": indices},
            "statistics": {
                "total_frames": len(indices),
                "total_objects": total_objects,
                "unique_objects": len(tracks),
                "objects_per_frame": round(total_objects / max(len(indices), 1), 2),
            },
        }
        head.append(("metadata.json", _json_bytes(metadata)))
    _write_layout(out, head + members, layout, overwrite)

    if raw_frames_dir is not None:
        with atomic_output_dir(raw_frames_dir, overwrite=overwrite) as tmp:
            for name, data in raw_members:
                (tmp / name).write_bytes(data)
    if raw_video is not None:
        write_raw_video(
            Path(raw_video),
            (scene.raw_frame(scene.visible(i)) for i in range(total_frames)),
            width=width,
            height=height,
            fps=source_fps,
            overwrite=overwrite,
        )
    return out


def write_raw_video(
    out: Path,
    frames: Iterable[np.ndarray],
    *,
    width: int,
    height: int,
    fps: float,
    codec: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Encode RGB ``frames`` (``(height, width, 3)`` uint8) into a video with PyAV.

    ``codec`` defaults to ``libx264`` (near-lossless, ``crf`` 1) when PyAV has it, else ``mpeg4``
    at a high quality. Width and height should be even (yuv420p).

    The decoded frames are the same every run, the bytes not quite: libx264 (as PyAV 18 bundles
    it) writes the last ~30 bytes of the first IDR slice from more than its input: the state of
    the process's memory (0 of 20 to 3 of 10 runs differed in trials; ``MALLOC_PERTURB_`` forces a
    variant).
    Every decoded frame is the same.
    """
    from fractions import Fraction

    import av

    if codec is None:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with _atomic_file(out, overwrite) as tmp:
        fmt = "mp4" if out.suffix.lower() in (".mp4", ".m4v", ".mov") else None
        with av.open(str(tmp), mode="w", format=fmt) as container:
            rate = Fraction(fps).limit_denominator(1001)
            stream = container.add_stream(codec, rate=rate)
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "1", "preset": "fast", "threads": "1"}
            else:
                stream.options = {"qscale": "2"}
                stream.codec_context.qmin = 1
                stream.codec_context.qmax = 3
            stream.codec_context.thread_count = 1
            for array in frames:
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return out


def write_large_export(
    out: str | os.PathLike[str],
    *,
    n_frames: int = 2000,
    n_objects: int = 8,
    width: int = 1280,
    height: int = 720,
    scale: float = 1.0,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """A large export for benchmarks, written in a few seconds: ``n_frames`` listed frames, each
    with ``n_objects`` objects whose 256 x 256 masks are irregular blobs (about 100-400 runs).

    ``scale`` multiplies the blobs' size (1.0: about a fifth of the mask side). Each blob is
    rasterised once and translated per frame on its run lengths (a shift in a column-major mask is
    a change of the first and last run), and the overlay images are a few PNGs whose bytes are
    reused, so the cost is writing JSON and ZIP members. Frame ``i`` is ``frame_index = 6 * i``
    (30 fps sampled at 5 fps); every 50th object entry is an empty mask (a lost object).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    side = MASK_SIDE
    blobs = []
    for _ in range(n_objects):
        radius = max(4.0, side * 0.1 * scale * rng.uniform(0.6, 1.4))
        blobs.append(_blob(rng, radius))
    images = [
        _encode_image(Image.fromarray(_background(width, height, seed + k)), "png")
        for k in range(4)
    ]
    frames_json = []
    source_fps = 30.0
    indices = [6 * i for i in range(n_frames)]  # 30 fps sampled at 5 fps
    for i, index in enumerate(indices):
        objects = []
        phase = 2 * np.pi * i / max(n_frames, 1)
        for j, blob in enumerate(blobs):
            if (i * n_objects + j) % 50 == 49:
                objects.append(_empty_object(j + 1))
                continue
            # Each blob drifts on its own Lissajous path, staying inside the mask (a shift that
            # keeps every column's runs inside their column only changes the first/last run).
            dx = int(blob.room_x * (0.5 + 0.5 * np.sin(phase * (j + 1) + j)))
            dy = int(blob.room_y * (0.5 + 0.5 * np.cos(phase * (j + 2) + 2 * j)))
            first = blob.first + dx * side + dy
            last = side * side - first - blob.middle_sum
            objects.append(
                {
                    "object_id": j + 1,
                    "label": f"class_{j % 5}",
                    "mask_rle": f"{first} {blob.middle} {last}",
                    "bbox": [blob.x + dx, blob.y + dy, blob.w, blob.h],
                    "area": blob.area,
                    "confidence": CONFIDENCE,
                }
            )
        frames_json.append(
            {"frame_index": index, "timestamp_sec": index / source_fps, "objects": objects}
        )
    total = indices[-1] + 1 if indices else 0
    annotations = {
        "video": {
            "filename": f"large_{seed}.mp4",
            "width": width,
            "height": height,
            "source_fps": source_fps,
            "total_frames": total,
            "duration_sec": total / source_fps,
        },
        "export_config": {
            "target_fps": 5.0,
            "total_exported_frames": n_frames,
            "frame_indices": indices,
            "export_timestamp": EXPORT_TIMESTAMP,
            "exporter_version": EXPORTER_VERSION,
        },
        "annotations": frames_json,
    }
    with _atomic_file(out, overwrite) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(_zip_info("annotations.json"), json.dumps(annotations).encode())
        for i, index in enumerate(indices):
            # PNGs do not deflate further: store them, as fast as a copy.
            archive.writestr(
                _zip_info(f"images/frame_{index:06d}.png", zipfile.ZIP_STORED),
                images[i % len(images)],
            )
    return out


def _empty_object(track_id: int) -> dict[str, Any]:
    return {
        "object_id": track_id,
        "label": f"class_{(track_id - 1) % 5}",
        "mask_rle": str(MASK_SIDE * MASK_SIDE),
        "bbox": [0, 0, 0, 0],
        "area": 0,
        "confidence": CONFIDENCE,
    }


@dataclass(frozen=True)
class _Blob:
    """An irregular blob near the mask's top-left corner, as pieces of its count string."""

    first: int  # the leading zero run
    middle: str  # every run after it but the trailing zeros, as text
    middle_sum: int
    x: int
    y: int
    w: int
    h: int
    area: int
    room_x: int  # how far it may move right / down and stay inside the mask
    room_y: int


def _blob(rng: np.random.Generator, radius: float) -> _Blob:
    side = MASK_SIDE
    n = min(int(2 * radius * 1.4) + 4, side - 8)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    c = (n - 1) / 2
    angle = np.arctan2(yy - c, xx - c)
    wobble = 1 + sum(
        rng.uniform(0.05, 0.15) * np.sin(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    inside = np.hypot(yy - c, xx - c) <= np.minimum(radius * wobble, c)
    # Ragged pixels add runs, as SAM2's masks have.
    inside &= rng.random((n, n)) > 0.02
    mask = np.zeros((side, side), np.uint8)
    mask[:n, :n] = inside
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) - x + 1, int(ys.max()) - y + 1
    counts = decode_compressed_counts(rle_encode(mask)["counts"])
    middle = counts[1:-1]
    return _Blob(
        first=int(counts[0]),
        middle=" ".join(str(int(v)) for v in middle),
        middle_sum=int(middle.sum()),
        x=x,
        y=y,
        w=w,
        h=h,
        area=int(mask.sum()),
        room_x=side - (x + w),
        room_y=side - 1 - (y + h),  # keep a trailing zero run
    )


# --------------------------------------------------------------------------------------------
# A learnable set of short videos (benchmarks/bench_learning.py)
# --------------------------------------------------------------------------------------------

# Label -> (shape, colour): each label is one large, flat-coloured shape, so a model can tell the
# labels apart from the pixels alone and the benchmark measures where it puts the boxes.
SHAPE_LABELS: dict[str, tuple[Shape, tuple[int, int, int]]] = {
    "car": ("rect", (220, 40, 40)),
    "ball": ("ellipse", (40, 190, 60)),
    "dog": ("triangle", (50, 80, 235)),
}


@dataclass(frozen=True)
class ShapeVideo:
    """One written video of :func:`write_shape_videos`: its export and its raw frames folder
    (``convert --frames NAME=FOLDER``)."""

    name: str
    export: Path
    frames: Path

    @property
    def frames_option(self) -> str:
        """The ``--frames`` / ``ConvertOptions.frames`` item pairing the export with its frames."""
        return f"{self.name}={self.frames}"


def shape_tracks(
    rng: np.random.Generator,
    *,
    max_objects: int = 2,
    size_range: tuple[float, float] = (0.25, 0.45),
    speed: float = 0.15,
) -> list[TrackSpec]:
    """1 to ``max_objects`` tracks of distinct :data:`SHAPE_LABELS` labels, each a shape whose
    sides are ``size_range`` of the frame's, drifting at up to ``speed`` frame sides per second,
    placed (by rejection, 50 tries) so that the shapes do not overlap at the start."""
    labels = list(SHAPE_LABELS)
    count = int(rng.integers(1, min(max_objects, len(labels)) + 1))
    chosen = [labels[i] for i in rng.permutation(len(labels))[:count]]
    tracks: list[TrackSpec] = []
    boxes: list[tuple[float, float, float, float]] = []
    for track_id, label in enumerate(chosen, start=1):
        shape, colour = SHAPE_LABELS[label]
        for _ in range(50):
            w, h = (float(v) for v in rng.uniform(*size_range, size=2))
            cx = float(rng.uniform(w / 2, 1 - w / 2))
            cy = float(rng.uniform(h / 2, 1 - h / 2))
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if all(
                box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes
            ):
                break
        boxes.append(box)
        vx, vy = (float(v) for v in rng.uniform(-speed, speed, size=2))
        tracks.append(TrackSpec(track_id, label, shape, colour, (cx, cy), (vx, vy), (w, h)))
    return tracks


def write_shape_videos(
    out_dir: str | os.PathLike[str],
    n_videos: int,
    *,
    frames_per_video: int = 6,
    width: int = 128,
    height: int = 96,
    max_objects: int = 2,
    seed: int = 0,
    overwrite: bool = False,
) -> list[ShapeVideo]:
    """Write ``n_videos`` short synthetic SAM2 exports with their raw frames into ``out_dir``.

    Video ``i`` is ``video_{i:04d}.zip`` (overlay images, as real exports have) plus
    ``video_{i:04d}_frames/`` (raw frames, what a model must train on): ``frames_per_video``
    frames sampled at 5 fps from 30 fps, over the scene background of seed ``seed + i``, with
    the tracks :func:`shape_tracks` draws from ``numpy.random.default_rng([seed, i])``. The same
    arguments write the same bytes.
    """
    out = Path(out_dir)
    ensure_writable(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    videos = []
    for i in range(n_videos):
        rng = np.random.default_rng([seed, i])
        name = f"video_{i:04d}"
        export = out / f"{name}.zip"
        frames = out / f"{name}_frames"
        write_export(
            export,
            shape_tracks(rng, max_objects=max_objects),
            width=width,
            height=height,
            source_fps=30.0,
            target_fps=5.0,
            duration_sec=frames_per_video / 5.0,
            seed=seed + i,
            video_filename=f"{name}.mp4",
            raw_frames_dir=frames,
            overwrite=True,
        )
        videos.append(ShapeVideo(name, export, frames))
    return videos
