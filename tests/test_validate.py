"""Validate: every rule fires on a small crafted input and stays quiet on a near miss; reports,
exit codes, converted datasets, and the sample data."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2_finetune.cli import main
from sam2_finetune.errors import ExportError, OutputExistsError
from sam2_finetune.masks import rle_encode
from sam2_finetune.testing.synthetic import sam2_count_string
from sam2_finetune.validate import RULES, Finding, ValidateOptions, validate
from sam2_finetune.validate.rules import box_iou, variant_groups

W, H = 64, 48  # video size of the crafted exports
SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


# --------------------------------------------------------------------------------------------
# Crafting tiny exports
# --------------------------------------------------------------------------------------------


def obj(track: int, label: str, box: tuple[int, int, int, int] | None, **fields) -> dict:
    """An object entry as the demo writes it: a 256 x 256 count string of a rectangle ``box``
    ([x, y, w, h] in 256-space), its bbox and area; ``box=None`` is an empty (lost) mask."""
    mask = np.zeros((256, 256), np.uint8)
    if box is not None:
        x, y, w, h = box
        mask[y : y + h, x : x + w] = 1
    entry = {
        "object_id": track,
        "label": label,
        "mask_rle": sam2_count_string(mask),
        "bbox": list(box) if box is not None else [0, 0, 0, 0],
        "area": int(mask.sum()),
        "confidence": 0.95,
    }
    entry.update(fields)
    return entry


def scene(n: int = 12, step: int = 6) -> list[dict]:
    """A clean session: a car driving right and a person walking down, in every frame."""
    return [
        {
            "frame_index": step * i,
            "timestamp_sec": step * i / 30.0,
            "objects": [
                obj(1, "car", (20 + 4 * i, 150, 40, 30)),
                obj(2, "person", (180, 40 + 2 * i, 20, 60)),
            ],
        }
        for i in range(n)
    ]


def png(seed: int, size: tuple[int, int] = (W, H)) -> bytes:
    """A small PNG whose bytes differ per seed."""
    pixels = np.full((size[1], size[0], 3), 90, np.uint8)
    pixels[0, 0] = (seed % 256, seed // 256 % 256, 7)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_export(
    folder: Path,
    frames: list[dict],
    *,
    raw: bool = True,
    name: str = "export",
    images: dict[int, bytes] | None = None,
    skip_images: tuple[int, ...] = (),
    fps: float = 30.0,
    target_fps: float = 5.0,
) -> tuple[Path, Path | None]:
    """Write ``frames`` as a SAM2 export ZIP; with ``raw`` also a raw-frames folder holding every
    listed frame (so the images are not overlays). ``images`` overrides image bytes per frame
    index; ``skip_images`` leaves those frames without any image."""
    folder.mkdir(parents=True, exist_ok=True)
    indices = sorted({f["frame_index"] for f in frames})
    data = {i: png(i) for i in indices}
    data.update(images or {})
    annotations = {
        "video": {
            "filename": f"{name}.mp4",
            "width": W,
            "height": H,
            "source_fps": fps,
            "total_frames": indices[-1] + 1 if indices else 0,
            "duration_sec": (indices[-1] + 1) / fps if indices else 0,
        },
        "export_config": {"target_fps": target_fps, "frame_indices": indices},
        "annotations": frames,
    }
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.json", json.dumps(annotations))
        with_image = {f["frame_index"] for f in frames if f["objects"]} - set(skip_images)
        for i in sorted(with_image):
            archive.writestr(f"images/frame_{i:06d}.png", data[i])
    if not raw:
        return path, None
    frames_dir = folder / f"{name}_frames"
    frames_dir.mkdir(exist_ok=True)
    for i in indices:
        if i not in skip_images:
            (frames_dir / f"frame_{i:06d}.png").write_bytes(data[i])
    return path, frames_dir


def run(folder: Path, frames: list[dict], options: dict | None = None, **write) -> list[Finding]:
    path, raw = write_export(folder, frames, **write)
    opts = ValidateOptions(inputs=[path], frames=[raw] if raw else None, **(options or {}))
    return validate(opts).findings


def codes(findings: list[Finding]) -> Counter[str]:
    return Counter(f.code for f in findings)


def test_the_clean_scene_passes_every_rule(tmp_path):
    findings = run(tmp_path, scene())
    assert findings == []


# --------------------------------------------------------------------------------------------
# One case per rule: an input that fires it, and a near miss that does not
# --------------------------------------------------------------------------------------------

Case = Callable[[Path], list[Finding]]


def _edit(frames: list[dict], i: int, track: int, **fields) -> list[dict]:
    frames[i]["objects"][track - 1].update(fields)
    return frames


def _retime(frames: list[dict], fps: float) -> list[dict]:
    for f in frames:
        f["timestamp_sec"] = f["frame_index"] / fps
    return frames


def _extra_tracks(frames: list[dict], i: int, count: int) -> list[dict]:
    frames[i]["objects"] += [obj(10 + k, "car", (10 + 20 * k, 10, 12, 12)) for k in range(count)]
    return frames


def _only_car_in(frames: list[dict], keep_person: int) -> list[dict]:
    for f in frames[keep_person:]:
        f["objects"] = f["objects"][:1]
    return frames


def _coco(size: tuple[int, int]) -> dict:
    h, w = size
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 1
    return {"size": [h, w], "counts": rle_encode(mask)["counts"]}


def _relabel(frames: list[dict], track: int, label: str, start: int = 0) -> list[dict]:
    for f in frames[start:]:
        f["objects"][track - 1]["label"] = label
    return frames


def _empty_in(frames: list[dict], track: int, count: int) -> list[dict]:
    for f in frames[:count]:
        f["objects"][track - 1] = obj(track, f["objects"][track - 1]["label"], None)
    return frames


CASES: dict[str, tuple[Case, Case]] = {
    "empty-frame": (
        lambda p: run(p, [*scene()[:11], {"frame_index": 66, "objects": []}]),
        lambda p: run(p, scene()),
    ),
    "missing-image": (
        lambda p: run(p, scene(), raw=False, skip_images=(12,)),
        lambda p: run(p, scene(), raw=False),
    ),
    "broken-image": (
        lambda p: run(p, scene(), images={12: b"this is not an image"}),
        lambda p: run(p, scene()),
    ),
    "image-size-mismatch": (
        lambda p: run(p, scene(), images={12: png(12, (W // 2, H // 2))}),
        lambda p: run(p, scene()),
    ),
    "duplicate-frame-index": (
        lambda p: run(p, [*scene(), scene()[-1]]),
        lambda p: run(p, scene()),
    ),
    "duplicate-image": (
        lambda p: run(p, scene(), images={12: png(6)}),
        lambda p: run(p, scene(), images={12: png(1000)}),
    ),
    "frame-order": (
        lambda p: run(p, (lambda f: [f[1], f[0], *f[2:]])(scene())),
        lambda p: run(p, scene()),
    ),
    "timestamp-mismatch": (
        lambda p: run(p, (lambda f: f[3].update(timestamp_sec=9.0) or f)(scene())),
        # 10 ms off stays within half a frame (16.7 ms at 30 fps).
        lambda p: run(p, (lambda f: f[3].update(timestamp_sec=18 / 30 + 0.01) or f)(scene())),
    ),
    "fps-mismatch": (
        # A 25 fps video sampled at 5 fps steps by 5, but the export says 30 fps.
        lambda p: run(p, _retime(scene(step=5), 30.0)),
        lambda p: run(p, scene(step=6)),
    ),
    "overlay-images": (
        lambda p: run(p, scene(), raw=False),
        lambda p: run(p, scene()),
    ),
    "no-objects": (
        lambda p: run(p, _empty_in(_empty_in(scene(), 1, 12), 2, 12)),
        lambda p: run(p, _empty_in(_empty_in(scene(), 1, 11), 2, 12)),
    ),
    "broken-mask": (
        lambda p: run(p, _edit(scene(), 4, 1, mask_rle="1 2 3")),
        lambda p: run(p, scene()),
    ),
    "mask-size-mismatch": (
        # A COCO mask with another aspect ratio than the 64 x 48 video.
        lambda p: run(p, _edit(scene(), 4, 1, mask_rle=_coco((50, 50)), bbox=[16, 12, 16, 12])),
        # Twice the video size, same aspect: a legitimate rescale.
        lambda p: run(p, _edit(scene(), 4, 1, mask_rle=_coco((96, 128)), bbox=[32, 24, 32, 24])),
    ),
    "empty-masks": (
        lambda p: run(p, _empty_in(scene(), 1, 3)),
        lambda p: run(p, scene()),
    ),
    "track-mostly-empty": (
        lambda p: run(p, _empty_in(scene(), 1, 6)),  # 6 of 12: 50 %
        lambda p: run(p, _empty_in(scene(), 1, 5)),
    ),
    "bbox-invalid": (
        lambda p: run(p, _edit(scene(), 4, 1, bbox=[36, 150, 0, 30])),
        # An empty mask's [0, 0, 0, 0] box is how the demo writes lost objects.
        lambda p: run(p, _empty_in(scene(), 1, 1)),
    ),
    "bbox-outside": (
        lambda p: run(p, _edit(scene(), 4, 1, bbox=[230, 150, 40, 30])),
        lambda p: run(p, _edit(scene(), 4, 1, bbox=[36, 150, 40, 30])),
    ),
    "bbox-mask-mismatch": (
        lambda p: run(p, _edit(scene(), 4, 1, bbox=[150, 20, 40, 30])),
        lambda p: run(p, _edit(scene(), 4, 1, bbox=[38, 152, 40, 30])),  # 2 px off
    ),
    "tiny-object": (
        lambda p: run(p, scene(), {"tiny_area_share": 0.03}),  # the car covers ~1.8 %
        lambda p: run(p, scene(), {"tiny_area_share": 0.005}),
    ),
    "area-outlier": (
        lambda p: run(p, _edit(scene(20), 10, 1, **obj(1, "car", (40, 100, 120, 120)))),
        lambda p: run(p, _edit(scene(20), 10, 1, **obj(1, "car", (60, 150, 48, 30)))),
    ),
    "density-outlier": (
        lambda p: run(p, _extra_tracks(scene(), 5, 8)),
        lambda p: run(p, _extra_tracks(scene(), 5, 1)),
    ),
    "track-jump": (
        lambda p: run(p, _edit(scene(), 6, 1, **obj(1, "car", (200, 20, 40, 30)))),
        lambda p: run(p, _edit(scene(), 6, 1, **obj(1, "car", (50, 152, 40, 30)))),
    ),
    "track-label-change": (
        lambda p: run(p, _relabel(scene(), 1, "truck", start=6), {"ratios": [1.0]}),
        lambda p: run(p, _relabel(scene(), 1, "truck"), {"ratios": [1.0]}),
    ),
    "unnamed-track": (
        lambda p: run(p, _relabel(scene(), 2, "object_2")),
        lambda p: run(p, _relabel(scene(), 2, "object two")),
    ),
    "label-variants": (
        lambda p: run(p, _relabel(scene(), 2, " Car")),
        lambda p: run(p, _relabel(scene(), 2, "cars")),
    ),
    "class-imbalance": (
        lambda p: run(p, _only_car_in(scene(20), 2), {"ratios": [1.0]}),  # 20:2
        lambda p: run(p, _only_car_in(scene(20), 3), {"ratios": [1.0]}),  # 20:3
    ),
    "rare-class": (
        lambda p: run(p, _only_car_in(scene(), 9)),  # 0.1 ratios need 10 frames
        lambda p: run(p, _only_car_in(scene(), 10)),
    ),
}


def test_every_rule_has_a_case():
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("code", list(RULES))
def test_rule_fires_on_its_case_and_not_on_the_near_miss(tmp_path, code):
    fires, quiet = CASES[code]
    fired = fires(tmp_path / "fires")
    assert code in codes(fired), codes(fired)
    for f in fired:
        assert f.severity == RULES[f.code].severity
        assert f.message and f.suggestion
    hit = next(f for f in fired if f.code == code)
    if RULES[code].scope != "end":
        assert hit.video_id and hit.source
    quiet_findings = quiet(tmp_path / "quiet")
    assert code not in codes(quiet_findings), [f for f in quiet_findings if f.code == code]


def test_findings_say_where(tmp_path):
    fired = run(tmp_path, _edit(scene(), 4, 1, mask_rle="1 2 3"))
    (broken,) = [f for f in fired if f.code == "broken-mask"]
    assert (broken.frame_index, broken.track_id, broken.label) == (24, 1, "car")
    assert "65536" in broken.message or "square" in broken.message
    unreadable = run(tmp_path / "u", [*scene()[:11], {"frame_index": 66, "objects": [None]}])
    (entry,) = [f for f in unreadable if f.code == "broken-mask"]
    assert entry.frame_index == 66 and "not a JSON object" in entry.message
    jump = run(tmp_path / "j", _edit(scene(), 6, 1, **obj(1, "car", (200, 20, 40, 30))))
    there, back = [f for f in jump if f.code == "track-jump"]
    assert (there.frame_index, there.track_id, there.value) == (36, 1, 0.0)
    assert "frame 30" in there.message
    assert back.frame_index == 42


def test_timestamps_following_another_fps_are_one_finding(tmp_path):
    fired = run(tmp_path, _retime(scene(), 25.0))
    (hit,) = [f for f in fired if f.code == "timestamp-mismatch"]
    assert hit.value == pytest.approx(25.0)
    assert "25 fps" in hit.message


def test_fps_mismatch_estimates_the_real_rate(tmp_path):
    fired = run(tmp_path, _retime(scene(step=5), 30.0))
    (hit,) = [f for f in fired if f.code == "fps-mismatch"]
    assert hit.value == pytest.approx(25.0)


def test_class_imbalance_reports_the_ratio(tmp_path):
    fired = run(tmp_path, _only_car_in(scene(20), 2), {"ratios": [1.0]})
    (hit,) = [f for f in fired if f.code == "class-imbalance"]
    assert hit.value == pytest.approx(10.0)
    assert "'car' has 20" in hit.message and "'person' 2" in hit.message


def test_thresholds_are_options(tmp_path):
    frames = _only_car_in(scene(20), 3)  # 20:3
    quiet = run(tmp_path / "a", frames, {"ratios": [1.0]})
    loud = run(tmp_path / "b", frames, {"ratios": [1.0], "imbalance_ratio": 5})
    assert "class-imbalance" not in codes(quiet)
    assert "class-imbalance" in codes(loud)


def test_rare_class_follows_the_requested_ratios(tmp_path):
    frames = _only_car_in(scene(), 5)
    assert "rare-class" in codes(run(tmp_path / "a", frames))  # 0.1 -> 10 frames
    assert "rare-class" not in codes(run(tmp_path / "b", frames, {"ratios": [0.5, 0.5]}))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0


def test_variant_groups_keep_the_most_frequent_spelling():
    groups = variant_groups(Counter({"Car": 5, "car": 9, " car ": 1, "bus": 3, "Bus": 3}))
    assert groups == {"car": ["car", "Car", " car "], "bus": ["Bus", "bus"]}


# --------------------------------------------------------------------------------------------
# Reports, CLI, exit codes
# --------------------------------------------------------------------------------------------


def test_reports_are_written_and_complete(tmp_path):
    frames = scene()
    frames[4]["objects"][0]["mask_rle"] = "1 2 3"
    for f in frames:
        f["objects"][1]["label"] = "Car"
    path, _ = write_export(tmp_path, frames, raw=False)
    out = tmp_path / "out"
    report = validate(
        ValidateOptions(inputs=[path], report=out / "report.md", json_report=out / "report.json")
    )
    assert report.status == "errors" and report.exit_code == 1
    markdown = (out / "report.md").read_text()
    for text in (
        "**Result: ERRORS**",
        "## Class distribution",
        "![class distribution](report_classes.png)",
        "## Mask areas and density",
        "### Masks or objects that cannot be read (`broken-mask`, error, 1)",
        "### Overlay images",
        "## Recommendations",
        '"Car": "car"',
    ):
        assert text in markdown
    assert (out / "report_classes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    assert len(data["findings"]) == len(report.findings)
    assert data["counts"] == report.counts and data["exit_code"] == 1
    assert data["relabel"] == {"Car": "car"}
    assert {c["label"] for c in data["classes"]} == {"car", "Car"}

    with pytest.raises(OutputExistsError):
        validate(ValidateOptions(inputs=[path], report=out / "report.md"))
    validate(ValidateOptions(inputs=[path], report=out / "report.md", overwrite=True))


def test_markdown_lists_the_first_examples_only(tmp_path):
    path, _ = write_export(
        tmp_path,
        [*scene(), *({"frame_index": 100 + i, "objects": []} for i in range(8))],
        raw=False,
    )
    validate(ValidateOptions(inputs=[path], report=tmp_path / "r.md", examples=3))
    section = (tmp_path / "r.md").read_text().split("(`empty-frame`")[1].split("###")[0]
    assert section.count("\n- ") == 4  # three examples and "... and 5 more"
    assert "and 5 more" in section


def test_cli_exit_codes(tmp_path, capsys):
    clean, raw = write_export(tmp_path / "clean", scene())
    assert main(["validate", str(clean), "--frames", str(raw)]) == 0
    overlays, _ = write_export(tmp_path / "overlays", scene(), raw=False)
    assert main(["validate", str(overlays)]) == 0  # warnings only
    assert main(["validate", str(overlays), "--fail-on", "warning"]) == 1
    broken, _ = write_export(tmp_path / "broken", _edit(scene(), 4, 1, mask_rle="1 2 3"))
    assert main(["validate", str(broken)]) == 1
    assert main(["validate", str(tmp_path / "missing.zip")]) == 2
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert main(["validate", str(tmp_path / "junk.zip")]) == 2
    assert main(["validate", str(clean), "--ratios", "0.5", "0.2", "0.2"]) == 2
    json_path = tmp_path / "r.json"
    assert main(["validate", str(overlays), "--json", str(json_path)]) == 0
    assert json.loads(json_path.read_text())["status"] == "warnings"
    out = capsys.readouterr()
    assert "overlay-images" in out.out
    assert "missing.zip" in out.err and "Traceback" not in out.err


def test_unreadable_input_raises(tmp_path):
    with pytest.raises(ExportError):
        validate(ValidateOptions(inputs=[tmp_path / "nope.zip"]))


def test_json_option_by_alias_and_by_name(tmp_path):
    by_alias = ValidateOptions.model_validate({"inputs": ["a.zip"], "json": "r.json"})
    by_name = ValidateOptions(inputs=["a.zip"], json_report="r.json")
    assert by_alias.json_report == by_name.json_report == Path("r.json")


def test_masks_are_never_decoded(tmp_path, monkeypatch):
    from pycocotools import mask as coco_mask

    def refuse(*args, **kwargs):
        raise AssertionError("validate decoded a mask")

    monkeypatch.setattr(coco_mask, "decode", refuse)
    monkeypatch.setattr("sam2_finetune.masks.rle_decode", refuse)
    frames = _edit(scene(), 6, 1, **obj(1, "car", (200, 20, 40, 30)))
    assert "track-jump" in codes(run(tmp_path, frames))
    # A converted dataset's masks too: areas and boxes from the compressed RLEs.
    path, raw = write_export(tmp_path / "d", frames)
    hf = dataset_from_export(path, raw, tmp_path / "hf")
    assert "track-jump" in codes(validate(ValidateOptions(inputs=[hf])).findings)


def test_no_torch_import(tmp_path):
    path, _ = write_export(tmp_path, scene())
    code = (
        "import sys\n"
        "from sam2_finetune.validate import ValidateOptions, validate\n"
        f"validate(ValidateOptions(inputs=[{str(path)!r}], report={str(tmp_path / 'r.md')!r}))\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# Converted datasets: the same rules through the same record view
# --------------------------------------------------------------------------------------------


def dataset_from_export(path: Path, frames_dir: Path | None, out: Path, shuffle: bool = False):
    """The canonical dataset of an export, built here from ingest (not via convert), so the test
    checks the record view rather than the converter."""
    from datasets import Dataset

    from sam2_finetune.dataset import canonical_features, image_id
    from sam2_finetune.ingest import read_export

    export = read_export(path, frames=frames_dir)
    rows = []
    for frame in export.frames:
        if frame.image is None:
            continue
        rows.append(
            {
                "image": {"bytes": frame.image.read_bytes(), "path": None},
                "image_id": image_id(export.video.video_id, frame.frame_index),
                "video_id": export.video.video_id,
                "frame_index": frame.frame_index,
                "timestamp_sec": frame.timestamp_sec,
                "width": export.video.width,
                "height": export.video.height,
                "image_is_overlay": frame.image.is_overlay,
                "objects": [
                    {
                        "track_id": o.track_id,
                        "label": o.label,
                        "category": 0,
                        "bbox": list(o.bbox),
                        "area": o.area,
                        "segmentation": dict(o.mask),
                    }
                    for o in frame.visible_objects
                ],
            }
        )
    labels = sorted({o["label"] for r in rows for o in r["objects"]})
    for r in rows:
        for o in r["objects"]:
            o["category"] = labels.index(o["label"])
    if shuffle:
        rows = rows[::-1]
    Dataset.from_list(rows, features=canonical_features(labels)).save_to_disk(str(out))
    return out


SHARED = {
    "track-jump",
    "track-label-change",
    "unnamed-track",
    "label-variants",
    "class-imbalance",
    "rare-class",
    "duplicate-image",
    "timestamp-mismatch",
    "tiny-object",
}


def test_a_dataset_yields_the_same_findings_as_its_export(tmp_path):
    frames = _edit(scene(), 6, 1, **obj(1, "car", (200, 20, 40, 30)))
    for f in frames[8:]:
        f["objects"][1]["label"] = "Person "
    frames[3]["timestamp_sec"] = 5.0
    path, raw = write_export(tmp_path, frames, images={30: png(24)})
    hf = dataset_from_export(path, raw, tmp_path / "hf", shuffle=True)

    def key(findings):
        return sorted(
            (f.code, f.frame_index, f.track_id, f.label) for f in findings if f.code in SHARED
        )

    from_export = validate(ValidateOptions(inputs=[path], frames=[raw])).findings
    from_dataset = validate(ValidateOptions(inputs=[hf])).findings
    assert {"track-jump", "track-label-change", "label-variants", "duplicate-image"} <= set(
        codes(from_export)
    )
    assert "timestamp-mismatch" in codes(from_export)
    assert key(from_dataset) == key(from_export)
    assert "frame-order" not in codes(from_dataset)  # shuffled rows are normal in a dataset
    # End-of-run findings (class balance, variants) belong to no single input.
    assert {f.source for f in from_dataset} == {str(hf), None}


def _rewrite_objects(hf: Path, out: Path, edit) -> Path:
    from datasets import load_from_disk

    ds = load_from_disk(str(hf))
    ds.map(lambda row: {"objects": edit(row["objects"])}).save_to_disk(str(out))
    return out


def test_dataset_masks_are_checked(tmp_path):
    path, raw = write_export(tmp_path, scene())
    hf = dataset_from_export(path, raw, tmp_path / "hf")
    assert validate(ValidateOptions(inputs=[hf])).findings == []

    def wrong_size(objects):
        objects[0]["segmentation"]["size"] = [H * 2, W]
        return objects

    def bad_counts(objects):
        objects[0]["segmentation"]["counts"] = "0"
        return objects

    fired = codes(
        validate(
            ValidateOptions(inputs=[_rewrite_objects(hf, tmp_path / "a", wrong_size)])
        ).findings
    )
    assert fired["broken-mask"] == 12  # counts add up to h x w of the old size, not the new
    fired = codes(
        validate(
            ValidateOptions(inputs=[_rewrite_objects(hf, tmp_path / "b", bad_counts)])
        ).findings
    )
    assert fired["broken-mask"] == 12


def test_dataset_mask_of_another_size(tmp_path):
    path, raw = write_export(tmp_path, scene())
    hf = dataset_from_export(path, raw, tmp_path / "hf")
    other = rle_encode(np.ones((H // 2, W // 2), np.uint8))

    def resized(objects):
        objects[0]["segmentation"] = {"size": other["size"], "counts": other["counts"]}
        return objects

    fired = codes(
        validate(ValidateOptions(inputs=[_rewrite_objects(hf, tmp_path / "a", resized)])).findings
    )
    assert fired["mask-size-mismatch"] == 12


def test_dataset_dict_splits_are_validated(tmp_path):
    from datasets import DatasetDict, load_from_disk

    path, raw = write_export(tmp_path, scene())
    ds = load_from_disk(str(dataset_from_export(path, raw, tmp_path / "hf")))
    DatasetDict({"train": ds.select(range(8)), "test": ds.select(range(8, 12))}).save_to_disk(
        str(tmp_path / "splits")
    )
    report = validate(ValidateOptions(inputs=[tmp_path / "splits"]))
    assert report.totals["videos"] == 2 and report.totals["frames"] == 12
    assert report.findings == []


def test_raw_frames_for_a_dataset_are_refused(tmp_path):
    from sam2_finetune.errors import OptionsError

    path, raw = write_export(tmp_path, scene())
    hf = dataset_from_export(path, raw, tmp_path / "hf")
    with pytest.raises(OptionsError):
        validate(ValidateOptions(inputs=[hf], frames=[raw]))


# --------------------------------------------------------------------------------------------
# The sample data
# --------------------------------------------------------------------------------------------


def test_sample_data_warns_as_it_should_and_has_no_errors(tmp_path):
    exports = sorted(SAMPLE.glob("*.zip"))
    report = validate(ValidateOptions(inputs=exports, report=tmp_path / "report.md"))
    found = codes(report.findings)
    assert report.counts["error"] == 0, [f for f in report.findings if f.severity == "error"]
    assert found["overlay-images"] == len(exports)
    assert found["label-variants"] == 1  # cup / Cup
    assert found["track-label-change"] == 1 and found["unnamed-track"] == 1  # object_4
    assert found["empty-frame"] == 9 and found["empty-masks"] == 3
    assert report.relabel == {"Cup": "cup", "object_4": "cutting board"}
    assert report.exit_code == 0 and report.status == "warnings"
    assert set(found) <= {
        "overlay-images",
        "label-variants",
        "track-label-change",
        "unnamed-track",
        "empty-frame",
        "empty-masks",
        "area-outlier",
    }


def test_sample_raw_frames_clear_the_overlay_warning():
    report = validate(
        ValidateOptions(inputs=[SAMPLE / "street_scene.zip"], frames=[SAMPLE / "street_scene.mp4"])
    )
    assert "overlay-images" not in codes(report.findings)
    assert report.counts["error"] == 0 and report.counts["warning"] == 0


def test_docs_list_every_rule_and_option():
    text = (Path(__file__).resolve().parent.parent / "docs" / "validate.md").read_text()
    for code in RULES:
        assert f"| `{code}` |" in text, code
    for name, field in ValidateOptions.model_fields.items():
        if name != "inputs":
            assert f"`--{(field.alias or name).replace('_', '-')}`" in text, name


# --------------------------------------------------------------------------------------------
# Review of issue 4: gaps found by running validate as a user
# --------------------------------------------------------------------------------------------


def test_a_report_path_that_is_a_folder_is_one_message_before_reading(tmp_path, capsys):
    path, _ = write_export(tmp_path, scene(), raw=False)
    folder = tmp_path / "reports"
    folder.mkdir()  # empty: ensure_writable lets it through, a file rename onto it fails
    assert main(["validate", str(path), "--report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "'report'" in err and "Traceback" not in err
    # Checked before any input is read: a missing input is not what stops it.
    assert main(["validate", str(tmp_path / "missing.zip"), "--json", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "'json'" in err and "missing.zip" not in err
    assert not any(folder.iterdir())


def test_the_relabel_map_is_written_beside_the_report_ready_for_convert(tmp_path):
    from sam2_finetune.convert import ConvertOptions, convert
    from sam2_finetune.dataset import load_canonical

    frames = _relabel(_relabel(scene(), 2, "object_2"), 2, "person", start=6)
    for f in frames[:4]:
        f["objects"][0]["label"] = "Car"
    path, raw = write_export(tmp_path, frames)
    report = validate(ValidateOptions(inputs=[path], frames=[raw], report=tmp_path / "r.md"))
    relabel = tmp_path / "r_relabel.json"
    assert (
        json.loads(relabel.read_text())
        == report.relabel
        == {
            "Car": "car",
            "object_2": "person",
        }
    )
    assert str(relabel) in (tmp_path / "r.md").read_text()
    assert str(relabel) in report.outputs
    result = convert(
        ConvertOptions(exports=[path], frames=[raw], out=tmp_path / "hf", label_map=relabel)
    )
    assert sorted(result.labels) == ["car", "person"]
    labels = {o["label"] for row in load_canonical(tmp_path / "hf") for o in row["objects"]}
    assert labels == {"car", "person"}
    # Nothing to rename: an empty map, still valid for --label-map (no stale map left behind).
    clean, raw = write_export(tmp_path / "clean", scene())
    validate(
        ValidateOptions(inputs=[clean], frames=[raw], report=tmp_path / "r.md", overwrite=True)
    )
    assert json.loads(relabel.read_text()) == {}


def test_a_placeholder_another_track_keeps_is_not_relabelled(tmp_path):
    renamed, raw_a = write_export(
        tmp_path, _relabel(_relabel(scene(), 2, "object_2"), 2, "person", start=6), name="a"
    )
    # In another video track 2 is a different, never-named object: a label map renaming
    # object_2 everywhere would call it a person.
    kept, raw_b = write_export(tmp_path, _relabel(scene(), 2, "object_2"), name="b")
    both = validate(ValidateOptions(inputs=[renamed, kept], frames=[raw_a, raw_b]))
    assert "object_2" not in both.relabel
    alone = validate(ValidateOptions(inputs=[renamed], frames=[raw_a]))
    assert alone.relabel == {"object_2": "person"}


def test_identical_images_of_frames_without_objects_are_not_duplicates(tmp_path):
    # A static background in two empty frames: nobody trains on them.
    frames = [*scene(), {"frame_index": 72, "objects": []}, {"frame_index": 78, "objects": []}]
    path, raw = write_export(tmp_path, frames, images={72: png(5000), 78: png(5000)})
    assert "duplicate-image" not in codes(
        validate(ValidateOptions(inputs=[path], frames=[raw])).findings
    )
    # The sample's raw frames hold such a pair (frames 0 and 234): no warning at all.
    report = validate(
        ValidateOptions(
            inputs=[SAMPLE / "street_scene.zip"], frames=[SAMPLE / "street_scene_frames"]
        )
    )
    assert report.counts["warning"] == 0 and report.counts["error"] == 0, report.findings


def test_a_split_video_keeps_its_id_and_findings_name_the_split(tmp_path):
    from datasets import DatasetDict, load_from_disk

    frames = _relabel(scene(), 2, "object_2", start=10)  # renamed in the test part
    path, raw = write_export(tmp_path, frames)
    ds = load_from_disk(str(dataset_from_export(path, raw, tmp_path / "hf")))
    DatasetDict({"train": ds.select(range(8)), "test": ds.select(range(8, 12))}).save_to_disk(
        str(tmp_path / "splits")
    )
    report = validate(ValidateOptions(inputs=[tmp_path / "splits"], report=tmp_path / "r.md"))
    assert report.totals["distinct_videos"] == 1 and report.totals["tracks"] == 2
    assert {(c.label, c.videos, c.tracks) for c in report.classes} == {
        ("car", 1, 1),
        ("person", 1, 1),
        ("object_2", 1, 1),
    }
    assert {f.video_id for f in report.findings} - {None} == {ds[0]["video_id"]}
    (unnamed,) = [f for f in report.findings if f.code == "unnamed-track"]
    assert unnamed.split == "test" and unnamed.source == f"{tmp_path / 'splits'}[test]"
    markdown = (tmp_path / "r.md").read_text()
    assert f"`{ds[0]['video_id']}` (test) frame 60" in markdown
    assert "| 1 (in 2 split parts) |" in markdown
    # The same dataset given twice is two inputs: its copy gets a suffix.
    twice = validate(ValidateOptions(inputs=[tmp_path / "hf", tmp_path / "hf"]))
    assert twice.totals["distinct_videos"] == 2


def test_broken_masks_say_what_to_do_once_and_how(tmp_path):
    path, raw = write_export(tmp_path, _edit(scene(), 4, 1, mask_rle="1 2 3"))
    report = validate(ValidateOptions(inputs=[path], frames=[raw]))
    (broken,) = [f for f in report.findings if f.code == "broken-mask"]
    assert "Fix:" not in broken.message and "validate` lists" not in broken.message
    assert broken.message.endswith(".") and "65536" in broken.message
    (advice,) = [r for r in report.recommendations if "broken-mask" in r]
    assert "annotations.json" in advice and "1 object(s) in 1 frame(s)" in advice


def test_other_convert_formats_are_refused_with_what_they_are(tmp_path, capsys):
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "llava.json").write_text("[]")
    assert main(["validate", str(tmp_path / "llava")]) == 2
    err = capsys.readouterr().err
    assert "convert --to llava" in err and "--to hf" in err and "Traceback" not in err


def test_frames_pairs_name_the_export_they_replace(tmp_path, capsys):
    a, raw_a = write_export(tmp_path, scene(), name="alpha")
    b, _ = write_export(tmp_path, scene(), name="beta")
    assert (
        main(
            [
                "validate",
                str(a),
                str(b),
                "--frames",
                f"alpha={raw_a}",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    findings = json.loads((tmp_path / "r.json").read_text())["findings"]
    overlays = [f["video_id"] for f in findings if f["code"] == "overlay-images"]
    assert len(overlays) == 1 and overlays[0].startswith("beta")
    assert main(["validate", str(a), str(b), "--frames", f"gamma={raw_a}"]) == 2
    assert "matches 0 exports" in capsys.readouterr().err


def test_an_export_without_any_object_is_an_error(tmp_path, capsys):
    empty = [{"frame_index": 6 * i, "timestamp_sec": 0.2 * i, "objects": []} for i in range(5)]
    path, _ = write_export(tmp_path, empty, raw=False)
    report = validate(ValidateOptions(inputs=[path], report=tmp_path / "r.md"))
    (hit,) = [f for f in report.findings if f.code == "no-objects"]
    assert "no objects in any of its 5 listed frames" in hit.message
    assert report.exit_code == 1 and "No visible objects." in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r_classes.png").read_bytes()[:4] == b"\x89PNG"


def test_imbalance_recommends_resampling_factors(tmp_path):
    report = validate(
        ValidateOptions(
            inputs=[write_export(tmp_path, _only_car_in(scene(20), 2), raw=False)[0]],
            ratios=[1.0],
        )
    )
    (advice,) = [r for r in report.recommendations if "class-imbalance" in r]
    assert "oversampl" in advice.lower() and "`person` x" in advice


def test_a_box_of_nan_or_infinity_is_invalid(tmp_path):
    # Python's json writes and reads NaN / Infinity; they are no coordinates.
    for i, bad in enumerate(([float("nan"), 150, 40, 30], [36, 150, float("inf"), 30])):
        fired = run(tmp_path / str(i), _edit(scene(), 4, 1, bbox=bad))
        (hit,) = [f for f in fired if f.code == "bbox-invalid"]
        assert "finite" in hit.message and hit.frame_index == 24
        assert "bbox-mask-mismatch" not in codes(fired) and "bbox-outside" not in codes(fired)


def test_a_blank_label_is_flagged_and_kept_out_of_the_relabel_map(tmp_path):
    from sam2_finetune.convert.rows import load_label_map

    # Two blank spellings are "variants" of each other: no map may rename one to the other.
    frames = _relabel(_relabel(scene(), 2, "  "), 2, " ", start=6)
    path, raw = write_export(tmp_path, frames)
    report = validate(ValidateOptions(inputs=[path], frames=[raw], report=tmp_path / "r.md"))
    (hit,) = [f for f in report.findings if f.code == "unnamed-track"]
    assert hit.label == "  " and "blank" in hit.message
    # convert refuses a blank key: the map must still load.
    assert report.relabel == {}
    assert load_label_map(tmp_path / "r_relabel.json").mapping == {}


def test_a_timestamp_that_is_no_number_disagrees(tmp_path):
    frames = scene()
    frames[3]["timestamp_sec"] = "0.6"
    frames[5]["timestamp_sec"] = float("nan")
    fired = [f for f in run(tmp_path, frames) if f.code == "timestamp-mismatch"]
    assert [(f.frame_index, f.message) for f in fired] == [
        (18, "timestamp_sec is not a number"),
        (30, "timestamp_sec is not a number"),
    ]
