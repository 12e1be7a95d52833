"""The split stage: reproducibility, the stratification bound, zero leakage, edge cases."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sam2_finetune.cli import main
from sam2_finetune.dataset import canonical_features
from sam2_finetune.errors import DatasetError, OptionsError, OutputExistsError
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

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(autouse=True, scope="module")
def _quiet_progress_bars():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


# --------------------------------------------------------------------------------------------
# Building canonical datasets directly (tiny PNGs, real Arrow files)
# --------------------------------------------------------------------------------------------


def png(key: str) -> bytes:
    """A 2 x 2 PNG whose bytes are distinct per ``key`` (carried in a text chunk)."""
    buffer = io.BytesIO()
    info = PngInfo()
    info.add_text("key", key)
    Image.new("RGB", (2, 2), (10, 20, 30)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def frame(
    video_id: str,
    frame_index: int,
    categories: list[int],
    labels: list[str],
    *,
    fps: float = 30.0,
    image: bytes | None = None,
    lost: list[int] = (),
) -> dict:
    """One canonical row; ``lost`` adds objects with an empty mask (area 0)."""
    objects = [
        {
            "track_id": k,
            "label": labels[c],
            "category": c,
            "bbox": [0.0, 0.0, 1.0, 1.0],
            "area": 1,
            "segmentation": {"size": [2, 2], "counts": "04"},
        }
        for k, c in enumerate(categories)
    ] + [
        {
            "track_id": 99,
            "label": labels[c],
            "category": c,
            "bbox": [0.0, 0.0, 0.0, 0.0],
            "area": 0,
            "segmentation": {"size": [2, 2], "counts": "4"},
        }
        for c in lost
    ]
    return {
        "image": {
            "bytes": image if image is not None else png(f"{video_id}/{frame_index}"),
            "path": None,
        },
        "image_id": f"{video_id}/{frame_index:06d}",
        "video_id": video_id,
        "frame_index": frame_index,
        "timestamp_sec": frame_index / fps,
        "width": 2,
        "height": 2,
        "image_is_overlay": False,
        "objects": objects,
    }


def save(tmp_path: Path, rows: list[dict], labels: list[str], name: str = "hf") -> Path:
    path = tmp_path / name
    features = canonical_features(labels)
    if rows:
        datasets.Dataset.from_list(rows, features=features).save_to_disk(str(path))
    else:  # from_list cannot type an empty list; save_to_disk needs a shard to write
        empty = datasets.Dataset.from_dict({key: [] for key in features}, features=features)
        empty.save_to_disk(str(path), num_shards=1)
    return path


def video_rows(
    video_id: str, n: int, labels: list[str], *, step: int = 6, seed: int = 0, fps: float = 30.0
) -> list[dict]:
    """``n`` frames sampled every ``step`` source frames, each class present at random."""
    rng = random.Random(f"{video_id}-{seed}")
    rows = []
    for k in range(n):
        present = [c for c in range(len(labels)) if rng.random() < 0.25 + 0.5 * (c % 2)]
        rows.append(frame(video_id, k * step, present, labels, fps=fps))
    return rows


def min_cross_split_distance(out: Path) -> int | None:
    """Smallest frame distance between two frames of one video in different splits."""
    loaded = datasets.load_from_disk(str(out))
    by_video: dict[str, list[tuple[int, str]]] = {}
    for name in loaded:
        for video, index in zip(loaded[name]["video_id"], loaded[name]["frame_index"], strict=True):
            by_video.setdefault(video, []).append((index, name))
    best = None
    for frames in by_video.values():
        for i, (fa, sa) in enumerate(frames):
            for fb, sb in frames[i + 1 :]:
                if sa != sb and (best is None or abs(fa - fb) < best):
                    best = abs(fa - fb)
    return best


LABELS = ["car", "person", "bicycle"]


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ratios, message",
    [
        ([0.8, 0.1], "give 3 ratios"),
        ([0.8, 0.3, -0.1], ">= 0"),
        ([0.8, 0.1, 0.2], "sum to 1"),
        ([float("nan"), 0.5, 0.5], ">= 0"),
    ],
)
def test_bad_ratios_are_refused(tmp_path, ratios, message):
    with pytest.raises(ValueError, match=message):
        SplitOptions(dataset=tmp_path, out=tmp_path / "out", ratios=ratios)


def test_ratios_may_hold_zeros():
    assert SplitOptions(dataset="a", out="b", ratios=[1, 0, 0]).ratios == [1, 0, 0]
    assert SplitOptions(dataset="a", out="b", ratios=[0.7, 0.2, 0.1]).ratios == [0.7, 0.2, 0.1]


def test_cli_reports_every_bad_option_at_once(capsys):
    code = main(
        ["split", "x", "--out", "y", "--ratios", "0.5", "0.6", "0.1", "--gap-seconds", "-1"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "2 invalid option(s)" in err and "sum to 1" in err and "gap_seconds" in err


def test_split_counts_fill_every_nonzero_split():
    assert split_counts(10, [0.8, 0.1, 0.1]) == [8, 1, 1]
    assert split_counts(5, [0.8, 0.1, 0.1]) == [3, 1, 1]
    assert split_counts(7, [1, 0, 0]) == [7, 0, 0]
    assert split_counts(3, [0.5, 0, 0.5]) == [2, 0, 1]
    assert sum(split_counts(1001, [0.7, 0.2, 0.1])) == 1001


# --------------------------------------------------------------------------------------------
# random: seeded, reproducible, own RNG
# --------------------------------------------------------------------------------------------


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


def test_manifest_bytes_do_not_depend_on_the_output_path(tmp_path):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    split(SplitOptions(dataset=data, out=tmp_path / "x" / "one"))
    split(SplitOptions(dataset=data, out=tmp_path / "elsewhere"))
    first = (tmp_path / "x" / "one" / MANIFEST_NAME).read_text()
    assert first == (tmp_path / "elsewhere" / MANIFEST_NAME).read_text()
    manifest = json.loads(first)
    assert list(manifest) == sorted(manifest)  # sorted keys
    assert manifest["seed"] == 42 and manifest["strategy"] == "temporal"


# --------------------------------------------------------------------------------------------
# stratified: the 5-point bound on multi-label frames
# --------------------------------------------------------------------------------------------


def multilabel_frames(n: int, n_classes: int, rng: random.Random) -> list[list[int]]:
    """Frames with several labels each, with correlated and nested labels."""
    rates = [rng.choice([0.04, 0.08, 0.15, 0.3, 0.6, 0.9]) for _ in range(n_classes)]
    frames = []
    for _ in range(n):
        present = {c for c in range(n_classes) if rng.random() < rates[c]}
        if 0 in present and n_classes > 1:
            present.add(1)  # class 1 always comes with class 0
        frames.append(sorted(present))
    return frames


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


def test_lost_objects_do_not_count_as_present(tmp_path):
    labels = ["car", "ghost"]
    rows = [frame("v", 6 * k, [0], labels, lost=[1]) for k in range(30)]
    data = save(tmp_path, rows, labels)
    result = split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
    assert result.manifest["class_distribution"]["ghost"]["frames"] == 0
    assert result.manifest["class_distribution"]["car"]["frames"] == 30


def test_one_class_stratified(tmp_path):
    rows = [frame(f"v{k % 3}", 6 * k, [0], ["only"]) for k in range(50)]
    data = save(tmp_path, rows, ["only"])
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
    assert result.sizes == {"train": 40, "validation": 5, "test": 5}
    assert result.manifest["class_distribution"]["only"]["max_deviation_pp"] == 0.0


# --------------------------------------------------------------------------------------------
# temporal: whole videos, or time blocks with a gap
# --------------------------------------------------------------------------------------------


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


def test_frame_rate_is_inferred_from_frame_index_and_timestamps(tmp_path):
    rows = video_rows("pal", 60, LABELS, step=5, fps=25.0)
    data = save(tmp_path, rows, LABELS)
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s"))
    assert result.manifest["gap"]["videos"]["pal"]["fps"] == 25.0
    assert result.manifest["gap"]["videos"]["pal"]["frames"] == 25
    assert min_cross_split_distance(tmp_path / "s") >= 25


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


def test_ratios_with_zeros(tmp_path):
    data = save(tmp_path, video_rows("solo", 40, LABELS), LABELS)
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=data, out=tmp_path / "s", ratios=[0.9, 0.1, 0]))
    assert result.sizes["test"] == 0 and result.sizes["validation"] >= 4
    assert result.dropped == 4  # one boundary only
    loaded = datasets.load_from_disk(str(tmp_path / "s"))  # an empty split saves and loads
    assert len(loaded["test"]) == 0 and loaded["test"].features == loaded["train"].features
    everything = split(
        SplitOptions(dataset=data, out=tmp_path / "all", ratios=[1, 0, 0], strategy="random")
    )
    assert everything.sizes == {"train": 40, "validation": 0, "test": 0}
    assert everything.leakage.ok


def test_too_few_frames_is_a_clear_error(tmp_path):
    data = save(tmp_path, video_rows("tiny", 2, LABELS), LABELS)
    with pytest.raises(DatasetError, match=r"2 frame.*cannot fill 3 non-empty splits.*ratio"):
        split(SplitOptions(dataset=data, out=tmp_path / "s"))
    with pytest.warns(SplitWarning, match="tiny dataset"):
        result = split(
            SplitOptions(dataset=data, out=tmp_path / "r", ratios=[0.5, 0.5, 0], strategy="random")
        )
    assert result.sizes == {"train": 1, "validation": 1, "test": 0}
    # Temporally, two frames 6 indices apart cannot sit in two splits 30 apart: one goes, and
    # the split it leaves empty is an error that names the gap, with nothing written.
    with pytest.raises(DatasetError) as raised:
        split(SplitOptions(dataset=data, out=tmp_path / "t", ratios=[0.5, 0.5, 0]))
    message = str(raised.value)
    # The larger split (train, by the tie-break) gives up its frame at the gap.
    assert "the train split is empty although its ratio is 0.5" in message
    assert "gave it 1 frame(s): 1 dropped at the temporal gap" in message
    assert "0 as identical images across splits" in message and "1 at temporal gaps" in message
    assert "--gap-seconds" in message and "--strategy random" in message
    assert "--ratios 0 1 0 to do without train" in message
    assert not (tmp_path / "t").exists()


def test_empty_dataset_and_repeated_ids_are_refused(tmp_path):
    empty = save(tmp_path, [], LABELS, name="empty")
    with pytest.raises(DatasetError, match="no frames"):
        split(SplitOptions(dataset=empty, out=tmp_path / "s"))
    twice = save(tmp_path, video_rows("a", 5, LABELS) * 2, LABELS, name="twice")
    with pytest.raises(DatasetError, match="image ids repeat"):
        split(SplitOptions(dataset=twice, out=tmp_path / "s"))


def test_output_rules(tmp_path):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    with pytest.raises(OptionsError, match="is the input dataset"):
        split(SplitOptions(dataset=data, out=data, overwrite=True))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        split(SplitOptions(dataset=data, out=tmp_path / "busy"))
    assert (tmp_path / "busy" / "keep.txt").exists()
    with pytest.warns(SplitWarning):
        split(SplitOptions(dataset=data, out=tmp_path / "busy", overwrite=True))
    assert (tmp_path / "busy" / MANIFEST_NAME).exists()
    assert not (tmp_path / "busy" / "keep.txt").exists()


# --------------------------------------------------------------------------------------------
# Identical images and the leakage checker
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# --keep-test
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# CLI, imports, and the sample data through convert
# --------------------------------------------------------------------------------------------


def test_cli_split_and_leakage(tmp_path, capsys):
    rows = [r for v in range(10) for r in video_rows(f"v{v}", 10, LABELS, seed=v)]
    data = save(tmp_path, rows, LABELS)
    out = tmp_path / "s"
    assert main(["split", str(data), "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "split: temporal (videos), seed 3" in printed and "no leakage" in printed
    assert main(["leakage", str(out)]) == 0
    assert "no leakage" in capsys.readouterr().out
    assert main(["leakage", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["split", str(data), "--out", str(out)]) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_split_does_not_import_torch(tmp_path):
    data = save(tmp_path, video_rows("a", 30, LABELS), LABELS)
    code = (
        "import sys\n"
        "from sam2_finetune.cli import main\n"
        f"main(['split', {str(data)!r}, '--out', {str(tmp_path / 's')!r}])\n"
        "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "sys.exit(3 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sample_data_temporal_split_has_zero_leakage(tmp_path):
    from sam2_finetune.convert import ConvertOptions, convert

    exports = sorted(SAMPLE_DATA.glob("*.zip"))
    assert len(exports) >= 2
    hf = tmp_path / "hf"
    convert(ConvertOptions(exports=exports, to="hf", out=hf))
    with pytest.warns(SplitWarning):
        result = split(SplitOptions(dataset=hf, out=tmp_path / "split"))
    assert result.leakage.ok
    assert all(result.sizes[name] > 0 for name in SPLIT_NAMES)
    report = check_leakage(tmp_path / "split")
    assert report.ok and report.near_pairs == 0 and report.identical_images == 0
    assert min_cross_split_distance(tmp_path / "split") >= 30


# --------------------------------------------------------------------------------------------
# Review of issue 5: checker on foreign splits, --keep-test mistakes, outputs, determinism
# --------------------------------------------------------------------------------------------


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


def test_an_interrupted_write_leaves_nothing_at_out(tmp_path, monkeypatch):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    original = datasets.DatasetDict.save_to_disk

    def save_then_fail(self, path, **kwargs):
        original(self, path, **kwargs)  # the data is written, the manifest not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        split(SplitOptions(dataset=data, out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    # An existing output survives a failed --overwrite untouched.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("previous result")
    with pytest.raises(KeyboardInterrupt):
        split(SplitOptions(dataset=data, out=tmp_path / "old", overwrite=True))
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "old"]  # no temporary folders


def test_out_may_not_hold_the_input(tmp_path):
    data = save(tmp_path / "data", video_rows("a", 40, LABELS), LABELS)
    with pytest.raises(OptionsError, match="inside the output"):
        split(SplitOptions(dataset=data, out=tmp_path / "data", overwrite=True))
    assert (data / "dataset_info.json").exists()


def test_unwritable_out_is_one_message(tmp_path, capsys):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    (tmp_path / "file").write_text("x")
    code = main(["split", str(data), "--out", str(tmp_path / "file" / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1, err
    assert str(tmp_path / "file") in err


def test_output_loads_as_a_dataset_dict_with_the_input_features(tmp_path):
    data = save(tmp_path, video_rows("a", 40, LABELS), LABELS)
    with pytest.warns(SplitWarning):
        split(SplitOptions(dataset=data, out=tmp_path / "s", strategy="stratified"))
    loaded = datasets.load_from_disk(str(tmp_path / "s"))
    assert isinstance(loaded, datasets.DatasetDict) and list(loaded) == list(SPLIT_NAMES)
    source = datasets.load_from_disk(str(data))
    assert all(loaded[name].features == source.features for name in SPLIT_NAMES)
    assert sum(len(loaded[name]) for name in SPLIT_NAMES) == 40


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


def test_cli_prints_no_progress_bars(tmp_path, capsys):
    data = save(tmp_path, [r for v in range(10) for r in video_rows(f"v{v}", 10, LABELS)], LABELS)
    datasets.enable_progress_bars()
    try:
        assert main(["split", str(data), "--out", str(tmp_path / "s")]) == 0
        assert datasets.is_progress_bar_enabled()  # the caller's setting is restored
    finally:
        datasets.disable_progress_bars()
    captured = capsys.readouterr()
    assert "Saving the dataset" not in captured.err + captured.out


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


# --------------------------------------------------------------------------------------------
# Issue 9 item 6: empty requested splits are errors that name the cause; far splits warn
# --------------------------------------------------------------------------------------------


def test_one_long_video_of_repeated_images_is_an_error_naming_the_copies(tmp_path, capsys):
    """The reported case, smaller: one video whose frames cycle through 4 images. Every block
    but train's holds only copies of train's images, so validation and test lose all their
    frames as identical images (a few more go at the gaps); the old split exited 0 with
    ``validation 0 frames, test 0 frames`` and blamed the gap."""
    from sam2_finetune.convert import ConvertOptions, convert
    from sam2_finetune.testing.synthetic import write_large_export

    export = write_large_export(
        tmp_path / "big.zip", n_frames=200, n_objects=2, width=64, height=48
    )
    convert(ConvertOptions(exports=[export], to="hf", out=tmp_path / "hf"))
    out = tmp_path / "split"
    assert main(["split", str(tmp_path / "hf"), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    error = captured.err
    assert error.startswith("error: ") and error.count("\n") == 1  # one message, no traceback
    assert "the validation and test splits are empty although their ratios are 0.1 and 0.1" in error
    # Numbers: each block was placed 19 frames and lost all 19 as copies; of 46 dropped frames,
    # 38 were identical images and 8 were at the two gaps (4 frames of 6 indices within 30).
    lost = "19 dropped because the same image (identical bytes) is kept in another split"
    assert f"validation: the temporal strategy gave it 19 frame(s): {lost}" in error
    assert f"test: the temporal strategy gave it 19 frame(s): {lost}" in error
    assert "Of the 200 frames, 46 were dropped: 38 as identical images" in error
    assert "4 distinct image(s)) and 8 at temporal gaps (--gap-seconds 1)" in error
    # The fix names the real cause and what helps (not the gap, not another strategy).
    assert "Fix: the dataset repeats images (4 distinct in 200 frames)" in error
    assert "--ratios 1 0 0 to do without validation and test" in error
    assert "lower the gap" not in error


def test_empty_split_of_a_short_video_names_the_gap(tmp_path):
    """Distinct images, one short video, a gap as long as the video: the frames go at the gap,
    and the error says so and offers the gap options and random's caveat."""
    data = save(tmp_path, video_rows("short", 8, LABELS), LABELS)
    with pytest.raises(DatasetError) as raised:
        split(SplitOptions(dataset=data, out=tmp_path / "s", gap_frames=60))
    message = str(raised.value)
    assert "0 as identical images across splits" in message
    assert "at temporal gaps (--gap-frames 60)" in message
    assert "add videos" in message and "lower the gap" in message
    assert "--strategy random (no gap: near-identical frames" in message
    assert not (tmp_path / "s").exists()


