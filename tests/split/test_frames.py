"""The frame table: visible objects, the frame rate behind the gap, the input checks, pooling a
previous split."""

from __future__ import annotations

import datasets
import pytest

from sam2_finetune.cli import main
from sam2_finetune.dataset import canonical_features
from sam2_finetune.errors import DatasetError
from sam2_finetune.split import SplitOptions, SplitWarning, split
from split.split_data import (
    LABELS,
    frame,
    min_cross_split_distance,
    quiet_progress_bars,  # noqa: F401 (autouse fixture)
    save,
    video_rows,
)


def test_lost_objects_do_not_count_as_present(tmp_path):
    labels = ["car", "ghost"]
    rows = [frame("v", 6 * k, [0], labels, lost=[1]) for k in range(30)]
    data = save(tmp_path, rows, labels)
    result = split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
    assert result.manifest["class_distribution"]["ghost"]["frames"] == 0
    assert result.manifest["class_distribution"]["car"]["frames"] == 30


def test_frame_rate_is_inferred_from_frame_index_and_timestamps(tmp_path):
    rows = video_rows("pal", 60, LABELS, step=5, fps=25.0)
    data = save(tmp_path, rows, LABELS)
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s"))
    assert result.manifest["gap"]["videos"]["pal"]["fps"] == 25.0
    assert result.manifest["gap"]["videos"]["pal"]["frames"] == 25
    assert min_cross_split_distance(tmp_path / "s") >= 25


def test_empty_dataset_and_repeated_ids_are_refused(tmp_path):
    empty = save(tmp_path, [], LABELS, name="empty")
    with pytest.raises(DatasetError, match="no frames"):
        split(SplitOptions(dataset=empty, out=tmp_path / "s"))
    twice = save(tmp_path, video_rows("a", 5, LABELS) * 2, LABELS, name="twice")
    with pytest.raises(DatasetError, match="image ids repeat"):
        split(SplitOptions(dataset=twice, out=tmp_path / "s"))


def test_pooling_splits_with_different_labels_is_one_message(tmp_path, capsys):
    parts = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(
                video_rows("a", 10, ["x", "y"]), features=canonical_features(["x", "y"])
            ),
            "test": datasets.Dataset.from_list(
                video_rows("b", 10, ["p", "q"]), features=canonical_features(["p", "q"])
            ),
        }
    )
    parts.save_to_disk(str(tmp_path / "mixed"))
    assert main(["split", str(tmp_path / "mixed"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "'test'" in err and "['p', 'q']" in err, err
