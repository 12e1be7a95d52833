"""convert: the canonical HF dataset, LLaVA / ShareGPT / COCO files, on sample_data/ and on
small crafted exports. Expectations are computed from annotations.json as written, never from
the converter's own code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sam2_finetune.convert import ConvertOptions, convert
from sam2_finetune.convert.rows import LabelMap, load_label_map, normalize_label
from sam2_finetune.errors import DatasetError, ExportError, OptionsError, OutputExistsError
from sam2_finetune.ingest import frame_sources
from sam2_finetune.masks import parse_counts, rle_bbox, rle_decode
from sam2_finetune.testing.synthetic import TrackSpec, write_export

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
EXPORTS = [SAMPLE / "street_scene.zip", SAMPLE / "kitchen.zip", SAMPLE / "warehouse.zip"]
STREET_FRAMES = SAMPLE / "street_scene_frames"


# --------------------------------------------------------------------------------------------
# Reading the exports independently of the converter
# --------------------------------------------------------------------------------------------


def _members(path: Path) -> dict[str, bytes]:
    """Every member of an export ZIP, keyed by its path below the folder of annotations.json."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if "__MACOSX" not in n and not n.endswith("/")]
        (ann,) = [n for n in names if n.endswith("annotations.json")]
        root = ann[: -len("annotations.json")]
        return {n[len(root) :]: archive.read(n) for n in names if n.startswith(root)}


def _visible(obj: dict) -> bool:
    return bool(parse_counts(obj["mask_rle"])[1::2].sum())


def _expected(path: Path) -> dict:
    """Per export: video size, rows expected (frames with an image and a visible object), and the
    visible objects of each such frame as written."""
    members = _members(path)
    ann = json.loads(members["annotations.json"])
    images = {}
    for name, data in members.items():
        stem = Path(name).stem
        if name.lower().endswith((".png", ".jpg")) and stem.startswith("frame_"):
            images[int(stem.split("_")[1])] = data
    frames = {}
    for frame in ann["annotations"]:
        visible = [o for o in frame["objects"] if _visible(o)]
        if visible and frame["frame_index"] in images:
            frames[frame["frame_index"]] = visible
    return {"video": ann["video"], "frames": frames, "images": images, "all": ann["annotations"]}


@pytest.fixture(scope="module")
def expected() -> dict[str, dict]:
    return {p.stem: _expected(p) for p in EXPORTS}


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "dataset"
    convert(ConvertOptions(exports=EXPORTS, to="hf", out=out))
    return out


@pytest.fixture(scope="module")
def hf_rows(hf_dir) -> list[dict]:
    from datasets import Image, load_from_disk

    return list(load_from_disk(str(hf_dir)).cast_column("image", Image(decode=False)))


def _video_of(row: dict) -> str:
    return row["video_id"].rsplit("-", 1)[0]


# --------------------------------------------------------------------------------------------
# --to hf
# --------------------------------------------------------------------------------------------


def test_hf_rows_are_the_frames_with_an_image_and_a_visible_object(hf_dir, hf_rows, expected):
    from datasets import load_from_disk

    from sam2_finetune.dataset import load_canonical

    assert len(load_from_disk(str(hf_dir))) == sum(len(e["frames"]) for e in expected.values())
    assert len(load_canonical(hf_dir)) == len(hf_rows)
    for name, exp in expected.items():
        got = sorted(r["frame_index"] for r in hf_rows if _video_of(r) == name)
        assert got == sorted(exp["frames"])
    ids = [r["image_id"] for r in hf_rows]
    assert len(set(ids)) == len(ids)
    assert all(r["image_id"] == f"{r['video_id']}/{r['frame_index']:06d}" for r in hf_rows)
    assert len({r["video_id"] for r in hf_rows}) == 3
    # Nothing but the dataset is left in the folder (no generator cache, no temporary files).
    assert sorted(p.name for p in hf_dir.iterdir()) == [
        "data-00000-of-00001.arrow",
        "dataset_info.json",
        "state.json",
    ]
    assert not list(hf_dir.parent.glob(".dataset*"))


def test_hf_folder_behaves_like_a_save_to_disk_dataset(tmp_path, hf_dir, hf_rows):
    """The ArrowWriter layout is what save_to_disk would write: same schema, same rows, and
    the usual Dataset / DatasetDict operations work on it."""
    import shutil

    from datasets import Dataset, DatasetDict, Image, load_from_disk
    from PIL import Image as PILImage

    from sam2_finetune.dataset import canonical_features, category_names

    copy = tmp_path / "copy"  # operations below write cache files next to the data
    shutil.copytree(hf_dir, copy)
    ds = load_from_disk(str(copy))
    names = category_names(ds)
    assert ds.features == canonical_features(names)
    reference = tmp_path / "reference"
    Dataset.from_list(hf_rows, features=canonical_features(names)).save_to_disk(str(reference))
    ref = load_from_disk(str(reference))
    assert ds.data.table.schema.equals(ref.data.table.schema, check_metadata=True)
    assert ds.data.table.equals(ref.data.table)
    first = ds[0]
    assert isinstance(first["image"], PILImage.Image) and first["image"].size == (
        first["width"],
        first["height"],
    )
    label = ds.features["objects"].feature["category"]
    assert label.int2str(first["objects"][0]["category"]) == first["objects"][0]["label"]
    parts = ds.train_test_split(test_size=0.25, seed=0)
    assert isinstance(parts, DatasetDict) and len(parts["train"]) + len(parts["test"]) == len(ds)
    parts.save_to_disk(str(tmp_path / "dict"))
    again = load_from_disk(str(tmp_path / "dict"))
    assert isinstance(again, DatasetDict) and category_names(again) == names
    assert sorted(again["test"].cast_column("image", Image(decode=False))["image_id"]) == sorted(
        parts["test"]["image_id"]
    )
    counts = ds.map(lambda row: {"n": len(row["objects"])}, remove_columns=["image"])["n"]
    assert sum(counts) == sum(len(r["objects"]) for r in hf_rows)


