"""The split stage as a whole: outputs written atomically, the CLI (text and JSON), no torch
import, the sample data end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest

from sam2_finetune.cli import main
from sam2_finetune.errors import OptionsError, OutputExistsError
from sam2_finetune.split import (
    MANIFEST_NAME,
    SPLIT_NAMES,
    SplitOptions,
    SplitWarning,
    check_leakage,
    split,
)
from split.split_data import (
    LABELS,
    SAMPLE_DATA,
    min_cross_split_distance,
    quiet_progress_bars,  # noqa: F401 (autouse fixture)
    save,
    video_rows,
)


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
