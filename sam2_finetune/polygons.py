"""Masks to polygons and back: an exact contour tracer, a bounded simplifier, COCO rasterising.

Text-only models cannot write a pixel mask, so the package teaches them a simplified polygon of it
(see ``docs/answer-formats.md``). Conventions:

- Coordinates are pixel *edges*: pixel ``(row r, col c)`` covers ``[c, c + 1] x [r, r + 1]``, so a
  one-pixel mask at the origin is the square ``(0, 0), (1, 0), (1, 1), (0, 1)`` and a polygon's
  bounds are the mask's COCO box ``[x, y, x + w, y + h]``. pycocotools rasterises such polygons
  back to exactly the pixels they came from (tested), so an unsimplified polygon has IoU 1.
- One polygon per 8-connected part, outer boundary only: COCO polygons cannot express holes, so a
  mask with holes comes back filled (its IoU says by how much).
- Each polygon starts at its top-left vertex and runs clockwise on screen (y down).

No OpenCV or scikit-image: the tracer follows pixel cracks on the grid, which is exact by
construction and costs one Python step per boundary edge (a few ms for a 720p object).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.masks import Rle, rle_decode, rle_encode, rle_iou

Point = tuple[float, float]
Polygon = list[Point]

# A part needs at least its extreme vertices; four keep its bounding box exact.
MIN_POINTS_PER_PART = 4


def mask_to_polygons(
    mask: np.ndarray | Rle,
    max_points: int = 32,
    *,
    min_area: int = 4,
    tolerance: float = 0.5,
) -> list[Polygon]:
    """Outer contours of the mask's 8-connected parts, simplified to ``max_points`` in all.

    ``mask`` is a ``(h, w)`` 0/1 array or a COCO RLE. Parts are returned largest first; parts
    smaller than ``min_area`` pixels are dropped, except that the largest part is always kept,
    and parts that no longer fit the point budget (4 points each at least) are dropped too.
    Each part is simplified by greedy Douglas-Peucker refinement from its four extreme vertices
    (so the bounding box survives) until its share of the budget is used or no vertex lies
    farther than ``tolerance`` pixels from the simplified outline. An empty mask gives ``[]``.

    >>> mask_to_polygons(np.array([[1, 1], [1, 0]]))
    [[(0.0, 0.0), (2.0, 0.0), (2.0, 1.0), (1.0, 1.0), (1.0, 2.0), (0.0, 2.0)]]
    """
    if max_points < MIN_POINTS_PER_PART:
        raise OptionsError(
            describe(
                "too few polygon points",
                field="max_points",
                expected=f">= {MIN_POINTS_PER_PART}",
                found=max_points,
                fix="raise max_points (32 is a good default)",
            )
        )
    bitmap = _as_bitmap(mask)
    # Work on the mask's extent only: the run finding and the tracer's padded copy then cost the
    # object's size, not the frame's (an object is usually a small part of it).
    rows = np.flatnonzero(bitmap.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(bitmap.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    bitmap = bitmap[top : int(rows[-1]) + 1, left : int(cols[-1]) + 1]
    parts = _parts(bitmap)
    if not parts:
        return []
    parts.sort(key=lambda p: (-p[0], p[1], p[2]))  # largest first, then top-left first
    kept = [parts[0]] + [p for p in parts[1:] if p[0] >= min_area]
    kept = kept[: max_points // MIN_POINTS_PER_PART]
    # Back in frame coordinates before simplifying (its tie-breaks see the same numbers).
    contours = [[(x + left, y + top) for x, y in _trace(bitmap, row, col)] for _, row, col in kept]
    budgets = _share_budget([len(c) for c in contours], max_points)
    return [
        [(float(x), float(y)) for x, y in _simplify(contour, budget, tolerance)]
        for contour, budget in zip(contours, budgets, strict=True)
    ]


def polygons_to_rle(polygons: Sequence[Sequence[Point]], height: int, width: int) -> Rle:
    """Rasterise polygons (pixel-edge coordinates) into one compressed COCO RLE (their union).

    Polygons with fewer than 3 points cover nothing and are skipped (pycocotools would read a
    4-number list as a box).
    """
    flat = [
        [float(v) for point in polygon for v in point[:2]]
        for polygon in polygons
        if len(polygon) >= 3
    ]
    if not flat:
        return rle_encode(np.zeros((height, width), dtype=np.uint8))
    merged = coco_mask.merge(coco_mask.frPyObjects(flat, height, width))
    return {"size": [int(v) for v in merged["size"]], "counts": merged["counts"].decode("ascii")}


def polygon_iou(polygons: Sequence[Sequence[Point]], rle: Rle) -> float:
    """IoU between the rasterised ``polygons`` and a mask RLE; 1.0 when both are empty."""
    height, width = (int(v) for v in rle["size"])
    drawn = polygons_to_rle(polygons, height, width)
    union = rle_area_of_union(drawn, rle)
    if union == 0:
        return 1.0
    return float(rle_iou([drawn], [rle])[0, 0])


def rle_area_of_union(a: Rle, b: Rle) -> int:
    """Pixels covered by either RLE (both of the same size)."""
    merged = coco_mask.merge([_as_coco(a), _as_coco(b)], intersect=False)
    return int(coco_mask.area(merged))


def _as_coco(rle: Rle) -> dict:
    counts = rle["counts"]
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def _as_bitmap(mask: np.ndarray | Rle) -> np.ndarray:
    if isinstance(mask, dict):
        mask = rle_decode(mask)
    array = np.asarray(mask)
    if array.ndim != 2:
        raise OptionsError(
            describe(
                "a mask must be two-dimensional",
                field="mask",
                expected="(height, width) array or COCO RLE",
                found=f"shape {array.shape}",
            )
        )
    return array != 0


def _parts(bitmap: np.ndarray) -> list[tuple[int, int, int]]:
    """``(area, top row, left column)`` of each 8-connected part, from row runs + union-find."""
    height, width = bitmap.shape
    if height == 0 or width == 0:
        return []
    stride = width + 2
    padded = np.zeros((height, stride), dtype=np.int8)
    padded[:, 1:-1] = bitmap
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    if rows.size == 0:
        return []
    # Global positions make a run's neighbours in the row above one searchsorted away: run j in
    # row r - 1 touches run i in row r (8-connected) when e_j >= s_i and s_j <= e_i.
    s_global = rows * stride + starts
    e_global = rows * stride + ends
    above = (rows - 1) * stride
    lo = np.searchsorted(e_global, above + starts, side="left")
    hi = np.searchsorted(s_global, above + ends, side="right")
    if rows.size == 1 or (np.all(np.diff(rows) == 1) and np.all(hi[1:] > lo[1:])):
        # One run per row over consecutive rows, each touching the run above: one part (most
        # object masks), found without the union-find below.
        return [(int((ends - starts).sum()), int(rows[0]), int(starts[0]))]
    parent = list(range(rows.size))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in np.nonzero(hi > lo)[0].tolist():
        for j in range(int(lo[i]), int(hi[i])):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(rows.size)])
    areas = np.bincount(roots, weights=ends - starts, minlength=rows.size)
    # Runs are in row-major order, so a part's root (its smallest run index) is its top-left run.
    unique_roots = np.unique(roots)
    return [(int(areas[r]), int(rows[r]), int(starts[r])) for r in unique_roots]


def _trace(bitmap: np.ndarray, row: int, col: int) -> list[tuple[int, int]]:
    """Corner vertices of the outer boundary of the part whose top-left pixel is (row, col).

    Walks pixel cracks with the part on the right-hand side. At each vertex: if the pixel ahead
    on the left is set, turn left (8-connectivity joins diagonal neighbours); else if the one
    ahead on the right is set, go straight; else turn right.

    Vertices are indices into the padded bitmap (vertex ``(x, y)`` is the index of the pixel
    below-right of it), so a step is one addition and a look-up one index: headings 0-3 are
    right, down, left, up (a right turn adds 1).
    """
    height, width = bitmap.shape
    stride = width + 2
    padded = np.zeros((height + 2, stride), dtype=np.uint8)
    padded[1:-1, 1:-1] = bitmap
    cells = padded.tobytes()
    # The pixels ahead-left and ahead-right of a vertex, and the step, for each heading:
    # right: above-right / below-right; down: below-right / below-left; left: below-left /
    # above-left; up: above-left / above-right.
    ahead_left = (-stride, 0, -1, -stride - 1)
    ahead_right = (0, -1, -stride - 1, -stride)
    step = (1, stride, -1, -stride)
    start = (row + 1) * stride + col + 1
    vertex, heading = start + 1, 0
    corners = [start]
    while vertex != start:
        if cells[vertex + ahead_left[heading]]:
            heading = (heading - 1) % 4
            corners.append(vertex)
        elif not cells[vertex + ahead_right[heading]]:
            heading = (heading + 1) % 4
            corners.append(vertex)
        vertex += step[heading]
    ys, xs = np.divmod(np.asarray(corners), stride)
    return list(zip((xs - 1).tolist(), (ys - 1).tolist(), strict=True))


def _share_budget(sizes: list[int], max_points: int) -> list[int]:
    """Split ``max_points`` over parts in proportion to their vertex counts, 4 at least each."""
    if sum(sizes) <= max_points:
        return sizes
    floor = [min(MIN_POINTS_PER_PART, n) for n in sizes]
    spare = max_points - sum(floor)
    extra = [n - f for n, f in zip(sizes, floor, strict=True)]
    total_extra = sum(extra)
    shares = [spare * e / total_extra if total_extra else 0.0 for e in extra]
    budgets = [f + int(s) for f, s in zip(floor, shares, strict=True)]
    # Largest remainders take what rounding down left over.
    order = sorted(range(len(sizes)), key=lambda i: -(shares[i] - int(shares[i])))
    left = max_points - sum(budgets)
    for i in order:
        if left <= 0:
            break
        if budgets[i] < sizes[i]:
            budgets[i] += 1
            left -= 1
    return [min(b, n) for b, n in zip(budgets, sizes, strict=True)]


def _simplify(
    contour: list[tuple[int, int]], budget: int, tolerance: float
) -> list[tuple[int, int]]:
    """Greedy Douglas-Peucker on a closed contour: start from the extreme vertices, then keep
    inserting the vertex farthest from the current outline."""
    n = len(contour)
    if n <= budget:
        return contour
    points = np.asarray(contour, dtype=np.float64)
    # The contour twice over: a cyclic span is then a slice (a view), not a gather.
    doubled = np.concatenate([points, points])
    xs, ys = points[:, 0], points[:, 1]
    seeds = sorted(
        {0, int(np.argmin(xs)), int(np.argmax(xs)), int(np.argmin(ys)), int(np.argmax(ys))}
    )[:budget]
    keep = set(seeds)
    heap: list[tuple[float, int, int, int]] = []

    def push(a: int, b: int) -> None:
        # Segment from vertex a forward to vertex b (cyclically), exclusive of both ends.
        span = (b - a) % n or n
        if span < 2:
            return
        dist = _segment_distance(doubled[a + 1 : a + span], points[a], points[b])
        far = int(np.argmax(dist))
        heapq.heappush(heap, (-float(dist[far]), a, b, (a + 1 + far) % n))

    for k, a in enumerate(seeds):
        push(a, seeds[(k + 1) % len(seeds)])
    while heap and len(keep) < budget:
        neg_dist, a, b, far = heapq.heappop(heap)
        if -neg_dist <= tolerance:
            break
        keep.add(far)
        push(a, far)
        push(far, b)
    return [contour[i] for i in sorted(keep)]


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point in ``p`` to the segment ``a``-``b``."""
    ab = b - a
    length2 = float(ab @ ab)
    if length2 == 0.0:
        rel = p - a
        return np.hypot(rel[:, 0], rel[:, 1])
    t = ((p - a) @ ab) / length2
    # np.clip's dispatch costs more than the arithmetic on these short spans: same result.
    np.minimum(np.maximum(t, 0.0, out=t), 1.0, out=t)
    off = p - (a + t[:, None] * ab)
    return np.hypot(off[:, 0], off[:, 1])
