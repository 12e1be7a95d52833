"""Reading SAM2 exports: every mask form and layout, the canonical record, errors, hostile files."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import tracemalloc
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from conftest import (  # tests/ is on sys.path (pytest's default prepend import mode)
    SQUARE,
    VIDEO_H,
    VIDEO_W,
    RawMember,
    build_export,
    crc32_of_zeros,
    deflated_zeros,
    forged_size_zip,
    jpg_bytes,
    mask_counts,
    png_bytes,
    rect_mask,
    sam2_object,
    write_raw_zip,
    write_zip,
    zip_bomb,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from sam2_finetune import ingest
from sam2_finetune.cli import main
from sam2_finetune.errors import ExportError, MaskError, Sam2FinetuneError, UnsafeArchiveError
from sam2_finetune.ingest import (
    ArchiveLimits,
    Export,
    InfoOptions,
    format_summary,
    info,
    read_export,
    read_exports,
    summarize_export,
)
from sam2_finetune.ingest import read as ingest_read
from sam2_finetune.masks import rle_bbox, rle_decode, rle_encode
from sam2_finetune.testing.synthetic import TrackSpec, write_export


def nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    src_h, src_w = mask.shape
    rows = ((2 * np.arange(height) + 1) * src_h) // (2 * height)
    cols = ((2 * np.arange(width) + 1) * src_w) // (2 * width)
    return mask[rows][:, cols]


def one_frame(*objects: dict) -> list[dict]:
    return [{"frame_index": 0, "timestamp_sec": 0.0, "objects": list(objects)}]


def only_object(path: Path, **kwargs) -> ingest.ObjectAnnotation:
    with read_export(path, **kwargs) as export:
        return export.frames[0].objects[0]


# --------------------------------------------------------------------------------------------
# The canonical record
# --------------------------------------------------------------------------------------------


def test_canonical_record_of_a_sam2_export(make_export):
    with read_export(make_export()) as export:
        video = export.video
        assert (video.file_name, video.width, video.height) == ("session_ab12.mp4", 64, 48)
        assert video.fps == 25.0 and video.source_fps == 30.0  # metadata.json's fps wins
        assert video.target_fps == 5.0 and video.total_frames == 12
        assert video.video_id.startswith("export-") and len(video.video_id) == len("export-") + 8
        assert export.has_metadata and export.image_kind == "overlay"
        first, second = export.frames
        car, person = first.objects
        expected = nearest(SQUARE, VIDEO_H, VIDEO_W)
        assert car.mask is not None and car.mask["size"] == [VIDEO_H, VIDEO_W]
        assert np.array_equal(rle_decode(car.mask), expected)
        assert car.area == expected.sum() and not car.is_empty
        assert car.bbox == rle_bbox(car.mask)  # the mask's own box, in image pixels
        assert (car.track_id, car.label, car.mask_form, car.mask_size) == (
            1, "car", "sam2_string", (256, 256)
        )  # fmt: skip
        # A lost object stays, flagged, with an empty mask at image size.
        assert person.is_empty and person.area == 0 and person.bbox == (0.0, 0.0, 0.0, 0.0)
        assert rle_decode(person.mask).sum() == 0 and person.mask["size"] == [48, 64]
        assert first.image is not None and first.image.is_overlay
        assert first.image.open().size == (8, 6)
        assert first.visible_objects == (car,)
        # Frames listed with no objects are kept, flagged, without image.
        assert second.frame_index == 6 and second.is_empty and second.image is None
        assert second.timestamp_sec == 0.2


def test_boxes_follow_the_256_space_scaling(make_export):
    """The export's box is in 256-space; the canonical box is the rescaled mask's, which agrees
    with the export's box scaled by width/256 and height/256 to within one source pixel."""
    mask = rect_mask(256, 256, 33, 101, 17, 203)
    path = make_export(
        frames=one_frame(sam2_object(3, "bus", mask)), video={"width": 1280, "height": 720}
    )
    obj = only_object(path)
    x, y, w, h = sam2_object(3, "bus", mask)["bbox"]
    sx, sy = 1280 / 256, 720 / 256
    assert obj.bbox == pytest.approx((x * sx, y * sy, w * sx, h * sy), abs=max(sx, sy))
    assert obj.area == nearest(mask, 720, 1280).sum()


