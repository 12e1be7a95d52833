"""Run-length masks: parsing every form SAM2 exports use, rescaling on the runs, COCO RLE helpers.

All masks are COCO-style: column-major (Fortran order) run lengths, the first run counting zeros.
The package's canonical mask is a *compressed* COCO RLE at image size, ``{"size": [h, w], "counts":
str}``, the form ``pycocotools.mask`` reads. Rescaling works on the runs themselves (nearest
neighbour with exact pixel-centre sampling), never on a decoded bitmap, which
is about 10x cheaper than decode-resize-encode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import numpy as np
from pycocotools import mask as coco_mask

# pycocotools with numpy 2 overflows in mask.area() past 255 RLEs per call (environment notes).
_AREA_CHUNK = 200


class Rle(TypedDict):
    """A compressed COCO RLE: ``size`` is ``[height, width]``; ``counts`` the compressed string."""

    size: list[int]
    counts: str


def parse_counts(text: str) -> np.ndarray:
    """Parse SAM2's ``mask_rle`` string ("11179 1 255 2 ...") into int64 run lengths.

    Raises ``ValueError`` on anything but whitespace-separated non-negative integers.
    """
    # np.fromstring in text mode is ~4x faster than split + int and raises on stray characters.
    counts = np.fromstring(text, dtype=np.int64, sep=" ")
    if counts.size and counts.min() < 0:
        raise ValueError("negative run length")
    return counts


def square_side(total: int) -> int | None:
    """The side ``n`` with ``n * n == total``, or None when ``total`` is not a perfect square."""
    side = math.isqrt(total)
    return side if side * side == total and side > 0 else None


def decode_compressed_counts(counts: str | bytes) -> np.ndarray:
    """Decode a COCO compressed counts string into run lengths (the inverse of pycocotools'
    ``rleToString``); pycocotools exposes no function for this."""
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    out: list[int] = []
    p = 0
    n = len(data)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("truncated compressed counts")
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    result = np.array(out, dtype=np.int64)
    if result.size and result.min() < 0:
        raise ValueError("negative run length")
    return result


def encode_counts(counts: np.ndarray | Sequence[int], height: int, width: int) -> Rle:
    """Compress uncompressed run lengths (column-major) into a COCO RLE of ``height x width``."""
    rle = coco_mask.frPyObjects(
        {"size": [height, width], "counts": np.asarray(counts).tolist()}, height, width
    )
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _nearest_starts(src: int, dst: int) -> np.ndarray:
    """For each source index ``i`` in ``0..src``, the first destination index whose nearest
    source index (pixel-centre mapping, as PIL's NEAREST) is ``>= i``."""
    src_of_dst = ((2 * np.arange(dst, dtype=np.int64) + 1) * src) // (2 * dst)
    return np.searchsorted(src_of_dst, np.arange(src + 1), side="left")


def resize_counts(
    counts: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> np.ndarray:
    """Rescale a column-major run-length mask from ``src_hw`` to ``dst_hw`` (nearest neighbour),
    working on the runs: cost grows with the number of runs, not with the pixels.

    Pixel for pixel the same as decoding, sampling ``mask[rows][:, cols]`` with
    ``rows = ((2 * arange(dst_h) + 1) * src_h) // (2 * dst_h)`` (likewise columns) and
    re-encoding. PIL's NEAREST computes this mapping in floating point, so it differs at exact
    half-pixel ties.
    """
    src_h, src_w = src_hw
    dst_h, dst_w = dst_hw
    if (src_h, src_w) == (dst_h, dst_w):
        return np.asarray(counts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    s = starts[1::2]
    e = ends[1::2]
    nonzero = e > s
    s, e = s[nonzero], e[nonzero]
    total = dst_h * dst_w
    if s.size == 0:
        return np.array([total], dtype=np.int64)
    # Split every run of ones at source column boundaries.
    c0 = s // src_h
    pieces = (e - 1) // src_h - c0 + 1
    run = np.repeat(np.arange(s.size), pieces)
    offset = np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    col = c0[run] + offset
    r0 = np.maximum(s[run] - col * src_h, 0)
    r1 = np.minimum(e[run] - col * src_h, src_h)
    # Map rows, then repeat each source column over the destination columns that sample it.
    row_starts = _nearest_starts(src_h, dst_h)
    col_starts = _nearest_starts(src_w, dst_w)
    y0 = row_starts[r0]
    y1 = row_starts[r1]
    repeats = (col_starts[col + 1] - col_starts[col]) * (y1 > y0)
    piece = np.repeat(np.arange(col.size), repeats)
    if piece.size == 0:
        return np.array([total], dtype=np.int64)
    within = np.arange(piece.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    out_col = col_starts[col[piece]] + within
    first = out_col * dst_h + y0[piece]
    last = out_col * dst_h + y1[piece]
    order = np.argsort(first, kind="stable")
    first, last = first[order], last[order]
    # Runs that touch across a column boundary become one run.
    touching = first[1:] == last[:-1]
    if touching.any():
        first = first[np.concatenate(([True], ~touching))]
        last = last[np.concatenate((~touching, [True]))]
    bounds = np.empty(2 * first.size + 2, dtype=np.int64)
    bounds[0] = 0
    bounds[1:-1:2] = first
    bounds[2:-1:2] = last
    bounds[-1] = total
    out = np.diff(bounds)
    # A mask ending in ones has no trailing zero run (as pycocotools writes it).
    return out[:-1] if out[-1] == 0 else out


def rle_area(rles: Sequence[Rle]) -> np.ndarray:
    """Pixel areas of many RLEs, without decoding (chunked around a pycocotools overflow)."""
    out = [
        coco_mask.area([_as_coco(r) for r in rles[i : i + _AREA_CHUNK]])
        for i in range(0, len(rles), _AREA_CHUNK)
    ]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def rle_bbox(rle: Rle) -> tuple[float, float, float, float]:
    """The mask's own ``[x, y, w, h]`` box in pixels (inclusive extents, as pycocotools)."""
    x, y, w, h = coco_mask.toBbox(_as_coco(rle)).tolist()
    return (x, y, w, h)


def rle_decode(rle: Rle) -> np.ndarray:
    """Decode to a ``(h, w)`` uint8 array of 0/1. Costly at image size: use only when needed."""
    return coco_mask.decode(_as_coco(rle))


def rle_encode(mask: np.ndarray) -> Rle:
    """Encode a ``(h, w)`` 0/1 array into a compressed COCO RLE."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_iou(a: Sequence[Rle], b: Sequence[Rle]) -> np.ndarray:
    """IoU matrix between two lists of RLEs of the same size, without decoding."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(
        coco_mask.iou([_as_coco(r) for r in a], [_as_coco(r) for r in b], [0] * len(b))
    )


def _as_coco(rle: Rle) -> dict:
    counts = rle["counts"]
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
