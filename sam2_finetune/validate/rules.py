"""The data-quality rules, one plain function each, listed in one table (:data:`RULES`).

Validation is one pass over the frames. A rule runs at one of three moments:

- ``frame``: after each frame arrives, with what :class:`Tally` remembers of the frames before it
  (the previous frame, each track's last box, the image hashes seen so far);
- ``video``: when a video's frames are done (per-track and timestamp rules);
- ``end``: once every input is read (class balance, label variants, outliers).

Each yields :class:`Hit` values; the engine (:func:`run_rules`) stamps them with the rule's code,
severity and default suggestion, and the video they belong to, into :class:`Finding` values.
Adding a rule is adding a function and a row. Masks are never decoded: areas and boxes come from
the records (pycocotools RLE operations).
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sam2_finetune.dataset import normalize_label
from sam2_finetune.validate.options import Severity, ValidateOptions
from sam2_finetune.validate.records import Box, FrameRecord, ObjectRecord, VideoRecord

SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
# The demo's name for a track nobody named.
UNNAMED = re.compile(r"^object_\d+$")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found: a stable ``code`` (a key of :data:`RULES`), its severity, what was found
    and where (input, video, frame index, track id, label; ``split`` for a ``DatasetDict``), and
    what to do about it. ``value`` carries the measured number where there is one (a ratio, an
    IoU, a share)."""

    code: str
    severity: Severity
    message: str
    suggestion: str
    source: str | None = None
    video_id: str | None = None
    frame_index: int | None = None
    track_id: int | None = None
    label: str | None = None
    value: float | None = None
    split: str | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """What a rule function yields; the engine adds code, severity and (for ``frame`` and
    ``video`` rules) the current video. An empty ``suggestion`` means the rule's default fix."""

    message: str
    frame_index: int | None = None
    track_id: int | None = None
    label: str | None = None
    value: float | None = None
    suggestion: str = ""
    source: str | None = None
    video_id: str | None = None
    split: str | None = None


# --------------------------------------------------------------------------------------------
# What the rules remember between frames
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TrackTally:
    """One track of the current video. ``label_runs`` holds ``[label, first, last]`` frame
    indices, a new run each time the label changes."""

    label_runs: list[list] = field(default_factory=list)
    objects: int = 0
    empty: int = 0
    empty_frames: list[int] = field(default_factory=list)  # the first few, for messages


@dataclass(slots=True)
class ClassTally:
    """One label over every input: counts, and per visible object its area as a share of the
    image with where it is (to name outliers at the end without keeping any record). Videos and
    tracks are counted by video id, so a video cut into splits counts once."""

    objects: int = 0
    frames: int = 0
    videos: set[str] = field(default_factory=set)
    tracks: set[tuple[str, int]] = field(default_factory=set)
    shares: array = field(default_factory=lambda: array("d"))
    frame_serials: array = field(default_factory=lambda: array("q"))
    track_ids: array = field(default_factory=lambda: array("q"))