def test_keep_test_far_below_target_is_a_warning(tmp_path):
    """--keep-test with a wide gap: the kept test frames never give any up, so validation loses
    most of its block at the gap and ends far under its 10 % (it used to be silent)."""
    data = save(tmp_path, video_rows("solo", 200, LABELS), LABELS)
    with pytest.warns(SplitWarning, match="time blocks"):
        split(SplitOptions(dataset=data, out=tmp_path / "first"))
    with pytest.warns(SplitWarning) as caught:
        result = split(
            SplitOptions(
                dataset=data, out=tmp_path / "k", keep_test=tmp_path / "first", gap_frames=90
            )
        )
    kept = sum(result.sizes.values())
    share = result.sizes["validation"] / kept
    assert 0 < share < 0.05  # under half its target
    expected = (
        f"the validation split holds {100 * share:.1f} % of the kept frames "
        f"({result.sizes['validation']} of {kept}) against a target of 10 %"
    )
    far = [str(w.message) for w in caught if str(w.message).startswith(expected)]
    assert len(far) == 1, [str(w.message) for w in caught]
    assert "dropped at the temporal gap" in far[0]
    assert far[0] in result.manifest["warnings"]
    # The same data at the default gap stays near its target: no such warning.
    with pytest.warns(SplitWarning) as caught:
        split(SplitOptions(dataset=data, out=tmp_path / "near", keep_test=tmp_path / "first"))
    assert not [w for w in caught if "against a target" in str(w.message)]


