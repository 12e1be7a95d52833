"""Run-length masks against pycocotools and a plain decode / index-sample / encode reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as coco_mask

from sam2_finetune import masks
from sam2_finetune.masks import (
    counts_to_rles,
    decode_compressed_counts,
    encode_counts,
    parse_counts,
    resize_counts,
    rle_area,
    rle_bbox,
    rle_decode,
    rle_encode,
    rle_iou,
    square_side,
)


def mask_counts(mask: np.ndarray) -> np.ndarray:
    return decode_compressed_counts(rle_encode(mask)["counts"])


def rect_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """The reference: sample each destination pixel's centre in the source, in exact integers."""
    src_h, src_w = mask.shape
    rows = ((2 * np.arange(height) + 1) * src_h) // (2 * height)
    cols = ((2 * np.arange(width) + 1) * src_w) // (2 * width)
    return mask[rows][:, cols]


def coco_string(mask: np.ndarray) -> str:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


@st.composite
def bitmaps(draw: st.DrawFn) -> np.ndarray:
    """Small 0/1 masks: random, all zeros or all ones."""
    shape = (draw(st.integers(1, 14)), draw(st.integers(1, 14)))
    kind = draw(st.sampled_from(["random", "random", "zeros", "ones"]))
    if kind == "zeros":
        return np.zeros(shape, np.uint8)
    if kind == "ones":
        return np.ones(shape, np.uint8)
    return draw(arrays(np.uint8, shape, elements=st.integers(0, 1)))


sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))


# --------------------------------------------------------------------------------------------
# Parsing every form
# --------------------------------------------------------------------------------------------


def test_parse_counts_reads_sam2_strings():
    assert parse_counts("11179 1 255 2").tolist() == [11179, 1, 255, 2]
    assert parse_counts("  3\t4\n5 ").tolist() == [3, 4, 5]
    assert parse_counts("").tolist() == []


@pytest.mark.parametrize(
    "text", ["1 2 x", "1.5 2", "1,2", "-1 2", "3 -0", "99999999999999999999 1"]
)
def test_parse_counts_refuses_anything_but_non_negative_integers(text):
    with pytest.raises(ValueError):
        parse_counts(text)


def runs_of(mask: np.ndarray) -> list[int]:
    """Column-major run lengths, first run of zeros, counted directly (no pycocotools)."""
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    return [0, *runs] if flat[0] else runs


def test_decode_compressed_counts_on_a_video_sized_mask():
    mask = rect_mask(720, 1280, 100, 650, 30, 1200)
    mask[300:310, :] = 0
    mask[0, 500:] = 1
    assert decode_compressed_counts(coco_string(mask)).tolist() == runs_of(mask)


@pytest.mark.parametrize(
    "text, why",
    [("0 1", "characters"), ("a~", "characters"), ("`", "unfinished"), ("O", "negative")],
)
def test_decode_compressed_counts_refuses_damaged_strings(text, why):
    with pytest.raises(ValueError, match=why):
        decode_compressed_counts(text)


@SETTINGS
@given(bitmaps())
def test_rle_parsing_round_trips_against_pycocotools(mask):
    """Every form a mask can take in an export decodes to pycocotools' own run lengths."""
    height, width = mask.shape
    compressed = coco_string(mask)
    counts = decode_compressed_counts(compressed)
    # pycocotools' uncompressed form of the same mask is the reference.
    reference = coco_mask.frPyObjects(
        {"size": [height, width], "counts": counts.tolist()}, height, width
    )
    assert reference["counts"].decode() == compressed
    assert counts.sum() == height * width
    assert np.array_equal(rle_decode({"size": [height, width], "counts": compressed}), mask)
    # SAM2's space-separated string of the same runs.
    assert counts.tolist() == runs_of(mask)
    assert np.array_equal(parse_counts(" ".join(map(str, counts))), counts)
    # Compressing again gives pycocotools' bytes exactly.
    assert encode_counts(counts, height, width)["counts"] == compressed
    assert encode_counts(counts.tolist(), height, width) == rle_encode(mask)


@pytest.mark.parametrize("counts", [[0, 2**35, 7], [2**39 + 5, 1], [5, 3, 2**39, 1, 2**39 - 7]])
def test_compression_of_counts_past_32_bits_round_trips(counts):
    """pycocotools stores counts as uint32; ours are int64 up to 2^40 both ways."""
    text = encode_counts(counts, 1, sum(counts))["counts"]
    assert decode_compressed_counts(text).tolist() == counts


def test_square_side():
    assert square_side(65536) == 256
    assert square_side(65535) is None
    assert square_side(0) is None


# --------------------------------------------------------------------------------------------
# Rescaling
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(bitmaps(), sizes)
def test_resize_counts_equals_decode_sample_encode(mask, size):
    height, width = size
    expected = mask_counts(nearest(mask, height, width))
    got = resize_counts(mask_counts(mask), mask.shape, (height, width))
    assert got.tolist() == expected.tolist()


