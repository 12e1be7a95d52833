"""Canonical datasets built directly for the split tests (tiny PNGs, real Arrow files).

Imported as ``split.split_data``: this folder is a package (``__init__.py``), so pytest's default
prepend import mode puts ``tests/`` on ``sys.path`` (where ``conftest`` is imported from by name)
and basenames here may repeat in other test folders. Not a ``conftest.py``: a second module named
``conftest`` would shadow ``tests/conftest.py``. Each test module imports
:func:`quiet_progress_bars` (autouse) so it applies there."""

from __future__ import annotations

import io
import random
from pathlib import Path

import datasets
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sam2_finetune.dataset import canonical_features

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


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


@pytest.fixture(autouse=True, scope="module")
def quiet_progress_bars():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()
