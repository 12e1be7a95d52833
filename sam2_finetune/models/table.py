"""``sam2-finetune models``: the family registry as a table with memory estimates.

Kept apart from :mod:`sam2_finetune.models.registry` (pure data) so that the registry imports
nothing that imports it back: this module needs both the registry and
:mod:`sam2_finetune.models.memory`, which itself reads the registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.models.memory import estimate_memory
from sam2_finetune.models.registry import FAMILIES, get_family, image_tokens

# One side of a frame, for the --frame-size options of `models` and `check`.
FrameSide = Annotated[int, Field(ge=1, le=32_768)]
# The example every estimate is made for unless told otherwise: one 720p frame, 256 text tokens.
DEFAULT_FRAME_SIZE = (1280, 720)
DEFAULT_TEXT_TOKENS = 256


class ExampleSizeOptions(BaseModel):
    """The example a memory estimate is made for, declared once for ``models`` and ``check``."""

    frame_size: list[FrameSide] = Field(
        list(DEFAULT_FRAME_SIZE),
        description="Frame width and height in pixels, for image tokens and memory.",
        min_length=2,
        max_length=2,
    )
    text_tokens: int = Field(
        DEFAULT_TEXT_TOKENS, ge=1, le=32768, description="Prompt + answer tokens per example."
    )


class ModelsOptions(ExampleSizeOptions):
    """List the supported model families and checkpoints with GPU memory estimates for LoRA
    (16-bit), QLoRA 8-bit and QLoRA 4-bit fine-tuning at one standard setting."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    family: list[str] = Field(
        [],
        description="Only these families (default: all).",
        json_schema_extra={"positional": True},
    )
    batch_size: int = Field(1, ge=1, le=1024, description="Samples per device step.")
    lora_rank: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    gradient_checkpointing: bool = Field(True, description="Estimate with gradient checkpointing.")
    json_output: bool = Field(False, alias="json", description="Print JSON instead of a table.")


@dataclass(frozen=True)
class ModelsRow:
    """One line of ``sam2-finetune models``: registry facts plus memory estimates in bytes."""

    family: str
    checkpoint: str
    parameters: int
    answer_format: str
    image_tokens: int
    memory_lora_bf16: int
    memory_qlora_8bit: int
    memory_qlora_4bit: int
    trust_remote_code: bool
    min_transformers: str
    model_class: str
    note: str


def models_table(options: ModelsOptions) -> list[ModelsRow]:
    """One row per checkpoint of the selected families, with estimates at the options' setting."""
    for name in options.family:
        get_family(name)
    width, height = options.frame_size
    rows: list[ModelsRow] = []
    for family in FAMILIES.values():
        if options.family and family.name not in options.family:
            continue
        for checkpoint in family.checkpoints:
            tokens = image_tokens(checkpoint.image, width, height)
            totals = {
                quantization: estimate_memory(
                    checkpoint.architecture,
                    quantization=quantization,
                    lora_rank=options.lora_rank,
                    batch_size=options.batch_size,
                    seq_len=options.text_tokens,
                    image_tokens=tokens,
                    gradient_checkpointing=options.gradient_checkpointing,
                    optimizer="adamw_torch",
                    precision="bf16",
                ).total
                for quantization in ("none", "8bit", "4bit")
            }
            rows.append(
                ModelsRow(
                    family=family.name,
                    checkpoint=checkpoint.name,
                    parameters=checkpoint.architecture.parameters,
                    answer_format=family.answer_format,
                    image_tokens=tokens,
                    memory_lora_bf16=totals["none"],
                    memory_qlora_8bit=totals["8bit"],
                    memory_qlora_4bit=totals["4bit"],
                    trust_remote_code=family.trust_remote_code,
                    min_transformers=family.min_transformers,
                    model_class=family.model_class,
                    note=checkpoint.note,
                )
            )
    return rows


def format_models_table(rows: list[ModelsRow], options: ModelsOptions) -> str:
    """The ``models`` table as aligned text, with the setting and the estimator's status."""
    header = (
        "family", "checkpoint", "params", "format", "img tok",
        "LoRA bf16", "QLoRA 8b", "QLoRA 4b", "transformers",
    )  # fmt: skip
    body = [
        (
            r.family,
            r.checkpoint + (" *" if r.note else ""),
            f"{r.parameters / 1e9:.2f}B",
            r.answer_format,
            str(r.image_tokens),
            f"{r.memory_lora_bf16 / 2**30:.1f}",
            f"{r.memory_qlora_8bit / 2**30:.1f}",
            f"{r.memory_qlora_4bit / 2**30:.1f}",
            f">={r.min_transformers}" + (" +remote code" if r.trust_remote_code else ""),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    width, height = options.frame_size
    lines += [
        "",
        f"GiB per GPU at batch {options.batch_size}, one {width}x{height} frame + "
        f"{options.text_tokens} text tokens, LoRA rank {options.lora_rank} on every LM linear "
        f"layer, AdamW, bf16, gradient checkpointing "
        f"{'on' if options.gradient_checkpointing else 'off'}, vision tower frozen.",
        "QLoRA columns count the unquantised vision tower, embeddings and output head in bf16, "
        "as training keeps them (peft's prepare_model_for_kbit_training would make them fp32).",
        "UNVERIFIED: not yet compared with a measured GPU peak (no GPU was available); the "
        "formula is in docs/models.md.",
    ]
    if any(r.note for r in rows):
        lines.append("* approximate or partly unverified numbers: see docs/models.md.")
    return "\n".join(lines)


def models_command(options: ModelsOptions) -> int:
    """``sam2-finetune models``: print the registry with memory estimates."""
    rows = models_table(options)
    if options.json_output:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(format_models_table(rows, options))
    return 0