def test_hf_labels_are_kept_as_typed_in_a_class_label(hf_dir, hf_rows, expected):
    from sam2_finetune.dataset import category_names, load_canonical

    typed = {o["label"] for e in expected.values() for objs in e["frames"].values() for o in objs}
    names = category_names(load_canonical(hf_dir))
    assert names == sorted(typed)
    assert "Cup" in names and "cup" in names  # as typed: case variants are not merged by default
    for row in hf_rows:
        for obj in row["objects"]:
            assert names[obj["category"]] == obj["label"]


def test_hf_boxes_match_the_export_after_scaling(hf_rows, expected):
    checked = 0
    for row in hf_rows:
        exp = expected[_video_of(row)]
        sx, sy = exp["video"]["width"] / 256, exp["video"]["height"] / 256
        written = {o["object_id"]: o for o in exp["frames"][row["frame_index"]]}
        assert sorted(o["track_id"] for o in row["objects"]) == sorted(written)
        for obj in row["objects"]:
            x, y, w, h = written[obj["track_id"]]["bbox"]
            # Scaled 256-space boxes land between pixels: the image-size box may differ by up to
            # one source pixel (sx, sy) at each edge, plus rounding.
            tol = [sx + 0.5, sy + 0.5, 2 * sx + 1, 2 * sy + 1]
            scaled = [x * sx, y * sy, w * sx, h * sy]
            assert all(abs(a - b) <= t for a, b, t in zip(obj["bbox"], scaled, tol, strict=True))
            checked += 1
    assert checked > 300


def test_hf_masks_decode_at_image_size_with_their_area(hf_rows, expected):
    for row in hf_rows[::3]:
        exp = expected[_video_of(row)]
        w, h = exp["video"]["width"], exp["video"]["height"]
        assert (row["width"], row["height"]) == (w, h)
        for obj in row["objects"]:
            seg = obj["segmentation"]
            assert seg["size"] == [h, w]
            mask = rle_decode(seg)
            assert mask.shape == (h, w)
            assert int(mask.sum()) == obj["area"] > 0
            # The mask's own box agrees with the scaled export box to within one 256-space
            # pixel (nearest-neighbour rescaling of a 256 x 256 mask).
            mx, my, mw, mh = rle_bbox(seg)
            bx, by, bw, bh = obj["bbox"]
            assert abs(mx - bx) <= w / 256 + 1 and abs(my - by) <= h / 256 + 1
            assert abs(mw - bw) <= 2 * w / 256 + 1 and abs(mh - bh) <= 2 * h / 256 + 1
            # The area is the 256-space area scaled, give or take the edge pixels.
            written = next(
                o for o in exp["frames"][row["frame_index"]] if o["object_id"] == obj["track_id"]
            )
            assert obj["area"] == pytest.approx(written["area"] * w * h / 65536, rel=0.25)


def test_hf_images_are_the_source_bytes_not_reencoded(hf_rows, expected):
    for row in hf_rows:
        exp = expected[_video_of(row)]
        assert row["image"]["bytes"] == exp["images"][row["frame_index"]]
        assert row["image_is_overlay"] is True
    formats = {row["image"]["bytes"][:4] for row in hf_rows}
    assert formats == {b"\x89PNG", b"\xff\xd8\xff\xe0"}  # warehouse.zip has JPEGs


def test_raw_frames_replace_the_overlays(tmp_path, expected):
    from datasets import Image, load_from_disk

    out = tmp_path / "hf"
    result = convert(
        ConvertOptions(
            exports=EXPORTS[:2],
            frames=[f"street_scene={STREET_FRAMES}"],
            to="hf",
            out=out,
            keep_empty=True,
        )
    )
    rows = list(load_from_disk(str(out)).cast_column("image", Image(decode=False)))
    street = [r for r in rows if _video_of(r) == "street_scene"]
    # With raw frames every listed frame has an image: the empty ones become negatives.
    listed = [f["frame_index"] for f in expected["street_scene"]["all"]]
    assert [r["frame_index"] for r in street] == listed
    for row in street:
        assert row["image_is_overlay"] is False
        path = STREET_FRAMES / f"frame_{row['frame_index']:06d}.png"
        assert row["image"]["bytes"] == path.read_bytes()
    empty = [r for r in street if not r["objects"]]
    assert len(empty) == result.empty_rows >= 2
    kitchen = [r for r in rows if _video_of(r) == "kitchen"]
    assert kitchen and all(r["image_is_overlay"] for r in kitchen)
    assert any("OVERLAY" in w and "kitchen" in w for w in result.warnings)
    assert result.overlay_rows == len(kitchen)


def test_raw_frames_by_order(tmp_path):
    result = convert(
        ConvertOptions(
            exports=[EXPORTS[0]], frames=[str(STREET_FRAMES)], to="coco", out=tmp_path / "c"
        )
    )
    assert result.overlay_rows == 0 and not result.warnings


@pytest.mark.parametrize(
    "frames, problem",
    [
        (["a", "b"], "one source per export"),
        (["a", "kitchen=b"], "mixes"),
        (["nothing=b"], "matches 0 exports"),
    ],
)
def test_frames_option_is_checked(frames, problem):
    with pytest.raises(OptionsError, match=problem):
        frame_sources(EXPORTS, frames)


def test_frames_option_matches_by_path_name_or_stem():
    assert frame_sources(EXPORTS, None) is None
    assert frame_sources(EXPORTS, ["warehouse.zip=w", "kitchen=k"]) == [None, "k", "w"]
    assert frame_sources(EXPORTS, [f"{EXPORTS[0]}=s"]) == ["s", None, None]