class Tally:
    """Everything the rules need to know about frames already seen, in compact form: a few
    numbers per frame and per object, never a mask or an image."""

    def __init__(self) -> None:
        self.videos: list[VideoRecord] = []
        self.classes: dict[str, ClassTally] = {}
        self.labels: Counter[str] = Counter()  # every object, empty masks included
        self.image_hashes: dict[bytes, int] = {}  # -> frame serial
        # Per listed frame, by serial number: its video (index into ``videos``), frame index,
        # and visible-object count.
        self.frame_video = array("I")
        self.frame_index = array("q")
        self.frame_visible = array("I")
        self.totals: Counter[str] = Counter()
        # Labels, in order of first use, of every track: (video id, track id) -> labels. By id,
        # so a track cut into splits is one track.
        self.track_labels: dict[tuple[str, int], list[str]] = {}
        self.video_ids: set[str] = set()
        self.start_video(None)

    def start_video(self, video: VideoRecord | None) -> None:
        """Forget the previous video's per-frame and per-track state."""
        if video is not None:
            self.videos.append(video)
        self.video = video
        self.prev: FrameRecord | None = None
        self.prev_boxes: dict[int, Box] = {}
        self.tracks: dict[int, TrackTally] = {}
        self.timestamps_index = array("q")
        self.timestamps_sec = array("d")
        self.video_totals: Counter[str] = Counter()

    def where(self, serial: int) -> tuple[VideoRecord, int]:
        """The video and frame index of a frame serial number."""
        return self.videos[self.frame_video[serial]], self.frame_index[serial]

    def observe(self, frame: FrameRecord) -> None:
        """Remember what later rules need of ``frame`` (called after the frame rules ran)."""
        serial = len(self.frame_index)
        video_serial = len(self.videos) - 1
        video_id = self.videos[video_serial].video_id
        self.frame_video.append(video_serial)
        self.frame_index.append(frame.frame_index)
        image_area = frame.width * frame.height
        visible = 0
        boxes: dict[int, Box] = {}
        labels_here: set[str] = set()
        counts = self.video_totals
        for obj in frame.objects:
            self.labels[obj.label] += 1
            track = self.tracks.get(obj.track_id)
            if track is None:
                track = self.tracks[obj.track_id] = TrackTally()
            runs = track.label_runs
            if runs and runs[-1][0] == obj.label:
                runs[-1][2] = frame.frame_index
            else:
                runs.append([obj.label, frame.frame_index, frame.frame_index])
            track.objects += 1
            if obj.is_broken:
                counts["broken"] += 1
                continue
            if obj.is_empty:
                counts["empty"] += 1
                track.empty += 1
                if len(track.empty_frames) < 5:
                    track.empty_frames.append(frame.frame_index)
                continue
            visible += 1
            cls = self.classes.get(obj.label)
            if cls is None:
                cls = self.classes[obj.label] = ClassTally()
            cls.objects += 1
            cls.tracks.add((video_id, obj.track_id))
            cls.shares.append(obj.area / image_area)
            cls.frame_serials.append(serial)
            cls.track_ids.append(obj.track_id)
            labels_here.add(obj.label)
            if obj.mask_bbox is not None:
                boxes[obj.track_id] = obj.mask_bbox
        for label in labels_here:
            cls = self.classes[label]
            cls.frames += 1
            cls.videos.add(video_id)
        self.frame_visible.append(visible)
        counts["frames"] += 1
        counts["objects"] += len(frame.objects)
        counts["visible"] += visible
        if frame.objects:
            counts["frames_with_objects"] += 1
        if frame.image_location is not None:
            counts["images"] += 1
            if frame.image_is_overlay:
                counts["overlay_images"] += 1
        if frame.image_hash is not None and frame.objects:
            self.image_hashes.setdefault(frame.image_hash, serial)
        if frame.timestamp_sec is not None:
            self.timestamps_index.append(frame.frame_index)
            self.timestamps_sec.append(frame.timestamp_sec)
        self.prev = frame
        self.prev_boxes = boxes

    def end_video(self) -> None:
        """Add the finished video's counts to the totals. ``videos`` counts video records (one
        per split a video is in), ``distinct_videos`` video ids, ``tracks`` (video id, track id)."""
        self.totals.update(self.video_totals)
        self.totals["videos"] += 1
        video_id = self.videos[-1].video_id
        for track_id, track in self.tracks.items():
            labels = self.track_labels.setdefault((video_id, track_id), [])
            labels += [run[0] for run in track.label_runs if run[0] not in labels]
        self.totals["tracks"] = len(self.track_labels)
        self.video_ids.add(video_id)
        self.totals["distinct_videos"] = len(self.video_ids)


# --------------------------------------------------------------------------------------------
# Frame rules: (frame, tally of the frames before it, options) -> hits
# --------------------------------------------------------------------------------------------


