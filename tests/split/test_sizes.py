"""Split sizes against the ratios: an empty requested split is an error naming its cause, a split
far from its ratio a warning (issue 9 item 6)."""

from __future__ import annotations

import warnings

import datasets
import pytest

from sam2_finetune.cli import main
from sam2_finetune.errors import DatasetError
from sam2_finetune.split import SPLIT_NAMES, SplitOptions, SplitWarning, split
from split.split_data import (
    LABELS,
    quiet_progress_bars,  # noqa: F401 (autouse fixture)
    save,
    video_rows,
)


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
    assert "--ratios" not in message  # no ratios without train to offer
    assert not (tmp_path / "t").exists()


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
