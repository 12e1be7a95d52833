"""The export writer predict uses (sam2_finetune.ingest.write): what it writes, ingest reads back
unchanged, polygon masks, box masks and empty frames included (no model)."""

from __future__ import annotations

import json

import pytest

from sam2_finetune.answer_formats import AnswerObject
from sam2_finetune.evaluate.predict import object_mask
from sam2_finetune.ingest import read_export
from sam2_finetune.ingest.write import ExportObject, ExportVideo, object_entry, write_annotations
from sam2_finetune.masks import rle_decode

H, W = 40, 60
VIDEO = ExportVideo("clip.mp4", W, H, source_fps=30.0, total_frames=30, target_fps=5.0)


def test_written_exports_read_back_exactly(tmp_path):
    box = AnswerObject("car", (10.2, 5.0, 20.0, 10.4))
    triangle = AnswerObject("roof", (30, 10, 20, 20), [[(30.0, 30.0), (50.0, 30.0), (40.0, 10.0)]])
    frames = [
        (6, [ExportObject(1, "car", object_mask(box, H, W))]),
        (
            0,
            [
                ExportObject(1, "car", object_mask(box, H, W)),
                ExportObject(2, "roof", object_mask(triangle, H, W)),
            ],
        ),
        (12, []),
    ]
    write_annotations(tmp_path / "export", VIDEO, frames, exporter="test")
    with read_export(tmp_path / "export") as export:
        assert [f.frame_index for f in export.frames] == [0, 6, 12]  # sorted, empty one listed
        assert export.video.width == W and export.video.source_fps == 30.0
        assert export.video.target_fps == 5.0 and export.has_metadata
        first = export.frames[0]
        car, roof = first.objects
        assert (car.track_id, car.label, car.bbox) == (1, "car", (10.0, 5.0, 20.0, 10.0))
        assert car.area == 200 and not car.is_empty
        # The polygon's mask, not its box: the triangle covers about half of it.
        assert roof.label == "roof" and 150 <= roof.area <= 250
        assert roof.bbox == pytest.approx((30, 10, 20, 20), abs=1)
        assert (rle_decode(roof.mask) == rle_decode(frames[1][1][1].rle)).all()
        assert export.frames[2].objects == ()
    written = json.loads((tmp_path / "export" / "annotations.json").read_text())
    assert written["export_config"]["frame_indices"] == [0, 6, 12]
    assert written["export_config"]["exporter_version"] == "test"
    assert written["annotations"][1]["timestamp_sec"] == pytest.approx(0.2)
    metadata = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert metadata["statistics"] == {
        "total_frames": 3,
        "total_objects": 3,
        "unique_objects": 2,
        "objects_per_frame": 1.0,
    }
    assert metadata["video"]["fps"] == 30.0


def test_object_entry_box_and_area_come_from_the_mask():
    rle = object_mask(AnswerObject("car", (1.6, 2.4, 3.0, 4.0)), H, W)
    entry = object_entry(ExportObject(7, "car", rle))
    assert entry["bbox"] == [2, 2, 3, 4] and entry["area"] == 12
    assert entry["mask_rle"] == {"size": [H, W], "counts": rle["counts"]}
    assert entry["object_id"] == 7 and entry["confidence"] is None