@pytest.mark.parametrize(
    "mask_value, form, size",
    [
        (lambda m: " ".join(map(str, mask_counts(m))), "sam2_string", (256, 256)),
        (lambda m: " ".join(map(str, mask_counts(m[::2, ::2]))), "sam2_string", (128, 128)),
        (lambda m: rle_encode(nearest(m, 48, 64))["counts"], "coco_compressed", (48, 64)),
        (
            lambda m: {"size": [48, 64], "counts": rle_encode(nearest(m, 48, 64))["counts"]},
            "coco_compressed",
            (48, 64),
        ),
        (
            lambda m: {"size": [256, 256], "counts": rle_encode(m)["counts"]},
            "coco_compressed",
            (256, 256),
        ),
        (
            lambda m: {"size": [24, 32], "counts": mask_counts(nearest(m, 24, 32)).tolist()},
            "coco_uncompressed",
            (24, 32),
        ),
        (  # a count string at the video's own size
            lambda m: " ".join(map(str, mask_counts(nearest(m, 48, 64)))),
            "sam2_string",
            (48, 64),
        ),
        (  # a count string at half the video's size: inferred from the aspect ratio
            lambda m: " ".join(map(str, mask_counts(nearest(m, 24, 32)))),
            "sam2_string",
            (24, 32),
        ),
    ],
    ids=[
        "sam2-256",
        "string-128-square",
        "bare-compressed",
        "coco-compressed-video-size",
        "coco-compressed-256",
        "coco-uncompressed-other-size",
        "string-video-size",
        "string-inferred-aspect",
    ],
)
def test_every_mask_form_is_detected_and_rescaled(make_export, mask_value, form, size):
    value = mask_value(SQUARE)
    path = make_export(frames=one_frame({"object_id": 1, "label": "car", "mask_rle": value}))
    obj = only_object(path)
    assert (obj.mask_form, obj.mask_size) == (form, size)
    source = rle_decode(
        {"size": list(size), "counts": rle_encode(nearest(SQUARE, *size))["counts"]}
    )
    assert np.array_equal(rle_decode(obj.mask), nearest(source, VIDEO_H, VIDEO_W))
    assert obj.bbox == rle_bbox(obj.mask) and obj.area == rle_decode(obj.mask).sum()


def test_forms_mix_within_one_frame_and_keep_their_order(make_export):
    objects = [
        sam2_object(5, "a", SQUARE),
        {"object_id": 2, "label": "b", "segmentation": rle_encode(nearest(SQUARE, 48, 64))},
        sam2_object(9, "c", np.zeros((256, 256), np.uint8)),
        {"object_id": 4, "label": "d", "mask": {"size": [48, 64], "counts": [3072]}},
    ]
    with read_export(make_export(frames=one_frame(*objects))) as export:
        got = [(o.track_id, o.mask_form, o.is_empty) for o in export.frames[0].objects]
    assert got == [
        (5, "sam2_string", False),
        (2, "coco_compressed", False),
        (9, "sam2_string", True),
        (4, "coco_uncompressed", True),
    ]


def test_masks_that_vanish_when_downscaled_are_empty(make_export):
    dot = rect_mask(256, 256, 100, 101, 100, 101)
    path = make_export(
        frames=one_frame(sam2_object(1, "dot", dot)), video={"width": 16, "height": 16}
    )
    obj = only_object(path)
    assert obj.is_empty and obj.area == 0 and obj.bbox == (0.0, 0.0, 0.0, 0.0)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    masks_=st.lists(arrays(np.uint8, (16, 16), elements=st.integers(0, 1)), min_size=1, max_size=4),
    size=st.tuples(st.integers(5, 60), st.integers(5, 60)),
)
def test_canonical_masks_equal_the_pycocotools_reference(tmp_path_factory, masks_, size):
    height, width = size
    objects = [
        {"object_id": i, "label": "x", "mask_rle": " ".join(map(str, mask_counts(m)))}
        for i, m in enumerate(masks_)
    ]
    root = tmp_path_factory.mktemp("prop")
    path = build_export(root, frames=one_frame(*objects), video={"width": width, "height": height})
    with read_export(path) as export:
        for mask, obj in zip(masks_, export.frames[0].objects, strict=True):
            scaled = nearest(mask, height, width)
            assert obj.mask == rle_encode(scaled)
            assert obj.area == scaled.sum() and obj.is_empty == (scaled.sum() == 0)
            if obj.area:
                assert (
                    list(obj.bbox)
                    == coco_mask.toBbox(coco_mask.encode(np.asfortranarray(scaled))).tolist()
                )


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def test_frames_sorted_duplicates_kept_timestamps_filled(make_export):
    frames = [
        {"frame_index": 12, "timestamp_sec": 0.4, "objects": [sam2_object(1, "car", SQUARE)]},
        {"frame_index": 0, "objects": [sam2_object(1, "car", SQUARE)]},  # no timestamp
        {"frame_index": 6, "timestamp_sec": None, "objects": []},
        {"frame_index": 12, "timestamp_sec": 0.4, "objects": []},  # listed twice
    ]
    with read_export(make_export(frames=frames, metadata=None)) as export:
        assert [f.frame_index for f in export.frames] == [0, 6, 12, 12]
        assert [f.timestamp_sec for f in export.frames] == [0.0, 0.2, 0.4, 0.4]
        assert [len(f.objects) for f in export.frames] == [1, 0, 1, 0]
        assert export.written_order == [12, 0, 6, 12]
        assert not export.has_metadata and export.video.fps == 30.0


