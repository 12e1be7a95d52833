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
The stage's parts: ``options`` (SplitOptions, LeakageOptions, the gap options, the constants),
``frames`` (the frame table, image hashes, the gap per video), ``strategies`` (random,
stratified, temporal), ``leakage`` (check_leakage, the ``leakage`` command) and ``manifest`` (the
kept test set, class distribution); this module runs them (:func:`split`).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam2_finetune.dataset import category_names, load_canonical
from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.outputs import atomic_output_dir, ensure_writable
from sam2_finetune.split.frames import (
    ASSUMED_FPS,
    _check_poolable,
    _check_rows,
    _read_rows,
    _Rows,
    _rows_by_video,
    _video_gaps,
)
from sam2_finetune.split.leakage import (
    MAX_EXAMPLES,
    LeakageReport,
    _leakage,
    check_leakage,
    leakage_command,
)
from sam2_finetune.split.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    _class_bound,
    _class_distribution,
    _read_test_ids,
    _round,
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
from sam2_finetune.split.strategies import (
    _drop_identical,
    _enforce_gap,
    _shuffled,
    _temporal,
    split_counts,
    stratify,
)

__all__ = [
    "ASSUMED_FPS",
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
    """Something about a split the user should know (rare classes, empty splits, leakage)."""


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
