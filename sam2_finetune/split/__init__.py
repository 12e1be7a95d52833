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

Identical images (same bytes) never end up in two splits: the extra copies are dropped. A split
with a ratio above 0 left empty is an error naming why (``sizes``); one far from its ratio is a
warning. The result is a ``DatasetDict`` saved with ``save_to_disk`` plus ``split_manifest.json``
(strategy, ratios, seed, image ids per split, per-class distribution, the leakage check), whose
bytes depend only on the data and the options.

>>> result = split(SplitOptions(dataset="data/hf", out="data/split"))  # doctest: +SKIP
>>> result.sizes, result.leakage.ok                                     # doctest: +SKIP
({'train': 104, 'validation': 13, 'test': 13}, True)

The stage's parts: ``options`` (SplitOptions, LeakageOptions, the gap options, the constants),
``frames`` (the frame table, image hashes, the gap per video), ``strategies`` (random,
stratified, temporal), ``sizes`` (the empty-split error, splits far from their ratio),
``leakage`` (check_leakage, the ``leakage`` command) and ``manifest`` (its assembly, the kept test
set, class distribution); this module runs them (:func:`split`).
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sam2_finetune.dataset import category_names, load_canonical
from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.outputs import atomic_output_dir, ensure_writable
from sam2_finetune.split.frames import (
    ASSUMED_FPS,
    Rows,
    check_poolable,
    check_rows,
    read_rows,
    rows_by_video,
    video_gaps,
)
from sam2_finetune.split.leakage import (
    MAX_EXAMPLES,
    LeakageReport,
    check_leakage,
    leakage_command,
    leakage_of,
)
from sam2_finetune.split.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    build_manifest,
    class_bound,
    class_distribution,
    manifest_text,
    read_test_ids,
)
from sam2_finetune.split.options import (
    RARE_CLASS_FRAMES,
    SPLIT_NAMES,
    STRATIFY_TOLERANCE,
    TEST,
    TINY_DATASET_FRAMES,
    Fps,
    GapFrames,
    GapSeconds,
    LeakageOptions,
    SplitOptions,
    Strategy,
    TemporalUnit,
)
from sam2_finetune.split.sizes import FAR_FROM_TARGET, Drops, check_not_empty, size_notes
from sam2_finetune.split.strategies import (
    drop_identical,
    enforce_gap,
    shuffled,
    split_counts,
    stratify,
    temporal_assignment,
)

if TYPE_CHECKING:
    import datasets

__all__ = [
    "ASSUMED_FPS",
    "FAR_FROM_TARGET",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "MAX_EXAMPLES",
    "RARE_CLASS_FRAMES",
    "SPLIT_NAMES",
    "STRATIFY_TOLERANCE",
    "TEST",
    "TINY_DATASET_FRAMES",
    "Fps",
    "GapFrames",
    "GapSeconds",
    "LeakageOptions",
    "LeakageReport",
    "SplitOptions",
    "SplitResult",
    "SplitWarning",
    "Strategy",
    "TemporalUnit",
    "check_leakage",
    "format_split",
    "leakage_command",
    "split",
    "split_command",
    "split_counts",
    "stratify",
]


class SplitWarning(UserWarning):
    """Something about a split the user should know (a split far from its ratio, many frames
    dropped, rare classes, leakage). An empty requested split is an error, not a warning."""


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

    def to_dict(self) -> dict[str, Any]:
        """What ``split --json`` prints: sizes, shares and targets, what was dropped, the
        leakage verdict and the warnings (the image ids stay in the manifest)."""
        m = self.manifest
        return {
            "out": str(self.out),
            "manifest_path": str(self.manifest_path),
            "strategy": m["strategy"],
            "temporal_unit": self.temporal_unit,
            "seed": m["seed"],
            "splits": {
                name: {key: part[key] for key in ("frames", "share", "target")}
                | {"videos": len(part["videos"])}
                for name, part in m["splits"].items()
            },
            "dropped": {
                "frames": self.dropped,
                "gap": len(m["dropped"]["gap"]),
                "identical_image": len(m["dropped"]["identical_image"]),
            },
            "leakage": self.leakage.to_dict(),
            "warnings": self.warnings,
        }


