"""Track ids from frame to frame, the masks of predicted boxes, and the video sampling rule, on
hand-made boxes (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from sam2_finetune.answer_formats import AnswerObject
from sam2_finetune.evaluate.predict import box_to_rle, frame_indices_at, natural_key, object_mask
from sam2_finetune.evaluate.tracking import IouTracker, box_iou
from sam2_finetune.masks import rle_bbox, rle_decode


def car(x: float, y: float = 10.0, w: float = 20.0, h: float = 10.0) -> AnswerObject:
    return AnswerObject("car", (x, y, w, h))


def test_box_iou_known_values():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0  # touching edges share no area
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_a_moving_object_keeps_its_id():
    tracker = IouTracker()
    ids = [tracker.update([car(x)]) for x in (0, 4, 8, 12, 16)]
    assert ids == [[1]] * 5


def test_an_appearing_object_gets_a_new_id_and_a_leaving_one_ends():
    tracker = IouTracker(max_gap=0)
    assert tracker.update([car(0)]) == [1]
    # A person appears far away; the car moves on.
    assert tracker.update([car(3), AnswerObject("person", (60, 0, 10, 30))]) == [1, 2]
    # The car leaves; the person stays.
    assert tracker.update([AnswerObject("person", (61, 1, 10, 30))]) == [2]
    assert tracker.update([AnswerObject("person", (62, 2, 10, 30))]) == [2]
    # With max_gap=0 a car showing up again where the old one was is a new track.
    assert tracker.update([car(3)]) == [3]


def test_a_missed_frame_within_max_gap_keeps_the_id():
    tracker = IouTracker(max_gap=2)
    assert tracker.update([car(0)]) == [1]
    assert tracker.update([]) == []
    assert tracker.update([]) == []
    assert tracker.update([car(2)]) == [1]  # unseen 2 frames: still the same track
    assert tracker.update([]) == [] and tracker.update([]) == [] and tracker.update([]) == []
    assert tracker.update([car(4)]) == [2]  # unseen 3 frames: a new one


def test_two_objects_of_one_label_crossing_keep_their_ids():
    # A moves right on the upper lane, B left on the lower lane; mid-way their boxes overlap
    # as much as each overlaps its own previous box's neighbour, but less than its own.
    tracker = IouTracker()
    seen = []
    for step in range(9):
        a = car(10 + 10 * step, y=10, h=20)
        b = car(90 - 10 * step, y=20, h=20)
        if step % 2:  # the answer order changes from frame to frame: the ids must not
            id_a, id_b = tracker.update([a, b])
        else:
            id_b, id_a = tracker.update([b, a])
        seen.append((id_a, id_b))
    assert seen == [(2, 1)] * 9
    # They really crossed: at step 4 both sit at x = 50 with IoU above the threshold.
    assert box_iou(car(50, 10, h=20).bbox, car(50, 20, h=20).bbox) > tracker.iou_threshold


def test_labels_never_share_a_track():
    tracker = IouTracker()
    assert tracker.update([car(0)]) == [1]
    assert tracker.update([AnswerObject("truck", car(0).bbox)]) == [2]


def test_below_the_threshold_is_a_new_track():
    tracker = IouTracker(iou_threshold=0.5)
    assert tracker.update([car(0)]) == [1]
    assert tracker.update([car(8)]) == [2]  # IoU 12/28 = 0.43


def test_box_to_rle_rounds_to_the_pixel_grid_and_clips():
    rle = box_to_rle((2.4, 3.6, 5.2, 2.0), 10, 12)
    assert rle_bbox(rle) == (2.0, 4.0, 6.0, 2.0)
    mask = rle_decode(box_to_rle((-5, -5, 100, 100), 10, 12))
    assert mask.shape == (10, 12) and mask.all()
    tiny = rle_decode(box_to_rle((3.0, 3.0, 0.1, 0.1), 10, 12))
    assert int(tiny.sum()) == 1  # never an empty (lost-looking) mask


def test_object_mask_rasterises_polygons_and_falls_back_to_the_box():
    triangle = AnswerObject("car", (0, 0, 10, 10), [[(0, 0), (10, 0), (0, 10)]])
    mask = rle_decode(object_mask(triangle, 10, 10))
    assert 40 <= int(mask.sum()) <= 60 and mask[0, 0] and not mask[9, 9]
    degenerate = AnswerObject("car", (1, 1, 3, 3), [[(1, 1), (2, 2), (3, 3)]])
    assert int(np.asarray(rle_decode(object_mask(degenerate, 10, 10))).sum()) == 9


def test_frame_indices_at_follows_the_demo_rule():
    assert frame_indices_at(30, 30.0, 5.0) == [0, 6, 12, 18, 24]
    assert frame_indices_at(5, 10.0, 100.0) == [0, 1, 2, 3, 4]  # at most every frame
    assert frame_indices_at(10, 25.0, 10.0) == [0, 3, 5, 8]  # 2.5 frames apart, rounded
    assert frame_indices_at(0, 30.0, 5.0) == []


def test_natural_order():
    names = ["img10.png", "img2.png", "img1.png", "Img3.png"]
    assert sorted(names, key=natural_key) == ["img1.png", "img2.png", "Img3.png", "img10.png"]
