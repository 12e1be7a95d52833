"""Split sizes against the ratios asked for: an empty requested split is an error that names why
its frames went (identical images, temporal gaps, too few frames or videos) and what to do; a
split far from its ratio, or many frames dropped, is a note (a :class:`SplitWarning`).

Frames leave a split at two steps after the strategy has placed them: at the gap between splits
of one video (temporal), and as copies of an image kept in another split (every strategy). The
counts per split and per step are :class:`Drops`, so the messages can give numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sam2_finetune.errors import DatasetError, describe
from sam2_finetune.split.options import SPLIT_NAMES, SplitOptions

# A split is "far" from its ratio when its share of the kept frames is off by more than this
# fraction of the ratio (a 10 % split under 5 % or over 15 %), and by more than one frame, so
# the rounding of a small dataset to whole frames never warns on its own.
FAR_FROM_TARGET = 0.5
# Dropping more than this share of the frames to keep splits apart is worth a note.
MANY_DROPPED = 0.2


@dataclass(frozen=True)
class Drops:
    """Frames per split placed by the strategy, and dropped from each at each step."""

    placed: list[int]  # frames the strategy put in each split
    gap: list[int]  # frames each split gave up at the gap to another split
    identical: list[int]  # frames each split lost as copies of an image kept elsewhere

    @classmethod
    def count(
        cls,
        placed: np.ndarray,
        before_identical: np.ndarray,
        dropped_gap: Sequence[int],
        dropped_identical: Sequence[int],
    ) -> Drops:
        """From the assignment the strategy made (``placed``), the one after the gaps were
        enforced (``before_identical``) and the dropped rows of each step."""
        n = len(SPLIT_NAMES)
        return cls(
            placed=[int((placed == s).sum()) for s in range(n)],
            gap=[int((placed[list(dropped_gap)] == s).sum()) for s in range(n)],
            identical=[
                int((before_identical[list(dropped_identical)] == s).sum()) for s in range(n)
            ],
        )

    @property
    def total(self) -> int:
        return sum(self.gap) + sum(self.identical)


def _gap_words(options: SplitOptions) -> str:
    if options.gap_frames is not None:
        return f"--gap-frames {options.gap_frames}"
    return f"--gap-seconds {options.gap_seconds:g}"


def _losses(s: int, drops: Drops) -> list[str]:
    parts = []
    if drops.identical[s]:
        parts.append(
            f"{drops.identical[s]} dropped because the same image (identical bytes) is kept in "
            "another split"
        )
    if drops.gap[s]:
        parts.append(f"{drops.gap[s]} dropped at the temporal gap to another split's frames")
    return parts


def _why(s: int, drops: Drops, strategy: str) -> str:
    """Where the frames of split ``s`` went, in numbers."""
    if not drops.placed[s]:
        return f"the {strategy} strategy gave it no frame"
    return f"the {strategy} strategy gave it {drops.placed[s]} frame(s): " + " and ".join(
        _losses(s, drops)
    )


def check_not_empty(
    options: SplitOptions,
    sizes: dict[str, int],
    drops: Drops,
    *,
    frames: int,
    videos: int,
    distinct_images: int,
) -> None:
    """Refuse a split that leaves a split with a ratio above 0 without frames, naming the cause
    with numbers and the way out (nothing has been written yet)."""
    ratios = [float(r) for r in options.ratios]
    empty = [s for s, name in enumerate(SPLIT_NAMES) if ratios[s] > 0 and sizes[name] == 0]
    if not empty:
        return
    if len(empty) == 1:
        (s,) = empty
        names = SPLIT_NAMES[s]
        problem = f"the {names} split is empty although its ratio is {ratios[s]:g}: " + _why(
            s, drops, options.strategy
        )
    else:
        names = " and ".join(SPLIT_NAMES[s] for s in empty)
        problem = (
            f"the {names} splits are empty although their ratios are "
            + " and ".join(f"{ratios[s]:g}" for s in empty)
            + ": "
            + "; ".join(f"{SPLIT_NAMES[s]}: {_why(s, drops, options.strategy)}" for s in empty)
        )
    identical, gap = sum(drops.identical), sum(drops.gap)
    if drops.total:
        problem += (
            f". Of the {frames} frames, {drops.total} were dropped: {identical} as identical "
            f"images across splits (the dataset holds {distinct_images} distinct image(s)) and "
            f"{gap} at temporal gaps ({_gap_words(options)})"
        )
    if identical >= gap and identical:
        remedies = [
            f"the dataset repeats images ({distinct_images} distinct in {frames} frames): remove "
            "the repeated frames (keep each image once) or add videos with distinct images"
        ]
    elif gap:
        remedies = [
            "add videos, so that whole videos fill every split",
            f"lower the gap (now {_gap_words(options)}) with --gap-seconds or --gap-frames, "
            "accepting nearer frames in different splits",
            "--strategy random (no gap: near-identical frames of one video then leak between "
            "splits and inflate evaluation scores)",
        ]
    else:
        remedies = [
            f"too few frames or videos ({frames} frame(s), {videos} video(s)) for "
            f"{sum(1 for r in ratios if r > 0)} splits: add videos"
        ]
    if 0 not in empty:  # without train there is nothing to train on: no ratios to offer
        # The empty splits' share goes to the largest split that has frames.
        zeroed = [0.0 if s in empty else r for s, r in enumerate(ratios)]
        zeroed[max(range(len(zeroed)), key=lambda s: (zeroed[s], -s))] += 1.0 - sum(zeroed)
        remedies.append(
            "--ratios " + " ".join(f"{r:g}" for r in zeroed) + f" to do without {names}"
        )
    fix = "; or ".join(remedies)
    if identical >= gap and identical:
        fix += ". Another strategy does not help: no strategy puts one image in two splits"
    raise DatasetError(describe(problem, file=options.dataset, fix=fix))


def size_notes(
    options: SplitOptions, sizes: dict[str, int], drops: Drops, frames: int
) -> list[str]:
    """Splits far from their ratio (see :data:`FAR_FROM_TARGET`) and many dropped frames."""
    ratios = [float(r) for r in options.ratios]
    kept = sum(sizes.values())
    notes = []
    for s, name in enumerate(SPLIT_NAMES):
        target, got = ratios[s], sizes[name]
        if target <= 0 or not kept:
            continue
        share = got / kept
        if abs(share - target) > FAR_FROM_TARGET * target and abs(got - target * kept) > 1:
            note = (
                f"the {name} split holds {100 * share:.1f} % of the kept frames ({got} of "
                f"{kept}) against a target of {100 * target:g} %"
            )
            if _losses(s, drops):
                note += f" (of {drops.placed[s]} placed there, " + " and ".join(_losses(s, drops))
                note += ")"
            notes.append(note)
    if drops.total > MANY_DROPPED * frames:
        identical, gap = sum(drops.identical), sum(drops.gap)
        note = (
            f"{drops.total} of {frames} frames ({100 * drops.total / frames:.0f} %) were dropped "
            f"to keep splits apart: {identical} as identical images across splits, {gap} at "
            "temporal gaps. "
        )
        if identical >= gap:
            note += "The dataset repeats images: keep each image once, or add distinct videos"
        else:
            note += (
                "Videos are short for the gap: lower --gap-seconds, or add videos so whole "
                "videos can be split"
            )
        notes.append(note)
    return notes
