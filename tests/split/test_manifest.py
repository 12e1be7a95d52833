"""The split manifest: bytes that depend only on the data and options, the class bound it states,
the kept test set read back from it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings

import pytest

from sam2_finetune.cli import main
from sam2_finetune.errors import DatasetError
from sam2_finetune.split import MANIFEST_NAME, SplitOptions, SplitWarning, split, split_counts
from split.split_data import (
    LABELS,
    frame,
    min_cross_split_distance,
    multilabel_frames,
    png,
    quiet_progress_bars,  # noqa: F401 (autouse fixture)
    save,
    video_rows,
)


def test_manifest_bytes_do_not_depend_on_the_output_path(tmp_path):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    split(SplitOptions(dataset=data, out=tmp_path / "x" / "one"))
    split(SplitOptions(dataset=data, out=tmp_path / "elsewhere"))
    first = (tmp_path / "x" / "one" / MANIFEST_NAME).read_text()
    assert first == (tmp_path / "elsewhere" / MANIFEST_NAME).read_text()
    manifest = json.loads(first)
    assert list(manifest) == sorted(manifest)  # sorted keys
    assert manifest["seed"] == 42 and manifest["strategy"] == "temporal"


def test_keep_test_keeps_the_test_set_and_resplits_the_rest(tmp_path):
    rows = [r for v in range(10) for r in video_rows(f"v{v}", 10, LABELS, seed=v)]
    data = save(tmp_path, rows, LABELS)
    first = split(SplitOptions(dataset=data, out=tmp_path / "one", strategy="random", seed=1))
    more = rows + video_rows("new", 30, LABELS)
    gone = first.manifest["splits"]["test"]["image_ids"][0]
    grown = save(tmp_path, [r for r in more if r["image_id"] != gone], LABELS, name="grown")
    with pytest.warns(SplitWarning, match="not in this dataset"):
        second = split(
            SplitOptions(
                dataset=grown,
                out=tmp_path / "two",
                strategy="random",
                seed=5,
                keep_test=tmp_path / "one",
            )
        )
    kept = set(first.manifest["splits"]["test"]["image_ids"]) - {gone}
    assert set(second.manifest["splits"]["test"]["image_ids"]) == kept
    assert second.manifest["keep_test"] == {"frames": len(kept), "missing_from_dataset": [gone]}
    rest = len(more) - 1 - len(kept)
    assert second.sizes["train"] + second.sizes["validation"] == rest
    assert second.sizes["validation"] == split_counts(rest, [8 / 9, 1 / 9, 0])[1]


def test_keep_test_with_temporal_drops_frames_near_the_kept_test_set(tmp_path):
    data = save(tmp_path, video_rows("solo", 60, LABELS), LABELS)
    with pytest.warns(SplitWarning):
        first = split(SplitOptions(dataset=data, out=tmp_path / "one", strategy="random"))
    with pytest.warns(SplitWarning):
        second = split(
            SplitOptions(
                dataset=data, out=tmp_path / "two", keep_test=tmp_path / "one" / MANIFEST_NAME
            )
        )
    test_ids = first.manifest["splits"]["test"]["image_ids"]
    assert second.manifest["splits"]["test"]["image_ids"] == test_ids
    assert second.leakage.ok  # frames within 1 s of a kept test frame were dropped
    assert min_cross_split_distance(tmp_path / "two") >= 30


def test_keep_test_needs_a_manifest(tmp_path):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    with pytest.raises(DatasetError, match="no split manifest"):
        split(SplitOptions(dataset=data, out=tmp_path / "s", keep_test=tmp_path))
    (tmp_path / "bad.json").write_text('{"splits": {}}')
    with pytest.raises(DatasetError, match="not a split manifest"):
        split(SplitOptions(dataset=data, out=tmp_path / "s", keep_test=tmp_path / "bad.json"))


def test_keep_test_from_another_dataset_is_refused(tmp_path):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    other = save(tmp_path, video_rows("zz", 40, LABELS), LABELS, name="other")
    with pytest.warns(SplitWarning):
        split(SplitOptions(dataset=other, out=tmp_path / "other-split", strategy="random"))
    with pytest.raises(DatasetError, match=r"none of the 4 test frames.*another dataset"):
        split(SplitOptions(dataset=data, out=tmp_path / "s", keep_test=tmp_path / "other-split"))
    assert not (tmp_path / "s").exists()
    # A manifest whose test split is empty has nothing to keep.
    split(SplitOptions(dataset=data, out=tmp_path / "no-test", ratios=[0.9, 0.1, 0.0]))
    with pytest.raises(DatasetError, match="test split is empty"):
        split(SplitOptions(dataset=data, out=tmp_path / "s", keep_test=tmp_path / "no-test"))


def test_keep_test_bad_manifests_give_one_message_each(tmp_path, capsys):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    for name in ("missing.json", "corrupt.json", "list.json", "binary.json"):
        name = str(tmp_path / name)
        code = main(["split", str(data), "--out", str(tmp_path / "s"), "--keep-test", name])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and "Fix:" in err, err
        assert err.count("error:") == 1 and "found None" not in err, err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("strategy", ["temporal", "stratified", "random"])
def test_manifest_does_not_depend_on_row_order(tmp_path, strategy):
    rows = [r for v in range(6) for r in video_rows(f"v{v}", 15, LABELS, seed=v)]
    forward = save(tmp_path, rows, LABELS, name="forward")
    backward = save(tmp_path, rows[::-1], LABELS, name="backward")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        split(SplitOptions(dataset=forward, out=tmp_path / "f", strategy=strategy, seed=3))
        split(SplitOptions(dataset=backward, out=tmp_path / "b", strategy=strategy, seed=3))
    first = (tmp_path / "f" / MANIFEST_NAME).read_bytes()
    assert first == (tmp_path / "b" / MANIFEST_NAME).read_bytes()


def test_manifest_bytes_do_not_depend_on_the_hash_seed(tmp_path):
    rows = [r for v in range(6) for r in video_rows(f"v{v}", 15, LABELS, seed=v)]
    data = save(tmp_path, rows, LABELS)
    code = (
        "import sys, warnings\n"
        "from sam2_finetune.split import SplitOptions, split\n"
        "warnings.simplefilter('ignore')\n"
        "for strategy in ('temporal', 'stratified', 'random'):\n"
        "    split(SplitOptions(dataset=sys.argv[1], out=sys.argv[2] + strategy,\n"
        "                       strategy=strategy, seed=9))\n"
    )
    # This process hashes strings with one seed, the child with another.
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    subprocess.run(
        [sys.executable, "-c", code, str(data), str(tmp_path / "child-")],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    for strategy in ("temporal", "stratified", "random"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitWarning)
            split(SplitOptions(dataset=data, out=tmp_path / strategy, strategy=strategy, seed=9))
        here = (tmp_path / strategy / MANIFEST_NAME).read_bytes()
        assert here == (tmp_path / f"child-{strategy}" / MANIFEST_NAME).read_bytes(), strategy


def test_manifest_states_what_the_class_bound_counts(tmp_path):
    labels = [f"class_{c}" for c in range(5)]
    frames = multilabel_frames(300, len(labels), random.Random(4))
    rows = [frame(f"v{k % 6}", 6 * (k // 6), present, labels) for k, present in enumerate(frames)]
    data = save(tmp_path, rows, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        result = split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
        other = split(SplitOptions(dataset=data, out=tmp_path / "r", strategy="random"))
    bound = result.manifest["class_bound"]
    assert bound["counts"] == "frames showing the class"
    assert bound["min_frames"] == 20 and bound["tolerance_pp"] == 5.0
    distribution = result.manifest["class_distribution"]
    held = sorted(n for n, d in distribution.items() if d["frames"] >= 20)
    assert bound["classes"] == held and held
    assert bound["met"] is True
    assert all(distribution[n]["max_deviation_pp"] <= 5.0 for n in held)
    assert other.manifest["class_bound"]["met"] is None  # promised by stratified only


def test_class_bound_missed_is_stated_and_warned(tmp_path):
    # 21 frames all showing the class cannot be 98 / 1 / 1 when every split gets a frame.
    data = save(tmp_path, [frame(f"v{k}", 0, [0], LABELS) for k in range(21)], LABELS)
    with pytest.warns(SplitWarning, match="stratification could not"):
        result = split(
            SplitOptions(
                dataset=data, out=tmp_path / "s", strategy="stratified", ratios=[0.98, 0.01, 0.01]
            )
        )
    assert result.manifest["class_bound"]["met"] is False
    # Identical images dropped after stratifying can break the bound too: said, not hidden.
    # 30 copies of one image showing 'car' all stay in train; 'person' frames fill the others.
    same = png("same")
    copies = [frame(f"v{k}", 0, [0], LABELS, image=same) for k in range(30)]
    others = [frame(f"w{k}", 0, [1], LABELS) for k in range(30)]
    data = save(tmp_path, copies + others, LABELS, name="copies")
    with pytest.warns(SplitWarning, match="after dropping identical images, 1 class"):
        result = split(SplitOptions(dataset=data, out=tmp_path / "c", strategy="stratified"))
    assert result.sizes["validation"] > 0 and result.sizes["test"] > 0
    assert result.manifest["class_distribution"]["car"]["splits"]["train"]["frames"] == 24
    assert result.manifest["class_bound"]["met"] is False
    # With the copies alone, validation and test would be empty: an error, not a warning.
    alone = save(tmp_path, copies, LABELS, name="alone")
    with pytest.raises(DatasetError, match=r"splits are empty.*1 distinct image"):
        split(SplitOptions(dataset=alone, out=tmp_path / "a", strategy="stratified"))
    assert not (tmp_path / "a").exists()
