"""What ``sam2-finetune export`` takes and returns: :class:`ExportOptions`, :class:`ExportResult`.

The options are declared once here; the CLI (``sam2_finetune.cli``), ``make export`` and the
pipeline all build this model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ExportKind = Literal["adapter", "merged", "full"]
_CHECKPOINT = re.compile(r"^(best|last|\d+|checkpoint-\d+)$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ExportOptions(BaseModel):
    """Export a trained model from a run folder: the LoRA adapter (or, with --merge, the adapters
    merged into the base weights; a full fine-tune exports the whole model), its processor and
    chat template, sam2_finetune.json (what inference must reproduce), a model card (README.md)
    and deploy/ (an inference script, deploy_config.yaml, a Dockerfile, serving notes). Written
    to a temporary folder and renamed into place; optionally uploaded to the Hugging Face Hub."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(
        description="The run folder written by `sam2-finetune train` (or its best/ folder).",
        json_schema_extra={"positional": True},
    )
    out: Path = Field(description="The export folder to write.")
    checkpoint: str = Field(
        "best",
        description="Which weights: best (the run's best/), last (its latest complete "
        "checkpoint), or a step (50 or checkpoint-50).",
    )
    merge: bool = Field(
        False,
        description="Merge the LoRA adapters into the base weights (a QLoRA run's base is "
        "reloaded unquantised to merge). Ignored for a full fine-tune.",
    )
    evaluation: Path | None = Field(
        None,
        description="An evaluate output folder (its metrics.json) whose metrics go into the "
        "model card.",
    )
    push_to_hub: str | None = Field(
        None, description="Upload the export to this Hugging Face Hub repository (owner/name)."
    )
    private: bool = Field(True, description="Make a new Hub repository private.")
    overwrite: bool = Field(False, description="Replace OUT if it exists.")

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_name(cls, value: str) -> str:
        if not _CHECKPOINT.match(value):
            raise ValueError(f"expected best, last, a step number or checkpoint-N, found {value!r}")
        return value

    @field_validator("push_to_hub")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is not None and not _REPO_ID.match(value):
            raise ValueError(f"expected a Hub repository id owner/name, found {value!r}")
        return value


@dataclass
class ExportResult:
    """What :func:`sam2_finetune.export.export` wrote.

    ``kind``: ``adapter`` (LoRA weights for the base model), ``merged`` (adapters merged into
    the base weights) or ``full`` (a full fine-tune's weights). ``source`` is the checkpoint
    folder exported, ``step`` its training step when known; ``size_bytes`` the export's size on
    disk; ``hub_url`` where it was uploaded, if it was.
    """

    out_dir: Path
    kind: ExportKind
    source: Path
    step: int | None
    family: str
    base_model: str
    size_bytes: int
    files: list[str] = field(default_factory=list)
    hub_url: str | None = None
    merge_seconds: float | None = None
