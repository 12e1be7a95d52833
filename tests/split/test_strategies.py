"""The assignment strategies: split counts, stratification and its bound, temporal videos and
blocks with the gap, identical images, seeded generators."""

from __future__ import annotations

import itertools
import random
import warnings

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam2_finetune.errors import DatasetError
from sam2_finetune.split import (
    MANIFEST_NAME,
    SPLIT_NAMES,
    SplitOptions,
    SplitWarning,
    check_leakage,
    split,
    split_counts,
    stratify,
)
from split.split_data import (
    LABELS,
    frame,
    min_cross_split_distance,
    multilabel_frames,
    quiet_progress_bars,  # noqa: F401 (autouse fixture)
    save,
    video_rows,
)


def test_split_counts_fill_every_nonzero_split():
    assert split_counts(10, [0.8, 0.1, 0.1]) == [8, 1, 1]
    assert split_counts(5, [0.8, 0.1, 0.1]) == [3, 1, 1]
    assert split_counts(7, [1, 0, 0]) == [7, 0, 0]
    assert split_counts(3, [0.5, 0, 0.5]) == [2, 0, 1]
    assert sum(split_counts(1001, [0.7, 0.2, 0.1])) == 1001


def test_random_split_is_reproducible_and_leaves_global_rngs_alone(tmp_path):
    rows = video_rows("a", 30, LABELS) + video_rows("b", 30, LABELS)
    data = save(tmp_path, rows, LABELS)
    random.seed(1)
    np.random.seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy())
    with pytest.warns(SplitWarning):
        first = split(SplitOptions(dataset=data, out=tmp_path / "r1", strategy="random", seed=7))
    assert random.getstate() == before[0]
    assert (np.random.get_state()[1] == before[1]).all()
    random.seed(2)  # a different global state must not change the split
    np.random.seed(2)
    with pytest.warns(SplitWarning):
        second = split(SplitOptions(dataset=data, out=tmp_path / "r2", strategy="random", seed=7))
        other = split(SplitOptions(dataset=data, out=tmp_path / "r3", strategy="random", seed=8))
    one = (tmp_path / "r1" / MANIFEST_NAME).read_bytes()
    assert one == (tmp_path / "r2" / MANIFEST_NAME).read_bytes()
    assert one != (tmp_path / "r3" / MANIFEST_NAME).read_bytes()
    assert first.sizes == second.sizes == other.sizes == {"train": 48, "validation": 6, "test": 6}
    # The saved splits hold exactly the manifest's ids, and together every frame once.
    loaded = datasets.load_from_disk(str(tmp_path / "r1"))
    ids = []
    for name in SPLIT_NAMES:
        assert sorted(loaded[name]["image_id"]) == first.manifest["splits"][name]["image_ids"]
        ids += loaded[name]["image_id"]
    assert sorted(ids) == sorted(r["image_id"] for r in rows)
    # Frame-level splits of video data leak: the manifest says so and a warning tells why.
    assert first.leakage.near_pairs > 0
    assert any("--strategy temporal" in w for w in first.warnings)


