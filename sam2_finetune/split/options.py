"""Options of the split and leakage stages: the shared gap option types, ratio validation and the
constants the strategies and the manifest share."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SPLIT_NAMES = ("train", "validation", "test")
TEST = 2
# Below this many frames a class cannot be held to the ratios (a 10 % split of 19 frames is
# 1.9 frames); such classes get a warning instead of a guarantee.
RARE_CLASS_FRAMES = 20
STRATIFY_TOLERANCE = 0.05
TINY_DATASET_FRAMES = 30


Strategy = Literal["temporal", "stratified", "random"]
TemporalUnit = Literal["auto", "video", "block"]


# The gap options, declared once for `split` and `leakage`.
GapSeconds = Annotated[
    float,
    Field(
        ge=0,
        description="Frames of one video closer than this (source-video time) are near-"
        "duplicates: split never puts them in different splits, leakage reports them.",
    ),
]
GapFrames = Annotated[
    int | None,
    Field(
        ge=0,
        description="The gap in source frame indices, for every video; replaces gap_seconds "
        "and fps.",
    ),
]
Fps = Annotated[
    float | None,
    Field(
        gt=0,
        description="Source frame rate that turns gap_seconds into frame indices; default: "
        "inferred per video from frame_index / timestamp_sec (30 when timestamps say nothing).",
    ),
]


class SplitOptions(BaseModel):
    """Split a canonical dataset into train / validation / test without leakage.

    Writes a DatasetDict (save_to_disk) and split_manifest.json to OUT. Strategies: temporal
    (whole videos, or time blocks with a gap when there are too few videos), stratified
    (multi-label, on label presence), random. The same data and options give the same manifest,
    byte for byte.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dataset: Path = Field(
        description="Canonical dataset folder (`sam2-finetune convert --to hf` output).",
        json_schema_extra={"positional": True},
    )
    out: Path = Field(description="Output folder for the DatasetDict and split_manifest.json.")
    strategy: Strategy = Field("temporal", description="How frames are assigned to splits.")
    ratios: list[float] = Field(
        [0.8, 0.1, 0.1],
        description="Train, validation and test shares: non-negative, sum 1 (0 = empty split).",
        json_schema_extra={"nargs": 3},  # the CLI takes exactly 3 values
    )
    seed: int = Field(42, description="Seed of the split's own random generator.")
    temporal_unit: TemporalUnit = Field(
        "auto",
        description="temporal only: `video` keeps whole videos together, `block` cuts every "
        "video into time blocks, `auto` takes videos when they fit the ratios.",
    )
    video_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="temporal auto: largest gap between a split's ratio and its share of frames "
        "accepted for a whole-video split.",
    )
    keep_test: Path | None = Field(
        None,
        description="A previous split_manifest.json (or its folder): keep its test frames as "
        "the test set and split the rest into train and validation.",
    )
    gap_seconds: GapSeconds = 1.0
    gap_frames: GapFrames = None
    fps: Fps = None
    overwrite: bool = Field(False, description="Replace OUT if it already holds something.")
    json_output: bool = Field(
        False, alias="json", description="Print the result (sizes, leakage, warnings) as JSON."
    )

    @field_validator("ratios")
    @classmethod
    def _check_ratios(cls, ratios: list[float]) -> list[float]:
        problems = []
        if len(ratios) != len(SPLIT_NAMES):
            problems.append(f"give 3 ratios (train validation test), found {len(ratios)}")
        if any(not math.isfinite(r) or r < 0 for r in ratios):
            problems.append(f"every ratio must be a finite number >= 0, found {ratios}")
        elif abs(sum(ratios) - 1.0) > 1e-6:
            problems.append(
                f"ratios must sum to 1, found {sum(ratios):g}; e.g. 0.8 0.1 0.1, or 0.9 0.1 0 "
                "for no test split"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return ratios


class LeakageOptions(BaseModel):
    """Check a split dataset for leakage between its splits.

    Reports frames of one video that are closer than the gap but in different splits, and
    identical images (same bytes) in different splits. Exit status 1 when any is found.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dataset: Path = Field(
        description="A split dataset folder (DatasetDict, e.g. `sam2-finetune split` output).",
        json_schema_extra={"positional": True},
    )
    gap_seconds: GapSeconds = 1.0
    gap_frames: GapFrames = None
    fps: Fps = None
    json_output: bool = Field(False, alias="json", description="Print the report as JSON.")
