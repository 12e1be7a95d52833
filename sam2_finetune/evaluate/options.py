"""The options of ``sam2-finetune evaluate``: declared once, the CLI is generated from them."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.evaluate.generate import GenerationOptions
from sam2_finetune.tasks import Task

__all__ = ["EvaluateOptions"]


class EvaluateOptions(BaseModel):
    """Score a fine-tuned model on a split: generate an answer per image and task, parse it, and
    compare it with the annotations (COCO box AP, mask IoU, counts), next to a prior and an
    empty baseline. Writes metrics.json, predictions.jsonl, per_image.csv, pictures and
    summary.md to OUT. See docs/evaluate.md."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    model: Path = Field(
        description="Run folder (its best/, or --checkpoint), best/ folder, adapter export or "
        "merged export."
    )
    checkpoint: str | None = Field(
        None,
        description="With a run folder: best, last, N or checkpoint-N (default: best).",
    )
    data: Path = Field(
        description="Split canonical dataset (`sam2-finetune split` output, or a run's data/split)."
    )
    split: str = Field("test", min_length=1, description="Split to evaluate.")
    frames: list[str] | None = Field(
        None,
        description="Raw frames for splits whose images are overlays (the answer drawn in): a "
        "folder of frames or the video, as VIDEO=PATH (VIDEO: a video id or its export name) or "
        "a bare PATH when the split has one video; not needed when the rows hold raw frames.",
    )
    limit: int | None = Field(
        None, ge=1, description="Evaluate only the first N frames of the split."
    )
    tasks: list[Task] | None = Field(
        None,
        description="Tasks to ask each frame (one example per frame per task); default: the "
        "tasks of the model's training mix.",
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Frames per generation batch.")
    generation: GenerationOptions = Field(
        default_factory=GenerationOptions, description="How answers are generated."
    )
    pictures: int = Field(
        12, ge=0, le=200, description="Frames drawn in the predictions-vs-truth grid."
    )
    device: str | None = Field(None, description="cpu, cuda, cuda:1... (default: cuda if any).")
    seed: int = Field(
        42, description="Seed of the examples' draws (label asked, phrasing), as convert's."
    )
    out: Path = Field(description="Output folder.")
    overwrite: bool = Field(False, description="Replace OUT if it exists.")
    json_output: bool = Field(
        False, alias="json", description="Print metrics.json instead of the summary."
    )