def split(options: SplitOptions) -> SplitResult:
    """Split a canonical dataset; write the DatasetDict and ``split_manifest.json`` to ``out``.

    A split with a ratio above 0 left without frames is a :class:`DatasetError` naming why
    (identical images, temporal gaps, too few frames or videos), and nothing is written. Problems
    the user should know about (a split far from its ratio, rare classes, leakage left by a
    frame-level strategy, time blocks instead of whole videos) are emitted as
    :class:`SplitWarning` and listed in the result and the manifest.

    >>> split(SplitOptions(dataset="data/hf", out="data/split", strategy="stratified"))
    ... # doctest: +SKIP
    """
    out = Path(options.out)
    _check_out(options)
    ensure_writable(out, options.overwrite)
    kept_test_ids = read_test_ids(options.keep_test) if options.keep_test else None
    dataset, rows = _load(options)
    notes: list[str] = []
    gaps, gap_info = video_gaps(rows, options.gap_seconds, options.gap_frames, options.fps)
    n = len(rows)
    ratios = [float(r) for r in options.ratios]
    assign = np.full(n, -1, dtype=int)
    fixed = np.zeros(n, dtype=bool)
    effective, kept_test = ratios, None
    if kept_test_ids is not None:
        effective, kept_test = _keep_test(options, rows, kept_test_ids, assign, fixed, notes)
    # In image id order, so the split does not depend on the order rows were converted in.
    candidates = sorted((i for i in range(n) if not fixed[i]), key=rows.image_ids.__getitem__)
    _check_fillable(options, candidates, effective)
    if n < TINY_DATASET_FRAMES:
        notes.append(
            f"tiny dataset ({n} frames): splits of a few frames give noisy metrics; use it to "
            "try the pipeline, not to measure a model"
        )

    unit = _assign(options, rows, candidates, effective, gaps, assign, notes)
    placed = assign.copy()
    dropped_gap = _enforce_gaps(options, rows, candidates, effective, gaps, assign, fixed)
    before_identical = assign.copy()
    dropped_identical = drop_identical(rows, assign, fixed)
    drops = Drops.count(placed, before_identical, dropped_gap, dropped_identical)
    sizes = {name: int((assign == s).sum()) for s, name in enumerate(SPLIT_NAMES)}
    check_not_empty(
        options,
        sizes,
        drops,
        frames=n,
        videos=len(set(rows.video_ids)),
        distinct_images=len({h for h in rows.hashes if h is not None}),
    )

    leakage = leakage_of(rows, assign, gaps, options.gap_seconds)
    notes += size_notes(options, sizes, drops, n)
    distribution = class_distribution(rows, assign, ratios)
    bound = class_bound(distribution, options.strategy == "stratified" and not kept_test)
    notes += _class_notes(distribution, bound, notes)
    if leakage.near_pairs:
        notes.append(
            f"{leakage.near_pairs} pairs of frames of one video closer than the gap sit in "
            f"different splits ({options.strategy} split frames, not time): near-identical "
            "frames inflate evaluation scores. Use --strategy temporal for video data"
        )
    manifest = build_manifest(
        options,
        rows,
        assign,
        ratios=ratios,
        unit=unit,
        gap_info=gap_info,
        kept_test=kept_test,
        dropped_gap=dropped_gap,
        dropped_identical=dropped_identical,
        distribution=distribution,
        bound=bound,
        leakage=leakage,
        notes=notes,
    )
    _write(options, dataset, assign, manifest_text(manifest))
    for note in notes:
        warnings.warn(note, SplitWarning, stacklevel=2)
    return SplitResult(
        out=out,
        manifest_path=out / MANIFEST_NAME,
        sizes=sizes,
        dropped=drops.total,
        temporal_unit=unit,
        leakage=leakage,
        warnings=notes,
        manifest=manifest,
    )


def _check_out(options: SplitOptions) -> None:
    """OUT may be neither the input nor a folder holding it (``--overwrite`` would delete it)."""
    out, source = Path(options.out).resolve(), Path(options.dataset).resolve()
    if out == source:
        raise OptionsError(
            f"out ({options.out}) is the input dataset. Fix: write the split to another folder."
        )
    if out in source.parents:
        raise OptionsError(
            f"the input dataset ({options.dataset}) is inside the output folder ({options.out}), "
            "which the split replaces. Fix: write the split to a folder that does not hold the "
            "input."
        )


def _load(options: SplitOptions) -> tuple[datasets.Dataset, Rows]:
    """The dataset to split and its frame table. A previous split's folder is accepted too: its
    splits are pooled and split again."""
    from datasets import DatasetDict, concatenate_datasets

    loaded = load_canonical(options.dataset)
    if isinstance(loaded, DatasetDict):
        check_poolable(loaded, options.dataset)
        dataset = concatenate_datasets(list(loaded.values()))
    else:
        dataset = loaded
    rows = read_rows(dataset, category_names(dataset))
    check_rows(rows, options.dataset)
    return dataset, rows


def _keep_test(
    options: SplitOptions,
    rows: Rows,
    kept_test_ids: list[str],
    assign: np.ndarray,
    fixed: np.ndarray,
    notes: list[str],
) -> tuple[list[float], dict[str, Any]]:
    """Fix the kept test frames in ``assign`` (marked in ``fixed``); returns the ratios the
    other frames are split by (train and validation, rescaled) and the manifest's record."""
    ratios = [float(r) for r in options.ratios]
    position = {image_id: i for i, image_id in enumerate(rows.image_ids)}
    found = sorted(position[i] for i in set(kept_test_ids) if i in position)
    missing = sorted(set(kept_test_ids) - position.keys())
    fixed[found] = True
    assign[found] = TEST
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
    rest = ratios[0] + ratios[1]
    effective = [ratios[0] / rest, ratios[1] / rest, 0.0]
    return effective, {"frames": len(found), "missing_from_dataset": missing}


