"""Merging LoRA adapters into the base weights, for a model that loads without peft.

``W' = W + (alpha / r) B A`` for every adapted layer (peft's ``merge_and_unload``), then the
plain transformers model is saved as safetensors. Merging needs the base weights in full
precision: a QLoRA run's base is reloaded *unquantised* (the adapters were trained against the
NF4-dequantised weights, so the merged model differs from the QLoRA model by that quantisation
error; the model card says so). Layers trained in full next to the adapters
(``modules_to_save``: an unfrozen projector or vision tower) replace the base's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sam2_finetune.errors import ModelError, describe
from sam2_finetune.export.adapter import Checkpoint, ExportSourceError
from sam2_finetune.models.record import RECORD_NAME


def load_base(checkpoint: Checkpoint, dtype: Any = None) -> Any:
    """The run's base model, unquantised, as the record names it (one clear error if missing)."""
    from sam2_finetune.models.loading import load_model

    record = checkpoint.record
    try:
        return load_model(
            record.base_model,
            record.family,
            dtype=dtype,
            trust_remote_code=record.trust_remote_code,
        )
    except ModelError as error:
        raise ExportSourceError(
            describe(
                f"the base model the run was trained from cannot be loaded to merge into: {error}",
                file=record.base_model,
                field=f"base_model in {RECORD_NAME}",
                fix="make the base checkpoint available (a folder at that path, or the Hub id "
                "with network access or in the Hugging Face cache), or export without --merge",
            )
        ) from None


def merged_model(checkpoint: Checkpoint, dtype: Any = None) -> tuple[Any, float]:
    """The base model with ``checkpoint``'s adapters merged in, and the seconds merging took
    (loading the base and the adapter included)."""
    from peft import PeftModel

    from sam2_finetune.models.loading import quiet_peft

    started = time.perf_counter()
    base = load_base(checkpoint, dtype)
    try:
        with quiet_peft():
            model = PeftModel.from_pretrained(base, str(checkpoint.folder))
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ExportSourceError(
            describe(
                f"the adapter does not fit the base model: {error}",
                file=checkpoint.folder,
                fix=f"check base_model in the run's {RECORD_NAME}: it must be the checkpoint the "
                "run trained from",
            )
        ) from None
    merged = model.merge_and_unload()
    merged.eval()
    return merged, time.perf_counter() - started


def save_model(model: Any, out: Path) -> list[str]:
    """Save a transformers model as safetensors with its config and generation config; the
    files written."""
    before = {p.name for p in out.iterdir()}
    model.save_pretrained(str(out))  # safetensors: the only format transformers 5 writes
    return sorted(p.name for p in out.iterdir() if p.name not in before)
