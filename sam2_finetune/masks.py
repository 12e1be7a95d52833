"""Run-length masks: parsing every form SAM2 exports use, rescaling on the runs, COCO RLE helpers.

All masks are COCO-style: column-major (Fortran order) run lengths, the first run counting zeros.
The package's canonical mask is a *compressed* COCO RLE at image size, ``{"size": [h, w], "counts":
str}``, the form ``pycocotools.mask`` reads.

Rescaling works on the runs themselves (nearest neighbour with exact pixel-centre sampling), never
on a decoded bitmap: its cost grows with the number of runs, not with the pixels. The batch
function :func:`counts_to_rles` rescales, compresses and measures (area, box) many masks in one
vectorised pass (ingest gives it 16 frames' masks at a time), because for typical masks numpy's
per-call overhead, not the arithmetic, is what costs; the single-mask functions use the same code.

>>> counts = parse_counts("0 2 2")  # a 2 x 2 mask whose left column is ones
>>> resize_counts(counts, (2, 2), (4, 4)).tolist()  # 4 x 4: the left two columns
[0, 8, 8]
>>> encode_counts([0, 8, 8], 4, 4)
{'size': [4, 4], 'counts': '088'}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple, TypedDict

import numpy as np
from pycocotools import mask as coco_mask

# pycocotools with numpy 2 overflows in mask.area() past 255 RLEs per call (environment notes).
_AREA_CHUNK = 200
# A run can never exceed the pixel count; this bound (2^40) also catches the saturation of
# np.fromstring on absurdly long numbers before any sum can overflow.
_MAX_RUN = 1 << 40
# A compressed count takes 5 bits per character, sign included: 9 hold any count below _MAX_RUN.
_MAX_CHUNKS = 9
_ZERO = np.zeros(1, dtype=np.int64)
# A signed value needs one more 5-bit group each time its magnitude reaches one of these.
_CHUNK_LIMITS = np.array([1 << (5 * k - 1) for k in range(1, _MAX_CHUNKS + 1)], dtype=np.int64)


class Rle(TypedDict):
    """A compressed COCO RLE: ``size`` is ``[height, width]``; ``counts`` the compressed string."""

    size: list[int]
    counts: str


class RescaledMasks(NamedTuple):
    """What :func:`counts_to_rles` returns for ``k`` masks: compressed RLEs at the destination
    size, pixel areas ``(k,)`` and boxes ``(k, 4)`` ``[x, y, w, h]`` as ``pycocotools.toBbox``
    (all zeros for an empty mask)."""

    rles: list[Rle]
    areas: np.ndarray
    bboxes: np.ndarray


def parse_counts(text: str) -> np.ndarray:
    """Parse SAM2's ``mask_rle`` string (``"11179 1 255 2 ..."``) into int64 run lengths.

    Raises ``ValueError`` on anything but whitespace-separated non-negative integers.

    >>> parse_counts("3 1 0").tolist()
    [3, 1, 0]
    """
    # np.fromstring in text mode is ~5x faster than split + int and raises on stray characters.
    counts = np.fromstring(text, dtype=np.int64, sep=" ")
    # "-" in text is a C-speed scan: one reduction per mask instead of two.
    if "-" in text or (counts.size and counts.max() >= _MAX_RUN):
        raise ValueError("run lengths must be non-negative integers below 2^40")
    return counts


def square_side(total: int) -> int | None:
    """The side ``n`` with ``n * n == total``, or None when ``total`` is not a perfect square."""
    side = math.isqrt(total) if total > 0 else 0
    return side if side > 0 and side * side == total else None


def decode_compressed_counts(counts: str | bytes) -> np.ndarray:
    """Decode a COCO compressed counts string into run lengths (the inverse of pycocotools'
    ``rleToString``, which pycocotools does not expose). Vectorised: no Python loop per run.

    Raises ``ValueError`` for characters outside the alphabet, a truncated last value, or
    negative or absurdly long runs.

    >>> decode_compressed_counts("24:").tolist()
    [2, 4, 10]
    """
    data = counts.encode("ascii", "replace") if isinstance(counts, str) else bytes(counts)
    if not data:
        return np.zeros(0, dtype=np.int64)
    chars = np.frombuffer(data, dtype=np.uint8).astype(np.int64) - 48
    if chars.min() < 0 or chars.max() > 63:
        raise ValueError("compressed counts hold characters outside '0'..'o'")
    more = (chars & 0x20) != 0
    if more[-1]:
        raise ValueError("truncated compressed counts (the last value is unfinished)")
    ends = np.flatnonzero(~more)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    chunks = ends - starts + 1
    if chunks.max() > _MAX_CHUNKS:
        raise ValueError("a compressed run is absurdly long")
    shift = 5 * (np.arange(chars.size) - np.repeat(starts, chunks))
    values = np.add.reduceat((chars & 0x1F) << shift, starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * chunks[negative])
    # Value i > 2 is stored as the difference to value i - 2: two interleaved running sums.
    out = values
    out[1::2] = np.cumsum(values[1::2])
    out[2::2] = np.cumsum(values[2::2])
    if out.min() < 0 or out.max() >= _MAX_RUN:
        raise ValueError("compressed counts decode to negative or absurdly long runs")
    return out


def encode_counts(counts: np.ndarray | Sequence[int], height: int, width: int) -> Rle:
    """Compress uncompressed run lengths (column-major) into a COCO RLE of ``height x width``.

    The string is byte-identical to ``pycocotools.mask.frPyObjects``'s for the same counts.
    """
    counts = np.asarray(counts, dtype=np.int64)
    (text,) = _compress(counts, np.array([counts.size]))
    return {"size": [height, width], "counts": text}


def resize_counts(
    counts: np.ndarray | Sequence[int], src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> np.ndarray:
    """Rescale a column-major run-length mask from ``src_hw`` to ``dst_hw`` (nearest neighbour),
    working on the runs: cost grows with the number of runs, not with the pixels.

    Pixel for pixel the same as decoding, sampling ``mask[rows][:, cols]`` with
    ``rows = ((2 * arange(dst_h) + 1) * src_h) // (2 * dst_h)`` (likewise columns) and
    re-encoding. PIL's NEAREST computes this mapping in floating point, so it can differ at exact
    half-pixel ties. The result is canonical (as ``pycocotools`` encodes a bitmap): no zero-length
    runs but a leading one, no trailing zero run.
    """
    dst_h, dst_w = int(dst_hw[0]), int(dst_hw[1])
    pieces = _pieces([np.asarray(counts, dtype=np.int64)], src_hw, (dst_h, dst_w))
    first, last = _expand(pieces, dst_h, dst_h * dst_w)
    flat, _ = _runs_to_counts(first, last, 1, dst_h * dst_w)
    return flat


def counts_to_rles(
    counts: Sequence[np.ndarray], src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> RescaledMasks:
    """Rescale many masks of the same source size to ``dst_hw`` and compress them, in one pass.

    Each ``counts[i]`` must add up to ``src_h * src_w`` (not checked here). Equivalent to
    ``encode_counts(resize_counts(c, src_hw, dst_hw), *dst_hw)`` per mask, plus its area and
    ``toBbox`` box, at a fraction of the cost: one vectorised pass for all the masks (per-call
    overhead, not arithmetic, dominates for the few hundred runs of a typical mask), and the
    compressed string of a source column's copies written once and repeated.
    """
    k = len(counts)
    dst_h, dst_w = int(dst_hw[0]), int(dst_hw[1])
    if k == 0:
        return RescaledMasks([], np.zeros(0, np.int64), np.zeros((0, 4), np.float64))
    pieces = _pieces([np.asarray(c, dtype=np.int64) for c in counts], src_hw, (dst_h, dst_w))
    texts = _compress_copies(pieces, k, dst_h, dst_w)
    if texts is None:
        first, last = _expand(pieces, dst_h, dst_h * dst_w)
        texts = _compress(*_runs_to_counts(first, last, k, dst_h * dst_w))
    rles: list[Rle] = [{"size": [dst_h, dst_w], "counts": t} for t in texts]
    return RescaledMasks(rles, pieces.areas, pieces.bboxes)


# --------------------------------------------------------------------------------------------
# The vectorised core
# --------------------------------------------------------------------------------------------


class _Pieces(NamedTuple):
    """Runs of ones of ``k`` masks cut at source column boundaries, mapped to the destination:
    piece ``i`` covers destination rows ``[y0, y1)`` of destination columns ``[x0, x1)``
    (global: mask ``m`` owns columns ``m * dst_w ...``), sorted by column then row."""

    col: np.ndarray  # global source column
    mask: np.ndarray  # which mask
    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    areas: np.ndarray
    bboxes: np.ndarray


@lru_cache(maxsize=256)
def _nearest_starts(src: int, dst: int) -> np.ndarray:
    """For each source index ``i`` in ``0..src``, the first destination index whose nearest
    source index (pixel-centre mapping, as PIL's NEAREST) is ``>= i``. Entry ``src`` is ``dst``."""
    src_of_dst = ((2 * np.arange(dst, dtype=np.int64) + 1) * src) // (2 * dst)
    table = np.searchsorted(src_of_dst, np.arange(src + 1), side="left").astype(np.int64)
    table.flags.writeable = False
    return table


def _pieces(
    counts: Sequence[np.ndarray], src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> _Pieces:
    """Cut and map the runs of ones of ``k`` masks; measure each mask's area and box.

    The masks are concatenated: as each adds up to ``src_h * src_w``, mask ``m`` occupies columns
    ``m*src_w .. (m+1)*src_w - 1`` of one wide image, and all of them are handled at once.
    """
    src_h, src_w = int(src_hw[0]), int(src_hw[1])
    dst_h, dst_w = int(dst_hw[0]), int(dst_hw[1])
    k = len(counts)
    # Pad each mask to an even number of runs so that runs of ones sit at odd global positions.
    parts: list[np.ndarray] = []
    for c in counts:
        parts.append(c)
        if c.size & 1:
            parts.append(_ZERO)
    flat = np.concatenate(parts) if len(parts) > 1 else parts[0]
    ends = np.cumsum(flat)
    s = ends[0::2]
    e = ends[1::2]
    nonempty = e > s
    if not nonempty.all():
        s, e = s[nonempty], e[nonempty]

    # Split every run of ones at source column boundaries (rare: a run wraps from the bottom of
    # one column to the top of the next only when the mask touches both edges).
    col = s // src_h
    col_last = (e - 1) // src_h
    if (col_last != col).any():
        pieces = col_last - col + 1
        run = np.repeat(np.arange(s.size), pieces)
        col = np.arange(run.size) - np.repeat(np.cumsum(pieces) - pieces - col, pieces)
        base = col * src_h
        r0 = np.maximum(s[run] - base, 0)
        r1 = np.minimum(e[run] - base, src_h)
    else:
        base = col * src_h
        r0 = s - base
        r1 = e - base

    # Rows: nearest-neighbour on each piece's ends. Columns: each source column becomes the
    # destination columns [x0, x1) that sample it.
    rows = _nearest_starts(src_h, dst_h)
    y0 = rows[r0]
    y1 = rows[r1]
    mask, local = np.divmod(col, src_w)
    cols = _nearest_starts(src_w, dst_w)
    offset = mask * dst_w  # mask m owns destination columns m*dst_w ...
    x0 = cols[local] + offset
    x1 = cols[local + 1] + offset
    keep = (y1 > y0) & (x1 > x0)  # downscaling can drop a piece entirely
    if not keep.all():
        col, mask, y0, y1, x0, x1 = col[keep], mask[keep], y0[keep], y1[keep], x0[keep], x1[keep]

    areas = np.zeros(k, dtype=np.int64)
    bboxes = np.zeros((k, 4), dtype=np.float64)
    if col.size:
        # Pieces are sorted by mask, column, row: each mask is one segment.
        bounds = np.searchsorted(mask, np.arange(k + 1))
        present = np.flatnonzero(bounds[:-1] < bounds[1:])
        seg = bounds[present]
        areas[present] = np.add.reduceat((y1 - y0) * (x1 - x0), seg)
        mask_left = present * dst_w
        left = x0[seg] - mask_left
        right = x1[bounds[present + 1] - 1] - mask_left
        top = np.minimum.reduceat(y0, seg)
        bottom = np.maximum.reduceat(y1, seg)
        bboxes[present, 0] = left
        bboxes[present, 1] = top
        bboxes[present, 2] = right - left
        bboxes[present, 3] = bottom - top
    return _Pieces(col, mask, y0, y1, x0, x1, areas, bboxes)


def _groups(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First piece and number of pieces of each source column (pieces are sorted by column)."""
    start = np.flatnonzero(np.concatenate(([True], col[1:] != col[:-1])))
    return start, np.diff(np.append(start, col.size))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` for each start and (positive) length: a
    cumulative sum of ones with a jump at each range, cheaper than ``np.repeat``."""
    ends = np.cumsum(lengths)
    steps = np.ones(int(ends[-1]) if ends.size else 0, dtype=np.int64)
    if steps.size:
        steps[0] = starts[0]
        steps[ends[:-1]] = starts[1:] - starts[:-1] - lengths[:-1] + 1
    return np.cumsum(steps, out=steps)


def _copy_blocks(
    group_start: np.ndarray, group_n: np.ndarray, copies: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lay out ``copies[g]`` (>= 1) copies of each column's pieces, column-major: the blocks'
    group, copy number, size and first element, and the piece behind every element."""
    block_group = np.repeat(np.arange(group_start.size), copies)
    block_copy = _ranges(np.zeros(copies.size, dtype=np.int64), copies)
    block_n = group_n[block_group]
    block_out = np.cumsum(block_n) - block_n
    piece = _ranges(group_start[block_group], block_n)
    return block_group, block_copy, block_n, block_out, piece


def _expand(pieces: _Pieces, dst_h: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Every destination run of ones (global start, end), touching runs merged."""
    col, _, y0, y1, x0, x1 = pieces[:6]
    if col.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    start = x0 * dst_h + y0  # where each piece begins in its first destination column
    length = y1 - y0
    reps = x1 - x0
    if reps.max() == 1:
        first = start
        last = start + length
    else:
        # All pieces of a source column for its first destination column, then again for the
        # next one, and so on (column-major order).
        group_start, group_n = _groups(col)
        _, block_copy, block_n, _, piece = _copy_blocks(group_start, group_n, reps[group_start])
        first = start[piece] + np.repeat(block_copy * dst_h, block_n)
        last = first + length[piece]
    # Runs that touch (across a column boundary, or after downscaling dropped the zeros between
    # them) become one, except across the boundary between two masks.
    touching = first[1:] == last[:-1]
    if touching.any():
        touching &= first[1:] % total != 0
        first = first[np.concatenate(([True], ~touching))]
        last = last[np.concatenate((~touching, [True]))]
    return first, last


def _runs_to_counts(
    first: np.ndarray, last: np.ndarray, k: int, total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical run lengths of ``k`` masks of ``total`` pixels each, from their runs of ones
    (global positions), concatenated, and the number of runs of each mask."""
    k_range = np.arange(k, dtype=np.int64)
    n = np.bincount(first // total, minlength=k) if first.size else np.zeros(k, np.int64)
    # Per mask the boundaries [m*total, first, last, ..., (m+1)*total]; their differences are
    # the runs (a junk zero sits between two masks).
    width = 2 * n + 2
    start = np.cumsum(width) - width
    stop = start + width - 1
    bounds = np.empty(int(width.sum()), dtype=np.int64)
    inner = np.ones(bounds.size, dtype=bool)
    inner[start] = False
    inner[stop] = False
    bounds[start] = k_range * total
    bounds[stop] = (k_range + 1) * total
    interleaved = np.empty(2 * first.size, dtype=np.int64)
    interleaved[0::2] = first
    interleaved[1::2] = last
    bounds[inner] = interleaved
    diffs = np.diff(bounds)
    keep = np.ones(diffs.size, dtype=bool)
    keep[stop[:-1]] = False
    # A mask ending in ones has no trailing zero run (as pycocotools encodes a bitmap).
    trailing = stop - 1
    ends_in_ones = diffs[trailing] == 0
    ends_in_ones &= n > 0
    keep[trailing[ends_in_ones]] = False
    lengths = 2 * n + 1 - ends_in_ones
    return diffs[keep], lengths


def _codes(flat: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``rleToString`` for the concatenated run lengths of several masks
    (``lengths`` runs each): the characters as uint8 codes, and how many each count took.

    Each count (minus the count two before it, from the fourth of a mask on) is written in 5-bit
    little-endian groups, bit 5 meaning "more follows", the last group sign-extended. Nearly all
    of these differences are small: their characters come from a table; the few large ones
    (a mask's first and last gaps) are encoded apart and inserted.
    """
    seg_start = np.cumsum(lengths) - lengths
    delta = flat.copy()
    delta[2:] -= flat[:-2]
    # The first three counts of each mask are stored as they are.
    for t in range(3):
        head = seg_start[lengths > t] + t
        delta[head] = flat[head]
    words, table_n = _code_table()
    index = delta + _TABLE_HALF
    inside = index.view(np.uint64) < 2 * _TABLE_HALF  # negatives wrap to huge unsigned values
    all_inside = bool(inside.all())
    if not all_inside:
        big = np.flatnonzero(~inside)
        index[big] = 2 * _TABLE_HALF  # the table's last entry: no characters
    chunks = table_n[index].astype(np.int64)
    # Each entry is the characters packed in a uint32, zero-padded; codes are never zero.
    raw = words[index].view(np.uint8)
    codes = np.compress(raw != 0, raw)
    if not all_inside:
        before = (np.cumsum(chunks) - chunks)[big]  # table characters before each large one
        big_codes, big_chunks = _codes_of(delta[big])
        at = np.repeat(before, big_chunks) + np.arange(big_codes.size)
        merged = np.empty(codes.size + big_codes.size, dtype=np.uint8)
        rest = np.ones(merged.size, dtype=bool)
        rest[at] = False
        merged[at] = big_codes
        merged[rest] = codes
        codes = merged
        chunks[big] = big_chunks
    return codes, chunks


_TABLE_HALF = 1 << 14  # differences in [-2^14, 2^14) take at most 3 characters


@lru_cache(maxsize=1)
def _code_table() -> tuple[np.ndarray, np.ndarray]:
    """For every difference in the table's range, its characters packed little-endian in a
    uint32 (zero-padded) and their number; one extra last entry with none."""
    values = np.arange(-_TABLE_HALF, _TABLE_HALF, dtype=np.int64)
    codes, chunks = _codes_of(values)
    packed = np.zeros((values.size + 1, 4), dtype=np.uint8)
    packed[:-1][np.arange(4) < chunks[:, None]] = codes
    words = packed.view("<u4").ravel()
    words.flags.writeable = False
    counts = np.append(chunks, 0).astype(np.uint8)
    counts.flags.writeable = False
    return words, counts


def _codes_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The characters (uint8 codes) of signed values and how many each takes (no table)."""
    magnitude = values ^ (values >> 63)  # ~value for negatives: the bits a sign must fill
    chunks = np.ones(values.size, dtype=np.int64)
    for limit in _CHUNK_LIMITS.tolist():
        chunks += magnitude >= limit
    ends = np.cumsum(chunks)
    group = np.arange(int(ends[-1]) if ends.size else 0) - np.repeat(ends - chunks, chunks)
    wide = np.repeat(values, chunks) >> (5 * group)
    codes = (wide & 0x1F).astype(np.uint8)
    codes += 48 + 0x20
    codes[ends - 1] -= 0x20  # the last group of each value has no "more" bit
    return codes, chunks


def _split(codes: np.ndarray, per_mask: np.ndarray) -> list[str]:
    """Cut the characters of several masks into one string each."""
    chars = codes.tobytes().decode("ascii")
    if per_mask.size == 1:
        return [chars]
    offsets = np.concatenate(([0], np.cumsum(per_mask))).tolist()
    return [chars[a:b] for a, b in itertools.pairwise(offsets)]


def _compress(flat: np.ndarray, lengths: np.ndarray) -> list[str]:
    """COCO-compress the concatenated run lengths of several masks into one string per mask."""
    if flat.size == 0:
        return ["" for _ in range(lengths.size)]
    codes, chunks = _codes(flat, lengths)
    per_mask = np.add.reduceat(chunks, np.cumsum(lengths) - lengths)
    return _split(codes, per_mask)


def _compress_copies(pieces: _Pieces, k: int, dst_h: int, dst_w: int) -> list[str] | None:
    """The compressed strings of ``k`` rescaled masks, encoding each source column's copies
    only once or twice; None when a shortcut assumption fails (the caller then expands fully).

    Copies of one source column hold the same runs, and so, past the first two copies, the same
    compressed characters: a column's first copy starts with the gap since the previous column,
    later copies with the gap from the copy before, and (with one piece per column) the third
    copy's deltas are zeros, all equal from there. So the counts of at most the first three
    copies are built and encoded, and the last of those is repeated in the output. This breaks
    only where runs of two adjacent destination columns touch (a mask touching both the top and
    bottom edges), or for empty masks: then None.
    """
    col, mask, y0, y1, x0, x1 = pieces[:6]
    h = dst_h
    if col.size == 0:
        return None
    group_start, group_n = _groups(col)
    group_last = group_start + group_n - 1
    group_mask = mask[group_start]
    gx0 = x0[group_start]
    gx1 = x1[group_start]
    reps = gx1 - gx0
    mask_first = np.flatnonzero(np.concatenate(([True], group_mask[1:] != group_mask[:-1])))
    if mask_first.size != k:
        return None  # an empty mask
    # Runs that would touch (and merge) break the pattern: leave those masks to the full path.
    if ((col[1:] == col[:-1]) & (y1[:-1] == y0[1:])).any():
        return None
    ends_low = y1[group_last] == h
    starts_high = y0[group_start] == 0
    if (ends_low & starts_high & (reps > 1)).any():
        return None
    if (
        ends_low[:-1]
        & starts_high[1:]
        & (gx1[:-1] == gx0[1:])
        & (group_mask[:-1] == group_mask[1:])
    ).any():
        return None

    # The gap (zeros) before each piece in its column's first copy, and before the first piece
    # of any later copy; the ones of each piece.
    gap = np.empty(col.size, dtype=np.int64)
    gap[1:] = y0[1:] - y1[:-1]
    lead = np.empty(group_start.size, dtype=np.int64)
    lead[1:] = (gx0[1:] - gx1[:-1]) * h + (h - y1[group_last[:-1]]) + y0[group_start[1:]]
    lead[mask_first] = (gx0[mask_first] - group_mask[mask_first] * dst_w) * h + y0[
        group_start[mask_first]
    ]
    gap[group_start] = lead
    wrap = h - y1[group_last] + y0[group_start]
    ones = y1 - y0
    mask_last = np.append(mask_first[1:] - 1, group_start.size - 1)
    trailing = ((group_mask[mask_last] + 1) * dst_w - gx1[mask_last]) * h + (
        h - y1[group_last[mask_last]]
    )

    # Encode at most 2 copies (3 with one piece per column) of each column.
    built = np.minimum(reps, np.where(group_n > 1, 2, 3))
    block_group, block_copy, block_n, block_out, piece = _copy_blocks(group_start, group_n, built)
    gaps = gap[piece]
    later = block_copy > 0
    gaps[block_out[later]] = wrap[block_group[later]]
    pairs = np.empty(2 * piece.size, dtype=np.int64)
    pairs[0::2] = gaps
    pairs[1::2] = ones[piece]
    mask_blocks = np.bincount(group_mask, weights=built, minlength=k).astype(np.int64)
    mask_values = 2 * np.bincount(group_mask, weights=group_n * built, minlength=k).astype(np.int64)
    has_trailing = trailing > 0
    value_end = np.cumsum(mask_values)
    flat = np.insert(pairs, value_end[has_trailing], trailing[has_trailing])
    lengths = mask_values + has_trailing
    codes, chunks = _codes(flat, lengths)

    # Segments of values in output order: every block, then the mask's trailing zeros; the
    # last built copy of a column stands for all its remaining copies.
    trailing_before = np.cumsum(has_trailing) - has_trailing
    block_mask = group_mask[block_group]
    block_value = 2 * block_out + trailing_before[block_mask]
    block_times = np.where(
        block_copy == built[block_group] - 1, reps[block_group] - built[block_group] + 1, 1
    )
    at = np.cumsum(mask_blocks)[has_trailing]
    seg_value = np.insert(block_value, at, (value_end + trailing_before)[has_trailing])
    seg_values = np.insert(2 * block_n, at, 1)
    seg_times = np.insert(block_times, at, 1)
    seg_mask = np.insert(block_mask, at, np.flatnonzero(has_trailing))
    char_at = np.concatenate(([0], np.cumsum(chunks)))
    seg_char = char_at[seg_value]
    seg_chars = char_at[seg_value + seg_values] - seg_char
    copy = np.repeat(np.arange(seg_char.size), seg_times)
    index = _ranges(seg_char[copy], seg_chars[copy])
    per_mask = np.bincount(seg_mask, weights=seg_chars * seg_times, minlength=k).astype(np.int64)
    return _split(codes[index], per_mask)


# --------------------------------------------------------------------------------------------
# pycocotools wrappers
# --------------------------------------------------------------------------------------------


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
