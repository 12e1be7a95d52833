"""Building blocks of the assignment (pure functions of lists and a seeded generator): the
random cut, iterative stratification, and the temporal whole-video and time-block assignment."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from sam2_finetune.errors import DatasetError, describe
from sam2_finetune.split.frames import Rows, rows_by_video
from sam2_finetune.split.options import RARE_CLASS_FRAMES, STRATIFY_TOLERANCE, TEST, SplitOptions


def shuffled(items: Sequence[Any], rng: random.Random) -> list[Any]:
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
        for i in shuffled([i for i in rows_of[c] if assign[i] < 0], rng):
            open_splits = [s for s in range(n_splits) if capacity[s] > 0]
            place(i, max(open_splits, key=lambda s: (want[s, c], capacity[s], rng.random())))
    for i in shuffled([i for i in range(n) if assign[i] < 0], rng):
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
        for x in shuffled(givers.tolist(), rng)[:40]:
            for y in shuffled(takers.tolist(), rng)[:40]:
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
        order = shuffled(range(n_groups), rng)
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
    rows: Rows,
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


def enforce_gap(
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


def _video_groups(rows: Rows, by_video: dict[str, np.ndarray]) -> list[list[str]]:
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


def temporal_assignment(
    rows: Rows,
    candidates: list[int],
    ratios: Sequence[float],
    gaps: dict[str, int],
    options: SplitOptions,
    rng: random.Random,
) -> tuple[str, dict[int, int], list[str]]:
    """Whole videos when they fit the ratios (or when asked), else time blocks per video."""
    by_video = rows_by_video(rows, candidates)
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


def drop_identical(rows: Rows, assign: np.ndarray, fixed: np.ndarray) -> list[int]:
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
