"""Raw frames decoded from the source video match the frames that were encoded into it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2_finetune.errors import ExportError
from sam2_finetune.ingest import read_export
from sam2_finetune.testing.synthetic import TrackSpec, write_export, write_raw_video

av = pytest.importorskip("av")

CODECS = [c for c in ("libx264", "mpeg4") if c in av.codecs_available]
if not CODECS:
    pytest.skip("PyAV has neither libx264 nor mpeg4 encoders", allow_module_level=True)


def _frames(n: int, width: int = 64, height: int = 48):
    """Frames whose grey level encodes their index (4 levels apart: lossy codecs keep it)."""
    for i in range(n):
        frame = np.full((height, width, 3), (i * 4) % 256, np.uint8)
        frame[:8, :8] = (255, 0, 0)
        yield frame


def _grey(png: bytes) -> int:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return int(np.median(image[16:, 16:, 1]))


@pytest.fixture(params=CODECS)
def video(request, tmp_path) -> Path:
    path = tmp_path / f"v_{request.param}.mp4"
    write_raw_video(path, _frames(60), width=64, height=48, fps=30.0, codec=request.param)
    return path


def test_frames_by_index_in_any_order(video):
    from sam2_finetune.ingest.video import video_frame_refs

    indices = [0, 6, 12, 30, 59]
    refs = video_frame_refs(video, indices)
    assert sorted(refs) == indices
    assert refs[12].kind == "raw" and refs[12].format == "png"
    assert refs[12].location == f"{video}#frame=12"
    # Forward, then backwards (a seek), then the same frame twice.
    for i in [0, 6, 12, 30, 59, 6, 0, 59, 59]:
        assert abs(_grey(refs[i].read_bytes()) - i * 4) <= 2, i


def test_too_short_video(video):
    from sam2_finetune.ingest.video import video_frame_refs

    with pytest.raises(ExportError, match=r"at least 61 frames, found 60 frames"):
        video_frame_refs(video, [0, 30, 60])


def test_not_a_video(tmp_path):
    from sam2_finetune.ingest.video import video_frame_refs

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(ExportError, match="not a readable video"):
        video_frame_refs(bad, [0])
    with pytest.raises(ExportError, match="no such video"):
        video_frame_refs(tmp_path / "missing.mp4", [0])


def test_missing_pyav_names_the_extra(monkeypatch, tmp_path):
    from sam2_finetune.ingest.video import video_frame_refs

    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(ExportError, match=r'pip install "sam2-finetune\[video\]"'):
        video_frame_refs(tmp_path / "v.mp4", [0])


def test_read_export_with_the_source_video(tmp_path):
    car = TrackSpec(1, "car", "rect", (200, 40, 40), (0.2, 0.6), (0.1, 0.0), (0.25, 0.2))
    person = TrackSpec(2, "person", "ellipse", (40, 40, 200), (0.7, 0.4), (0.0, 0.05), (0.1, 0.3))
    path = write_export(
        tmp_path / "e.zip",
        [car, person],
        duration_sec=2.0,
        empty_frames=[6],
        raw_frames_dir=tmp_path / "raw",
        raw_video=tmp_path / "video.mp4",
    )
    export = read_export(path, frames=tmp_path / "video.mp4")
    assert export.image_kind == "raw"
    indices = export.frame_indices
    assert sorted(export.images) == indices == list(range(0, 60, 6))
    raws = {
        i: np.asarray(Image.open(tmp_path / "raw" / f"frame_{i:06d}.png"), dtype=np.int16)
        for i in indices
    }
    for position, frame in enumerate(export.frames):
        assert frame.image is not None
        decoded = np.asarray(frame.image.open(), dtype=np.int16)
        assert decoded.shape == (240, 320, 3)
        # Lossy codec, 4:2:0 chroma and limited-range YUV: a few levels off on average...
        error = np.abs(decoded - raws[frame.frame_index]).mean()
        assert error < 3, frame.frame_index
        # ...but always closest to its own frame, not to a neighbour's.
        for j in indices[max(position - 1, 0) : position + 2]:
            if j != frame.frame_index:
                assert error < np.abs(decoded - raws[j]).mean(), (frame.frame_index, j)
    export.close()