def test_raw_frames_of_another_size_are_refused(tmp_path):
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for p in STREET_FRAMES.iterdir():
        Image.open(p).resize((160, 120)).save(frames / p.name)
    with pytest.raises(ExportError, match=r"320 x 240.*160 x 120"):
        convert(ConvertOptions(exports=[EXPORTS[0]], frames=[str(frames)], out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def test_label_map_and_normalization(tmp_path, expected):
    from datasets import load_from_disk

    label_map = tmp_path / "labels.yaml"
    label_map.write_text(
        "# kitchen clean-up\nobject_4: board\n'Cutting Board ': board\nbicycle: null\ntypo: x\n"
    )
    out = tmp_path / "hf"
    result = convert(
        ConvertOptions(
            exports=EXPORTS, to="hf", out=out, label_map=label_map, normalize_labels=True
        )
    )
    names = load_from_disk(str(out)).features["objects"].feature["category"].names
    assert names == ["board", "bowl", "box", "car", "cup", "forklift", "person"]
    bicycles = sum(
        o["label"] == "bicycle" for e in expected.values() for v in e["frames"].values() for o in v
    )
    assert result.objects_dropped_by_label_map == bicycles > 0
    assert result.labels == names
    assert any("typo" in w for w in result.warnings)


def test_numeric_and_missing_labels_are_named_as_ingest_names_them(tmp_path):
    from sam2_finetune.ingest import read_export

    export = tmp_path / "odd_labels.zip"
    with zipfile.ZipFile(EXPORTS[0]) as zin, zipfile.ZipFile(export, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("annotations.json"):
                ann = json.loads(data)
                for frame in ann["annotations"]:
                    for obj in frame["objects"]:
                        if obj["label"] == "person":
                            obj["label"] = 5  # a number typed as the label
                        elif obj["label"] == "bicycle":
                            del obj["label"]
                data = json.dumps(ann).encode()
            zout.writestr(name, data)
    with read_export(export) as opened:
        typed = {o.label for f in opened.frames for o in f.visible_objects}
    result = convert(ConvertOptions(exports=[export], to="coco", out=tmp_path / "c"))
    assert result.labels == sorted(typed) and "5" in typed and len(typed) == 3


def test_label_map_json_and_rules():
    assert normalize_label("  Red \t Car ") == "red car"
    assert LabelMap({"Car": "vehicle"})("Car") == "vehicle"
    assert LabelMap({"Car": "vehicle"})("car") == "car"  # as typed by default
    assert LabelMap({"car": "vehicle"}, normalize=True)(" CAR") == "vehicle"
    assert LabelMap({"car": None})("car") is None
    assert LabelMap({"a": "b", "b": "c"})("a") == "b"  # one hop, not transitive


def test_label_map_file_errors_are_all_reported(tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"car": 3, "": "x", "Cup": "cup", "cup ": "mug"}))
    with pytest.raises(OptionsError) as info:
        load_label_map(bad, normalize=True)
    message = str(info.value)
    assert "3 problem(s)" in message and "'car'" in message and "'cup '" in message
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(OptionsError, match="flat mapping"):
        load_label_map(tmp_path / "list.yaml")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(OptionsError, match="not valid"):
        load_label_map(tmp_path / "broken.json")
    (tmp_path / "broken.yaml").write_text("a: [b\n")
    with pytest.raises(OptionsError, match="not valid"):
        load_label_map(tmp_path / "broken.yaml")
    with pytest.raises(OptionsError, match="cannot read"):
        load_label_map(tmp_path / "missing.yaml")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"Cup": "cup"}))
    assert load_label_map(good)("Cup") == "cup"


# --------------------------------------------------------------------------------------------
# --to coco
# --------------------------------------------------------------------------------------------


def test_coco_loads_in_pycocotools_and_matches_the_dataset(tmp_path, hf_rows):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "coco"
    result = convert(ConvertOptions(exports=EXPORTS, to="coco", out=out))
    assert result.paths["coco"] == out / "instances.json"
    coco = COCO(str(out / "instances.json"))
    assert len(coco.imgs) == len(hf_rows) == result.rows
    assert len(coco.anns) == sum(len(r["objects"]) for r in hf_rows) == result.objects
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == result.labels
    by_key = {r["image_id"]: r for r in hf_rows}
    for image in coco.imgs.values():
        row = by_key[image["image_key"]]
        data = (out / "images" / image["file_name"]).read_bytes()
        assert data == row["image"]["bytes"]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert sorted(a["track_id"] for a in anns) == sorted(o["track_id"] for o in row["objects"])
        for ann in anns[:1]:
            mask = coco.annToMask(ann)
            assert mask.shape == (image["height"], image["width"])
            assert int(mask.sum()) == ann["area"]
            assert coco.cats[ann["category_id"]]["name"] in result.labels
    # The ground truth scored against itself is perfect (iscrowd 0: ordinary instances).
    detections = [{**a, "score": 1.0} for a in coco.dataset["annotations"]]
    for iou_type in ("bbox", "segm"):
        evaluation = COCOeval(coco, coco.loadRes(detections), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0)


