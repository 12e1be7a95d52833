"""What inference must reproduce of a training run: ``sam2_finetune.json`` beside the weights.

A model answers in the coordinates of the image its processor made: evaluating or deploying it
with other resize settings than it was trained with shifts every box (the most reported cause of
wrong boxes in peers' trackers). So a run writes one :class:`InferenceRecord` at its start
(``RUN_DIR/sam2_finetune.json``), copies it into ``best/``, and an export carries it; evaluate,
predict and the deployment script read it instead of the processor's defaults. It also names the
base model (an adapter is useless without it), the answer format and the labels the model learnt,
and the library versions it was trained with (adapter weight names have changed across
transformers versions).

The record is plain data (no torch): :func:`write_record` / :func:`read_record`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sam2_finetune.errors import ModelError, describe

__all__ = [
    "RECORD_NAME",
    "ImageSettings",
    "InferenceRecord",
    "library_versions",
    "read_record",
    "write_record",
]

RECORD_NAME = "sam2_finetune.json"
RECORD_VERSION = 1


class ImageSettings(BaseModel):
    """The processor's image settings the model was trained with (``None``: the processor's own,
    which the saved processor files then hold)."""

    model_config = ConfigDict(extra="forbid")

    min_pixels: int | None = None
    max_pixels: int | None = None
    longest_edge: int | None = None
    max_slices: int | None = None


class InferenceRecord(BaseModel):
    """One model's facts for inference (see the module)."""

    model_config = ConfigDict(extra="forbid")

    record_version: int = RECORD_VERSION
    family: str = Field(description="Registry family (models command).")
    base_model: str = Field(description="Checkpoint training started from (folder, Hub id, tiny:).")
    method: Literal["lora", "full"]
    quantization: str = "none"
    merged: bool = Field(False, description="Adapters merged into the base weights (exports).")
    trust_remote_code: bool = False
    answer_format: str
    labels: list[str] = Field(description="The labels the model was trained on, normalised.")
    task_mix: dict[str, float] = Field(default_factory=dict)
    max_polygon_points: int = 32
    fixed_prompts: bool = Field(False, description="Trained on each task's first phrasing only.")
    image: ImageSettings = Field(default_factory=ImageSettings)
    versions: dict[str, str] = Field(default_factory=dict, description="Library versions.")


def library_versions() -> dict[str, str]:
    """The installed versions of the libraries a model's weights and adapters depend on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("sam2-finetune", "transformers", "peft", "torch", "accelerate", "bitsandbytes"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write_record(record: InferenceRecord, folder: str | Path) -> Path:
    """Write ``record`` as ``folder/sam2_finetune.json``; the path written."""
    path = Path(folder) / RECORD_NAME
    path.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_record(folder: str | Path) -> InferenceRecord:
    """The record in ``folder`` (a run folder, its ``best/``, or an export).

    Raises :class:`ModelError` naming the file when it is missing or unreadable.
    """
    path = Path(folder) / RECORD_NAME
    if not path.is_file():
        raise ModelError(
            describe(
                f"no {RECORD_NAME} (what the model was trained with: family, base model, "
                "answer format, image settings)",
                file=folder,
                fix="pass a run folder written by `sam2-finetune train`, its best/ folder, or an "
                "export written by `sam2-finetune export`",
            )
        )
    try:
        return InferenceRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as error:
        raise ModelError(
            describe(
                "the inference record cannot be read",
                file=path,
                found=str(error).splitlines()[0],
                fix="write it again with `sam2-finetune train` or `sam2-finetune export`",
            )
        ) from None
