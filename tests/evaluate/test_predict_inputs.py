"""predict's inputs: images, folders in natural order, videos; every mistake is one message
naming the file, raised before any model is loaded (no model in these tests)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sam2_finetune.errors import ExportError, OptionsError, OutputExistsError
from sam2_finetune.evaluate.predict import PredictOptions, discover_inputs, predict


def _png(path, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)
    return path


def test_a_folder_gives_its_images_in_natural_order(tmp_path):
    for name in ("f10.png", "f2.jpg", "f1.png", ".hidden.png", "notes.txt"):
        if name.endswith("txt"):
            (tmp_path / "dir" / name).write_text("x")
        else:
            _png(tmp_path / "dir" / name)
    _png(tmp_path / "dir" / "sub" / "f0.png")  # sub-folders are not searched
    single = _png(tmp_path / "one.png")
    found = discover_inputs([single, tmp_path / "dir"])
    assert [(f.path.name, f.kind) for f in found] == [
        ("one.png", "image"),
        ("f1.png", "image"),
        ("f2.jpg", "image"),
        ("f10.png", "image"),
    ]


def _missing(d):
    return d / "missing.png"


def _text_file(d):
    (d / "notes.txt").write_text("x")
    return d / "notes.txt"


def _broken_png(d):
    (d / "broken.png").write_bytes(b"not a png")
    return d / "broken.png"


def _empty_folder(d):
    (d / "empty").mkdir()
    return d / "empty"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, "no such file or folder"),
        (_text_file, "unsupported input"),
        (_broken_png, "cannot read the image"),
        (_empty_folder, "the folder holds no images"),
    ],
)
def test_each_bad_input_is_one_message_naming_it(tmp_path, make, message):
    bad = make(tmp_path)
    with pytest.raises(OptionsError, match=message) as error:
        discover_inputs([_png(tmp_path / "ok.png"), bad])
    assert str(bad) in str(error.value) and "Fix:" in str(error.value)


def test_a_folder_of_videos_points_to_the_videos(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    with pytest.raises(OptionsError, match=r"found videos \['a.mp4'\].*pass video files"):
        discover_inputs([tmp_path / "clips"])


def test_a_broken_video_names_the_file(tmp_path):
    pytest.importorskip("av")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ExportError, match="not a readable video") as error:
        discover_inputs([bad])
    assert str(bad) in str(error.value)


def test_without_pyav_a_video_names_the_extra(tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(ExportError, match=r"sam2-finetune\[video\]"):
        discover_inputs([video])


def test_a_video_is_probed(tmp_path):
    pytest.importorskip("av")
    from sam2_finetune.evaluate.predict import video_facts
    from sam2_finetune.testing.synthetic import write_raw_video

    frames = (np.full((48, 64, 3), i * 10, np.uint8) for i in range(12))
    path = write_raw_video(tmp_path / "v.mp4", frames, width=64, height=48, fps=12.0)
    (found,) = discover_inputs([path])
    assert found.kind == "video"
    facts = video_facts(path)
    assert (facts.width, facts.height, facts.fps, facts.total_frames) == (64, 48, 12.0, 12)


def test_inputs_and_output_are_checked_before_the_model(tmp_path):
    # No model exists at all: the input / output mistakes are what gets reported.
    with pytest.raises(OptionsError, match="no such file or folder"):
        predict(PredictOptions(model=tmp_path / "no-model", input=[tmp_path / "x.png"],
                               out=tmp_path / "out"))  # fmt: skip
    image = _png(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        predict(PredictOptions(model=tmp_path / "no-model", input=[image], out=tmp_path / "out"))
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"


def test_options_refuse_nonsense():
    with pytest.raises(ValueError, match="input"):
        PredictOptions(model="m", input=[], out="o")
    with pytest.raises(ValueError, match="fps"):
        PredictOptions(model="m", input=["a.png"], out="o", fps=0)
    assert PredictOptions(model="m", input=["a"], out="o").resolved_task() == "detect"
    assert PredictOptions(model="m", input=["a"], out="o", label="car").resolved_task() == "ground"


def test_the_command_reports_a_missing_input_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sam2_finetune", "predict", "--model", str(tmp_path), "--out",
         str(tmp_path / "out"), str(tmp_path / "nothing.png")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "nothing.png" in done.stderr and "no such file or folder" in done.stderr
    assert "Traceback" not in done.stderr
