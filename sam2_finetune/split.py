"""The split stage: train / validation / test from a canonical dataset, with no leakage.

Three strategies, all seeded with their own ``random.Random`` (the global RNGs are never touched):

- ``temporal`` (default, for video data): whole videos go to one split when a balanced assignment
  of videos lands every split within ``video_tolerance`` of its ratio; otherwise every video is cut
  into contiguous time blocks, one per split, and the frames closer than the gap to a block of
  another split are dropped, so near-identical neighbours never straddle a split.
- ``stratified``: multi-label iterative stratification on label presence (Sechidis et al., 2011),
  then swaps until every class with at least ``RARE_CLASS_FRAMES`` frames is within
  ``STRATIFY_TOLERANCE`` of every split's ratio.
- ``random``: a seeded shuffle cut by the ratios.

Identical images (same bytes) never end up in two splits: the extra copies are dropped. The
result is a ``DatasetDict`` saved with ``save_to_disk`` plus ``split_manifest.json`` (strategy,
ratios, seed, image ids per split, per-class distribution, the leakage check), whose bytes depend
only on the data and the options.

>>> result = split(SplitOptions(dataset="data/hf", out="data/split"))  # doctest: +SKIP
>>> result.sizes, result.leakage.ok                                     # doctest: +SKIP
({'train': 104, 'validation': 13, 'test': 13}, True)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sam2_finetune.dataset import category_names, image_id, load_canonical
from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.outputs import atomic_output_dir, ensure_writable

if TYPE_CHECKING:
    import datasets

SPLIT_NAMES = ("train", "validation", "test")
TEST = 2
MANIFEST_NAME = "split_manifest.json"
MANIFEST_VERSION = 1
# Below this many frames a class cannot be held to the ratios (a 10 % split of 19 frames is
# 1.9 frames); such classes get a warning instead of a guarantee.
RARE_CLASS_FRAMES = 20
STRATIFY_TOLERANCE = 0.05
TINY_DATASET_FRAMES = 30
# The SAM2 export tool writes source_fps = 30 whatever the real rate; used when timestamps
# cannot give a rate (one frame, or all timestamps 0).
ASSUMED_FPS = 30.0
MAX_EXAMPLES = 10

Strategy = Literal["temporal", "stratified", "random"]
TemporalUnit = Literal["auto", "video", "block"]


class SplitWarning(UserWarning):
    """Something about a split the user should know (rare classes, empty splits, leakage)."""


# --------------------------------------------------------------------------------------------
# Options and results
# --------------------------------------------------------------------------------------------


# The gap options, declared once for `split` and `leakage`.
GapSeconds = Annotated[
    float,
    Field(
        ge=0,
        description="Frames of one video closer than this (source-video time) are near-"
        "duplicates: split never puts them in different splits, leakage reports them.",
    ),
]
GapFrames = Annotated[
    int | None,
    Field(
        ge=0,
        description="The gap in source frame indices, for every video; replaces gap_seconds "
        "and fps.",
    ),
]
Fps = Annotated[
    float | None,
    Field(
        gt=0,
        description="Source frame rate that turns gap_seconds into frame indices; default: "
        "inferred per video from frame_index / timestamp_sec (30 when timestamps say nothing).",
    ),
]


class SplitOptions(BaseModel):
    """Split a canonical dataset into train / validation / test without leakage.

    Writes a DatasetDict (save_to_disk) and split_manifest.json to OUT. Strategies: temporal
    (whole videos, or time blocks with a gap when there are too few videos), stratified
    (multi-label, on label presence), random. The same data and options give the same manifest,
    byte for byte.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(
        description="Canonical dataset folder (`sam2-finetune convert --to hf` output).",
        json_schema_extra={"positional": True},
    )
    out: Path = Field(description="Output folder for the DatasetDict and split_manifest.json.")
    strategy: Strategy = Field("temporal", description="How frames are assigned to splits.")
    ratios: list[float] = Field(
        [0.8, 0.1, 0.1],
        description="Train, validation and test shares: non-negative, sum 1 (0 = empty split).",
    )
    seed: int = Field(42, description="Seed of the split's own random generator.")
    temporal_unit: TemporalUnit = Field(
        "auto",
        description="temporal only: `video` keeps whole videos together, `block` cuts every "
        "video into time blocks, `auto` takes videos when they fit the ratios.",
    )
    video_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="temporal auto: largest gap between a split's ratio and its share of frames "
        "accepted for a whole-video split.",
    )
    keep_test: Path | None = Field(
        None,
        description="A previous split_manifest.json (or its folder): keep its test frames as "
        "the test set and split the rest into train and validation.",
    )
    gap_seconds: GapSeconds = 1.0
    gap_frames: GapFrames = None
    fps: Fps = None
    overwrite: bool = Field(False, description="Replace OUT if it already holds something.")

    @field_validator("ratios")
    @classmethod
    def _check_ratios(cls, ratios: list[float]) -> list[float]:
        problems = []
        if len(ratios) != len(SPLIT_NAMES):
            problems.append(f"give 3 ratios (train validation test), found {len(ratios)}")
        if any(not math.isfinite(r) or r < 0 for r in ratios):
            problems.append(f"every ratio must be a finite number >= 0, found {ratios}")
        elif abs(sum(ratios) - 1.0) > 1e-6:
            problems.append(
                f"ratios must sum to 1, found {sum(ratios):g}; e.g. 0.8 0.1 0.1, or 0.9 0.1 0 "
                "for no test split"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return ratios


class LeakageOptions(BaseModel):
    """Check a split dataset for leakage between its splits.

    Reports frames of one video that are closer than the gap but in different splits, and
    identical images (same bytes) in different splits. Exit status 1 when any is found.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(
        description="A split dataset folder (DatasetDict, e.g. `sam2-finetune split` output).",
        json_schema_extra={"positional": True},
    )
    gap_seconds: GapSeconds = 1.0
    gap_frames: GapFrames = None
    fps: Fps = None
    json_output: bool = Field(False, alias="json", description="Print the report as JSON.")


@dataclass(frozen=True)
class LeakageReport:
    """What :func:`check_leakage` found. ``ok`` is true when nothing leaks."""

    gap_seconds: float
    gap_frames: dict[str, int]  # video id -> gap in source frame indices
    frames: dict[str, int]  # split -> frames checked
    near_pairs: int  # pairs of frames of one video, closer than the gap, in different splits
    near_examples: list[dict[str, Any]]
    identical_images: int  # distinct images whose bytes occur in more than one split
    identical_examples: list[dict[str, Any]]
    frames_without_image: int

    @property
    def ok(self) -> bool:
        return self.near_pairs == 0 and self.identical_images == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "gap_seconds": self.gap_seconds,
            "gap_frames": dict(sorted(self.gap_frames.items())),
            "frames": self.frames,
            "near_pairs": self.near_pairs,
            "near_examples": self.near_examples,
            "identical_images": self.identical_images,
            "identical_examples": self.identical_examples,
            "frames_without_image": self.frames_without_image,
        }

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            return "no leakage: no near frames, no identical images across splits"
        parts = []
        if self.near_pairs:
            e = self.near_examples[0]
            parts.append(
                f"{self.near_pairs} pairs of frames of one video closer than the gap in different "
                f"splits (e.g. {e['a']['split']}:{e['a']['image_id']} and "
                f"{e['b']['split']}:{e['b']['image_id']}, {e['frames_apart']} frames apart)"
            )
        if self.identical_images:
            e = self.identical_examples[0]
            parts.append(
                f"{self.identical_images} identical images in different splits "
                f"(e.g. {', '.join(e['copies'])})"
            )
        return "LEAKAGE: " + "; ".join(parts)


@dataclass(frozen=True)
class SplitResult:
    """What :func:`split` wrote and found."""

    out: Path
    manifest_path: Path
    sizes: dict[str, int]
    dropped: int
    temporal_unit: str | None
    leakage: LeakageReport
    warnings: list[str]
    manifest: dict[str, Any] = field(repr=False)


# --------------------------------------------------------------------------------------------
# Reading what a split needs, without decoding images or holding them
# --------------------------------------------------------------------------------------------


@dataclass
class _Rows:
    """The columns a split needs, one entry per row, plus a hash of each image's bytes."""

    image_ids: list[str]
    video_ids: list[str]
    frame_index: np.ndarray
    timestamp: np.ndarray
    categories: list[tuple[int, ...]]  # class id of every visible object (area > 0)
    hashes: list[bytes | None]
    names: list[str]

    def __len__(self) -> int:
        return len(self.image_ids)

    def presence(self) -> list[frozenset[int]]:
        return [frozenset(c) for c in self.categories]


def _read_rows(dataset: datasets.Dataset, names: list[str], with_objects: bool = True) -> _Rows:
    """The columns a split needs. Without ``with_objects`` (the leakage checker, which may get a
    split made elsewhere) only ``video_id`` and ``frame_index`` are required: ``image_id``,
    ``timestamp_sec``, ``image`` and ``objects`` are read when present."""
    import pyarrow.compute as pc

    image_ids: list[str] = []
    video_ids: list[str] = []
    frames: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    categories: list[tuple[int, ...]] = []
    required = ["video_id", "frame_index"] + (["image_id", "objects"] if with_objects else [])
    optional = ["timestamp_sec"] + ([] if with_objects else ["image_id"])
    columns = required + [c for c in optional if c in dataset.column_names]
    table = dataset.select_columns(columns).with_format("arrow")
    for batch in table.iter(batch_size=4096):
        n = batch.num_rows
        batch_videos = batch.column("video_id").to_pylist()
        batch_frames = batch.column("frame_index").to_numpy().astype(np.int64)
        video_ids += batch_videos
        frames.append(batch_frames)
        image_ids += (
            batch.column("image_id").to_pylist()
            if "image_id" in columns
            else [image_id(str(v), int(f)) for v, f in zip(batch_videos, batch_frames, strict=True)]
        )
        stamps.append(
            batch.column("timestamp_sec").to_numpy().astype(np.float64)
            if "timestamp_sec" in columns
            else np.zeros(n)
        )
        if not with_objects:
            categories += [()] * n  # leakage needs no classes
            continue
        objects = batch.column("objects").combine_chunks()
        flat = pc.list_flatten(objects)
        parents = pc.list_parent_indices(objects).to_numpy()
        if len(flat):
            cats = flat.field("category").to_numpy(zero_copy_only=False)
            area = flat.field("area").to_numpy(zero_copy_only=False)
            # Lost / occluded objects keep an empty mask: they are not visible in the frame.
            keep = (area > 0) & (cats >= 0)
            per_row = np.bincount(parents[keep], minlength=n)
            chunks = np.split(cats[keep].astype(int), np.cumsum(per_row)[:-1])
            categories += [tuple(c.tolist()) for c in chunks]
        else:
            categories += [()] * n
    return _Rows(
        image_ids=image_ids,
        video_ids=video_ids,
        frame_index=np.concatenate(frames) if frames else np.zeros(0, np.int64),
        timestamp=np.concatenate(stamps) if stamps else np.zeros(0),
        categories=categories,
        hashes=_image_hashes(dataset),
        names=names,
    )


def _image_hashes(dataset: datasets.Dataset) -> list[bytes | None]:
    """A digest of every row's encoded image, reading a small batch at a time. Images are
    ``{bytes, path}`` structs (``datasets.Image``) or plain path strings; no image, no digest."""
    if "image" not in dataset.column_names:
        return [None] * len(dataset)
    hashes: list[bytes | None] = []
    table = dataset.select_columns(["image"]).with_format("arrow")
    for batch in table.iter(batch_size=64):
        column = batch.column("image").combine_chunks()
        for item in column.to_pylist():
            if isinstance(item, str):
                item = {"bytes": None, "path": item}
            data = item.get("bytes") if isinstance(item, dict) else None
            path = item.get("path") if isinstance(item, dict) else None
            if data is None and path and Path(path).is_file():
                data = Path(path).read_bytes()
            hashes.append(hashlib.blake2b(data, digest_size=16).digest() if data else None)
    return hashes


def _rows_by_video(rows: _Rows, members: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Row indices per video, sorted by (frame_index, image_id); videos in sorted order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in range(len(rows)) if members is None else members:
        groups[rows.video_ids[i]].append(i)
    return {
        video: np.array(
            sorted(idx, key=lambda i: (int(rows.frame_index[i]), rows.image_ids[i])), dtype=int
        )
        for video, idx in sorted(groups.items())
    }


def _video_gaps(
    rows: _Rows, gap_seconds: float, gap_frames: int | None, fps: float | None
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """The gap in source frame indices per video, and how each was obtained (for the manifest).

    Frame indices are exact; timestamps are frame_index / the fps the export claims. The rate is
    the median of d(frame_index) / d(timestamp) over consecutive frames, so one odd timestamp does
    not move it.
    """
    gaps: dict[str, int] = {}
    info: dict[str, dict[str, Any]] = {}
    for video, idx in _rows_by_video(rows).items():
        if gap_frames is not None:
            gaps[video] = gap_frames
            info[video] = {"fps": None, "fps_from": "gap_frames option", "frames": gap_frames}
            continue
        if fps is not None:
            rate, source = fps, "fps option"
        else:
            df = np.diff(rows.frame_index[idx]).astype(float)
            dt = np.diff(rows.timestamp[idx])
            ok = (df > 0) & (dt > 0)
            if ok.any():
                rate, source = float(np.median(df[ok] / dt[ok])), "timestamps"
            else:
                rate, source = ASSUMED_FPS, "assumed (timestamps give no rate)"
        frames = math.ceil(gap_seconds * rate - 1e-9)
        gaps[video] = frames
        info[video] = {"fps": round(rate, 6), "fps_from": source, "frames": frames}
    return gaps, info


# --------------------------------------------------------------------------------------------
# Leakage
# --------------------------------------------------------------------------------------------


def _leakage(
    rows: _Rows,
    assign: np.ndarray,
    gaps: dict[str, int],
    gap_seconds: float,
    split_names: Sequence[str] = SPLIT_NAMES,
) -> LeakageReport:
    """Leakage of an assignment (``assign[i]`` = index into ``split_names``, -1 = no split)."""
    kept = np.flatnonzero(assign >= 0)
    near_pairs = 0
    near_examples: list[dict[str, Any]] = []
    for video, idx in _rows_by_video(rows, kept.tolist()).items():
        # Frame 0 apart (the same frame twice) always leaks, whatever the gap.
        window = max(gaps.get(video, 0), 1)
        frames = rows.frame_index[idx]
        where = assign[idx]
        for a in range(len(split_names)):
            for b in range(a + 1, len(split_names)):
                fa, fb = frames[where == a], frames[where == b]
                if not len(fa) or not len(fb):
                    continue
                hits = np.searchsorted(fb, fa + window, "left") - np.searchsorted(
                    fb, fa - window, "right"
                )
                near_pairs += int(hits.sum())
                for k in np.flatnonzero(hits)[: MAX_EXAMPLES - len(near_examples)]:
                    ia = idx[where == a][k]
                    nearest = np.argmin(np.abs(fb - fa[k]))
                    ib = idx[where == b][nearest]
                    near_examples.append(
                        {
                            "video_id": video,
                            "a": {"split": split_names[a], "image_id": rows.image_ids[ia]},
                            "b": {"split": split_names[b], "image_id": rows.image_ids[ib]},
                            "frames_apart": int(abs(fb[nearest] - fa[k])),
                        }
                    )
    copies: dict[bytes, list[int]] = defaultdict(list)
    for i in kept:
        digest = rows.hashes[i]
        if digest is not None:
            copies[digest].append(int(i))
    identical = 0
    identical_examples: list[dict[str, Any]] = []
    for members in copies.values():
        if len({int(assign[i]) for i in members}) > 1:
            identical += 1
            if len(identical_examples) < MAX_EXAMPLES:
                shown = sorted(f"{split_names[assign[i]]}:{rows.image_ids[i]}" for i in members)
                identical_examples.append({"copies": shown})
    identical_examples.sort(key=lambda e: e["copies"])
    return LeakageReport(
        gap_seconds=gap_seconds,
        gap_frames=gaps,
        frames={name: int((assign == s).sum()) for s, name in enumerate(split_names)},
        near_pairs=near_pairs,
        near_examples=near_examples,
        identical_images=identical,
        identical_examples=identical_examples,
        frames_without_image=sum(1 for i in kept if rows.hashes[i] is None),
    )


def check_leakage(
    dataset: str | Path | datasets.DatasetDict,
    gap_seconds: float = 1.0,
    gap_frames: int | None = None,
    fps: float | None = None,
) -> LeakageReport:
    """Check any split dataset (a ``DatasetDict`` or its folder) for leakage between splits.

    Counts pairs of frames of one video that sit in different splits closer than the gap (the
    same frame twice always counts), and images whose bytes occur in more than one split. Split
    names other than train / validation / test are checked too.

    >>> check_leakage("data/split").ok  # doctest: +SKIP
    True
    """
    from datasets import DatasetDict

    folder = str(dataset) if isinstance(dataset, (str, Path)) else None
    source = load_canonical(dataset, columns=()) if folder is not None else dataset
    if not isinstance(source, DatasetDict):
        raise DatasetError(
            describe(
                "a single dataset has no splits to compare",
                file=str(dataset) if isinstance(dataset, (str, Path)) else None,
                expected="a DatasetDict (train / validation / test)",
                found="a Dataset",
                fix="point at a folder written by `sam2-finetune split`",
            )
        )
    for name, part in source.items():
        missing = [c for c in ("video_id", "frame_index") if c not in part.column_names]
        if missing:
            raise DatasetError(
                describe(
                    f"split {name!r} lacks the column(s) {missing} that place a frame in its video",
                    file=folder,
                    expected="video_id and frame_index (image, image_id, timestamp_sec optional)",
                    found=part.column_names,
                    fix="add the columns, or convert the exports with `sam2-finetune convert "
                    "--to hf` and split that",
                )
            )
        # Through the indices mapping (a selected split), not the whole underlying table.
        placing = part.select_columns(["video_id", "frame_index"]).with_format("arrow")
        nulls = dict.fromkeys(("video_id", "frame_index"), 0)
        for batch in placing.iter(batch_size=65536):
            for column in nulls:
                nulls[column] += batch.column(column).null_count
        if any(nulls.values()):
            raise DatasetError(
                describe(
                    f"split {name!r} has rows that cannot be placed in a video: "
                    + ", ".join(f"{k} row(s) without {c}" for c, k in nulls.items() if k),
                    file=folder,
                    fix="fill video_id and frame_index in every row, or drop those rows",
                )
            )
    parts = [(name, _read_rows(part, [], with_objects=False)) for name, part in source.items()]
    rows = _concat_rows([r for _, r in parts], [])
    assign = np.concatenate([np.full(len(r), s, dtype=int) for s, (_, r) in enumerate(parts)])
    gaps, _ = _video_gaps(rows, gap_seconds, gap_frames, fps)
    return _leakage(rows, assign, gaps, gap_seconds, [name for name, _ in parts])


def _concat_rows(parts: list[_Rows], names: list[str]) -> _Rows:
    return _Rows(
        image_ids=[i for p in parts for i in p.image_ids],
        video_ids=[v for p in parts for v in p.video_ids],
        frame_index=np.concatenate([p.frame_index for p in parts]),
        timestamp=np.concatenate([p.timestamp for p in parts]),
        categories=[c for p in parts for c in p.categories],
        hashes=[h for p in parts for h in p.hashes],
        names=names,
    )


# --------------------------------------------------------------------------------------------
# Building blocks of the assignment (pure functions of lists and a seeded generator)
# --------------------------------------------------------------------------------------------


def _shuffled(items: Sequence[Any], rng: random.Random) -> list[Any]:
    """Fisher-Yates on ``rng.random()``, whose stream Python guarantees across versions
    (``random.shuffle``'s is not), so a seed gives the same split on every Python."""
    items = list(items)
    for i in range(len(items) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        items[i], items[j] = items[j], items[i]
    return items


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Split ``n`` items by ``ratios`` (largest remainder); every split with a ratio above 0 gets
    at least one item when ``n`` allows.

    >>> split_counts(10, [0.8, 0.1, 0.1]), split_counts(5, [0.8, 0.1, 0.1])
    ([8, 1, 1], [3, 1, 1])
    """
    exact = [n * r for r in ratios]
    counts = [math.floor(x + 1e-9) for x in exact]
    by_remainder = sorted(
        range(len(ratios)), key=lambda s: (-(exact[s] - counts[s]), -ratios[s], s)
    )
    for s in by_remainder[: n - sum(counts)]:
        counts[s] += 1
    for s in range(len(ratios)):
        if ratios[s] > 0 and counts[s] == 0:
            donor = max(range(len(ratios)), key=lambda d: (counts[d], -d))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[s] += 1
    return counts


def stratify(
    label_sets: Sequence[frozenset[int]],
    ratios: Sequence[float],
    seed: int | random.Random = 0,
    tolerance: float = STRATIFY_TOLERANCE,
    min_frames: int = RARE_CLASS_FRAMES,
) -> list[int]:
    """Assign multi-label items to splits so each label's presence follows ``ratios``.

    Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011): the label with the fewest
    unassigned items goes first, each of its items to the split that still wants that label most;
    split sizes are exact (:func:`split_counts`). Then swaps between splits (sizes unchanged)
    until every label with at least ``min_frames`` items is within ``tolerance`` of each ratio,
    or no swap helps. Returns the split index of each item.
    """
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    n, n_splits = len(label_sets), len(ratios)
    n_classes = 1 + max((max(s) for s in label_sets if s), default=-1)
    capacity = split_counts(n, ratios)
    totals = np.zeros(n_classes)
    rows_of: list[list[int]] = [[] for _ in range(n_classes)]
    for i, labels in enumerate(label_sets):
        for c in labels:
            totals[c] += 1
            rows_of[c].append(i)
    want = np.outer(np.asarray(ratios, float), totals)
    remaining = totals.copy()
    assign = [-1] * n

    def place(i: int, s: int) -> None:
        assign[i] = s
        capacity[s] -= 1
        for c in label_sets[i]:
            want[s, c] -= 1
            remaining[c] -= 1

    while (remaining > 0).any():
        c = int(np.argmin(np.where(remaining > 0, remaining, np.inf)))
        for i in _shuffled([i for i in rows_of[c] if assign[i] < 0], rng):
            open_splits = [s for s in range(n_splits) if capacity[s] > 0]
            place(i, max(open_splits, key=lambda s: (want[s, c], capacity[s], rng.random())))
    for i in _shuffled([i for i in range(n) if assign[i] < 0], rng):
        open_splits = [s for s in range(n_splits) if capacity[s] > 0]
        place(i, max(open_splits, key=lambda s: (capacity[s], rng.random())))
    return _repair_stratification(label_sets, assign, ratios, totals, rng, tolerance, min_frames)


def _repair_stratification(
    label_sets: Sequence[frozenset[int]],
    assign_list: list[int],
    ratios: Sequence[float],
    totals: np.ndarray,
    rng: random.Random,
    tolerance: float,
    min_frames: int,
) -> list[int]:
    n_splits, n_classes = len(ratios), len(totals)
    if not n_classes:
        return assign_list
    assign = np.array(assign_list, dtype=int)
    present = np.zeros((len(label_sets), n_classes), dtype=bool)
    for i, labels in enumerate(label_sets):
        present[i, list(labels)] = True
    counts = np.array([present[assign == s].sum(axis=0) for s in range(n_splits)], dtype=float)
    r = np.asarray(ratios, float)
    safe = np.maximum(totals, 1)
    eligible = totals >= min_frames
    # Rare labels still count a little, so swaps do not wreck them while fixing the others.
    weight = np.where(eligible, 1.0, 0.1)

    def term(s: int, c: int, count: float) -> float:
        dev = count / safe[c] - r[s]
        excess = max(0.0, abs(dev) - tolerance + 1e-3) if eligible[c] else 0.0
        return weight[c] * dev * dev + 100.0 * excess * excess

    def swap_gain(x: int, y: int) -> float:
        sx, sy = assign[x], assign[y]
        delta = 0.0
        for c in np.flatnonzero(present[x] != present[y]):
            step = 1 if present[x, c] else -1  # c moves from sx to sy (or back)
            for s, new in ((sx, counts[sx, c] - step), (sy, counts[sy, c] + step)):
                delta += term(s, c, new) - term(s, c, counts[s, c])
        return delta

    stuck: set[tuple[int, int]] = set()
    for _ in range(20 * len(label_sets) + 100):
        dev = np.abs(counts / safe - r[:, None]) * eligible
        for s_c in stuck:
            dev[s_c] = 0
        s, c = np.unravel_index(int(np.argmax(dev)), dev.shape)
        if dev[s, c] <= tolerance - 1e-3:
            break
        over = counts[s, c] / safe[c] > r[s]
        # Move a frame with the label out of an over-full split, or into an under-full one.
        givers = np.flatnonzero((assign == s) & present[:, c]) if over else None
        if over:
            takers = np.flatnonzero((assign != s) & ~present[:, c] & (r[assign] > 0))
        else:
            givers = np.flatnonzero((assign != s) & present[:, c] & (r[assign] > 0))
            takers = np.flatnonzero((assign == s) & ~present[:, c])
        best, best_pair = -1e-12, None
        for x in _shuffled(givers.tolist(), rng)[:40]:
            for y in _shuffled(takers.tolist(), rng)[:40]:
                gain = swap_gain(x, y)
                if gain < best:
                    best, best_pair = gain, (x, y)
        if best_pair is None:
            stuck.add((int(s), int(c)))
            continue
        x, y = best_pair
        sx, sy = assign[x], assign[y]
        counts[sx] += present[y].astype(float) - present[x]
        counts[sy] += present[x].astype(float) - present[y]
        assign[x], assign[y] = sy, sx
        stuck.clear()
    return assign.tolist()


class _GroupAssignment:
    """Groups (videos) placed in splits, with the running totals the cost needs."""

    def __init__(self, sizes: np.ndarray, class_counts: np.ndarray, ratios: np.ndarray) -> None:
        self.sizes, self.class_counts, self.ratios = sizes, class_counts, ratios
        self.live = [s for s in range(len(ratios)) if ratios[s] > 0]
        self.total = max(float(sizes.sum()), 1.0)
        totals = class_counts.sum(axis=0)
        self.seen = totals > 0
        self.class_totals = np.maximum(totals, 1)
        self.must_fill = len(sizes) >= len(self.live)
        self.where = np.full(len(sizes), -1)
        self.split_sizes = np.zeros(len(ratios))
        self.split_classes = np.zeros((len(ratios), class_counts.shape[1]))
        self.filled = np.zeros(len(ratios), dtype=int)

    def move(self, g: int, s: int) -> None:
        old = self.where[g]
        if old >= 0:
            self.split_sizes[old] -= self.sizes[g]
            self.split_classes[old] -= self.class_counts[g]
            self.filled[old] -= 1
        if s >= 0:
            self.split_sizes[s] += self.sizes[g]
            self.split_classes[s] += self.class_counts[g]
            self.filled[s] += 1
        self.where[g] = s

    def cost(self) -> float:
        """Squared share errors: sizes, then a quarter-weight mean over classes; an empty split
        that should have a video costs more than any imbalance."""
        size_term = float((((self.split_sizes / self.total) - self.ratios) ** 2).sum())
        shares = self.split_classes / self.class_totals - self.ratios[:, None]
        class_term = float((shares[:, self.seen] ** 2).sum() / max(self.seen.sum(), 1))
        empty = sum(1 for s in self.live if self.filled[s] == 0) if self.must_fill else 0
        return size_term + 0.25 * class_term + 10.0 * empty

    def try_moves(self, moves: list[tuple[int, int]], current: float) -> float:
        """Apply ``moves`` (group, split); keep them if the cost drops, else undo."""
        undo = [(g, int(self.where[g])) for g, _ in moves]
        for g, s in moves:
            self.move(g, s)
        new = self.cost()
        if new < current - 1e-12:
            return new
        for g, s in reversed(undo):
            self.move(g, s)
        return current


def _balance_groups(
    sizes: np.ndarray,
    class_counts: np.ndarray,
    ratios: Sequence[float],
    rng: random.Random,
    restarts: int = 8,
) -> np.ndarray:
    """Assign whole groups (videos) to splits: sizes first, then per-class frame shares.

    Greedy placement in several seeded orders, each improved by moves and swaps; the best wins.
    Every split with a ratio above 0 gets a group when there are enough groups.
    """
    n_groups = len(sizes)
    # Swaps are quadratic in the number of videos; with many videos, moves alone balance well
    # and fewer restarts are needed (each has many small items to even things out).
    small = n_groups <= 40
    best_cost, best = math.inf, np.zeros(n_groups, dtype=int)
    for attempt in range(restarts if small else 2):
        state = _GroupAssignment(sizes, class_counts, np.asarray(ratios, float))
        order = _shuffled(range(n_groups), rng)
        if attempt == 0:
            order.sort(key=lambda g: -sizes[g])  # largest first: the classic greedy
        for g in order:
            options = []
            for s in state.live:
                state.move(g, s)
                options.append((state.cost(), rng.random(), s))
            state.move(g, min(options)[2])
        current = state.cost()
        while True:
            before = current
            for g in range(n_groups):
                for s in state.live:
                    if s != state.where[g]:
                        current = state.try_moves([(g, s)], current)
            if small:
                for g, h in itertools.combinations(range(n_groups), 2):
                    sg, sh = int(state.where[g]), int(state.where[h])
                    if sg != sh:
                        current = state.try_moves([(g, sh), (h, sg)], current)
            if current >= before - 1e-12:
                break
        if current < best_cost - 1e-12:
            best_cost, best = current, state.where.copy()
    return best


def _block_orders(live: list[int], ratios: Sequence[float]) -> list[list[int]]:
    """Block orders to try within a video. The largest split sits in the middle, so it alone
    gives up the frames at the gaps and the small splits keep theirs."""
    big, *small = sorted(live, key=lambda s: (-ratios[s], s))
    if len(small) == 2:
        return [[small[0], big, small[1]], [small[1], big, small[0]]]
    if len(small) == 1:
        return [[big, small[0]], [small[0], big]]
    return [[big]]


def _blocks(
    rows: _Rows,
    by_video: dict[str, np.ndarray],
    ratios: Sequence[float],
    gaps: dict[str, int],
    rng: random.Random,
) -> dict[int, int]:
    """Cut every video into one contiguous block per split (gaps enforced afterwards)."""
    r = np.asarray(ratios, float)
    live = [s for s in range(len(r)) if r[s] > 0]
    big = min(live, key=lambda s: (-r[s], s))
    n_classes = len(rows.names)
    running = np.zeros((len(r), n_classes))
    given = np.zeros(len(r))
    wanted = np.zeros(len(r))
    result: dict[int, int] = {}
    plans: list[tuple[np.ndarray, dict[int, int]]] = []
    for video, idx in by_video.items():
        n = len(idx)
        steps = np.diff(rows.frame_index[idx])
        step = max(int(np.median(steps)) if len(steps) else 1, 1)
        # The big block loses about gap/step frames at each boundary: ask the small splits for
        # their share of what will be left, so the kept frames follow the ratios.
        lost = (len(live) - 1) * max(math.ceil(max(gaps[video], 1) / step) - 1, 0)
        kept = max(n - lost, 0)
        wanted += r * kept
        counts = {s: max(math.floor(wanted[s] - given[s] + 0.5), 0) for s in live if s != big}
        while sum(counts.values()) > n - 1 and any(counts.values()):
            counts[max(counts, key=lambda s: (counts[s], s))] -= 1
        counts[big] = n - sum(counts.values())
        for s, k in counts.items():
            given[s] += k
        plans.append((idx, counts))
    # A split with a ratio above 0 that got nothing takes a frame from the biggest video.
    for s in live:
        if s != big and given[s] == 0:
            _, counts = max(plans, key=lambda plan: plan[1][big])
            if counts[big] > 1:
                counts[big] -= 1
                counts[s] += 1
                given[s] += 1
    for idx, counts in plans:
        labels = np.zeros((len(idx), n_classes))
        for k, i in enumerate(idx):
            labels[k, list(set(rows.categories[i]))] = 1
        options = []
        for order in _block_orders(live, ratios):
            add = np.zeros_like(running)
            start = 0
            for s in order:
                add[s] = labels[start : start + counts[s]].sum(axis=0)
                start += counts[s]
            totals = np.maximum((running + add).sum(axis=0), 1)
            score = float((((running + add) / totals - r[:, None]) ** 2).sum())
            options.append((score, rng.random(), order, add))
        _, _, order, add = min(options, key=lambda o: (o[0], o[1]))
        running += add
        start = 0
        for s in order:
            for i in idx[start : start + counts[s]]:
                result[int(i)] = s
            start += counts[s]
    return result


def _enforce_gap(
    idx: np.ndarray, frames: np.ndarray, assign: np.ndarray, gap: int, priority: np.ndarray
) -> list[int]:
    """Drop frames of one video until no two frames of different splits are closer than ``gap``.

    ``idx`` is the video's rows sorted by frame; at each offending boundary the split with the
    lower ``priority`` (per row; kept test frames rank highest) gives up its frames near it.
    Returns the dropped rows.
    """
    window = max(gap, 1)
    dropped: list[int] = []
    while True:
        kept = [i for i in idx if assign[i] >= 0]
        conflict = next(
            (
                (a, b)
                for a, b in itertools.pairwise(kept)
                if assign[a] != assign[b] and frames[b] - frames[a] < window
            ),
            None,
        )
        if conflict is None:
            return dropped
        a, b = conflict
        pos = kept.index(a)
        if priority[a] < priority[b]:
            run = kept[pos::-1]  # a and the frames of its split before it
            limit, loser, side = frames[b] - window, assign[a], -1
        else:
            run = kept[pos + 1 :]
            limit, loser, side = frames[a] + window, assign[b], 1
        for i in run:
            if assign[i] != loser or (frames[i] <= limit if side < 0 else frames[i] >= limit):
                break
            assign[i] = -1
            dropped.append(int(i))


def _video_groups(rows: _Rows, by_video: dict[str, np.ndarray]) -> list[list[str]]:
    """Videos that share an identical image are one group (the same export added twice under two
    names must not straddle a split). Union-find over image digests."""
    parent = {video: video for video in by_video}

    def root(video: str) -> str:
        while parent[video] != video:
            parent[video] = parent[parent[video]]
            video = parent[video]
        return video

    first_seen: dict[bytes, str] = {}
    for video, idx in by_video.items():
        for i in idx:
            digest = rows.hashes[i]
            if digest is None:
                continue
            other = first_seen.setdefault(digest, video)
            a, b = root(other), root(video)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = defaultdict(list)
    for video in by_video:
        groups[root(video)].append(video)
    return [sorted(g) for _, g in sorted(groups.items())]


def _temporal(
    rows: _Rows,
    candidates: list[int],
    ratios: Sequence[float],
    gaps: dict[str, int],
    options: SplitOptions,
    rng: random.Random,
) -> tuple[str, dict[int, int], list[str]]:
    """Whole videos when they fit the ratios (or when asked), else time blocks per video."""
    by_video = _rows_by_video(rows, candidates)
    live = [s for s in range(len(ratios)) if ratios[s] > 0]
    groups = _video_groups(rows, by_video)
    notes: list[str] = []
    if options.temporal_unit != "block":
        if len(groups) < len(live):
            problem = (
                f"{len(groups)} video group(s) cannot fill {len(live)} non-empty splits with "
                "whole videos"
            )
            if options.temporal_unit == "video":
                raise DatasetError(
                    describe(
                        problem,
                        fix="use --temporal-unit auto or block (time blocks with a gap), add "
                        "videos, or set some ratios to 0",
                    )
                )
        else:
            members = [np.concatenate([by_video[v] for v in g]) for g in groups]
            sizes = np.array([len(m) for m in members], dtype=float)
            class_counts = np.zeros((len(groups), len(rows.names)))
            for g, idx in enumerate(members):
                for i in idx:
                    class_counts[g, list(set(rows.categories[i]))] += 1
            chosen = _balance_groups(sizes, class_counts, ratios, rng)
            shares = np.array([sizes[chosen == s].sum() for s in range(len(ratios))])
            off = float(np.abs(shares / sizes.sum() - np.asarray(ratios)).max())
            if options.temporal_unit == "video" or off <= options.video_tolerance + 1e-9:
                if off > options.video_tolerance + 1e-9:
                    notes.append(
                        f"whole-video split: split shares are up to {100 * off:.1f} points off "
                        f"the ratios ({len(groups)} video groups)"
                    )
                mapping = {int(i): int(chosen[g]) for g, idx in enumerate(members) for i in idx}
                return "video", mapping, notes
            problem = (
                f"the best whole-video split of {len(groups)} video group(s) is "
                f"{100 * off:.1f} points off the ratios (video_tolerance "
                f"{100 * options.video_tolerance:g})"
            )
        notes.append(
            f"{problem}, so every video was cut into time blocks with a gap between splits: "
            "evaluation frames come from the same videos (other moments) as training frames. "
            "Add videos, or pass --temporal-unit video to keep videos whole"
        )
    return "block", _blocks(rows, by_video, ratios, gaps, rng), notes


def _drop_identical(rows: _Rows, assign: np.ndarray, fixed: np.ndarray) -> list[int]:
    """Keep each image's copies in one split (a kept test set's, else the split with the most
    copies); drop the others. Dropping never brings frames closer, so gaps stay enforced."""
    copies: dict[bytes, list[int]] = defaultdict(list)
    for i in np.flatnonzero(assign >= 0):
        if rows.hashes[i] is not None:
            copies[rows.hashes[i]].append(int(i))
    dropped: list[int] = []
    for members in copies.values():
        splits = Counter(int(assign[i]) for i in members)
        if len(splits) < 2:
            continue
        if any(fixed[i] for i in members):
            keep = TEST
        else:
            keep = min(splits, key=lambda s: (-splits[s], s))
        for i in members:
            if assign[i] != keep:
                assign[i] = -1
                dropped.append(i)
    return sorted(dropped)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def _read_test_ids(path: Path) -> list[str]:
    """The test image ids of a previous split manifest (a file or the folder holding it)."""
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.is_file():
        raise DatasetError(
            describe(
                "no split manifest to keep the test set from",
                file=file,
                fix="pass the split_manifest.json of a previous `sam2-finetune split` (or its "
                "folder) to --keep-test",
            )
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
        ids = manifest["splits"]["test"]["image_ids"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # OSError: unreadable; ValueError: not UTF-8 or not JSON; Key/TypeError: other JSON.
        raise DatasetError(
            describe(
                "not a split manifest: its test image ids cannot be read",
                file=file,
                field="splits.test.image_ids",
                expected="a list of image ids",
                found=f"{type(exc).__name__}: {exc}",
                fix="pass the split_manifest.json written by `sam2-finetune split`",
            )
        ) from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DatasetError(
            describe(
                "the test image ids are not a list of strings",
                file=file,
                field="splits.test.image_ids",
                fix="pass the split_manifest.json written by `sam2-finetune split`",
            )
        )
    if not ids:
        raise DatasetError(
            describe(
                "the manifest's test split is empty: there is no test set to keep",
                file=file,
                field="splits.test.image_ids",
                fix="drop --keep-test, or pass the manifest of a split that has a test set",
            )
        )
    return ids


def _check_poolable(parts: datasets.DatasetDict, path: Path) -> None:
    """The splits of a DatasetDict can be pooled only with the same columns and labels."""
    (first, reference), *others = parts.items()
    for name, part in others:
        if part.features == reference.features:
            continue
        if set(part.column_names) != set(reference.column_names):
            found = f"columns {sorted(part.column_names)}"
            expected = f"columns {sorted(reference.column_names)} as in {first!r}"
        elif category_names(part) != category_names(reference):
            found = f"labels {category_names(part)}"
            expected = f"labels {category_names(reference)} as in {first!r}"
        else:
            found = f"features {part.features}"
            expected = f"the features of {first!r}"
        raise DatasetError(
            describe(
                f"split {name!r} cannot be pooled with the others to split again",
                file=path,
                expected=expected,
                found=found,
                fix="convert all the exports together (`sam2-finetune convert A.zip B.zip --to "
                "hf`) and split that",
            )
        )


def _check_rows(rows: _Rows, path: Path) -> None:
    if not len(rows):
        raise DatasetError(
            describe(
                "the dataset has no frames",
                file=path,
                fix="convert exports that have annotated frames",
            )
        )
    seen: Counter[str] = Counter(rows.image_ids)
    repeated = sorted(i for i, n in seen.items() if n > 1)
    if repeated:
        raise DatasetError(
            describe(
                "image ids repeat, so a frame could land in two splits",
                file=path,
                field="image_id",
                expected="unique ids",
                found=f"{len(repeated)} repeated, e.g. {repeated[:3]}",
                fix="convert each export once (video ids are unique per export)",
            )
        )


def _round(x: float) -> float:
    return round(float(x), 6)


def _class_distribution(
    rows: _Rows, assign: np.ndarray, ratios: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """Frames showing each class (and its objects) per split, with shares and the worst gap to
    the ratios, in percentage points."""
    n_classes, n_splits = len(rows.names), len(SPLIT_NAMES)
    frames = np.zeros((n_splits, n_classes), dtype=int)
    objects = np.zeros((n_splits, n_classes), dtype=int)
    for i in np.flatnonzero(assign >= 0):
        s = assign[i]
        for c, n in Counter(rows.categories[i]).items():
            frames[s, c] += 1
            objects[s, c] += n
    result: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(rows.names):
        total = int(frames[:, c].sum())
        shares = [frames[s, c] / total if total else 0.0 for s in range(n_splits)]
        result[name] = {
            "frames": total,
            "objects": int(objects[:, c].sum()),
            "rare": 0 < total < RARE_CLASS_FRAMES,
            "max_deviation_pp": (
                _round(100 * max(abs(shares[s] - ratios[s]) for s in range(n_splits)))
                if total
                else None
            ),
            "splits": {
                split_name: {
                    "frames": int(frames[s, c]),
                    "objects": int(objects[s, c]),
                    "share": _round(shares[s]),
                }
                for s, split_name in enumerate(SPLIT_NAMES)
            },
        }
    return result


def split(options: SplitOptions) -> SplitResult:
    """Split a canonical dataset; write the DatasetDict and ``split_manifest.json`` to ``out``.

    Problems the user should know about (rare classes, an empty split, leakage left by a
    frame-level strategy, time blocks instead of whole videos) are emitted as
    :class:`SplitWarning` and listed in the result and the manifest.

    >>> split(SplitOptions(dataset="data/hf", out="data/split", strategy="stratified"))
    ... # doctest: +SKIP
    """
    from datasets import (
        DatasetDict,
        concatenate_datasets,
        disable_progress_bars,
        enable_progress_bars,
        is_progress_bar_enabled,
    )

    out = Path(options.out)
    if out.resolve() == Path(options.dataset).resolve():
        raise OptionsError(
            f"out ({out}) is the input dataset. Fix: write the split to another folder."
        )
    if out.resolve() in Path(options.dataset).resolve().parents:
        # Replacing OUT (--overwrite) would delete the dataset being read.
        raise OptionsError(
            f"the input dataset ({options.dataset}) is inside the output folder ({out}), which "
            "the split replaces. Fix: write the split to a folder that does not hold the input."
        )
    ensure_writable(out, options.overwrite)
    kept_test_ids = _read_test_ids(options.keep_test) if options.keep_test else None
    loaded = load_canonical(options.dataset)
    # A previous split's folder is accepted too: its splits are pooled and split again.
    if isinstance(loaded, DatasetDict):
        _check_poolable(loaded, options.dataset)
        dataset = concatenate_datasets(list(loaded.values()))
    else:
        dataset = loaded
    rows = _read_rows(dataset, category_names(dataset))
    _check_rows(rows, options.dataset)
    notes: list[str] = []
    gaps, gap_info = _video_gaps(rows, options.gap_seconds, options.gap_frames, options.fps)
    rng = random.Random(options.seed)
    n = len(rows)
    assign = np.full(n, -1, dtype=int)
    fixed = np.zeros(n, dtype=bool)
    ratios = [float(r) for r in options.ratios]
    effective = ratios
    kept_test: dict[str, Any] | None = None
    if kept_test_ids is not None:
        position = {image_id: i for i, image_id in enumerate(rows.image_ids)}
        found = sorted(position[i] for i in set(kept_test_ids) if i in position)
        missing = sorted(set(kept_test_ids) - position.keys())
        fixed[found] = True
        assign[found] = TEST
        kept_test = {"frames": len(found), "missing_from_dataset": missing}
        if not found:
            raise DatasetError(
                describe(
                    f"none of the {len(set(kept_test_ids))} test frames of the kept manifest is "
                    "in this dataset: it is the manifest of another dataset",
                    file=options.keep_test,
                    expected=f"image ids of {options.dataset}",
                    found=f"e.g. {missing[0]}",
                    fix="pass the manifest of a split of this dataset (or of a dataset it grew "
                    "from), or drop --keep-test",
                )
            )
        if missing:
            notes.append(
                f"{len(missing)} test frame(s) of the kept manifest are not in this dataset "
                f"(e.g. {missing[0]}); the test set keeps the {len(found)} that are"
            )
        if ratios[0] + ratios[1] <= 0:
            raise OptionsError(
                "--keep-test splits the frames outside the kept test set by the train and "
                f"validation ratios, but they are {ratios[0]:g} and {ratios[1]:g}. Fix: give "
                "train and/or validation a ratio above 0."
            )
        effective = [ratios[0] / (ratios[0] + ratios[1]), ratios[1] / (ratios[0] + ratios[1]), 0.0]
    # In image id order, so the split does not depend on the order rows were converted in.
    candidates = sorted((i for i in range(n) if not fixed[i]), key=rows.image_ids.__getitem__)
    live = [s for s in range(len(SPLIT_NAMES)) if effective[s] > 0]
    if len(candidates) < len(live):
        raise DatasetError(
            describe(
                f"{len(candidates)} frame(s) to split cannot fill {len(live)} non-empty splits",
                file=options.dataset,
                fix="add data, or set the ratio of some splits to 0 (e.g. --ratios 1 0 0)",
            )
        )
    if n < TINY_DATASET_FRAMES:
        notes.append(
            f"tiny dataset ({n} frames): splits of a few frames give noisy metrics; use it to "
            "try the pipeline, not to measure a model"
        )

    unit: str | None = None
    dropped_gap: list[int] = []
    if options.strategy == "random":
        order = _shuffled(candidates, rng)
        start = 0
        for s, count in enumerate(split_counts(len(order), effective)):
            assign[order[start : start + count]] = s
            start += count
    elif options.strategy == "stratified":
        presence = rows.presence()
        chosen = stratify([presence[i] for i in candidates], effective, rng)
        assign[candidates] = chosen
        notes += _stratification_notes(rows, candidates, np.asarray(chosen), effective)
    else:
        unit, mapping, temporal_notes = _temporal(rows, candidates, effective, gaps, options, rng)
        notes += temporal_notes
        for i, s in mapping.items():
            assign[i] = s
        # Smaller splits keep their frames at a gap; a kept test set never gives any up.
        priority = np.where(fixed, np.inf, 0.0)
        for i in candidates:
            priority[i] = -effective[assign[i]] + 1e-6 * assign[i]
        for video, idx in _rows_by_video(rows).items():
            dropped_gap += _enforce_gap(idx, rows.frame_index, assign, gaps[video], priority)
    dropped_identical = _drop_identical(rows, assign, fixed)

    leakage = _leakage(rows, assign, gaps, options.gap_seconds)
    sizes = {name: int((assign == s).sum()) for s, name in enumerate(SPLIT_NAMES)}
    dropped = len(dropped_gap) + len(dropped_identical)
    notes += _size_notes(sizes, ratios, dropped, n)
    distribution = _class_distribution(rows, assign, ratios)
    class_bound = _class_bound(distribution, options.strategy == "stratified" and not kept_test)
    if class_bound["met"] is False and not any(x.startswith("stratification") for x in notes):
        off = [
            name
            for name in class_bound["classes"]
            if distribution[name]["max_deviation_pp"] > class_bound["tolerance_pp"]
        ]
        notes.append(
            f"after dropping identical images, {len(off)} class(es) are more than "
            f"{100 * STRATIFY_TOLERANCE:g} points off the ratios: " + ", ".join(map(repr, off))
        )
    rare = [(name, d) for name, d in distribution.items() if d["rare"]]
    if rare:
        notes.append(
            f"{len(rare)} class(es) have fewer than {RARE_CLASS_FRAMES} frames and cannot follow "
            "the ratios: "
            + ", ".join(
                f"{name!r} ({d['frames']} frame(s): "
                + " / ".join(str(d["splits"][s]["frames"]) for s in SPLIT_NAMES)
                + ")"
                for name, d in rare
            )
        )
    if leakage.near_pairs:
        notes.append(
            f"{leakage.near_pairs} pairs of frames of one video closer than the gap sit in "
            f"different splits ({options.strategy} split frames, not time): near-identical "
            "frames inflate evaluation scores. Use --strategy temporal for video data"
        )

    manifest = {
        "format_version": MANIFEST_VERSION,
        "strategy": options.strategy,
        "temporal_unit": unit,
        "ratios": dict(zip(SPLIT_NAMES, ratios, strict=True)),
        "seed": options.seed,
        "source": {
            "frames": n,
            "videos": len(set(rows.video_ids)),
            "classes": rows.names,
            "image_ids_sha256": hashlib.sha256(
                "\n".join(sorted(rows.image_ids)).encode("utf-8")
            ).hexdigest(),
        },
        "gap": {
            "seconds": options.gap_seconds,
            "gap_frames_option": options.gap_frames,
            "fps_option": options.fps,
            "videos": gap_info,
        },
        "keep_test": kept_test,
        "splits": {
            name: {
                "frames": sizes[name],
                "share": _round(sizes[name] / max(sum(sizes.values()), 1)),
                "target": ratios[s],
                "videos": sorted({rows.video_ids[i] for i in np.flatnonzero(assign == s)}),
                "image_ids": sorted(rows.image_ids[i] for i in np.flatnonzero(assign == s)),
            }
            for s, name in enumerate(SPLIT_NAMES)
        },
        "dropped": {
            "frames": dropped,
            "gap": sorted(rows.image_ids[i] for i in dropped_gap),
            "identical_image": sorted(rows.image_ids[i] for i in dropped_identical),
        },
        "class_bound": class_bound,
        "class_distribution": distribution,
        "leakage": leakage.to_dict(),
        "warnings": notes,
    }
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    parts = DatasetDict(
        {name: dataset.select(np.flatnonzero(assign == s)) for s, name in enumerate(SPLIT_NAMES)}
    )
    bars = is_progress_bar_enabled()
    disable_progress_bars()  # one bar per split buries the summary and the warnings
    try:
        with atomic_output_dir(out, overwrite=options.overwrite) as tmp:
            # save_to_disk writes 0 shards for an empty split, which load_from_disk cannot read.
            empty = {name: 1 for name, part in parts.items() if len(part) == 0}
            parts.save_to_disk(str(tmp), num_shards=empty or None)
            (tmp / MANIFEST_NAME).write_text(text, encoding="utf-8")
    finally:
        if bars:
            enable_progress_bars()
    for note in notes:
        warnings.warn(note, SplitWarning, stacklevel=2)
    return SplitResult(
        out=out,
        manifest_path=out / MANIFEST_NAME,
        sizes=sizes,
        dropped=dropped,
        temporal_unit=unit,
        leakage=leakage,
        warnings=notes,
        manifest=manifest,
    )


def _class_bound(distribution: dict[str, dict[str, Any]], promised: bool) -> dict[str, Any]:
    """What the stratified bound counts, which classes it covers, and whether it held (``met``
    is None where it was not promised: other strategies, or a kept test set)."""
    tolerance_pp = 100 * STRATIFY_TOLERANCE
    held = sorted(name for name, d in distribution.items() if d["frames"] >= RARE_CLASS_FRAMES)
    return {
        # The split moves frames, so a class's "instances" are the frames showing it: a frame
        # with five cars moves five cars at once. Objects are reported, not bounded.
        "counts": "frames showing the class",
        "min_frames": RARE_CLASS_FRAMES,
        "tolerance_pp": tolerance_pp,
        "classes": held,
        "met": (
            all(distribution[n]["max_deviation_pp"] <= tolerance_pp + 1e-6 for n in held)
            if promised
            else None
        ),
    }


def _stratification_notes(
    rows: _Rows, candidates: list[int], chosen: np.ndarray, ratios: Sequence[float]
) -> list[str]:
    """Classes with enough frames that still miss the 5-point bound (rare, never silent)."""
    off = []
    for c, name in enumerate(rows.names):
        has = np.array([c in rows.categories[i] for i in candidates], dtype=bool)
        total = int(has.sum())
        if total < RARE_CLASS_FRAMES:
            continue
        worst = max(abs((chosen[has] == s).sum() / total - ratios[s]) for s in range(len(ratios)))
        if worst > STRATIFY_TOLERANCE + 1e-9:
            off.append(f"{name!r} ({100 * worst:.1f} points)")
    if not off:
        return []
    return [
        f"stratification could not bring {len(off)} class(es) within "
        f"{100 * STRATIFY_TOLERANCE:g} points of the ratios (labels that always occur together "
        "limit it): " + ", ".join(off)
    ]


def _size_notes(sizes: dict[str, int], ratios: Sequence[float], dropped: int, n: int) -> list[str]:
    notes = [
        f"the {name} split is empty although its ratio is {ratios[s]:g}"
        for s, name in enumerate(SPLIT_NAMES)
        if ratios[s] > 0 and sizes[name] == 0
    ]
    if dropped > 0.2 * n:
        notes.append(
            f"{dropped} of {n} frames ({100 * dropped / n:.0f} %) were dropped to keep splits "
            "apart; videos are short for the gap. Lower --gap-seconds, or add videos so whole "
            "videos can be split"
        )
    return notes


def format_split(result: SplitResult) -> str:
    """Human-readable summary of a split."""
    m = result.manifest
    how = m["strategy"] + (f" ({m['temporal_unit']}s)" if m["temporal_unit"] else "")
    lines = [f"split: {how}, seed {m['seed']} -> {result.out}"]
    for name, part in m["splits"].items():
        lines.append(
            f"  {name:<11} {part['frames']:>6} frames ({100 * part['share']:.1f} %, target "
            f"{100 * part['target']:g} %), {len(part['videos'])} video(s)"
        )
    if result.dropped:
        d = m["dropped"]
        lines.append(
            f"  dropped     {result.dropped:>6} frames ({len(d['gap'])} at gaps, "
            f"{len(d['identical_image'])} identical images)"
        )
    lines.append(f"  leakage     {result.leakage.summary()}")
    lines.append(f"  manifest    {result.manifest_path}")
    return "\n".join(lines)


def split_command(options: SplitOptions) -> int:
    """``sam2-finetune split``: print the summary and every warning; 0 on success."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        result = split(options)
    print(format_split(result))
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    return 0


def leakage_command(options: LeakageOptions) -> int:
    """``sam2-finetune leakage``: 0 when the splits are clean, 1 when something leaks."""
    report = check_leakage(
        options.dataset,
        gap_seconds=options.gap_seconds,
        gap_frames=options.gap_frames,
        fps=options.fps,
    )
    if options.json_output:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print(f"{options.dataset}: {report.summary()}")
        for e in report.near_examples:
            print(
                f"  near      {e['a']['split']}:{e['a']['image_id']}  "
                f"{e['b']['split']}:{e['b']['image_id']}  ({e['frames_apart']} frames apart)"
            )
        for e in report.identical_examples:
            print(f"  identical {'  '.join(e['copies'])}")
    return 0 if report.ok else 1