def test_frame_access_by_iteration_index_and_slice_agree(make_export):
    """More frames than one conversion chunk, read in order, at random and backwards."""
    frames = [
        {"frame_index": 6 * i, "objects": [sam2_object(1, "car", np.roll(SQUARE, 4 * i, axis=1))]}
        for i in range(40)
    ]
    with read_export(make_export(frames=frames)) as export:
        iterated = list(export.frames)
        assert len(export.frames) == 40
        assert [export.frames[i] for i in range(40)] == iterated
        assert [export.frames[i] for i in (39, 3, 17, 16, 15, -1)] == [
            iterated[i] for i in (39, 3, 17, 16, 15, -1)
        ]
        assert export.frames[5:25] == iterated[5:25]
        assert len({o.mask["counts"] for f in iterated for o in f.objects}) == 40
        with pytest.raises(IndexError):
            export.frames[40]


@pytest.mark.parametrize(
    "images, expected",
    [
        ({"images/frame_000000.png": png_bytes()}, "images/frame_000000.png"),
        ({"frames/frame_0000.jpg": jpg_bytes()}, "frames/frame_0000.jpg"),
        ({"data/000000.jpeg": jpg_bytes()}, "data/000000.jpeg"),
        ({"000000.png": png_bytes()}, "000000.png"),
        (  # images/ wins over frames/, PNG over JPG
            {
                "frames/frame_000000.png": png_bytes(),
                "images/frame_000000.jpg": jpg_bytes(),
                "images/frame_000000.png": png_bytes(),
            },
            "images/frame_000000.png",
        ),
    ],
)
def test_images_are_found_wherever_and_however_named(make_export, images, expected):
    with read_export(make_export(images=images)) as export:
        image = export.frames[0].image
        assert image is not None and image.location.endswith("!" + expected)
        assert image.format == ("png" if expected.endswith(".png") else "jpeg")
        assert image.open().mode == "RGB"


@pytest.mark.parametrize("layout", ["zip", "folder", "rezipped", "nested", "subfolder"])
def test_layouts_read_the_same(make_export, layout):
    with read_export(
        make_export("x" if layout in ("folder", "subfolder") else "x.zip", layout=layout)
    ) as export:
        frames = list(export.frames)
        assert [f.frame_index for f in frames] == [0, 6]
        assert frames[0].image is not None and frames[0].image.read_bytes() == png_bytes()
        assert frames[0].objects[0].area > 0
        # macOS junk (__MACOSX/, .DS_Store) is never taken for an export member.
        assert not any(
            "MACOSX" in ref.location or "DS_Store" in ref.location for ref in export.images.values()
        )


def test_synthetic_exports_in_every_layout_and_form(tmp_path):
    car = TrackSpec(1, "car", "rect", (200, 40, 40), (0.3, 0.6), (0.05, 0.0), (0.25, 0.2))
    person = TrackSpec(2, "person", "ellipse", (40, 40, 200), (0.7, 0.4), (0.0, 0.0), (0.1, 0.3))
    reference = None
    for layout in ("zip", "folder", "rezipped", "nested_zip"):
        for form in ("sam2_string", "coco_compressed", "coco_uncompressed"):
            if layout != "zip" and form != "sam2_string":
                continue
            out = tmp_path / f"{layout}_{form}{'' if layout == 'folder' else '.zip'}"
            write_export(
                out,
                [car, person],
                layout=layout,
                mask_form=form,
                image_format="jpg",
                image_dir="frames",
                duration_sec=2.0,
            )
            with read_export(out) as export:
                records = [
                    (f.frame_index, [(o.track_id, o.area > 0) for o in f.objects])
                    for f in export.frames
                ]
                assert all(
                    f.image is not None and f.image.format == "jpeg"
                    for f in export.frames
                    if f.objects
                )
            reference = reference or records
            assert records == reference


def test_missing_metadata_json(make_export):
    with read_export(make_export(metadata=None)) as export:
        assert not export.has_metadata and export.video.fps == 30.0
        assert "metadata.json is missing" in format_summary(summarize_export(export))


# --------------------------------------------------------------------------------------------
# Several exports, raw frames
# --------------------------------------------------------------------------------------------


