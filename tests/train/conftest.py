"""Fixtures shared by the train stage's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="session")
def raw_dataset(tmp_path_factory):
    """The street scene with its raw frames (no overlays), as a canonical dataset folder."""
    from sam2_finetune.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("street_scene_raw") / "hf"
    convert(
        ConvertOptions(
            exports=[SAMPLE / "street_scene.zip"],
            frames=[str(SAMPLE / "street_scene_frames")],
            to="hf",
            out=out,
        )
    )
    return out
