"""The synthetic writer emits exactly the SAM2 export schema, read back by ingest as intended."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from sam2_finetune.ingest import read_export
from sam2_finetune.masks import encode_counts, parse_counts, rle_decode
from sam2_finetune.testing.synthetic import (
    TrackSpec,
    sam2_count_string,
    sampled_frame_indices,
    write_export,
    write_large_export,
)

CAR = TrackSpec(1, "car", "rect", (200, 40, 40), (0.2, 0.6), (0.05, 0.0), (0.25, 0.2))
PERSON = TrackSpec(
    2,
    "person",
    "ellipse",
    (40, 40, 200),
    (0.7, 0.4),
    (0.0, 0.0),
    (0.1, 0.3),
    hidden=((12, 24),),
    renamed=(120, "Person"),
)
TRACKS = [CAR, PERSON]


def _digest(path: Path) -> str:
    if path.is_dir():
        h = hashlib.sha1()
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(path).as_posix().encode() + p.read_bytes())
        return h.hexdigest()
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _annotations(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("annotations.json"))


def test_sampled_frame_indices():
    assert sampled_frame_indices(240, 30.0, 5.0) == list(range(0, 240, 6))
    # round(k * 30 / 7): 0, 4.29, 8.57, 12.86, 17.14, 21.43, 25.71
    assert sampled_frame_indices(30, 30.0, 7.0) == [0, 4, 9, 13, 17, 21, 26]


def test_schema_is_exactly_the_demos(tmp_path):
    path = write_export(tmp_path / "e.zip", TRACKS, empty_frames=[6])
    data = _annotations(path)
    assert set(data) == {"video", "export_config", "annotations"}
    assert data["video"] == {
        "filename": "session_0000.mp4",
        "width": 320,
        "height": 240,
        "source_fps": 30.0,
        "total_frames": 240,
        "duration_sec": 8.0,
    }
    config = data["export_config"]
    assert set(config) == {
        "target_fps",
        "total_exported_frames",
        "frame_indices",
        "export_timestamp",
        "exporter_version",
    }
    assert config["frame_indices"] == list(range(0, 240, 6))
    assert config["total_exported_frames"] == 40 == len(data["annotations"])
    frame = data["annotations"][2]
    assert frame["frame_index"] == 12 and frame["timestamp_sec"] == pytest.approx(0.4)
    assert data["annotations"][1] == {"frame_index": 6, "timestamp_sec": 0.2, "objects": []}
    car = frame["objects"][0]
    assert set(car) == {"object_id", "label", "mask_rle", "bbox", "area", "confidence"}
    assert car["confidence"] == 0.95
    counts = parse_counts(car["mask_rle"])
    assert counts.sum() == 256 * 256
    rle = encode_counts(counts, 256, 256)
    assert car["bbox"] == [int(v) for v in coco_mask.toBbox(_coco(rle))]
    assert car["area"] == int(counts[1::2].sum()) > 0
    # The person is hidden in [12, 24): listed with an empty mask.
    person = frame["objects"][1]
    assert (person["mask_rle"], person["bbox"], person["area"]) == ("65536", [0, 0, 0, 0], 0)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        meta = json.loads(archive.read("metadata.json"))
    assert meta["video"]["fps"] == 30.0 and "source_fps" not in meta["video"]
    assert meta["statistics"]["total_objects"] == 39 * 2
    # Images only for frames with objects, named by frame index.
    assert "images/frame_000000.png" in names and "images/frame_000006.png" not in names
    assert sum(n.startswith("images/") for n in names) == 39


def _coco(rle):
    return {"size": rle["size"], "counts": rle["counts"].encode()}


def test_read_back_by_ingest(tmp_path):
    path = write_export(tmp_path / "e.zip", TRACKS, empty_frames=[6])
    export = read_export(path)
    assert export.frame_indices == list(range(0, 240, 6))
    assert export.image_kind == "overlay" and export.has_metadata
    empty = export.frames[1]
    assert empty.is_empty and empty.image is None
    for frame in export.frames:
        if frame.is_empty:
            continue
        t = frame.frame_index / 30.0
        car = frame.objects[0]
        # Expected box from the track's geometry, in video pixels; the 256 x 256 mask costs
        # up to one 256-pixel (320 / 256 = 1.25 video pixels) on each side.
        x0, y0, x1, y1 = CAR.box_at(t)
        expected = (x0 * 320, y0 * 240, (x1 - x0) * 320, (y1 - y0) * 240)
        assert car.label == "car" and not car.is_empty
        assert car.bbox == pytest.approx(expected, abs=2.6)
        person = frame.objects[1]
        assert person.is_empty == (12 <= frame.frame_index < 24)
        assert person.label == ("Person" if frame.frame_index >= 120 else "person")
    export.close()


def test_overlay_and_raw_frames(tmp_path):
    path = write_export(tmp_path / "e.zip", TRACKS, raw_frames_dir=tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir())[:2] == [
        "frame_000000.png",
        "frame_000006.png",
    ]
    overlay = np.asarray(read_export(path).frames[0].image.open())
    raw_export = read_export(path, frames=tmp_path / "raw")
    assert raw_export.image_kind == "raw"
    raw = np.asarray(raw_export.frames[0].image.open())
    # Inside the car: the raw frame shows its colour, the overlay blends 30 % of the palette's.
    cx, cy = int(0.2 * 320), int(0.6 * 240)
    assert tuple(raw[cy, cx]) == CAR.color
    expected = np.round(0.7 * np.array(CAR.color) + 0.3 * np.array((30, 144, 255)))
    assert np.abs(overlay[cy, cx].astype(int) - expected).max() <= 1
    # Outside every object the two agree, except where label text is burned in.
    assert (overlay[230:, :] == raw[230:, :]).all()


@pytest.mark.parametrize("form", ["coco_compressed", "coco_uncompressed"])
def test_coco_mask_forms(tmp_path, form):
    path = write_export(tmp_path / "e.zip", TRACKS, mask_form=form)
    obj = _annotations(path)["annotations"][0]["objects"][0]
    assert obj["mask_rle"]["size"] == [240, 320]
    assert isinstance(obj["mask_rle"]["counts"], str if form == "coco_compressed" else list)
    export = read_export(path)
    car = export.frames[0].objects[0]
    assert car.mask_form == form and car.mask_size == (240, 320)
    assert car.area == obj["area"] == int(rle_decode(car.mask).sum())
    assert car.bbox == tuple(float(v) for v in obj["bbox"])
    hidden = export.frames[2].objects[1]
    assert hidden.is_empty and obj["area"] > 0


@pytest.mark.parametrize("layout", ["zip", "folder", "rezipped", "nested_zip"])
def test_layouts_are_deterministic_and_readable(tmp_path, layout):
    name = "e" if layout == "folder" else "e.zip"
    kwargs = {"layout": layout, "empty_frames": [0], "duration_sec": 2.0}
    a = write_export(tmp_path / "a" / name, TRACKS, **kwargs)
    b = write_export(tmp_path / "b" / name, TRACKS, **kwargs)
    assert _digest(a) == _digest(b)
    export = read_export(a)
    assert export.frame_indices == list(range(0, 60, 6))
    assert export.frames[0].is_empty and len(export.frames[1].objects) == 2
    assert sorted(export.images) == list(range(6, 60, 6))
    if layout == "rezipped":
        with zipfile.ZipFile(a) as archive:
            names = archive.namelist()
        assert "e (copy)/annotations.json" in names
        assert any(n.startswith("__MACOSX/") for n in names)
        assert any(n.endswith(".DS_Store") for n in names)
    if layout == "nested_zip":
        with zipfile.ZipFile(a) as archive:
            assert [n for n in archive.namelist() if n.endswith(".zip")]


def test_seed_and_arguments_change_output(tmp_path):
    a = write_export(tmp_path / "a.zip", TRACKS, duration_sec=1.0, seed=0)
    b = write_export(tmp_path / "b.zip", TRACKS, duration_sec=1.0, seed=1)
    assert _digest(a) != _digest(b)


def test_jpg_frames_dir_no_metadata(tmp_path):
    path = write_export(
        tmp_path / "e.zip",
        TRACKS,
        width=384,
        height=216,
        image_format="jpg",
        image_dir="frames",
        image_name="{:06d}",
        with_metadata=False,
        duration_sec=2.0,
    )
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        image = Image.open(io.BytesIO(archive.read("frames/000006.jpg")))
    assert "metadata.json" not in names
    assert image.format == "JPEG" and image.size == (384, 216)
    export = read_export(path)
    assert not export.has_metadata and export.images[6].format == "jpeg"
    assert export.frames[1].image.open().size == (384, 216)


def test_object_leaving_the_frame_is_lost(tmp_path):
    fast = TrackSpec(1, "car", "rect", (1, 2, 3), (0.8, 0.5), (0.5, 0.0), (0.1, 0.1))
    data = _annotations(write_export(tmp_path / "e.zip", [fast], duration_sec=1.0))
    areas = [f["objects"][0]["area"] for f in data["annotations"]]
    assert areas[0] > 0 and areas[-1] == 0  # gone past the right edge by t = 0.8 s
    assert data["annotations"][-1]["objects"][0]["mask_rle"] == "65536"


def test_occlusion_removes_the_covered_part(tmp_path):
    under = TrackSpec(1, "box", "rect", (1, 2, 3), (0.5, 0.5), (0.0, 0.0), (0.2, 0.2))
    over = TrackSpec(2, "cover", "rect", (4, 5, 6), (0.5, 0.5), (0.0, 0.0), (0.4, 0.4))
    data = _annotations(write_export(tmp_path / "e.zip", [under, over], duration_sec=0.2))
    box, cover = data["annotations"][0]["objects"]
    assert box["area"] == 0 and cover["area"] > 0


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="not listed"):
        write_export(tmp_path / "e.zip", TRACKS, empty_frames=[7])
    with pytest.raises(ValueError, match="distinct"):
        write_export(tmp_path / "e.zip", [CAR, CAR])


def test_sam2_count_string():
    mask = np.zeros((256, 256), np.uint8)
    assert sam2_count_string(mask) == "65536"
    mask[2:4, 0] = 1  # column-major: rows 2-3 of the first column
    assert sam2_count_string(mask) == f"2 2 {65536 - 4}"


def test_large_export(tmp_path):
    a = write_large_export(tmp_path / "a.zip", n_frames=60, n_objects=4, width=640, height=360)
    b = write_large_export(tmp_path / "b.zip", n_frames=60, n_objects=4, width=640, height=360)
    assert _digest(a) == _digest(b)
    data = _annotations(a)
    assert len(data["annotations"]) == 60
    runs, empties = [], 0
    for frame in data["annotations"]:
        for obj in frame["objects"]:
            counts = parse_counts(obj["mask_rle"])
            assert counts.sum() == 65536
            if obj["area"] == 0:
                empties += 1
                continue
            runs.append(counts.size)
            # The stated bbox and area are the mask's own.
            mask = rle_decode(encode_counts(counts, 256, 256))
            ys, xs = np.nonzero(mask)
            bbox = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert obj["bbox"] == [int(v) for v in bbox]
            assert obj["area"] == int(mask.sum())
    assert empties == 60 * 4 // 50
    assert 100 <= np.median(runs) <= 400
    export = read_export(a)
    assert len(export.images) == 60 and export.frames[59].objects[0].mask["size"] == [360, 640]


@pytest.mark.parametrize("n_frames", [200, 2000])
def test_large_export_costs_do_not_grow_with_the_frames(tmp_path, monkeypatch, n_frames):
    """Why ``write_large_export`` takes seconds, asserted by counting (not timing, which fails
    under load): each blob's mask is encoded once and the backgrounds are drawn and PNG-encoded
    four times whatever the frame count; per frame only JSON text and stored ZIP members are
    written. The time itself is measured by ``benchmarks/bench_synthetic.py``."""
    from collections import Counter

    from sam2_finetune.testing import synthetic

    calls: Counter[str] = Counter()
    for name in ("rle_encode", "_background", "_encode_image"):
        real = getattr(synthetic, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(synthetic, name, counted)
    path = write_large_export(tmp_path / "big.zip", n_frames=n_frames)  # 8 objects, 1280 x 720
    assert calls == {"rle_encode": 8, "_background": 4, "_encode_image": 4}
    assert len(_annotations(path)["annotations"]) == n_frames
    with zipfile.ZipFile(path) as archive:
        images = [i for i in archive.infolist() if i.filename.startswith("images/")]
    assert len(images) == n_frames
    assert {i.compress_type for i in images} == {zipfile.ZIP_STORED}