def test_several_exports_get_distinct_stable_ids(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build_export(tmp_path / "a", "sam2_export.zip")
    other = build_export(
        tmp_path / "b", "sam2_export.zip", frames=one_frame(sam2_object(1, "x", SQUARE))
    )
    exports = read_exports([first, other, first, first])
    ids = [e.video.video_id for e in exports]
    for e in exports:
        e.close()
    assert len(set(ids)) == 4
    assert ids[2] == ids[0] + "-2" and ids[3] == ids[0] + "-3"
    assert ids[0] != ids[1]  # same file name, different content
    again = read_exports([first, other, first, first])
    assert [e.video.video_id for e in again] == ids  # stable across runs
    assert isinstance(again[2], Export)
    assert [f.objects for f in again[2].frames] == [f.objects for f in again[0].frames]
    for e in again:
        e.close()


def test_read_exports_checks_frames_count(make_export):
    with pytest.raises(ExportError, match="one raw-frames source is needed per export"):
        read_exports([make_export()], frames=[None, None])


def test_raw_frames_folder_replaces_overlays(tmp_path, make_export):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in (0, 6):
        (raw / f"frame_{i:06d}.png").write_bytes(png_bytes(color=(i, i, i)))
    with read_export(make_export(), frames=raw) as export:
        assert export.image_kind == "raw"
        assert [f.image is not None and not f.image.is_overlay for f in export.frames] == [
            True,
            True,
        ]
        assert export.frames[1].image.read_bytes() == png_bytes(color=(6, 6, 6))


def test_info_notes_raw_frames_that_are_missing(tmp_path, make_export, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "frame_000000.png").write_bytes(png_bytes())  # frame 6 is missing
    assert main(["info", str(make_export()), "--frames", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "2 listed, 1 with objects, 1 with images" in out and "raw frames" in out
    assert "the raw frames lack 1 listed frame(s)" in out
    (raw / "frame_000006.png").write_bytes(png_bytes())
    assert main(["info", str(make_export()), "--frames", str(raw)]) == 0
    assert "lack" not in capsys.readouterr().out


def test_raw_frames_numbered_from_one_get_the_ffmpeg_hint(tmp_path, make_export):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in (1, 7):  # ffmpeg numbers extracted frames from 1
        (raw / f"{i:06d}.png").write_bytes(png_bytes())
    with pytest.raises(ExportError) as error:
        read_export(make_export(), frames=raw)
    message = str(error.value)
    assert "lacks 2 of the 2 frames" in message and "-start_number 0" in message
    assert "frame 0" in message
    # Not strict (validate): frames without a raw image get none instead of an error.
    (raw / "000006.png").write_bytes(png_bytes())
    with read_export(make_export("b.zip"), frames=raw, strict=False) as export:
        assert [f.image is not None for f in export.frames] == [False, True]


# --------------------------------------------------------------------------------------------
# Errors: one family, every message says where, what, and what to do
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, found",
    [
        ("1 2 3", "3 runs adding up to 6"),
        ("11179 1 255 x", "neither"),
        ({"counts": "abc"}, "[height, width]"),
        ({"size": [48, 64], "counts": [1.5, 3070.5]}, "integers"),
        ({"size": [48, 64], "counts": [3072, -1, 1]}, "negative"),
        ({"size": [48, 64], "counts": [100]}, "48 x 64 = 3072"),
        ({"size": [48, 64], "counts": "0 1"}, "cannot be decoded"),
        (42, "int"),
        (None, "nothing"),
    ],
)
def test_broken_masks_name_archive_member_frame_object_and_fix(make_export, value, found):
    obj = {"object_id": 7, "label": "car"}
    if value is not None:
        obj["mask_rle"] = value
    path = make_export(frames=[{"frame_index": 18, "objects": [obj]}])
    with pytest.raises(MaskError) as error, read_export(path) as export:
        list(export.frames)
    message = str(error.value)
    assert message.startswith(f"{path}!annotations.json, frame 18, object 7")
    assert found in message and "expected" in message and "Fix:" in message
    # strict=False (validate): the object carries the message instead.
    with read_export(path, strict=False) as export:
        (broken,) = export.frames[0].objects
    assert broken.error == message and broken.mask is None and broken.track_id == 7


def test_a_broken_frame_raises_only_when_it_is_read(make_export):
    """Frames are converted in chunks, but a broken mask surfaces at its own frame."""
    frames = [{"frame_index": 6 * i, "objects": [sam2_object(1, "car", SQUARE)]} for i in range(20)]
    frames[5]["objects"].append({"object_id": 2, "label": "x", "mask_rle": "1 2 3"})
    with read_export(make_export(frames=frames)) as export:
        assert [export.frames[i].frame_index for i in range(5)] == [0, 6, 12, 18, 24]
        with pytest.raises(MaskError, match="frame 30, object 2"):
            export.frames[5]
        assert export.frames[6].frame_index == 36
        read = []
        with pytest.raises(MaskError, match="frame 30, object 2"):
            for frame in export.frames:
                read.append(frame.frame_index)
        assert read == [0, 6, 12, 18, 24]


@pytest.mark.parametrize(
    "obj, problem",
    [
        ("not an object", "is not a JSON object"),
        ({"label": "car", "mask_rle": "65536"}, "no integer object_id"),
    ],
)
def test_broken_object_entries(make_export, obj, problem):
    path = make_export(frames=one_frame(obj))
    with pytest.raises(ExportError, match=problem), read_export(path) as export:
        list(export.frames)
    with read_export(path, strict=False) as export:
        (broken,) = export.frames[0].objects
        assert problem in broken.error and broken.track_id == -1
        assert summarize_export(export).broken_masks == 1


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[]", "has no 'annotations' list"),
        (b'{"annotations": {}}', "has no 'annotations' list"),
        (b'{"video": {"width": 64, "height": 0}, "annotations": []}', "video size is missing"),
        (b'{"video": {"width": true, "height": 2}, "annotations": []}', "video size is missing"),
        (b'{"video": {"width": 4, "height": 2}, "annotations": [{"objects": []}]}', "frame_index"),
        (
            b'{"video": {"width": 4, "height": 2}, "annotations": [{"frame_index": -6}]}',
            "frame_index",
        ),
        (b'{"video": {"width": 4, "height": 2}, "annotations": [7]}', "frame entry #0"),
        (
            b'{"video": {"width": 4, "height": 2}, '
            b'"annotations": [{"frame_index": 0, "objects": {}}]}',
            "'objects' is not a list",
        ),
    ],
)
def test_damaged_annotations_json(make_export, content, problem):
    path = make_export(annotations_bytes=content)
    with pytest.raises(ExportError) as error:
        read_export(path)
    message = str(error.value)
    assert problem in message and f"{path}!annotations.json" in message and "Fix:" in message