def test_outputs_are_byte_identical_across_runs(tmp_path):
    def files(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    first = convert(ConvertOptions(exports=EXPORTS, to="coco", out=tmp_path / "a", seed=3))
    convert(ConvertOptions(exports=EXPORTS, to="coco", out=tmp_path / "b", seed=3))
    a, b = files(first.out), files(tmp_path / "b")
    assert a == b and "instances.json" in a and len(a) == first.rows + 1


# --------------------------------------------------------------------------------------------
# Output safety, errors
# --------------------------------------------------------------------------------------------


def test_refuses_a_non_empty_output_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(ConvertOptions(exports=[EXPORTS[0]], to="coco", out=out))
    assert (out / "keep.txt").read_text() == "mine"
    convert(ConvertOptions(exports=[EXPORTS[0]], to="coco", out=out, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "instances.json").exists()
    # An empty folder is fine.
    (tmp_path / "empty").mkdir()
    convert(ConvertOptions(exports=[EXPORTS[0]], to="coco", out=tmp_path / "empty"))
    # The renamed temporary folder has the usual permissions, not mkdtemp's private 0700.
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def _export_with_a_damaged_late_image(tmp_path: Path) -> Path:
    src = tmp_path / "src.zip"
    write_export(
        src,
        [TrackSpec(1, "car", "rect", (200, 40, 40), (0.3, 0.5), (0.02, 0.0), (0.2, 0.2))],
        duration_sec=2.0,
    )
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(broken, "w") as zout:
        names = zin.namelist()
        last_image = sorted(n for n in names if n.startswith("images/"))[-1]
        for name in names:
            zout.writestr(name, b"not an image" if name == last_image else zin.read(name))
    return broken


@pytest.mark.parametrize("to", ["hf", "coco"])
def test_a_failure_half_way_leaves_nothing_at_out(tmp_path, to):
    broken = _export_with_a_damaged_late_image(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="cannot be read"):
        convert(ConvertOptions(exports=[broken], to=to, out=out))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.zip", "src.zip"]
    # An existing good output survives a failed --overwrite run.
    convert(ConvertOptions(exports=[EXPORTS[0]], to=to, out=out))
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ExportError):
        convert(ConvertOptions(exports=[broken], to=to, out=out, overwrite=True))
    assert sorted(p.name for p in out.rglob("*")) == before


def _export_with_a_broken_mask(tmp_path: Path) -> Path:
    """kitchen.zip with one mask in the middle of the video replaced by garbage."""
    broken = tmp_path / "kitchen_broken.zip"
    with zipfile.ZipFile(EXPORTS[1]) as zin, zipfile.ZipFile(broken, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("/annotations.json") and "__MACOSX" not in name:
                ann = json.loads(data)
                frames = [f for f in ann["annotations"] if f["objects"]]
                frames[len(frames) // 2]["objects"][0]["mask_rle"] = "12 34 garbage"
                data = json.dumps(ann).encode()
            zout.writestr(name, data)
    return broken


@pytest.mark.parametrize("to", ["hf", "coco", "llava", "sharegpt"])
def test_a_broken_mask_in_the_second_export_leaves_nothing_behind(tmp_path, to):
    work = tmp_path / "work"
    work.mkdir()
    broken = _export_with_a_broken_mask(tmp_path)
    out = work / "out"
    with pytest.raises(ExportError, match=r"kitchen_broken.zip.*frame \d+, object \d+"):
        convert(ConvertOptions(exports=[EXPORTS[0], broken], to=to, out=out))
    # The first export's rows were written before the failure: all of it is gone, no temp dirs.
    assert list(work.iterdir()) == []


def test_an_output_holding_an_input_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    export = data / "street_scene.zip"
    export.write_bytes(EXPORTS[0].read_bytes())
    for out in (data, tmp_path):
        with pytest.raises(OptionsError, match="holds an input"):
            convert(ConvertOptions(exports=[export], out=out, overwrite=True))
    label_map = data / "labels.yaml"
    label_map.write_text("car: vehicle\n")
    with pytest.raises(OptionsError, match="holds an input"):
        convert(ConvertOptions(exports=[EXPORTS[0]], label_map=label_map, out=data, overwrite=True))
    assert export.read_bytes() == EXPORTS[0].read_bytes() and label_map.exists()
    # An output next to the inputs is fine.
    assert convert(ConvertOptions(exports=[export], out=data / "hf", to="coco")).rows > 0


def test_cli_bad_outputs_and_options_are_one_message(tmp_path, capsys):
    from sam2_finetune.cli import main

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = str(tmp_path / "o")
    cases = [
        (["--out", str(a_file / "hf")], "a_file is a file, not a folder"),
        (
            ["--out", out, "--to", "llava", "--max-polygon-points", "3"],
            "greater than or equal to 4",
        ),
        (
            ["--out", out, "--to", "llava", "--tasks", "segment", "--answer-format", "qwen2_vl"],
            "no polygon syntax",
        ),
    ]
    for args, problem in cases:
        assert main(["convert", str(EXPORTS[0]), *args]) == 2
        err = capsys.readouterr().err
        assert problem in err and "Traceback" not in err, err
        assert err.count("Fix:") == 1 and "expected None" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_frame_listed_twice_is_refused(tmp_path):
    export = tmp_path / "twice.zip"
    with zipfile.ZipFile(EXPORTS[0]) as zin, zipfile.ZipFile(export, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("annotations.json"):
                ann = json.loads(data)
                ann["annotations"].append(dict(ann["annotations"][3]))  # frame 18 again
                data = json.dumps(ann).encode()
            zout.writestr(name, data)
    # Two rows with one image_id would break splits (by id) and evaluation.
    with pytest.raises(
        ExportError, match=r"twice.zip!annotations.json, frame 18: .*more than once"
    ):
        convert(ConvertOptions(exports=[export], to="hf", out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_no_qualifying_frame_is_an_error(tmp_path):
    export = tmp_path / "lost.zip"
    # The object starts outside the frame and never enters it: every mask is empty.
    write_export(
        export,
        [TrackSpec(1, "car", "rect", (200, 40, 40), (-0.5, 0.5), (0.0, 0.0), (0.1, 0.1))],
        duration_sec=1.0,
    )
    with pytest.raises(DatasetError, match="no frame qualifies"):
        convert(ConvertOptions(exports=[export], to="hf", out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()
    result = convert(
        ConvertOptions(exports=[export], to="coco", out=tmp_path / "o", keep_empty=True)
    )
    assert result.rows == result.empty_rows > 0 and result.labels == []


def test_options_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ConvertOptions(exports=[], out="x")
    with pytest.raises(ValidationError):
        ConvertOptions(exports=["a.zip"], out="x", to="yolo")


@pytest.mark.slow  # a fresh interpreter importing datasets: about 5 s on a busy machine
def test_cli_converts_without_importing_torch_or_touching_the_hf_cache(tmp_path):
    out = tmp_path / "hf"
    home = tmp_path / "home"
    argv = ["convert", str(EXPORTS[0]), "--to", "hf", "--out", str(out)]
    script = (
        "import sys\n"
        "from sam2_finetune.cli import main\n"
        f"code = main({argv!r})\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        f"again = main({argv[:2] + argv[4:]!r})\n"
        "sys.exit(code * 10 + again)\n"
    )
    env = {**os.environ, "HOME": str(home), "HF_HOME": str(home / "hf"), "XDG_CACHE_HOME": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT
    )
    # First call writes (0), the second refuses the existing output (exit code 2).
    assert proc.returncode == 2, proc.stderr
    assert "wrote" in proc.stdout and "already exists" in proc.stderr
    assert "Traceback" not in proc.stderr
    from sam2_finetune.dataset import load_canonical

    assert len(load_canonical(out)) > 0
    assert not (home / "hf").exists() and not (home / ".cache").exists()


def test_images_in_the_dataset_decode(hf_dir):
    from sam2_finetune.dataset import load_canonical

    dataset = load_canonical(hf_dir)
    image = dataset[0]["image"]
    assert image.size == (dataset[0]["width"], dataset[0]["height"])
    assert np.asarray(image).ndim == 3


# --------------------------------------------------------------------------------------------
# --to llava / --to sharegpt
# --------------------------------------------------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    out = tmp_path_factory.mktemp("llava") / "llava"
    result = convert(
        ConvertOptions(
            exports=EXPORTS,
            to="llava",
            out=out,
            tasks=["detect=1", "ground=1", "segment=1", "count=1"],
            examples_per_frame=2,
            seed=7,
        )
    )
    return result


def test_llava_records_have_the_shape_llava_loads(llava, hf_rows):
    out = llava.out
    records = json.loads((out / "llava.json").read_text(encoding="utf-8"))
    lines = (out / "llava.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    assert len(records) == 2 * len(hf_rows) == 2 * llava.rows
    assert len({r["id"] for r in records}) == len(records)
    by_key = {r["image_id"]: r for r in hf_rows}
    for record in records:
        assert set(record) == {"id", "image", "conversations"}
        human, gpt = record["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].startswith("<image>\n")
        assert json.dumps(record).count("<image>") == 1
        assert isinstance(gpt["value"], str) and gpt["value"]
        row = by_key[record["id"].rsplit("#", 1)[0]]
        assert (out / record["image"]).read_bytes() == row["image"]["bytes"]
    tasks = {"Detect", "Find", "Locate", "Segment", "How many", "Count", "Outline", "Trace"}
    starts = {r["conversations"][0]["value"].split("\n", 1)[1].split(" ")[0] for r in records}
    assert len(starts & tasks) >= 4  # the mix really mixes
    assert llava.polygon_fidelity is not None
    assert llava.polygon_fidelity["objects"] > 0 and llava.polygon_fidelity["mean_iou"] > 0.9


def test_llava_detect_answers_parse_back_to_the_canonical_boxes(llava, hf_rows):
    from sam2_finetune.answer_formats import format_grid, parse_answer
    from sam2_finetune.tasks import TEMPLATES

    by_key = {r["image_id"]: r for r in hf_rows}
    checked = 0
    for record in json.loads((llava.out / "llava.json").read_text(encoding="utf-8")):
        prompt = record["conversations"][0]["value"].removeprefix("<image>\n")
        if not prompt.startswith(TEMPLATES["detect"]):
            continue
        row = by_key[record["id"].rsplit("#", 1)[0]]
        wh = (row["width"], row["height"])
        parsed = parse_answer(record["conversations"][1]["value"], "json", wh)
        assert parsed.ok, parsed.problems
        step_x, step_y = format_grid("json", wh).step
        got = sorted((o.label, *o.bbox) for o in parsed.objects)
        want = sorted((o["label"], *o["bbox"]) for o in row["objects"])
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g[0] == w[0]
            tol = 2 * max(step_x, step_y)
            assert all(abs(a - b) <= tol for a, b in zip(g[1:], w[1:], strict=True))
        checked += 1
    assert checked > 10


def test_sharegpt_is_llama_factory_multimodal_sharegpt(tmp_path):
    from datasets import load_dataset

    out = tmp_path / "sg"
    result = convert(
        ConvertOptions(
            exports=EXPORTS[:1],
            frames=[str(STREET_FRAMES)],
            to="sharegpt",
            out=out,
            dataset_name="street",
            keep_empty=True,
        )
    )
    info = json.loads((out / "dataset_info.json").read_text())
    entry = info["street"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"
    records = json.loads((out / entry["file_name"]).read_text(encoding="utf-8"))
    assert len(records) == result.rows
    for record in records:
        user, assistant = record["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert user["content"].count("<image>") == len(record["images"]) == 1
        assert (out / record["images"][0]).is_file()
    # LLaMA-Factory reads the file with datasets' json loader.
    loaded = load_dataset(
        "json", data_files=str(out / entry["file_name"]), cache_dir=str(tmp_path / "cache")
    )["train"]
    assert loaded.num_rows == len(records) and set(loaded.column_names) == {"messages", "images"}
    # Empty frames (kept with raw frames) get the format's empty answer or a negative question.
    assert result.empty_rows >= 2


def test_chat_outputs_are_reproducible(tmp_path):
    def run(to: str, seed: int, name: str) -> dict[str, bytes]:
        options = ConvertOptions(
            exports=EXPORTS[1:], to=to, out=tmp_path / name, seed=seed, examples_per_frame=2
        )
        convert(options)
        return _files(tmp_path / name)

    for to, main_file in (("llava", "llava.json"), ("sharegpt", "sharegpt.json")):
        a, b = run(to, 1, f"{to}-a"), run(to, 1, f"{to}-b")
        assert a == b
        c = run(to, 2, f"{to}-c")
        assert c[main_file] != a[main_file]
        # Another seed changes the examples, not the images.
        images = {k: v for k, v in a.items() if k.startswith("images/")}
        assert images and images == {k: v for k, v in c.items() if k.startswith("images/")}


def test_qwen25_answers_are_in_resized_pixels(tmp_path):
    from sam2_finetune.answer_formats import parse_answer, qwen_smart_resize

    def first_answer(max_pixels: int) -> tuple[str, tuple[int, int]]:
        out = tmp_path / f"q{max_pixels}"
        convert(
            ConvertOptions(
                exports=[EXPORTS[2]],
                to="llava",
                out=out,
                answer_format="qwen2_5_vl",
                tasks=["detect"],
                max_pixels=max_pixels,
            )
        )
        record = json.loads((out / "llava.json").read_text())[0]
        return record["conversations"][1]["value"], (384, 216)

    big, wh = first_answer(28 * 28 * 1280)
    small, _ = first_answer(28 * 28 * 40)
    assert big != small
    for text, max_pixels in ((big, 28 * 28 * 1280), (small, 28 * 28 * 40)):
        h, w = qwen_smart_resize(wh[1], wh[0], max_pixels=max_pixels)
        parsed = parse_answer(text, "qwen2_5_vl", wh, resized_wh=(w, h))
        assert parsed.ok and parsed.objects


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"answer_format": "yolo"}, "unknown answer format"),
        ({"tasks": ["detect", "dance"]}, "unknown task 'dance'"),
        ({"answer_format": "qwen2_vl", "tasks": ["segment"]}, "no polygon syntax"),
    ],
)
def test_chat_options_fail_before_anything_is_written(tmp_path, options, problem):
    out = tmp_path / "o"
    with pytest.raises(OptionsError, match=problem):
        convert(ConvertOptions(exports=[Path("missing.zip")], to="llava", out=out, **options))
    assert not out.exists()


def test_labels_a_format_cannot_write_are_refused(tmp_path):
    export = tmp_path / "e.zip"
    write_export(
        export,
        [TrackSpec(1, "a;b", "rect", (200, 40, 40), (0.3, 0.5), (0.0, 0.0), (0.2, 0.2))],
        duration_sec=1.0,
    )
    with pytest.raises(OptionsError, match="cannot write"):
        convert(
            ConvertOptions(
                exports=[export], to="llava", out=tmp_path / "o", answer_format="paligemma"
            )
        )
    assert not (tmp_path / "o").exists()


def test_a_label_holding_the_image_token_is_refused_before_writing(tmp_path):
    export = tmp_path / "e.zip"
    write_export(
        export,
        [TrackSpec(1, "<image> car", "rect", (200, 40, 40), (0.3, 0.5), (0.0, 0.0), (0.2, 0.2))],
        duration_sec=1.0,
    )
    for to in ("llava", "sharegpt"):
        # An option problem found from the labels alone, not a dataset error while writing.
        with pytest.raises(OptionsError, match=r"'<image> car'.*--label-map"):
            convert(ConvertOptions(exports=[export], to=to, out=tmp_path / "o"))
        assert not (tmp_path / "o").exists()
    assert convert(ConvertOptions(exports=[export], to="coco", out=tmp_path / "c")).rows > 0


def test_hf_shards_large_datasets_and_keeps_row_order(tmp_path, monkeypatch, hf_rows):
    from datasets import Image, load_from_disk

    import sam2_finetune.convert.hf as hf

    monkeypatch.setattr(hf, "WRITER_BATCH_SIZE", 4)
    monkeypatch.setattr(hf, "MAX_SHARD_BYTES", 100_000)
    out = tmp_path / "sharded"
    convert(ConvertOptions(exports=EXPORTS, to="hf", out=out))
    shards = sorted(p.name for p in out.glob("data-*.arrow"))
    assert len(shards) > 2 and shards[-1].endswith(f"-of-{len(shards):05d}.arrow")
    rows = list(load_from_disk(str(out)).cast_column("image", Image(decode=False)))
    assert rows == hf_rows


def test_raw_frames_from_the_source_video(tmp_path):
    pytest.importorskip("av")
    result = convert(
        ConvertOptions(
            exports=[EXPORTS[0]],
            frames=[str(SAMPLE / "street_scene.mp4")],
            to="coco",
            out=tmp_path / "c",
            keep_empty=True,
        )
    )
    listed = _expected(EXPORTS[0])["all"]
    assert result.rows == len(listed) and result.overlay_rows == 0
    images = sorted((tmp_path / "c" / "images").rglob("*.png"))
    assert len(images) == len(listed)


def test_drop_broken_leaves_out_only_the_unreadable_object(tmp_path):
    broken = _export_with_a_broken_mask(tmp_path)
    with pytest.raises(ExportError, match="convert with --drop-broken"):
        convert(ConvertOptions(exports=[broken], to="hf", out=tmp_path / "strict"))
    kept = convert(ConvertOptions(exports=[EXPORTS[1]], to="hf", out=tmp_path / "whole"))
    result = convert(
        ConvertOptions(exports=[broken], to="hf", out=tmp_path / "lenient", drop_broken=True)
    )
    assert result.objects_dropped_broken == 1
    assert result.rows == kept.rows
    assert result.objects == kept.objects - 1
    assert any("--drop-broken" in w and "kitchen_broken.zip" in w for w in result.warnings)


def test_chat_options_are_checked_and_flagged_for_every_output(tmp_path):
    with pytest.raises(OptionsError, match="bogus"):
        convert(
            ConvertOptions(exports=[EXPORTS[1]], to="hf", out=tmp_path / "a", tasks=["bogus=1"])
        )
    assert not (tmp_path / "a").exists()
    result = convert(
        ConvertOptions(exports=[EXPORTS[1]], to="coco", out=tmp_path / "b", tasks=["detect"])
    )
    (warning,) = [w for w in result.warnings if "ignored" in w]
    assert warning.startswith("--tasks was ignored: it only shapes the prompts and answers of ")
    assert "--to coco writes none" in warning
    both = convert(
        ConvertOptions(
            exports=[EXPORTS[1]],
            to="hf",
            out=tmp_path / "d",
            tasks=["detect"],
            seed=3,
            negative_rate=0.2,
        )
    )
    (warning,) = [w for w in both.warnings if "ignored" in w]
    assert warning.startswith("--negative-rate and --tasks were ignored: they only shape ")
    assert "shape(s)" not in warning
    plain = convert(ConvertOptions(exports=[EXPORTS[1]], to="hf", out=tmp_path / "c"))
    assert not any("ignored" in w for w in plain.warnings)


# --------------------------------------------------------------------------------------------
# Archive limits and folders of exports, on every command that reads exports
# --------------------------------------------------------------------------------------------


def _padded_export(tmp_path: Path) -> Path:
    """kitchen.zip with 3 MiB of trailing spaces in annotations.json (valid JSON): a legitimate
    export whose annotations.json compresses about 1000:1, past the default bound of 200."""
    members = _members(SAMPLE / "kitchen.zip")
    members["annotations.json"] += b" " * (3 * 1024**2)
    path = tmp_path / "padded.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("command", ["convert", "validate", "info"])
def test_archive_limits_are_options_of_every_command_reading_exports(tmp_path, capsys, command):
    from sam2_finetune.cli import main

    padded = _padded_export(tmp_path)
    extra = {
        "convert": ["--to", "hf", "--out", str(tmp_path / "hf")],
        "validate": ["--report", str(tmp_path / "report.md")],
        "info": [],
    }[command]
    assert main([command, str(padded), *extra]) == 2
    err = capsys.readouterr().err
    assert "compression ratio at most 200" in err
    # The fix names the flag the user types, with a bound that lets this file through.
    fix = err.partition("Fix: ")[2]
    assert "--limits.max-ratio " in fix and "ArchiveLimits.max_ratio" in fix
    bound = fix.partition("--limits.max-ratio ")[2].split()[0]
    assert main([command, str(padded), *extra, "--limits.max-ratio", bound]) in (0, 1)
    assert "compression ratio" not in capsys.readouterr().err


def test_convert_options_take_archive_limits(tmp_path):
    from sam2_finetune.errors import UnsafeArchiveError
    from sam2_finetune.ingest import ArchiveLimits

    padded = _padded_export(tmp_path)
    with pytest.raises(UnsafeArchiveError):
        convert(ConvertOptions(exports=[padded], out=tmp_path / "a"))
    result = convert(
        ConvertOptions(exports=[padded], out=tmp_path / "b", limits={"max_ratio": 5000})
    )
    assert result.rows > 0
    assert ConvertOptions.model_fields["limits"].annotation is ArchiveLimits


def test_a_folder_of_exports_converts_as_its_exports_sorted(tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    for path in EXPORTS:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an export")
    (folder / "._kitchen.zip").write_bytes(b"\0\5\26\7")  # macOS junk is not an export
    by_folder = convert(ConvertOptions(exports=[folder], out=tmp_path / "a"))
    by_files = convert(
        ConvertOptions(exports=sorted(folder / p.name for p in EXPORTS), out=tmp_path / "b")
    )
    assert by_folder.videos == by_files.videos and len(by_folder.videos) == 3
    assert [v.split("-")[0] for v in by_folder.videos] == ["kitchen", "street_scene", "warehouse"]
    assert by_folder.rows == by_files.rows


def test_an_extracted_export_folder_stays_one_export(tmp_path):
    from sam2_finetune.ingest import expand_exports

    export = tmp_path / "export"
    for name, data in _members(SAMPLE / "kitchen.zip").items():
        (export / name).parent.mkdir(parents=True, exist_ok=True)
        (export / name).write_bytes(data)
    assert expand_exports([export]) == [export]
    # Unzipping a re-zipped export gives the export one folder down: still that one export.
    wrapper = tmp_path / "wrapper"
    wrapper.mkdir()
    export.rename(wrapper / "my export (copy)")
    assert expand_exports([wrapper]) == [wrapper]
    # Two export folders side by side, and a ZIP: the folder holds three exports.
    (wrapper / "second").mkdir()
    (wrapper / "second" / "annotations.json").write_text("{}")
    (wrapper / "third.zip").write_bytes((SAMPLE / "kitchen.zip").read_bytes())
    assert expand_exports([wrapper]) == [
        wrapper / "my export (copy)",
        wrapper / "second",
        wrapper / "third.zip",
    ]
    result = convert(
        ConvertOptions(exports=[tmp_path / "wrapper" / "my export (copy)"], out=tmp_path / "hf")
    )
    assert len(result.videos) == 1


def test_sample_data_folder_works_for_info_and_validate(tmp_path, capsys):
    from sam2_finetune.cli import main

    assert main(["info", str(SAMPLE), "--json"]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [Path(s["source"]).name for s in summaries] == [
        "kitchen.zip",
        "street_scene.zip",
        "warehouse.zip",
    ]
    assert main(["validate", str(SAMPLE)]) == 0
    assert "over 3 video(s)" in capsys.readouterr().out


def test_info_on_annotations_json_says_to_pass_its_folder(tmp_path, capsys):
    from sam2_finetune.cli import main

    export = tmp_path / "export"
    for name, data in _members(SAMPLE / "kitchen.zip").items():
        (export / name).parent.mkdir(parents=True, exist_ok=True)
        (export / name).write_bytes(data)
    assert main(["info", str(export / "annotations.json")]) == 2
    err = capsys.readouterr().err
    assert "annotations.json, not the export" in err
    assert f"pass its folder instead: {export}" in err
    assert "not a readable ZIP" not in err and "found None" not in err


@pytest.mark.parametrize(
    ("given", "what", "fix"),
    [
        ("kitchen.zip", "this is a ZIP file", "sam2-finetune convert {dir}/kitchen.zip --to hf"),
        (
            "exports",
            "this is a folder of export ZIPs",
            "sam2-finetune convert {dir}/exports --to hf",
        ),
        ("export", "this is a SAM2 export folder", "sam2-finetune convert {dir}/export --to hf"),
        ("export/annotations.json", "export's annotations.json", "convert {dir}/export --to hf"),
        ("notes.txt", "this is a file, not a canonical dataset", "pass the folder"),
    ],
)
def test_loading_an_export_as_a_dataset_points_to_convert(tmp_path, given, what, fix):
    from sam2_finetune.dataset import load_canonical

    (tmp_path / "kitchen.zip").write_bytes((SAMPLE / "kitchen.zip").read_bytes())
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "a.zip").write_bytes((SAMPLE / "kitchen.zip").read_bytes())
    for name, data in _members(SAMPLE / "kitchen.zip").items():
        (tmp_path / "export" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "export" / name).write_bytes(data)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError) as raised:
        load_canonical(tmp_path / given)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / given}: ") and what in message
    assert fix.format(dir=tmp_path) in message.partition("Fix: ")[2]
    assert "neither a `Dataset` directory" not in message


def test_split_of_an_export_zip_points_to_convert(tmp_path, capsys):
    from sam2_finetune.cli import main

    assert main(["split", str(SAMPLE / "kitchen.zip"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "not a canonical dataset" in err and "Directory" not in err
    assert f"sam2-finetune convert {SAMPLE / 'kitchen.zip'} --to hf --out" in err


def test_convert_json_prints_the_result(tmp_path, capsys):
    from sam2_finetune.cli import main

    out = tmp_path / "llava"
    argv = ["convert", str(EXPORTS[1]), "--to", "llava", "--out", str(out), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # stdout is the JSON alone
    records = json.loads((out / "llava.json").read_text())
    assert printed["to"] == "llava" and printed["out"] == str(out)
    assert printed["rows"] == len(records) and printed["objects"] > 0
    assert printed["paths"]["llava_json"] == str(out / "llava.json")
    assert printed["labels"] == sorted(printed["labels"]) and len(printed["videos"]) == 1
    assert printed["warnings"] and all(w in captured.err for w in printed["warnings"])
    assert printed["polygon_fidelity"] is None or printed["polygon_fidelity"]["objects"] >= 0


def test_validate_advice_and_normalize_labels_agree(tmp_path):
    """'Straße' and 'STRASSE' differ only in case (casefold): validate calls them variants and
    --normalize-labels merges them; with lower() the two would disagree."""
    from sam2_finetune.dataset import normalize_label
    from sam2_finetune.validate import ValidateOptions, validate

    assert normalize_label("  Straße ") == normalize_label("STRASSE") == "strasse"
    assert normalize_label("  Red \t Car ") == "red car"
    members = _members(SAMPLE / "kitchen.zip")
    ann = json.loads(members["annotations.json"])
    for frame in ann["annotations"]:
        for obj in frame["objects"]:
            obj["label"] = {"cup": "Straße", "Cup": "STRASSE"}.get(obj["label"], obj["label"])
    members["annotations.json"] = json.dumps(ann).encode()
    export = tmp_path / "street_signs.zip"
    with zipfile.ZipFile(export, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    report = validate(ValidateOptions(inputs=[export], report=tmp_path / "report.md"))
    advice = {k: v for k, v in report.relabel.items() if normalize_label(k) == "strasse"}
    assert len(advice) == 1 and {*advice, *advice.values()} == {"Straße", "STRASSE"}
    typed = convert(ConvertOptions(exports=[export], out=tmp_path / "typed"))
    assert {"Straße", "STRASSE"} <= set(typed.labels)
    merged = convert(ConvertOptions(exports=[export], out=tmp_path / "n", normalize_labels=True))
    relabelled = convert(
        ConvertOptions(
            exports=[export], out=tmp_path / "m", label_map=tmp_path / "report_relabel.json"
        )
    )
    # Both ways merge exactly the labels validate named into one label.
    assert "strasse" in merged.labels and not {"Straße", "STRASSE"} & set(merged.labels)
    assert len({"Straße", "STRASSE"} & set(relabelled.labels)) == 1


def test_convert_releases_each_export_once_its_rows_are_written(tmp_path, monkeypatch):
    """Memory across many exports stays flat: when the next export is opened, the previous
    ones have dropped their parsed annotations, and none but the last is still referenced."""
    import weakref

    import sam2_finetune.convert as convert_module

    real = convert_module.iter_exports
    opened: list[weakref.ref] = []
    seen_at_open: list[list[tuple[bool, int]]] = []

    def spy(*args, **kwargs):
        for export in real(*args, **kwargs):
            if kwargs.get("video_ids") is not None:  # the pass that writes the rows
                before = [
                    (ref() is not None, len(ref().raw_frames) if ref() else 0) for ref in opened
                ]
                seen_at_open.append(before)
                opened.append(weakref.ref(export))
            yield export

    monkeypatch.setattr(convert_module, "iter_exports", spy)
    exports = [tmp_path / f"copy_{i}.zip" for i in range(4)]
    for i, path in enumerate(exports):
        path.write_bytes(EXPORTS[i % 3].read_bytes())
    result = convert(ConvertOptions(exports=exports, to="hf", out=tmp_path / "hf"))
    assert len(result.videos) == 4 and len(opened) == 4
    for k, before in enumerate(seen_at_open):
        assert all(frames == 0 for _, frames in before), k  # every earlier one released
        assert sum(alive for alive, _ in before) <= 1, k  # at most the one just finished held
    assert all(ref() is None for ref in opened)  # nothing kept once convert returns


def test_presets_point_at_the_split_folder_the_docs_and_makefile_write():
    """`make split` / the README write data/split: every preset trains on that path (or on
    sample_data), so `check` does not call the dataset missing after the quickstart."""
    import re

    import yaml

    from sam2_finetune.train.config import PRESETS_DIR

    makefile = (ROOT / "Makefile").read_text()
    assert "--out $(or $(OUT),data/split)" in makefile
    assert "--out data/split" in (ROOT / "README.md").read_text()
    presets = sorted(
        p for p in PRESETS_DIR.rglob("*.yaml") if p.parent.name not in ("accelerate", "pipelines")
    )
    assert len(presets) > 5
    for preset in presets:
        text = preset.read_text()
        dataset = yaml.safe_load(text)["data"]["dataset"]
        assert dataset in ("data/split", "sample_data"), preset
        assert not re.search(r"data/splits\b", text), preset
