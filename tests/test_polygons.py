from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sam2_finetune.errors import OptionsError
from sam2_finetune.masks import rle_bbox, rle_decode, rle_encode
from sam2_finetune.polygons import mask_to_polygons, polygon_iou, polygons_to_rle


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows], dtype=np.uint8)


def _draw(polygons, shape) -> np.ndarray:
    return rle_decode(polygons_to_rle(polygons, *shape))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background not 4-connected to the border becomes foreground (what outer contours keep)."""
    h, w = mask.shape
    outside = np.zeros_like(mask, dtype=bool)
    queue = deque(
        (r, c) for r in range(h) for c in range(w) if (r in (0, h - 1) or c in (0, w - 1))
    )
    while queue:
        r, c = queue.popleft()
        if 0 <= r < h and 0 <= c < w and not outside[r, c] and not mask[r, c]:
            outside[r, c] = True
            queue.extend(((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)))
    return (~outside).astype(np.uint8)


def test_one_pixel_is_its_unit_square():
    mask = _mask(["...", ".#.", "..."])
    assert mask_to_polygons(mask) == [[(1.0, 1.0), (2.0, 1.0), (2.0, 2.0), (1.0, 2.0)]]
    assert polygon_iou(mask_to_polygons(mask), rle_encode(mask)) == 1.0


def test_square_is_four_corners_clockwise_from_top_left():
    mask = _mask(["....", ".##.", ".##.", "...."])
    assert mask_to_polygons(mask) == [[(1.0, 1.0), (3.0, 1.0), (3.0, 3.0), (1.0, 3.0)]]


def test_l_shape_keeps_its_six_corners():
    mask = _mask(["#..", "#..", "###"])
    (polygon,) = mask_to_polygons(mask)
    assert polygon == [(0, 0), (1, 0), (1, 2), (3, 2), (3, 3), (0, 3)]
    assert np.array_equal(_draw([polygon], mask.shape), mask)


def test_two_blobs_give_two_polygons_largest_first():
    mask = _mask(["#....", ".....", "..###", "..###"])
    polygons = mask_to_polygons(mask, min_area=1)
    assert polygons == [
        [(2.0, 2.0), (5.0, 2.0), (5.0, 4.0), (2.0, 4.0)],
        [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
    ]
    assert np.array_equal(_draw(polygons, mask.shape), mask)


def test_diagonal_neighbours_are_one_part():
    mask = np.eye(4, dtype=np.uint8)
    polygons = mask_to_polygons(mask, min_area=1)
    assert len(polygons) == 1
    assert np.array_equal(_draw(polygons, mask.shape), mask)


def test_one_run_per_row_is_one_part_only_where_the_runs_touch():
    # Consecutive rows with one run each: the shortcut past the union-find must still see
    # that a run two columns past the one above is another part.
    mask = _mask(["##....", ".##...", "....##", "....#."])
    polygons = mask_to_polygons(mask, min_area=1)
    assert len(polygons) == 2
    assert np.array_equal(_draw(polygons, mask.shape), mask)
    assert len(mask_to_polygons(_mask(["##....", "..##..", "....##"]), min_area=1)) == 1


def test_holes_are_filled_and_the_iou_says_so():
    mask = _mask(["#####", "#...#", "#...#", "#...#", "#####"])
    polygons = mask_to_polygons(mask)
    assert polygons == [[(0.0, 0.0), (5.0, 0.0), (5.0, 5.0), (0.0, 5.0)]]
    assert polygon_iou(polygons, rle_encode(mask)) == pytest.approx(16 / 25)


def test_edge_touching_mask_reaches_the_image_border():
    mask = np.ones((3, 7), dtype=np.uint8)
    mask[0, 0] = 0
    (polygon,) = mask_to_polygons(mask)
    assert max(x for x, _ in polygon) == 7 and max(y for _, y in polygon) == 3
    assert np.array_equal(_draw([polygon], mask.shape), mask)
    full = np.ones((1, 1), dtype=np.uint8)
    assert mask_to_polygons(full) == [[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]]


def test_empty_mask_gives_no_polygon_and_iou_one_against_empty():
    empty = np.zeros((4, 5), dtype=np.uint8)
    assert mask_to_polygons(empty) == []
    assert polygon_iou([], rle_encode(empty)) == 1.0
    assert not _draw([], (4, 5)).any()


def test_rle_input_equals_array_input():
    rng = np.random.default_rng(3)
    mask = (rng.random((20, 30)) < 0.4).astype(np.uint8)
    assert mask_to_polygons(mask) == mask_to_polygons(rle_encode(mask))


def test_small_parts_are_dropped_but_the_largest_is_kept():
    speckles = _mask(["#.#", "...", "#.#"])
    assert len(mask_to_polygons(speckles, min_area=4)) == 1
    assert len(mask_to_polygons(speckles, min_area=1)) == 4
    blob_and_speck = _mask(["##..#", "##...", "....."])
    assert len(mask_to_polygons(blob_and_speck, min_area=2)) == 1


def test_polygons_with_fewer_than_three_points_draw_nothing():
    # pycocotools would read a 4-number list as a box; we must not.
    assert not _draw([[(0, 0), (3, 3)]], (4, 4)).any()
    assert _draw([[(0, 0), (3, 3)], [(0, 0), (2, 0), (2, 2), (0, 2)]], (4, 4)).sum() == 4


def test_too_few_points_is_refused():
    with pytest.raises(OptionsError, match="max_points"):
        mask_to_polygons(np.ones((2, 2)), max_points=3)
    with pytest.raises(OptionsError, match="two-dimensional"):
        mask_to_polygons(np.ones((2, 2, 2)))


def _disk(h=240, w=320, cx=150.5, cy=110.5, r=80.0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2) < r * r).astype(np.uint8)


def test_simplified_disk_keeps_budget_box_and_shape():
    mask = _disk()
    rle = rle_encode(mask)
    for max_points in (4, 8, 16, 32, 64):
        (polygon,) = mask_to_polygons(rle, max_points)
        assert len(polygon) <= max_points
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        x, y, w, h = rle_bbox(rle)
        assert (min(xs), min(ys), max(xs), max(ys)) == (x, y, x + w, y + h)
    assert polygon_iou(mask_to_polygons(rle, 32), rle) > 0.99
    assert polygon_iou(mask_to_polygons(rle, 8), rle) > 0.9


def test_budget_is_shared_over_parts():
    mask = np.maximum(_disk(cx=60, cy=60, r=40), _disk(cx=220, cy=150, r=60))
    polygons = mask_to_polygons(mask, 32)
    assert len(polygons) == 2
    assert sum(len(p) for p in polygons) <= 32
    assert len(polygons[0]) >= len(polygons[1])  # the bigger disk has the longer outline
    assert polygon_iou(polygons, rle_encode(mask)) > 0.97


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 1))
)
def test_unsimplified_polygons_redraw_the_mask_with_holes_filled(mask):
    polygons = mask_to_polygons(mask, max_points=10_000, min_area=0, tolerance=0.0)
    assert np.array_equal(_draw(polygons, mask.shape), _fill_holes(mask))
    for polygon in polygons:
        assert polygon[0] == min(polygon, key=lambda p: (p[1], p[0]))  # starts top-left


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40)), elements=st.integers(0, 1)),
    st.integers(4, 40),
)
def test_simplified_polygons_respect_the_budget(mask, max_points):
    polygons = mask_to_polygons(mask, max_points)
    assert sum(len(p) for p in polygons) <= max_points
    assert all(len(p) >= 4 for p in polygons)
    if mask.any():
        assert polygons


def test_a_small_object_far_into_a_large_frame_traces_as_at_the_origin_shifted():
    # The tracer works on the mask's extent: the frame around it must change nothing.
    rng = np.random.default_rng(3)
    blob = (rng.random((12, 9)) > 0.35).astype(np.uint8)
    blob[0, 0] = 1
    frame = np.zeros((480, 640), dtype=np.uint8)
    frame[300:312, 500:509] = blob
    at_origin = mask_to_polygons(blob, max_points=64, min_area=1)
    in_frame = mask_to_polygons(frame, max_points=64, min_area=1)
    shifted = [[(x + 500, y + 300) for x, y in polygon] for polygon in at_origin]
    assert in_frame == shifted
    assert mask_to_polygons(np.zeros((480, 640), dtype=np.uint8)) == []