@SETTINGS
@given(st.lists(bitmaps(), min_size=1, max_size=5), sizes)
def test_counts_to_rles_equals_one_mask_at_a_time(mask_list, size):
    shape = mask_list[0].shape
    same = [m if m.shape == shape else np.zeros(shape, np.uint8) for m in mask_list]
    height, width = size
    out = counts_to_rles([mask_counts(m) for m in same], shape, (height, width))
    for mask, rle, area, box in zip(same, out.rles, out.areas, out.bboxes, strict=True):
        scaled = nearest(mask, height, width)
        assert rle == rle_encode(scaled)
        assert area == scaled.sum()
        expected_box = coco_mask.toBbox(coco_mask.encode(np.asfortranarray(scaled))).tolist()
        assert box.tolist() == list(rle_bbox(rle)) == expected_box


def blob(rng: np.random.Generator, side: int, top: int, left: int, holes: float) -> np.ndarray:
    mask = np.zeros((side, side), np.uint8)
    h, w = rng.integers(5, side // 3, 2)
    mask[top : top + h, left : left + w] = rng.random((h, w)) > holes
    return mask


@pytest.mark.parametrize("dst", [(720, 1280), (1080, 1920), (240, 320), (216, 384), (100, 90)])
def test_counts_to_rles_on_sam2_sized_masks(dst):
    """Realistic masks (blobs with holes, masks touching the top and bottom edges, which take the
    slow path, and a full mask) at the sizes videos have."""
    rng = np.random.default_rng(0)
    batch = [blob(rng, 256, *rng.integers(1, 150, 2), holes) for holes in (0.0, 0.05, 0.3)]
    batch.append(rect_mask(256, 256, 0, 256, 10, 12))  # touches both edges
    batch.append(np.ones((256, 256), np.uint8))
    out = counts_to_rles([mask_counts(m) for m in batch], (256, 256), dst)
    for mask, rle, area in zip(batch, out.rles, out.areas, strict=True):
        scaled = nearest(mask, *dst)
        assert rle == rle_encode(scaled)
        assert area == scaled.sum()


def test_fast_and_full_paths_agree():
    """The shortcut that encodes a column's copies once must give the full path's strings."""
    rng = np.random.default_rng(1)
    batch = [blob(rng, 64, 5, 5 + 3 * i, 0.2) for i in range(6)]
    counts = [mask_counts(m) for m in batch]
    pieces = masks._pieces(counts, (64, 64), (300, 500))
    fast = masks._compress_copies(pieces, len(batch), 300, 500)
    first, last = masks._expand(pieces, 300, 300 * 500)
    full = masks._compress(*masks._runs_to_counts(first, last, len(batch), 300 * 500))
    assert fast is not None and fast == full


def test_resize_matches_pil_nearest_except_at_exact_ties():
    """PIL's NEAREST computes the same mapping in floating point; it only differs where a
    destination pixel centre falls exactly between two source pixels (and rounds down there)."""
    rng = np.random.default_rng(2)
    mask = (rng.random((256, 256)) < 0.5).astype(np.uint8)
    for height, width in [(720, 1280), (240, 320), (1080, 1920)]:
        pil = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
        ours = rle_decode(
            encode_counts(
                resize_counts(mask_counts(mask), (256, 256), (height, width)), height, width
            )
        )
        tie_rows = ((2 * np.arange(height) + 1) * 256) % (2 * height) == 0
        tie_cols = ((2 * np.arange(width) + 1) * 256) % (2 * width) == 0
        assert np.array_equal(pil[~tie_rows][:, ~tie_cols], ours[~tie_rows][:, ~tie_cols])


def test_resize_to_the_same_size_is_canonical():
    # Zero-length runs inside are merged away, and no trailing zero run is kept.
    assert resize_counts([0, 0, 2, 2], (2, 2), (2, 2)).tolist() == [2, 2]
    assert resize_counts([1, 3], (2, 2), (2, 2)).tolist() == [1, 3]
    assert resize_counts([4], (2, 2), (4, 4)).tolist() == [16]


# --------------------------------------------------------------------------------------------
# pycocotools wrappers
# --------------------------------------------------------------------------------------------


def test_rle_area_past_pycocotools_overflow():
    rle = rle_encode(rect_mask(10, 10, 0, 5, 0, 4))
    areas = rle_area([rle] * 600)
    assert areas.shape == (600,) and (areas == 20).all()
    assert rle_area([]).shape == (0,)


def test_rle_iou_and_bbox():
    a = rle_encode(rect_mask(10, 10, 0, 4, 0, 4))
    b = rle_encode(rect_mask(10, 10, 2, 6, 2, 6))
    assert rle_iou([a], [b])[0, 0] == pytest.approx(4 / 28)
    assert rle_iou([], [b]).shape == (0, 1)
    assert rle_bbox(b) == (2.0, 2.0, 4.0, 4.0)
