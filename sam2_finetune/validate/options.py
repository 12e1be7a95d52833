"""Options of the validate stage: inputs, outputs, exit policy and every rule's threshold."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sam2_finetune.ingest import FRAMES_HELP, LimitsOption

Severity = Literal["error", "warning", "info"]


class ValidateOptions(BaseModel):
    """Check SAM2 exports or converted datasets for data-quality problems and write a report
    (Markdown for people, JSON for machines, a class-distribution chart). Exit status: 0 when
    nothing reaches --fail-on, 1 when something does, 2 when an input cannot be read."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    inputs: list[Path] = Field(
        description="SAM2 export ZIPs or folders (or folders holding them), and/or converted "
        "datasets (convert --to hf).",
        json_schema_extra={"positional": True},
    )
    report: Path | None = Field(
        None,
        description="Markdown report to write; the class chart goes beside it "
        "(<report stem>_classes.png). Without it a summary is printed.",
    )
    json_report: Path | None = Field(
        None, alias="json", description="Also write every finding as JSON to this file."
    )
    fail_on: Literal["error", "warning"] = Field(
        "error", description="Lowest severity that makes the exit status 1."
    )
    overwrite: bool = Field(False, description="Replace report files that already exist.")
    frames: list[str | Path] | None = Field(None, description=FRAMES_HELP)
    limits: LimitsOption
    ratios: list[float] = Field(
        [0.8, 0.1, 0.1],
        description="Split ratios the data is meant for: a class seen in fewer frames than "
        "1 / (smallest ratio) cannot reach every split.",
        json_schema_extra={"nargs": 3},  # the CLI takes exactly 3 values
    )
    imbalance_ratio: float = Field(
        10.0, gt=1, description="Warn when the most / least frequent class count reaches this."
    )
    empty_track_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Warn when at least this share of a track's masks are empty (lost/occluded).",
    )
    bbox_tolerance_px: float = Field(
        1.0, ge=0, description="How far (image pixels) a box may reach outside the image."
    )
    bbox_mask_min_iou: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A stated box whose IoU with its mask's own box is below this disagrees.",
    )
    jump_min_iou: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A track jumps when its boxes in consecutive frames overlap less (IoU).",
    )
    jump_max_shift: float = Field(
        0.25,
        gt=0,
        description="... or when its box centre moves more than this share of the image "
        "diagonal between consecutive frames.",
    )
    tiny_area_share: float = Field(
        0.0005, ge=0, lt=1, description="Objects below this share of the image area are tiny."
    )
    area_sigma: float = Field(
        3.0, gt=0, description="Mask areas beyond a class's mean +- this many std are outliers."
    )
    outlier_min_change: float = Field(
        0.5,
        ge=0,
        description="Outliers (mask area, density) must also differ from the mean by at least "
        "this fraction of it, so tight distributions do not flag tiny differences.",
    )
    density_sigma: float = Field(
        3.0,
        gt=0,
        description="Frames with more objects than the mean + this many std are dense outliers.",
    )
    min_stat_count: int = Field(
        10, ge=2, description="Fewest samples before outlier statistics are computed."
    )
    timestamp_tolerance_frames: float = Field(
        0.5,
        gt=0,
        description="A timestamp disagrees with frame_index / fps by more than this many frames.",
    )
    examples: int = Field(5, ge=1, description="Examples listed per rule in the Markdown report.")

    @model_validator(mode="after")
    def _check(self) -> ValidateOptions:
        problems = []
        if not self.inputs:
            problems.append("inputs: give at least one export or dataset")
        if not self.ratios or any(r < 0 for r in self.ratios) or not any(self.ratios):
            problems.append(f"ratios: need non-negative values, one > 0 (got {self.ratios})")
        elif not math.isclose(sum(self.ratios), 1.0, abs_tol=1e-6):
            problems.append(f"ratios: must add up to 1 (got {sum(self.ratios):g})")
        outputs = [p for p in (self.report, self.json_report) if p is not None]
        if len(set(outputs)) < len(outputs):
            problems.append("report and json: give two different files")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def frames_per_class(self) -> int:
        """Frames a class needs so that every split with a non-zero ratio can get one."""
        return math.ceil(1 / min(r for r in self.ratios if r > 0) - 1e-9)