def test_a_normal_split_is_silent(tmp_path):
    rows = [r for v in range(20) for r in video_rows(f"vid{v:02d}", 30, LABELS, seed=v)]
    data = save(tmp_path, rows, LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)
        result = split(SplitOptions(dataset=data, out=tmp_path / "s"))
        random_split = split(
            SplitOptions(dataset=data, out=tmp_path / "r", strategy="random", gap_seconds=0)
        )
    assert result.warnings == [] and random_split.warnings == []
    assert result.sizes == {"train": 480, "validation": 60, "test": 60}


@pytest.mark.parametrize(
    "sizes, placed, warned",
    [
        # 4 % against 10 %: more than half the target off, and by more than a frame.
        ((85, 4, 11), (85, 10, 11), ["validation"]),
        # 18 % against 10 % is the rounding of 11 frames to whole ones (2 vs 1.1): silent.
        ((8, 2, 1), (8, 2, 1), []),
        # 14 % against 10 %: off by less than half the target.
        ((76, 14, 10), (76, 14, 10), []),
        # A split far over its target warns as well as one far under it.
        ((60, 30, 10), (60, 30, 10), ["validation"]),
    ],
)
def test_far_from_target_bound(sizes, placed, warned):
    from sam2_finetune.split.sizes import Drops, size_notes

    options = SplitOptions(dataset="d", out="o")
    lost = [p - s for p, s in zip(placed, sizes, strict=True)]
    drops = Drops(placed=list(placed), gap=[0, 0, 0], identical=lost)
    notes = size_notes(options, dict(zip(SPLIT_NAMES, sizes, strict=True)), drops, sum(placed))
    assert [n.split()[1] for n in notes if "against a target" in n] == warned
    if warned == ["validation"] and placed != sizes:
        assert "(of 10 placed there, 6 dropped because the same image" in notes[0]


