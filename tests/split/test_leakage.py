"""The leakage checker: near frames and identical images, on this stage's splits and on splits made
elsewhere."""

from __future__ import annotations

import json

import datasets
import pytest

from sam2_finetune.cli import main
from sam2_finetune.dataset import canonical_features
from sam2_finetune.errors import DatasetError
from sam2_finetune.split import SplitOptions, SplitWarning, check_leakage, split
from split.split_data import (
    LABELS,
    frame,
    png,
    quiet_progress_bars,  # noqa: F401 (autouse fixture)
    save,
    video_rows,
)


def test_leakage_checker_finds_near_frames_and_identical_images(tmp_path):
    features = canonical_features(LABELS)
    same = png("shared")
    train = [frame("a", 0, [0], LABELS), frame("a", 6, [0], LABELS), frame("b", 0, [1], LABELS)]
    validation = [frame("a", 24, [0], LABELS), frame("c", 0, [1], LABELS, image=same)]
    test = [frame("a", 90, [0], LABELS), frame("d", 500, [2], LABELS, image=same)]
    parts = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_list(rows, features=features)
            for name, rows in (("train", train), ("validation", validation), ("test", test))
        }
    )
    report = check_leakage(parts)  # 1 s at 30 fps: a/000024 is 18 and 24 from train frames
    assert report.near_pairs == 2
    assert report.identical_images == 1
    assert report.identical_examples == [{"copies": ["test:d/000500", "validation:c/000000"]}]
    assert {e["b"]["image_id"] for e in report.near_examples} == {"a/000024"}
    assert not report.ok and "LEAKAGE" in report.summary()
    assert check_leakage(parts, gap_frames=19).near_pairs == 1
    assert check_leakage(parts, gap_seconds=0).near_pairs == 0
    parts.save_to_disk(str(tmp_path / "leaky"))
    assert check_leakage(tmp_path / "leaky").near_pairs == 2
    assert main(["leakage", str(tmp_path / "leaky")]) == 1
    assert main(["leakage", str(tmp_path / "leaky"), "--gap-seconds", "0"]) == 1  # identical
    single = save(tmp_path, train, LABELS, name="single")
    with pytest.raises(DatasetError, match="no splits to compare"):
        check_leakage(single)


def foreign_splits(rows: list[dict]) -> datasets.DatasetDict:
    """A split made elsewhere: plain ``Dataset.from_list`` (no ClassLabel, images as structs),
    cut with ``train_test_split``."""
    return datasets.Dataset.from_list(rows).train_test_split(test_size=0.25, seed=0)


def test_leakage_checker_works_on_a_split_made_elsewhere(tmp_path, capsys):
    rows = video_rows("a", 20, LABELS)
    parts = foreign_splits(rows)
    assert not hasattr(parts["train"].features["objects"].feature["category"], "names")
    report = check_leakage(parts)
    assert report.frames == {"train": 15, "test": 5} and report.near_pairs > 0
    # Only video_id and frame_index are needed; without image_id the examples name the frame.
    bare = parts.remove_columns(["objects", "image_id", "width", "height", "image_is_overlay"])
    assert check_leakage(bare).near_pairs == report.near_pairs
    no_images = bare.remove_columns("image")
    again = check_leakage(no_images)
    assert again.near_pairs == report.near_pairs and again.frames_without_image == 20
    # Images given as file paths (strings) are hashed from the files.
    shared = tmp_path / "same.png"
    shared.write_bytes(png("x"))
    paths = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"video_id": ["a"], "frame_index": [0], "image": [str(shared)]}
            ),
            "test": datasets.Dataset.from_dict(
                {"video_id": ["b"], "frame_index": [0], "image": [str(shared)]}
            ),
        }
    )
    assert check_leakage(paths).identical_images == 1
    # From a folder, with the CLI.
    bare.save_to_disk(str(tmp_path / "bare"))
    assert main(["leakage", str(tmp_path / "bare"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["near_pairs"] == report.near_pairs
    # What it cannot do without is one clear message naming the split and the columns.
    with pytest.raises(DatasetError, match=r"split 'train'.*frame_index"):
        check_leakage(bare.remove_columns("frame_index"))
    bare.remove_columns("video_id").save_to_disk(str(tmp_path / "novideo"))
    assert main(["leakage", str(tmp_path / "novideo")]) == 2
    err = capsys.readouterr().err
    assert "video_id" in err and "Traceback" not in err


def test_leakage_checker_on_a_random_split_of_this_stage(tmp_path):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "r", strategy="random"))
    report = check_leakage(tmp_path / "r")
    assert report.to_dict() == result.leakage.to_dict() and report.near_pairs > 0


def test_leakage_checker_refuses_frames_it_cannot_place(tmp_path):
    parts = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"video_id": ["a", "a"], "frame_index": [0, 6]}),
            "test": datasets.Dataset.from_dict(
                {"video_id": ["a", None], "frame_index": [12, None]}
            ),
        }
    )
    with pytest.raises(DatasetError, match=r"split 'test'.*1 row\(s\) without video_id"):
        check_leakage(parts)
    # Counted in the split's own rows, not in the table a selection shares with others.
    pooled = datasets.Dataset.from_dict({"video_id": ["a", None, "b"], "frame_index": [0, 1, 0]})
    clean = datasets.DatasetDict({"x": pooled.select([0]), "y": pooled.select([2])})
    assert check_leakage(clean).ok
