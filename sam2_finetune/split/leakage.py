"""Leakage: frames of one video closer than the gap, or identical images, in different splits;
:func:`check_leakage` for any split dataset and the ``leakage`` command."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sam2_finetune.dataset import load_canonical
from sam2_finetune.errors import DatasetError, describe
from sam2_finetune.split.frames import Rows, concat_rows, read_rows, rows_by_video, video_gaps
from sam2_finetune.split.options import SPLIT_NAMES, LeakageOptions

if TYPE_CHECKING:
    import datasets


MAX_EXAMPLES = 10


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


def leakage_of(
    rows: Rows,
    assign: np.ndarray,
    gaps: dict[str, int],
    gap_seconds: float,
    split_names: Sequence[str] = SPLIT_NAMES,
) -> LeakageReport:
    """Leakage of an assignment (``assign[i]`` = index into ``split_names``, -1 = no split)."""
    kept = np.flatnonzero(assign >= 0)
    near_pairs = 0
    near_examples: list[dict[str, Any]] = []
    for video, idx in rows_by_video(rows, kept.tolist()).items():
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
    parts = [(name, read_rows(part, [], with_objects=False)) for name, part in source.items()]
    rows = concat_rows([r for _, r in parts], [])
    assign = np.concatenate([np.full(len(r), s, dtype=int) for s, (_, r) in enumerate(parts)])
    gaps, _ = video_gaps(rows, gap_seconds, gap_frames, fps)
    return leakage_of(rows, assign, gaps, gap_seconds, [name for name, _ in parts])


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