def test_stratified_bound_on_a_generated_multilabel_set(tmp_path):
    labels = [f"class_{c}" for c in range(7)]
    rng = random.Random(3)
    frames = multilabel_frames(400, len(labels), rng)
    rows = [frame(f"v{k % 8}", 6 * (k // 8), present, labels) for k, present in enumerate(frames)]
    data = save(tmp_path, rows, labels)
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
    distribution = result.manifest["class_distribution"]
    loaded = datasets.load_from_disk(str(tmp_path / "s"))
    checked = 0
    for c, name in enumerate(labels):
        total = sum(1 for present in frames if c in present)
        entry = distribution[name]
        assert entry["frames"] == total
        for s, split_name in enumerate(SPLIT_NAMES):
            # The manifest's figures are the saved data's figures.
            actual = sum(
                1
                for objects in loaded[split_name]["objects"]
                if any(o["category"] == c for o in objects)
            )
            assert entry["splits"][split_name]["frames"] == actual
            if total >= 20:
                assert abs(actual / total - [0.8, 0.1, 0.1][s]) <= 0.05 + 1e-9, (name, split_name)
        if total >= 20:
            checked += 1
            assert entry["max_deviation_pp"] <= 5.0 + 1e-6
    assert checked >= 4
    assert result.sizes == {"train": 320, "validation": 40, "test": 40}


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(20, 300),
    n_classes=st.integers(1, 8),
    seed=st.integers(0, 10_000),
    ratios=st.sampled_from(
        [[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.6, 0.2, 0.2], [0.9, 0.1, 0.0], [0.5, 0.0, 0.5]]
    ),
)
def test_stratify_keeps_every_class_with_20_frames_within_5_points(n, n_classes, seed, ratios):
    frames = multilabel_frames(n, n_classes, random.Random(seed))
    assign = np.array(stratify([frozenset(f) for f in frames], ratios, seed=seed))
    assert np.bincount(assign, minlength=3).tolist() == split_counts(n, ratios)
    for c in range(n_classes):
        has = np.array([c in f for f in frames])
        if has.sum() >= 20:
            for s in range(3):
                assert abs((assign[has] == s).mean() - ratios[s]) <= 0.05 + 1e-9


def test_stratify_is_seeded():
    frames = [frozenset(f) for f in multilabel_frames(200, 5, random.Random(0))]
    assert stratify(frames, [0.8, 0.1, 0.1], seed=1) == stratify(frames, [0.8, 0.1, 0.1], seed=1)
    assert stratify(frames, [0.8, 0.1, 0.1], seed=1) != stratify(frames, [0.8, 0.1, 0.1], seed=2)


def test_rare_classes_warn_and_do_not_crash(tmp_path):
    labels = ["common", "rare", "absent"]
    rows = [frame("v", 6 * k, [0] + ([1] if k < 3 else []), labels) for k in range(60)]
    data = save(tmp_path, rows, labels)
    with pytest.warns(SplitWarning, match=r"fewer than 20 frames.*'rare' \(3 frame"):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
    rare = result.manifest["class_distribution"]["rare"]
    assert rare["rare"] is True and rare["frames"] == 3
    # Three frames cannot cover three splits at 80/10/10 exactly; they are spread, not lost.
    assert sum(rare["splits"][s]["frames"] for s in SPLIT_NAMES) == 3
    assert result.manifest["class_distribution"]["absent"]["frames"] == 0
    assert not result.manifest["class_distribution"]["absent"]["rare"]


def test_one_class_stratified(tmp_path):
    rows = [frame(f"v{k % 3}", 6 * k, [0], ["only"]) for k in range(50)]
    data = save(tmp_path, rows, ["only"])
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
    assert result.sizes == {"train": 40, "validation": 5, "test": 5}
    assert result.manifest["class_distribution"]["only"]["max_deviation_pp"] == 0.0


def test_single_video_is_cut_into_blocks_with_a_one_second_gap(tmp_path):
    data = save(tmp_path, video_rows("solo", 60, LABELS), LABELS)
    with pytest.warns(SplitWarning, match="time blocks"):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s"))
    assert result.temporal_unit == "block"
    assert result.manifest["temporal_unit"] == "block"
    assert result.leakage.ok and result.leakage.near_pairs == 0
    assert check_leakage(tmp_path / "s").ok
    # 30 fps from the timestamps: frames of different splits are at least 30 indices apart.
    assert result.manifest["gap"]["videos"]["solo"] == {
        "fps": 30.0,
        "fps_from": "timestamps",
        "frames": 30,
    }
    assert min_cross_split_distance(tmp_path / "s") >= 30
    # Frames every 6 indices: 4 frames fall in each of the two 30-index gaps, taken from train.
    assert result.dropped == 8 and len(result.manifest["dropped"]["gap"]) == 8
    assert result.sizes["validation"] >= 5 and result.sizes["test"] >= 5
    assert sum(result.sizes.values()) + result.dropped == 60
    # Each split is one contiguous block of the video.
    loaded = datasets.load_from_disk(str(tmp_path / "s"))
    spans = sorted(
        (min(loaded[n]["frame_index"]), max(loaded[n]["frame_index"]), n) for n in SPLIT_NAMES
    )
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
    assert spans[1][2] == "train"  # the big split sits in the middle and alone gives up frames


@pytest.mark.parametrize(
    "options, gap",
    [({"gap_seconds": 2.0}, 60), ({"gap_frames": 12}, 12), ({"fps": 10.0}, 10)],
)
def test_gap_is_configurable(tmp_path, options, gap):
    data = save(tmp_path, video_rows("solo", 60, LABELS), LABELS)
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s", **options))
    assert result.manifest["gap"]["videos"]["solo"]["frames"] == gap
    assert min_cross_split_distance(tmp_path / "s") >= gap
    assert check_leakage(tmp_path / "s", **options).ok


def test_many_videos_go_whole_to_one_split(tmp_path):
    rows = [r for v in range(20) for r in video_rows(f"vid{v:02d}", 10, LABELS, seed=v)]
    data = save(tmp_path, rows, LABELS)
    result = split(SplitOptions(dataset=data, out=tmp_path / "s"))
    assert result.temporal_unit == "video" and result.dropped == 0
    assert result.sizes == {"train": 160, "validation": 20, "test": 20}
    videos = [set(result.manifest["splits"][n]["videos"]) for n in SPLIT_NAMES]
    assert (
        not (videos[0] & videos[1]) and not (videos[0] & videos[2]) and not (videos[1] & videos[2])
    )
    assert sum(len(v) for v in videos) == 20
    assert result.leakage.ok
    assert not result.warnings


def test_uneven_videos_balance_sizes_and_fall_back_to_blocks_when_they_cannot(tmp_path):
    sizes = [40, 35, 30, 12, 10, 9, 8, 6, 5, 5]
    rows = [r for v, n in enumerate(sizes) for r in video_rows(f"v{v}", n, LABELS, seed=v)]
    data = save(tmp_path, rows, LABELS)
    result = split(SplitOptions(dataset=data, out=tmp_path / "s"))
    assert result.temporal_unit == "video"
    for name, ratio in zip(SPLIT_NAMES, [0.8, 0.1, 0.1], strict=True):
        assert abs(result.manifest["splits"][name]["share"] - ratio) <= 0.05
    # Three videos cannot make 80/10/10 with whole videos: blocks, still leak-free.
    few = save(tmp_path, rows[: sum(sizes[:3])], LABELS, name="few")
    with pytest.warns(SplitWarning, match="points off the ratios"):
        blocks = split(SplitOptions(dataset=few, out=tmp_path / "b"))
    assert blocks.temporal_unit == "block" and blocks.leakage.ok
    # ... unless whole videos are asked for.
    with pytest.warns(SplitWarning, match="whole-video split"):
        whole = split(SplitOptions(dataset=few, out=tmp_path / "w", temporal_unit="video"))
    assert whole.temporal_unit == "video" and whole.dropped == 0
    assert all(len(whole.manifest["splits"][n]["videos"]) == 1 for n in SPLIT_NAMES)


def test_whole_videos_cannot_fill_more_splits_than_there_are_videos(tmp_path):
    data = save(tmp_path, video_rows("a", 20, LABELS) + video_rows("b", 20, LABELS), LABELS)
    with pytest.raises(DatasetError, match="cannot fill 3 non-empty splits"):
        split(SplitOptions(dataset=data, out=tmp_path / "s", temporal_unit="video"))
    assert not (tmp_path / "s").exists()


def test_identical_images_never_straddle_a_split(tmp_path):
    # The same export added twice under two names: same images, different video ids.
    rows = []
    for v in range(12):
        rows += video_rows(f"v{v:02d}", 10, LABELS, seed=v)
    copy = [dict(r, video_id="copy", image_id="copy/" + r["image_id"][4:]) for r in rows[:10]]
    data = save(tmp_path, rows + copy, LABELS)
    result = split(SplitOptions(dataset=data, out=tmp_path / "videos"))
    assert result.temporal_unit == "video"
    assert result.dropped == 0  # grouped with its twin, not dropped
    home = [n for n in SPLIT_NAMES if "copy" in result.manifest["splits"][n]["videos"]]
    assert home and "v00" in result.manifest["splits"][home[0]]["videos"]
    with pytest.warns(SplitWarning):
        shuffled = split(SplitOptions(dataset=data, out=tmp_path / "random", strategy="random"))
    assert shuffled.leakage.identical_images == 0
    assert shuffled.manifest["dropped"]["identical_image"]  # the copies in other splits went
    assert check_leakage(tmp_path / "random", gap_frames=0).identical_images == 0


@pytest.mark.parametrize("strategy", ["temporal", "stratified"])
def test_every_strategy_leaves_the_global_rngs_alone(tmp_path, strategy):
    data = save(tmp_path, [r for v in range(8) for r in video_rows(f"v{v}", 12, LABELS)], LABELS)
    manifests = []
    for global_seed in (1, 2):
        random.seed(global_seed)
        np.random.seed(global_seed)
        before = (random.getstate(), np.random.get_state()[1].copy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitWarning)
            split(SplitOptions(dataset=data, out=tmp_path / f"s{global_seed}", strategy=strategy))
        assert random.getstate() == before[0]
        assert (np.random.get_state()[1] == before[1]).all()
        manifests.append((tmp_path / f"s{global_seed}" / MANIFEST_NAME).read_bytes())
    assert manifests[0] == manifests[1]