def test_nan_and_infinity_are_no_numbers(make_export, capsys):
    """json.loads reads NaN/Infinity; they must not become an fps, a timestamp, or invalid JSON."""
    text = json.dumps(
        {
            "video": {"width": 64, "height": 48, "source_fps": float("nan")},
            "annotations": [
                {"frame_index": 6, "timestamp_sec": float("inf"), "objects": []},
            ],
        }
    )
    assert "NaN" in text and "Infinity" in text
    path = make_export(annotations_bytes=text.encode(), metadata=False)
    with read_export(path) as export:
        assert export.video.fps is None and export.video.source_fps is None
        assert export.frames[0].timestamp_sec == 0.0
    assert main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON output")

    (summary,) = json.loads(out, parse_constant=refuse)
    assert summary["fps"] is None


def test_annotations_json_with_a_byte_order_mark_is_read(make_export):
    content = (
        b"\xef\xbb\xbf"
        + json.dumps({"video": {"width": 4, "height": 2}, "annotations": []}).encode()
    )
    with read_export(make_export(annotations_bytes=content)) as export:
        assert len(export.frames) == 0


def test_damaged_metadata_json_names_the_member(make_export, tmp_path):
    path = build_export(tmp_path, "m.zip", metadata=False, extra={"metadata.json": b"{"})
    with pytest.raises(ExportError, match=r"m\.zip!metadata\.json: not valid JSON"):
        read_export(path)


def test_not_an_export(tmp_path):
    with pytest.raises(ExportError, match="no such file or folder"):
        read_export(tmp_path / "missing.zip")
    (tmp_path / "text.zip").write_text("hello")
    with pytest.raises(ExportError, match="not a readable ZIP"):
        read_export(tmp_path / "text.zip")
    write_zip(tmp_path / "other.zip", [("readme.txt", b"hi")])
    with pytest.raises(ExportError, match=r"no annotations\.json in the archive"):
        read_export(tmp_path / "other.zip")
    empty = tmp_path / "folder"
    empty.mkdir()
    (empty / "sam2_export_1.zip").write_bytes(b"")
    with pytest.raises(ExportError, match=r"ZIPs: sam2_export_1\.zip"):
        read_export(empty)
    build_export(tmp_path, "two/a", layout="folder")
    build_export(tmp_path, "two/b", layout="folder")
    with pytest.raises(ExportError, match="several exports"):
        read_export(tmp_path / "two")
    write_zip(tmp_path / "two.zip", [("a/annotations.json", b"{}"), ("b/annotations.json", b"{}")])
    with pytest.raises(ExportError, match=r"several annotations\.json"):
        read_export(tmp_path / "two.zip")


def test_truncated_archive_member(tmp_path, make_export):
    """A member whose bytes are damaged is refused with the member named, not a zlib error."""
    path = make_export()
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info_ = archive.getinfo("images/frame_000000.png")
    start = info_.header_offset + 30 + len(info_.filename) + 4
    data[start : start + 20] = bytes(20)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(bytes(data))
    with read_export(broken) as export, pytest.raises(ExportError) as error:
        export.frames[0].image.read_bytes()
    assert "images/frame_000000.png: member cannot be read" in str(error.value)


def test_every_error_is_in_the_one_family():
    for cls in (ExportError, MaskError, UnsafeArchiveError):
        assert issubclass(cls, Sam2FinetuneError)


# --------------------------------------------------------------------------------------------
# Hostile archives: refused fast, from the directory alone, writing nothing
# --------------------------------------------------------------------------------------------