def _check_fillable(
    options: SplitOptions, candidates: list[int], effective: Sequence[float]
) -> None:
    live = [s for s in range(len(SPLIT_NAMES)) if effective[s] > 0]
    if len(candidates) < len(live):
        raise DatasetError(
            describe(
                f"{len(candidates)} frame(s) to split cannot fill {len(live)} non-empty splits",
                file=options.dataset,
                fix="add data, or set the ratio of some splits to 0 (e.g. --ratios 1 0 0)",
            )
        )


def _assign(
    options: SplitOptions,
    rows: Rows,
    candidates: list[int],
    effective: Sequence[float],
    gaps: dict[str, int],
    assign: np.ndarray,
    notes: list[str],
) -> str | None:
    """Place every candidate row in a split (``assign``) by the strategy; returns the temporal
    unit (``video`` or ``block``; None for the frame-level strategies)."""
    rng = random.Random(options.seed)
    if options.strategy == "random":
        order = shuffled(candidates, rng)
        start = 0
        for s, count in enumerate(split_counts(len(order), effective)):
            assign[order[start : start + count]] = s
            start += count
        return None
    if options.strategy == "stratified":
        presence = rows.presence()
        chosen = stratify([presence[i] for i in candidates], effective, rng)
        assign[candidates] = chosen
        notes += _stratification_notes(rows, candidates, np.asarray(chosen), effective)
        return None
    unit, mapping, temporal_notes = temporal_assignment(
        rows, candidates, effective, gaps, options, rng
    )
    notes += temporal_notes
    for i, s in mapping.items():
        assign[i] = s
    return unit


def _enforce_gaps(
    options: SplitOptions,
    rows: Rows,
    candidates: list[int],
    effective: Sequence[float],
    gaps: dict[str, int],
    assign: np.ndarray,
    fixed: np.ndarray,
) -> list[int]:
    """Temporal only: drop the frames closer than the gap to another split; returns them."""
    if options.strategy != "temporal":
        return []
    # Smaller splits keep their frames at a gap; a kept test set never gives any up.
    priority = np.where(fixed, np.inf, 0.0)
    for i in candidates:
        priority[i] = -effective[assign[i]] + 1e-6 * assign[i]
    dropped: list[int] = []
    for video, idx in rows_by_video(rows).items():
        dropped += enforce_gap(idx, rows.frame_index, assign, gaps[video], priority)
    return dropped


def _class_notes(
    distribution: dict[str, dict[str, Any]], bound: dict[str, Any], notes: list[str]
) -> list[str]:
    """Classes off the stratified bound after dropping identical images (unless stratification
    already said so), and rare classes."""
    found = []
    if bound["met"] is False and not any(x.startswith("stratification") for x in notes):
        off = [
            name
            for name in bound["classes"]
            if distribution[name]["max_deviation_pp"] > bound["tolerance_pp"]
        ]
        found.append(
            f"after dropping identical images, {len(off)} class(es) are more than "
            f"{100 * STRATIFY_TOLERANCE:g} points off the ratios: " + ", ".join(map(repr, off))
        )
    rare = [(name, d) for name, d in distribution.items() if d["rare"]]
    if rare:
        found.append(
            f"{len(rare)} class(es) have fewer than {RARE_CLASS_FRAMES} frames and cannot follow "
            "the ratios: "
            + ", ".join(
                f"{name!r} ({d['frames']} frame(s): "
                + " / ".join(str(d["splits"][s]["frames"]) for s in SPLIT_NAMES)
                + ")"
                for name, d in rare
            )
        )
    return found


def _write(
    options: SplitOptions, dataset: datasets.Dataset, assign: np.ndarray, manifest: str
) -> None:
    """The DatasetDict and the manifest, atomically (all or nothing at OUT)."""
    from datasets import (
        DatasetDict,
        disable_progress_bars,
        enable_progress_bars,
        is_progress_bar_enabled,
    )

    parts = DatasetDict(
        {name: dataset.select(np.flatnonzero(assign == s)) for s, name in enumerate(SPLIT_NAMES)}
    )
    bars = is_progress_bar_enabled()
    disable_progress_bars()  # one bar per split buries the summary and the warnings
    try:
        with atomic_output_dir(Path(options.out), overwrite=options.overwrite) as tmp:
            # save_to_disk writes 0 shards for an empty split, which load_from_disk cannot read.
            empty = {name: 1 for name, part in parts.items() if len(part) == 0}
            parts.save_to_disk(str(tmp), num_shards=empty or None)
            (tmp / MANIFEST_NAME).write_text(manifest, encoding="utf-8")
    finally:
        if bars:
            enable_progress_bars()


def _stratification_notes(
    rows: Rows, candidates: list[int], chosen: np.ndarray, ratios: Sequence[float]
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
    """``sam2-finetune split``: print the summary (or, with ``--json``, :meth:`SplitResult.to_dict`
    as JSON) and every warning on stderr; 0 on success."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        result = split(options)
    if options.json_output:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print(format_split(result))
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    return 0