def test_many_dropped_frames_name_the_real_cause():
    from sam2_finetune.split.sizes import Drops, size_notes

    options = SplitOptions(dataset="d", out="o")
    sizes = dict(zip(SPLIT_NAMES, (60, 8, 8), strict=True))
    copies = Drops(placed=[60, 20, 20], gap=[0, 2, 2], identical=[0, 10, 10])
    (note,) = [n for n in size_notes(options, sizes, copies, 100) if "were dropped" in n]
    assert "24 of 100 frames (24 %) were dropped" in note
    assert "20 as identical images across splits, 4 at temporal gaps" in note
    assert "repeats images" in note and "gap" not in note.split(". ")[-1]
    gaps = Drops(placed=[80, 12, 12], gap=[20, 2, 2], identical=[0, 0, 0])
    (note,) = [n for n in size_notes(options, sizes, gaps, 104) if "were dropped" in n]
    assert "0 as identical images" in note and "lower --gap-seconds" in note


def test_cli_split_json(tmp_path, capsys):
    rows = [r for v in range(10) for r in video_rows(f"v{v}", 10, LABELS, seed=v)]
    data = save(tmp_path, rows, LABELS)
    out = tmp_path / "s"
    assert main(["split", str(data), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert printed["manifest_path"] == str(out / MANIFEST_NAME) and printed["out"] == str(out)
    assert {n: p["frames"] for n, p in printed["splits"].items()} == {
        n: manifest["splits"][n]["frames"] for n in SPLIT_NAMES
    }
    assert printed["splits"]["validation"]["target"] == 0.1
    assert printed["leakage"] == manifest["leakage"] and printed["leakage"]["ok"] is True
    assert printed["warnings"] == manifest["warnings"]
    assert printed["strategy"] == "temporal" and printed["temporal_unit"] == "video"
    assert printed["dropped"] == {"frames": 0, "gap": 0, "identical_image": 0}
    # Warnings stay on stderr, so stdout is JSON alone.
    assert (
        main(["split", str(data), "--out", str(tmp_path / "r"), "--json", "--strategy", "random"])
        == 0
    )
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["warnings"] and all(f"warning: {w}" in captured.err for w in printed["warnings"])
