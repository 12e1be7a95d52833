"""Fixtures shared by the train stage's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="session")
def raw_dataset(street_dataset):
    """The street scene with its raw frames (no overlays), as a canonical dataset folder."""
    return street_dataset