@pytest.fixture
def quarantine(tmp_path, monkeypatch):
    """Send temporary files to an empty folder of their own (checked by ``refused_quickly``)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# What a refusal may inflate, all members together: a bomb's payload is 256 MiB or more, so a
# refusal under this budget did not read it. Counted, not timed: a count holds under any load.
INFLATE_BUDGET = 64 * 1024


class _CountingDecompressor:
    """A zipfile decompressor that adds what it inflates to ``counter[0]``."""

    def __init__(self, inner, counter: list[int]):
        self._inner, self._counter = inner, counter

    def decompress(self, data, *args):
        out = self._inner.decompress(data, *args)
        self._counter[0] += len(out)
        return out

    def flush(self, *args):
        out = self._inner.flush(*args)
        self._counter[0] += len(out)
        return out

    def __getattr__(self, name):  # eof, unconsumed_tail, unused_data
        return getattr(self._inner, name)


@contextlib.contextmanager
def counting_inflated_bytes():
    """Count every byte zipfile inflates inside the block (every member of every archive,
    nested ones included): ``with counting_inflated_bytes() as inflated: ...; inflated[0]``."""
    counter = [0]
    real = zipfile._get_decompressor

    def counting(compress_type):
        inner = real(compress_type)
        return None if inner is None else _CountingDecompressor(inner, counter)

    with mock.patch.object(zipfile, "_get_decompressor", counting):
        yield counter


def test_the_inflation_counter_counts(tmp_path):
    """The structural check below can fail: reading a deflated member inflates, and is counted
    (stored members inflate nothing)."""
    path = tmp_path / "zeros.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", bytes(1 << 20))
        archive.writestr("stored.bin", bytes(1000), zipfile.ZIP_STORED)
    with counting_inflated_bytes() as inflated, zipfile.ZipFile(path) as archive:
        assert archive.read("stored.bin") == bytes(1000)
        assert inflated[0] == 0
        assert archive.read("zeros.bin") == bytes(1 << 20)
    assert inflated[0] == 1 << 20 > INFLATE_BUDGET


def refused_quickly(path: Path, error: type[Exception] = UnsafeArchiveError, **kwargs) -> str:
    """Read ``path`` and check it is refused at once: before inflating its payload (at most
    ``INFLATE_BUDGET`` bytes inflated, counted, not timed), allocating under 64 MiB, writing
    nothing next to it nor in the temporary folder (the ``quarantine`` fixture)."""
    before = listing(path.parent)
    tracemalloc.start()
    try:
        with counting_inflated_bytes() as inflated, pytest.raises(error) as raised:
            read_export(path, **kwargs)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert inflated[0] <= INFLATE_BUDGET, f"refusal inflated {inflated[0]} bytes"
    assert peak < 64 * 1024**2, f"refusal allocated {peak / 1024**2:.0f} MiB"
    assert listing(path.parent) == before
    return str(raised.value)


@pytest.mark.parametrize(
    "name, problem",
    [
        ("/etc/passwd", "absolute path"),
        ("C:\\Windows\\system.ini", "absolute path"),
        ("../../.bashrc", "climbs out"),
        ("images/../../x.png", "climbs out"),
        ("images\\..\\..\\x.png", "climbs out"),
    ],
)
def test_path_traversal_entries_are_refused(tmp_path, quarantine, name, problem):
    path = build_export(tmp_path, "evil.zip", extra={name: b"x"})
    message = refused_quickly(path)
    assert problem in message and name in message and "refusing the archive" in message


def test_symlink_entries_are_refused(tmp_path, quarantine):
    link = zipfile.ZipInfo("images/frame_000000.png")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    path = build_export(tmp_path, "link.zip", images={}, extra={})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(link, "/etc/passwd")
    message = refused_quickly(path)
    assert "symbolic link" in message and "images/frame_000000.png" in message


def test_symlinks_in_a_folder_export_are_refused(tmp_path):
    folder = build_export(tmp_path, "folder", layout="folder")
    os.symlink("/etc/passwd", folder / "images" / "frame_000006.png")
    with pytest.raises(UnsafeArchiveError, match="symbolic links"):
        read_export(folder)


def test_an_export_subfolder_that_is_a_symlink_is_refused(tmp_path):
    """The search one level down must not follow a link out of the folder the user named."""
    real = build_export(tmp_path, "real", layout="folder")
    user = tmp_path / "user"
    user.mkdir()
    os.symlink(real, user / "export")
    with pytest.raises(UnsafeArchiveError) as raised:
        read_export(user)
    assert "sub-folder is a symbolic link" in str(raised.value)
    assert f"{user}!export" in str(raised.value)
    with read_export(real) as export:  # the folder itself, named by the user, is read
        assert len(export.frames) == 2


def test_archive_limits_come_from_the_info_command_line(tmp_path, capsys):
    bomb = zip_bomb(tmp_path / "bomb.zip", members=1, mebibytes=300)
    assert main(["info", str(bomb)]) == 2
    assert "compression ratio at most 200" in capsys.readouterr().err
    # A nested option: each field of ArchiveLimits is a dotted flag.
    path = build_export(tmp_path, "export.zip")
    assert main(["info", str(path), "--limits.max-members", "2"]) == 2
    err = capsys.readouterr().err
    assert "too many entries" in err and "expected at most 2" in err
    assert main(["info", str(path), "--limits.max-ratio", "0.5"]) == 2
    assert "--limits.max-ratio" in capsys.readouterr().err


def test_a_folder_file_past_the_member_bound_is_refused_before_it_is_read(tmp_path):
    folder = build_export(tmp_path, "folder", layout="folder")
    size = (folder / "annotations.json").stat().st_size
    with pytest.raises(UnsafeArchiveError) as raised:
        read_export(folder, limits=ArchiveLimits(max_member_bytes=size - 1))
    message = str(raised.value)
    assert f"{folder}!annotations.json" in message and f"found {size} bytes" in message
    assert "ArchiveLimits.max_member_bytes" in message
    with read_export(folder, limits=ArchiveLimits(max_member_bytes=size)) as export:
        assert len(export.frames) == 2


def test_an_undecodable_image_says_what_the_file_holds(make_export):
    path = make_export(images={"images/frame_000000.png": b"GIF89a not really"})
    with read_export(path) as export:
        image = export.frames[0].image
        with pytest.raises(ExportError) as raised:
            image.open()
    message = str(raised.value)
    assert "images/frame_000000.png: image cannot be decoded" in message
    assert "expected a PNG image, found 17 bytes starting b'GIF89a n'" in message
    assert "BytesIO" not in message


def test_crc_of_zeros_helper_is_exact():
    import zlib

    for n in (0, 1, 5, 1000, 1 << 20):
        assert crc32_of_zeros(n) == zlib.crc32(bytes(n))
    assert zlib.decompress(deflated_zeros(3), -15) == bytes(3 << 20)


def test_a_real_zip_bomb_is_refused_at_once(tmp_path, quarantine):
    """Two members of 4,000 MiB of deflated zeros each (valid CRCs; 8 MB on disk)."""
    bomb = zip_bomb(tmp_path / "bomb.zip")
    with zipfile.ZipFile(bomb) as archive:  # it is a real one: it inflates to zeros
        with archive.open("annotations.json") as stream:
            assert stream.read(1 << 20) == bytes(1 << 20)
        assert sum(i.file_size for i in archive.infolist()) > 8 * 10**9
    message = refused_quickly(bomb)
    assert "annotations.json" in message and "compression ratio at most 200" in message
    assert "zip bomb" in message and "ArchiveLimits.max_ratio" in message
    # Each bound is configurable and each one alone refuses it.
    refused_quickly(bomb, limits=ArchiveLimits(max_ratio=1e9, max_total_bytes=8 * 10**9))
    refused_quickly(bomb, limits=ArchiveLimits(max_ratio=1e9, max_member_bytes=10**9))


def test_a_bomb_inside_a_zip_is_refused_at_once(tmp_path, quarantine):
    inner = zip_bomb(tmp_path / "inner.zip", members=1, mebibytes=3000)
    outer = write_zip(
        tmp_path / "outer.zip", [("export/sam2_export.zip", inner.read_bytes())], zipfile.ZIP_STORED
    )
    inner.unlink()
    message = refused_quickly(outer)
    assert "outer.zip!export/sam2_export.zip!annotations.json" in message


def test_a_forged_member_size_is_caught_when_read(tmp_path, quarantine):
    """The directory says 100 bytes; the data inflates to 256 MiB: reading stops at 100 bytes
    and the CRC check fails, without inflating the rest."""
    path = forged_size_zip(tmp_path / "forged.zip")
    message = refused_quickly(path, ExportError)
    assert "annotations.json: member cannot be read" in message


def test_overlapping_entries_are_refused(tmp_path, quarantine):
    data = deflated_zeros(1)
    member = RawMember("annotations.json", data, 1 << 20, crc32_of_zeros(1 << 20))
    path = write_raw_zip(tmp_path / "overlap.zip", [member], central_copies=50)
    message = refused_quickly(path)
    assert "overlapping entries" in message


def test_data_past_the_end_is_refused(tmp_path, quarantine):
    member = RawMember("annotations.json", b"{}", 2, 0)
    path = write_raw_zip(tmp_path / "cut.zip", [member])
    raw = path.read_bytes()
    # Claim 10 MB of compressed data in the directory entry (offset 20 of the entry).
    cd = raw.rindex(b"PK\x01\x02")
    forged = raw[: cd + 20] + (10**7).to_bytes(4, "little") + raw[cd + 24 :]
    path.write_bytes(forged)
    message = refused_quickly(path, ExportError)
    assert "past the end" in message or "not a readable ZIP" in message


def test_too_many_members_and_too_deep_nesting(tmp_path, quarantine, make_export):
    path = build_export(tmp_path, "many.zip", extra={f"junk/{i}.txt": b"" for i in range(50)})
    assert "too many entries" in refused_quickly(path, limits=ArchiveLimits(max_members=20))
    nested = build_export(tmp_path, "nested.zip", layout="nested")
    assert "nested deeper" in refused_quickly(nested, limits=ArchiveLimits(max_nesting=0))


def test_real_exports_pass_the_default_limits(tmp_path):
    """A large, very repetitive annotations.json (a static scene: every frame the same) stays
    below the default ratio; this is the margin the default was chosen on."""
    objects = [sam2_object(i, "car", np.roll(SQUARE, 3 * i, axis=1)) for i in range(8)]
    frames = [
        {"frame_index": 6 * i, "timestamp_sec": i / 5, "objects": objects} for i in range(600)
    ]
    path = build_export(tmp_path, "static.zip", frames=frames, images={})
    with zipfile.ZipFile(path) as archive:
        info_ = archive.getinfo("annotations.json")
        ratio = info_.file_size / info_.compress_size
    assert info_.file_size > 1024**2 and 30 < ratio < 200
    with read_export(path) as export:
        assert len(export.frames) == 600


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------


def test_exports_pickle_and_reopen(make_export):
    with read_export(make_export()) as export:
        copy = pickle.loads(pickle.dumps(export))
    with read_export(make_export("again.zip")) as again:
        assert [f.objects for f in copy.frames] == [f.objects for f in again.frames]
    assert copy.frames[0].image.read_bytes() == png_bytes()
    copy.close()


def test_reading_an_image_after_close_says_so(make_export):
    with read_export(make_export()) as export:
        image = export.frames[0].image
    with pytest.raises(ExportError, match="the export was closed"):
        image.read_bytes()


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def test_summary_counts_without_rescaling(make_export, monkeypatch):
    frames = default_frames_with_rename()
    path = make_export(frames=frames)

    def no_rescaling(*args, **kwargs):
        raise AssertionError("info must not rescale masks")

    monkeypatch.setattr(ingest_read, "counts_to_rles", no_rescaling)
    (summary,) = info(InfoOptions(exports=[path]))
    assert summary.frames_listed == 3 and summary.frames_with_objects == 2
    assert summary.frames_with_images == 2 and summary.images_are_overlays
    assert summary.objects == 5 and summary.empty_masks == 1 and summary.broken_masks == 1
    assert summary.tracks == {"1": ["car", "Car"], "2": ["person"]}
    assert summary.labels == {"car": 1, "Car": 1, "person": 1}
    assert summary.mask_forms == {"sam2_string": 4} and summary.mask_sizes == {"256x256": 4}
    text = format_summary(summary)
    assert "#1 car/Car (RENAMED)" in text and "1 BROKEN" in text and "OVERLAYS" in text


def test_summary_agrees_with_the_canonical_records(make_export):
    """info parses count strings in bulk; every kind of mask must come out as the canonical pass
    reads it (forms, sizes, empty, broken)."""
    values = [
        sam2_object(1, "a", SQUARE)["mask_rle"],
        "65536",
        "100 0 5 1 65430",  # a zero-length first run of ones: not empty
        "100 0 65436",  # only zero-length runs of ones: empty
        "1 2 3",  # adds up to nothing known
        "",
        " \t\n ",
        "5 -1 65532",
        "99999999999999999999 1",
        rle_encode(nearest(SQUARE, 480, 640))["counts"],  # bare compressed, video size
        " ".join(map(str, mask_counts(nearest(SQUARE, 240, 320)))),  # inferred aspect ratio
        {"size": [480, 640], "counts": [307200]},
    ]
    frames = [
        {"frame_index": 6 * i, "objects": [{"object_id": i, "label": f"l{i}", "mask_rle": v}]}
        for i, v in enumerate(values)
    ]
    path = make_export(frames=frames, video={"width": 640, "height": 480})
    with read_export(path, strict=False) as export:
        summary = summarize_export(export)
        objects = [o for f in export.frames for o in f.objects]
    assert summary.broken_masks == sum(o.error is not None for o in objects) == 5
    assert summary.empty_masks == sum(o.is_empty and o.error is None for o in objects) == 3
    forms: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for o in objects:
        if o.error is None:
            forms[o.mask_form] = forms.get(o.mask_form, 0) + 1
            key = f"{o.mask_size[0]}x{o.mask_size[1]}"
            sizes[key] = sizes.get(key, 0) + 1
    assert summary.mask_forms == forms and summary.mask_sizes == sizes
    assert sizes == {"256x256": 4, "480x640": 2, "240x320": 1}


def default_frames_with_rename() -> list[dict]:
    return [
        {
            "frame_index": 0,
            "objects": [
                sam2_object(1, "car", SQUARE),
                sam2_object(2, "person", np.zeros((256, 256), np.uint8)),
            ],
        },
        {
            "frame_index": 6,
            "objects": [
                sam2_object(1, "Car", SQUARE),
                sam2_object(2, "person", SQUARE),
                {"object_id": 2, "label": "person", "mask_rle": "1 2 3"},
            ],
        },
        {"frame_index": 12, "objects": []},
    ]


def test_info_command_text_and_json(make_export, capsys):
    path = make_export()
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "64 x 48" in text and "2 listed, 1 with objects" in text
    assert main(["info", str(path), str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["video_id"] for d in data][1] == data[0]["video_id"] + "-2"
    assert data[0]["mask_forms"] == {"sam2_string": 2} and data[0]["empty_masks"] == 1


def test_info_counts_objects_per_track(make_export, capsys):
    (summary,) = info(InfoOptions(exports=[make_export(frames=default_frames_with_rename())]))
    assert summary.track_objects == {"1": 2, "2": 1}
    assert summary.track_empty_masks == {"2": 1}
    text = format_summary(summary)
    assert "#1 car/Car (RENAMED) x2" in text and "#2 person x1 (+1 empty)" in text


def test_info_errors_print_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    write_zip(bad, [("../x", b"")])
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}!../x: entry climbs out") and "Traceback" not in err


def test_info_does_not_import_torch_or_transformers(make_export):
    code = (
        "import sys\nfrom sam2_finetune.cli import main\n"
        f"main(['info', {str(make_export())!r}])\n"
        "sys.exit(3 if {'torch', 'transformers'} & set(sys.modules) else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