def empty_frame(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A frame listed with ``objects: []``."""
    if not frame.objects:
        yield Hit(
            "listed with no objects"
            + (
                " (the demo writes no image for such frames)"
                if frame.image_location is None
                else ""
            ),
            frame_index=frame.frame_index,
        )


def missing_image(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A frame with objects but no image to train on."""
    if frame.objects and frame.image_location is None:
        yield Hit(f"has {len(frame.objects)} object(s) but no image", frame_index=frame.frame_index)


def broken_image(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """An image whose file cannot be read or whose header is not an image's."""
    if frame.image_error is not None:
        yield Hit(
            f"image {frame.image_location} {frame.image_error}", frame_index=frame.frame_index
        )


def image_size_mismatch(
    frame: FrameRecord, tally: Tally, options: ValidateOptions
) -> Iterator[Hit]:
    """An image whose pixel size is not the video's: masks and boxes would not line up."""
    if frame.image_size is not None and frame.image_size != (frame.width, frame.height):
        w, h = frame.image_size
        yield Hit(
            f"image is {w} x {h} but the annotations are for {frame.width} x {frame.height}",
            frame_index=frame.frame_index,
        )


def duplicate_frame_index(
    frame: FrameRecord, tally: Tally, options: ValidateOptions
) -> Iterator[Hit]:
    """The same frame index listed twice in one video (frames arrive sorted, so repeats are
    adjacent)."""
    if tally.prev is not None and tally.prev.frame_index == frame.frame_index:
        yield Hit("frame_index is listed more than once", frame_index=frame.frame_index)


def duplicate_image(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """An image byte-identical to an earlier frame's (in any video). Only frames with objects
    count: they are the ones trained on (a static background repeated in empty frames is not a
    duplicate anyone trains on)."""
    if frame.image_hash is None or not frame.objects:
        return
    first = tally.image_hashes.get(frame.image_hash)
    if first is None:
        return
    video, index = tally.where(first)
    same_entry = video is tally.video and index == frame.frame_index
    if not same_entry:  # a repeated frame_index shares its image; duplicate-frame-index says so
        split = f" ({video.split} split)" if video.split else ""
        yield Hit(
            f"image is byte-identical to frame {index} of {video.video_id}{split}",
            frame_index=frame.frame_index,
        )


def broken_mask(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A mask that fails to decode, or whose counts do not add up to h x w (or an object entry
    that cannot be read at all: no integer ``object_id``, not a JSON object)."""
    for obj in frame.objects:
        if obj.error is not None:
            yield _object_hit(frame, obj, _short(obj.error))


def mask_size_mismatch(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A mask sized for another image: the canonical mask is not at the image size, or an
    export's mask has another aspect ratio than its video (it cannot be a rescaled copy)."""
    for obj in frame.objects:
        if obj.rle is not None and tuple(obj.rle["size"]) != (frame.height, frame.width):
            h, w = obj.rle["size"]
            yield _object_hit(
                frame, obj, f"mask is {w} x {h} but the image is {frame.width} x {frame.height}"
            )
        elif (
            obj.rle is not None
            and obj.mask_size is not None
            and obj.mask_form != "sam2_string"  # SAM2's square squashes every video's aspect
            and not math.isclose(
                obj.mask_size[1] / obj.mask_size[0], frame.width / frame.height, rel_tol=0.02
            )
        ):
            h, w = obj.mask_size
            yield _object_hit(
                frame,
                obj,
                f"mask was written at {w} x {h}, another aspect ratio than the "
                f"{frame.width} x {frame.height} video: it was stretched to fit",
            )


def bbox_invalid(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A visible object whose stated box is not four finite numbers or has a negative or zero
    size."""
    for obj in frame.objects:
        if not obj.is_visible or obj.raw_bbox is None:
            continue
        if obj.bbox is None:
            yield _object_hit(
                frame, obj, f"box {obj.raw_bbox!r} is not four finite numbers [x, y, w, h]"
            )
        elif obj.bbox[2] <= 0 or obj.bbox[3] <= 0:
            yield _object_hit(
                frame, obj, f"box {obj.raw_bbox!r} has a negative or zero width/height"
            )


def bbox_outside(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A box reaching outside the image by more than the tolerance."""
    tol = options.bbox_tolerance_px
    for obj in frame.objects:
        if obj.bbox is None or not obj.is_visible:
            continue
        x, y, w, h = obj.bbox
        if x < -tol or y < -tol or x + w > frame.width + tol or y + h > frame.height + tol:
            yield _object_hit(
                frame,
                obj,
                f"box [{x:.1f}, {y:.1f}, {w:.1f}, {h:.1f}] reaches outside the "
                f"{frame.width} x {frame.height} image",
            )


def bbox_mask_mismatch(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A stated box that disagrees with the mask's own box (IoU below the threshold)."""
    for obj in frame.objects:
        if obj.bbox is None or obj.mask_bbox is None or obj.bbox[2] <= 0 or obj.bbox[3] <= 0:
            continue
        iou = box_iou(obj.bbox, obj.mask_bbox)
        if iou < options.bbox_mask_min_iou:
            yield _object_hit(
                frame,
                obj,
                f"stated box {_fmt_box(obj.bbox)} overlaps the mask's own box "
                f"{_fmt_box(obj.mask_bbox)} at IoU {iou:.2f}",
                value=iou,
            )


def tiny_object(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A visible object covering less than ``tiny_area_share`` of the image."""
    limit = options.tiny_area_share * frame.width * frame.height
    for obj in frame.objects:
        if obj.is_visible and obj.area < limit:
            share = obj.area / (frame.width * frame.height)
            yield _object_hit(
                frame, obj, f"covers {obj.area} px ({share:.4%} of the image)", value=share
            )


def track_jump(frame: FrameRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A track whose box barely overlaps, or whose centre moves far from, its box in the
    previous listed frame (an identity switch or a mask that jumped to another object)."""
    if tally.prev is None or not tally.prev_boxes:
        return
    diagonal = math.hypot(frame.width, frame.height)
    for obj in frame.objects:
        before = tally.prev_boxes.get(obj.track_id)
        if before is None or obj.mask_bbox is None:
            continue
        iou = box_iou(before, obj.mask_bbox)
        shift = _centre_distance(before, obj.mask_bbox) / diagonal
        if iou < options.jump_min_iou or shift > options.jump_max_shift:
            yield _object_hit(
                frame,
                obj,
                f"box moved from {_fmt_box(before)} (frame {tally.prev.frame_index}) to "
                f"{_fmt_box(obj.mask_bbox)}: IoU {iou:.2f}, centre moved {shift:.0%} of the "
                "image diagonal",
                value=iou,
            )


# --------------------------------------------------------------------------------------------
# Video rules: (video, tally after its last frame, options) -> hits
# --------------------------------------------------------------------------------------------


def no_objects(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A video with nothing to train on: no objects at all, or only empty/broken masks."""
    counts = tally.video_totals
    if counts["objects"] == 0:
        yield Hit(f"no objects in any of its {counts['frames']} listed frames")
    elif counts["visible"] == 0:
        yield Hit(
            f"all {counts['objects']} objects have empty or broken masks: nothing is annotated"
        )


def overlay_images(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Images with the annotations drawn in (the demo's PNGs): a model would learn the drawing."""
    overlays = tally.video_totals["overlay_images"]
    if overlays:
        yield Hit(
            f"{overlays} of {tally.video_totals['images']} images are overlays: the masks, "
            "contours and labels are drawn into them",
            value=overlays,
            suggestion=(
                "pass the raw frames: `--frames VIDEO_OR_FOLDER` (one per export) to validate "
                "and convert, so the model sees the frames, not the drawing"
                if video.kind == "export"
                else "convert the exports again with `--frames VIDEO_OR_FOLDER` (raw frames)"
            ),
        )


def frame_order(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Frames written out of ``frame_index`` order (read sorted, but other tools may not)."""
    if video.kind == "dataset":
        return  # row order carries no meaning in a dataset (splits are often shuffled)
    order = np.asarray(video.written_order, dtype=np.int64)
    if order.size < 2:
        return
    back = np.flatnonzero(order[1:] < order[:-1])
    if back.size:
        i = int(back[0])
        yield Hit(
            f"{back.size} frame(s) are listed after a later frame (first: frame "
            f"{order[i + 1]} comes after frame {order[i]})",
            frame_index=int(order[i + 1]),
            value=float(back.size),
        )


def timestamp_mismatch(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Timestamps that disagree with ``frame_index / fps``: one finding when they follow another
    frame rate throughout, else one per disagreeing frame; one per timestamp that is written but
    is no finite number (NaN marks them in the records)."""
    index = np.frombuffer(tally.timestamps_index, dtype=np.int64)
    stamps = np.frombuffer(tally.timestamps_sec, dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(stamps)):
        yield Hit("timestamp_sec is not a number", frame_index=int(index[i]))
    index, stamps = index[np.isfinite(stamps)], stamps[np.isfinite(stamps)]
    usable = (stamps > 0) & (index > 0)
    if index.size < 2 or not usable.any():
        return
    implied = float(np.median(index[usable] / stamps[usable]))
    fps = video.fps or implied
    tolerance = options.timestamp_tolerance_frames / fps
    off = np.abs(stamps - index / fps) > tolerance
    if not off.any():
        return
    agree_implied = np.abs(stamps - index / implied) <= options.timestamp_tolerance_frames / implied
    other_rate = video.fps is not None and not math.isclose(implied, video.fps, rel_tol=0.01)
    if other_rate and agree_implied.mean() >= 0.9:
        yield Hit(
            f"timestamps follow {implied:.3g} fps but the video says {video.fps:g} fps",
            value=implied,
        )
        return
    for i in np.flatnonzero(off):
        yield Hit(
            f"timestamp {stamps[i]:.3f} s, but frame_index / fps = {index[i]} / {fps:.3g} = "
            f"{index[i] / fps:.3f} s",
            frame_index=int(index[i]),
            value=float(stamps[i]),
        )


def fps_mismatch(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Frame indices that step by another amount than ``fps / target_fps``: the stated fps (the
    demo writes 30 whatever the video) is probably wrong, and so are timestamps and durations."""
    if not video.fps or not video.target_fps:
        return
    indices = np.unique(np.asarray(video.written_order, dtype=np.int64))
    if indices.size < 3:
        return
    step = float(np.median(np.diff(indices)))
    expected = video.fps / video.target_fps
    if abs(step - expected) > 0.5:
        yield Hit(
            f"frames are sampled every {step:g} frames, but fps / target_fps = "
            f"{video.fps:g} / {video.target_fps:g} = {expected:g}: the video is probably "
            f"{step * video.target_fps:g} fps",
            value=step * video.target_fps,
        )


def track_label_change(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A track whose label changes over time (renamed mid-session, or a slip)."""
    for track_id, track in tally.tracks.items():
        if len(track.label_runs) > 1:
            runs = ", then ".join(f"{label!r} (frames {a}-{b})" for label, a, b in track.label_runs)
            yield Hit(
                f"track {track_id} is labelled {runs}",
                frame_index=track.label_runs[1][1],
                track_id=track_id,
                label=track.label_runs[-1][0],
                value=float(len(track.label_runs)),
            )


def unnamed_track(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A track carrying the demo's placeholder name ``object_<id>``, or a blank label (only
    whitespace): the model would learn it."""
    for track_id, track in tally.tracks.items():
        for label, first, last in track.label_runs:
            if UNNAMED.match(label) or not label.strip():
                what = (
                    "the demo's placeholder for a track nobody named"
                    if label.strip()
                    else "a blank label"
                )
                yield Hit(
                    f"track {track_id} is labelled {label!r} (frames {first}-{last}), {what}",
                    frame_index=first,
                    track_id=track_id,
                    label=label,
                )
                break


def empty_masks(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Tracks with some empty masks (lost or occluded), below the warning share."""
    yield from _empty_share(tally, lambda share: share < options.empty_track_share)


def track_mostly_empty(video: VideoRecord, tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Tracks whose masks are empty in at least ``empty_track_share`` of their frames."""
    yield from _empty_share(tally, lambda share: share >= options.empty_track_share)


def _empty_share(tally: Tally, keep: Callable[[float], bool]) -> Iterator[Hit]:
    for track_id, track in tally.tracks.items():
        if not track.empty:
            continue
        share = track.empty / track.objects
        if keep(share):
            frames = ", ".join(map(str, track.empty_frames))
            more = ", ..." if track.empty > len(track.empty_frames) else ""
            yield Hit(
                f"track {track_id} ({track.label_runs[-1][0]!r}) has {track.empty} empty masks "
                f"in {track.objects} frames ({share:.0%}; frames {frames}{more})",
                frame_index=track.empty_frames[0],
                track_id=track_id,
                label=track.label_runs[-1][0],
                value=share,
            )


# --------------------------------------------------------------------------------------------
# End rules: (tally of everything, options) -> hits
# --------------------------------------------------------------------------------------------


def class_imbalance(tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """The most frequent class outnumbers the least frequent by ``imbalance_ratio`` or more."""
    counts = {label: c.objects for label, c in tally.classes.items()}
    if len(counts) < 2:
        return
    most = max(counts, key=counts.__getitem__)
    least = min(counts, key=counts.__getitem__)
    ratio = counts[most] / counts[least]
    if ratio >= options.imbalance_ratio:
        yield Hit(
            f"class imbalance {ratio:.1f}:1 ({most!r} has {counts[most]} objects, {least!r} "
            f"{counts[least]})",
            label=least,
            value=ratio,
        )


def rare_class(tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """A class in fewer frames than the split ratios need to put one in every split."""
    need = options.frames_per_class
    ratios = " / ".join(f"{r:g}" for r in options.ratios)
    for label, cls in sorted(tally.classes.items()):
        if cls.frames < need:
            yield Hit(
                f"class {label!r} is in {cls.frames} frame(s) ({len(cls.videos)} video(s)); "
                f"splits of {ratios} need at least {need}",
                label=label,
                value=float(cls.frames),
            )


def label_variants(tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Labels that differ only in case or whitespace ("Cup", "cup", "cup ")."""
    for canonical, variants in variant_groups(tally.labels).items():
        listed = ", ".join(f"{v!r} ({tally.labels[v]})" for v in variants)
        mapping = ", ".join(f"{v!r} -> {canonical!r}" for v in variants if v != canonical)
        yield Hit(
            f"labels {listed} differ only in case or whitespace",
            label=canonical,
            value=float(len(variants)),
            suggestion=f"relabel {mapping} (the most frequent spelling)",
        )


def area_outlier(tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Masks whose area (share of the image) is beyond the class mean +- ``area_sigma`` std and
    at least ``outlier_min_change`` of the mean away from it."""
    for label, cls in sorted(tally.classes.items()):
        if cls.objects < options.min_stat_count:
            continue
        shares = np.frombuffer(cls.shares, dtype=np.float64)
        mean, std = float(shares.mean()), float(shares.std())
        if std == 0:
            continue
        deviation = np.abs(shares - mean)
        outliers = (deviation > options.area_sigma * std) & (
            deviation >= options.outlier_min_change * mean
        )
        for i in np.flatnonzero(outliers):
            video, index = tally.where(int(cls.frame_serials[i]))
            yield Hit(
                f"mask covers {shares[i]:.2%} of the image; class {label!r} averages "
                f"{mean:.2%} +- {std:.2%}",
                frame_index=index,
                track_id=int(cls.track_ids[i]),
                label=label,
                value=float(shares[i]),
                source=video.source,
                video_id=video.video_id,
                split=video.split,
            )


def density_outlier(tally: Tally, options: ValidateOptions) -> Iterator[Hit]:
    """Frames with far more visible objects than the others: beyond mean + ``density_sigma`` std
    (over frames with objects) and ``outlier_min_change`` above the mean."""
    visible = np.frombuffer(tally.frame_visible, dtype=np.uint32).astype(np.float64)
    annotated = np.flatnonzero(visible > 0)
    if annotated.size < options.min_stat_count:
        return
    mean, std = float(visible[annotated].mean()), float(visible[annotated].std())
    if std == 0:
        return
    limit = max(mean + options.density_sigma * std, mean * (1 + options.outlier_min_change))
    for serial in annotated[visible[annotated] > limit]:
        video, index = tally.where(int(serial))
        yield Hit(
            f"{int(visible[serial])} visible objects; frames with objects average "
            f"{mean:.1f} +- {std:.1f}",
            frame_index=index,
            value=float(visible[serial]),
            source=video.source,
            video_id=video.video_id,
            split=video.split,
        )


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

Scope = Literal["frame", "video", "end"]
FrameCheck = Callable[[FrameRecord, Tally, ValidateOptions], Iterable[Hit]]
VideoCheck = Callable[[VideoRecord, Tally, ValidateOptions], Iterable[Hit]]
EndCheck = Callable[[Tally, ValidateOptions], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    """One row of :data:`RULES`: when it runs, how bad a hit is, and what to do about it."""

    scope: Scope
    severity: Severity
    check: FrameCheck | VideoCheck | EndCheck
    title: str
    fix: str


RULES: dict[str, Rule] = {
    # Frames and images
    "empty-frame": Rule(
        "frame",
        "info",
        empty_frame,
        "Frames listed with no objects",
        "nothing to do: they carry no image and are left out of training",
    ),
    "missing-image": Rule(
        "frame",
        "error",
        missing_image,
        "Frames with objects but no image",
        "pass raw frames with `--frames`, or add the missing images; otherwise these frames "
        "cannot be trained on",
    ),
    "broken-image": Rule(
        "frame",
        "error",
        broken_image,
        "Images that cannot be read",
        "re-export the video or pass raw frames with `--frames`",
    ),
    "image-size-mismatch": Rule(
        "frame",
        "error",
        image_size_mismatch,
        "Images whose size differs from the video's",
        "use frames of the annotated video at its resolution (check `--frames`)",
    ),
    "duplicate-frame-index": Rule(
        "frame",
        "error",
        duplicate_frame_index,
        "Frame indices listed more than once",
        "keep one entry per frame_index in annotations.json",
    ),
    "duplicate-image": Rule(
        "frame",
        "warning",
        duplicate_image,
        "Byte-identical images",
        "drop the duplicates: they over-weight one frame and can leak across splits",
    ),
    "frame-order": Rule(
        "video",
        "info",
        frame_order,
        "Frames listed out of order",
        "nothing to do here (frames are read sorted by frame_index); sort them for other tools",
    ),
    "timestamp-mismatch": Rule(
        "video",
        "warning",
        timestamp_mismatch,
        "Timestamps that disagree with the fps",
        "order and split by frame_index (as this package does); fix the fps or timestamps "
        "before using times",
    ),
    "fps-mismatch": Rule(
        "video",
        "warning",
        fps_mismatch,
        "Sampling step that disagrees with fps / target_fps",
        "the demo writes 30 fps whatever the video: timestamps and durations are wrong, "
        "frame indices are right; pass the source video with `--frames` for correct frames",
    ),
    "overlay-images": Rule(
        "video",
        "warning",
        overlay_images,
        "Overlay images (annotations drawn in)",
        "pass the raw frames with `--frames VIDEO_OR_FOLDER`",
    ),
    "no-objects": Rule(
        "video",
        "error",
        no_objects,
        "Exports with no objects",
        "annotate objects in the SAM2 demo before exporting, or leave this input out",
    ),
    # Masks and boxes
    "broken-mask": Rule(
        "frame",
        "error",
        broken_mask,
        "Masks or objects that cannot be read",
        "drop these objects or re-export the video",
    ),
    "mask-size-mismatch": Rule(
        "frame",
        "error",
        mask_size_mismatch,
        "Masks sized for another image",
        "check the masks belong to this video; re-export or convert again",
    ),
    "empty-masks": Rule(
        "video",
        "info",
        empty_masks,
        "Tracks with empty masks (lost or occluded)",
        "nothing to do: empty masks are left out of training",
    ),
    "track-mostly-empty": Rule(
        "video",
        "warning",
        track_mostly_empty,
        "Tracks lost or occluded most of the time",
        "re-prompt SAM2 on the object where it was lost, or drop the track",
    ),
    "bbox-invalid": Rule(
        "frame",
        "error",
        bbox_invalid,
        "Boxes with a negative or zero size",
        "rebuild the box from the mask (ingest does so for exports) or drop the object",
    ),
    "bbox-outside": Rule(
        "frame",
        "warning",
        bbox_outside,
        "Boxes reaching outside the image",
        "clip boxes to the image, or rebuild them from the masks",
    ),
    "bbox-mask-mismatch": Rule(
        "frame",
        "warning",
        bbox_mask_mismatch,
        "Boxes disagreeing with their mask",
        "rebuild the boxes from the masks (pycocotools toBbox)",
    ),
    "tiny-object": Rule(
        "frame",
        "info",
        tiny_object,
        "Tiny objects",
        "vision-language models locate objects on a coarse grid; drop objects this small or "
        "use a higher-resolution model",
    ),
    "area-outlier": Rule(
        "end",
        "info",
        area_outlier,
        "Mask-area outliers per class",
        "look at these masks: a far larger or smaller mask than the class usually has is often "
        "a wrong mask or a wrong label",
    ),
    "density-outlier": Rule(
        "end",
        "info",
        density_outlier,
        "Unusually dense frames",
        "check these frames for duplicated or spurious objects",
    ),
    # Tracks and labels
    "track-jump": Rule(
        "frame",
        "warning",
        track_jump,
        "Track jumps between consecutive frames",
        "review these frames in the SAM2 demo (identity switch, or a mask that jumped to "
        "another object); re-prompt or drop them",
    ),
    "track-label-change": Rule(
        "video",
        "warning",
        track_label_change,
        "Tracks whose label changes",
        "decide which label is right and relabel the whole track",
    ),
    "unnamed-track": Rule(
        "video",
        "warning",
        unnamed_track,
        "Tracks named object_<id> or blank",
        "name the object in the SAM2 demo, or relabel it",
    ),
    "label-variants": Rule(
        "end",
        "warning",
        label_variants,
        "Labels differing only in case or whitespace",
        "relabel the variants to one spelling",
    ),
    "class-imbalance": Rule(
        "end",
        "warning",
        class_imbalance,
        "Class imbalance",
        "oversample or augment the rare classes, or undersample the frequent ones",
    ),
    "rare-class": Rule(
        "end",
        "warning",
        rare_class,
        "Classes too rare to split",
        "annotate more frames of the class, merge it into a related class, or drop it",
    ),
}


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


def run_rules(
    videos: Iterable[tuple[VideoRecord, Iterable[FrameRecord]]], options: ValidateOptions
) -> tuple[list[Finding], Tally]:
    """Run every rule of :data:`RULES` in one pass over ``videos``; return the findings (in the
    order found) and the tally the report's statistics come from."""
    by_scope: dict[Scope, list[tuple[str, Rule]]] = {"frame": [], "video": [], "end": []}
    for code, rule in RULES.items():
        by_scope[rule.scope].append((code, rule))
    tally = Tally()
    findings: list[Finding] = []
    for video, frames in videos:
        tally.start_video(video)
        for frame in frames:
            for code, rule in by_scope["frame"]:
                for hit in rule.check(frame, tally, options):  # type: ignore[call-arg,arg-type]
                    findings.append(_finding(code, rule, hit, video))
            tally.observe(frame)
        for code, rule in by_scope["video"]:
            for hit in rule.check(video, tally, options):  # type: ignore[call-arg,arg-type]
                findings.append(_finding(code, rule, hit, video))
        tally.end_video()
    tally.start_video(None)
    for code, rule in by_scope["end"]:
        for hit in rule.check(tally, options):  # type: ignore[call-arg]
            findings.append(_finding(code, rule, hit, None))
    return findings, tally


def _finding(code: str, rule: Rule, hit: Hit, video: VideoRecord | None) -> Finding:
    return Finding(
        code=code,
        severity=rule.severity,
        message=hit.message,
        suggestion=hit.suggestion or rule.fix,
        source=hit.source or (video.source if video else None),
        video_id=hit.video_id or (video.video_id if video else None),
        frame_index=hit.frame_index,
        track_id=hit.track_id,
        label=hit.label,
        value=hit.value,
        split=hit.split or (video.split if video else None),
    )


# --------------------------------------------------------------------------------------------
# Small helpers shared by the rules and the report
# --------------------------------------------------------------------------------------------


def variant_groups(labels: Counter[str]) -> dict[str, list[str]]:
    """``{spelling to keep: [variants...]}`` for labels that differ only in case or whitespace;
    the spelling kept is the most frequent (ties: the tidiest, then alphabetical)."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(normalize_label(label), []).append(label)
    out = {}
    for key, variants in sorted(groups.items()):
        if len(variants) > 1:
            keep = max(variants, key=lambda v: (labels[v], v == key, v == v.strip(), v))
            out[keep] = sorted(variants, key=lambda v: (-labels[v], v))
    return out


def box_iou(a: Box, b: Box) -> float:
    """IoU of two ``[x, y, w, h]`` boxes."""
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _centre_distance(a: Box, b: Box) -> float:
    return math.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2)


def _fmt_box(box: Box) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in box) + "]"


def _short(message: str) -> str:
    """An ingest error without its location prefix (the finding carries the location) and its
    fix (the finding carries the rule's, which knows this is validate speaking)."""
    head, sep, tail = message.partition(": ")
    problem = tail if sep and "frame " in head else message
    before, fix, _ = problem.rpartition(". Fix: ")
    return before + "." if fix else problem


def _object_hit(
    frame: FrameRecord, obj: ObjectRecord, message: str, value: float | None = None
) -> Hit:
    return Hit(
        message,
        frame_index=frame.frame_index,
        track_id=obj.track_id,
        label=obj.label,
        value=value,
    )
