"""A trained model, ready to answer: ``load_for_inference(path) -> InferenceModel``.

One loader for everything ``evaluate``, ``predict`` and ``export`` are given:

========================  ======================================================================
``path`` is                what is loaded
========================  ======================================================================
a run folder (``train``)   its ``best/``; or, with ``checkpoint``, ``checkpoints/checkpoint-N``
                           (``"N"``, ``"checkpoint-N"``, ``"last"``: the highest complete one,
                           ``"best"``); the record is the run's ``sam2_finetune.json``
a ``best/`` folder         the adapter or the full model in it, with its record
an adapter export          ``adapter_config.json`` + record: the base model named by
                           ``record.base_model`` (in the record's quantization), the adapter
                           attached with peft
a merged or full export    ``config.json`` + weights + record: loaded as it is
========================  ======================================================================

The processor comes from the model folder itself (the files ``save_pretrained`` wrote next to the
weights), never from the base checkpoint, and then gets the image settings the model was trained
with (:func:`sam2_finetune.models.chat.apply_image_settings` on ``record.image``): the same
function the training collator calls, so an image is resized at inference exactly as in training.
The model is returned in eval mode.

Each way this can go wrong (no record, no processor files, no weights, an unknown checkpoint) is
one :class:`~sam2_finetune.errors.ModelError` naming the folder and what to pass instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2_finetune.errors import ModelError, describe
from sam2_finetune.models.record import RECORD_NAME, InferenceRecord, read_record

__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "InferenceModel",
    "load_for_inference",
    "model_folder",
]

# The run folder's layout, as train writes it (train.callbacks / train.run; evaluate never
# imports train, so the two names are repeated here).
BEST_DIR = "best"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
# A saved processor: its image-processor settings (processor_config.json in transformers 5,
# preprocessor_config.json before) and its tokenizer.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
_CHECKPOINT = re.compile(r"^(?:checkpoint-)?(\d+)$")


@dataclass
class InferenceModel:
    """A model ready to generate: the (peft or plain) ``model`` in eval mode, its ``processor``
    with the training image settings applied, the ``record`` it was trained with, and the
    ``source`` folder its weights came from."""

    model: Any
    processor: Any
    record: InferenceRecord
    source: Path


def _has_weights(folder: Path) -> bool:
    return any(
        p.name != "training_args.bin" for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)
    )


def _is_model(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() or (folder / MODEL_CONFIG).is_file()


def _checkpoints(run: Path) -> dict[int, Path]:
    """``step -> folder`` of the run's checkpoints that hold a model."""
    found = {}
    folder = run / CHECKPOINTS_DIR
    if folder.is_dir():
        for item in folder.iterdir():
            match = _CHECKPOINT.match(item.name)
            if match and item.is_dir() and item.name.startswith("checkpoint-") and _is_model(item):
                found[int(match.group(1))] = item
    return dict(sorted(found.items()))


def model_folder(path: str | Path, checkpoint: str | None = None) -> tuple[Path, Path]:
    """``(weights folder, record folder)`` of ``path`` as :func:`load_for_inference` reads it
    (see the module's table). Raises :class:`ModelError` when ``path`` is none of those."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(
            describe(
                "no such model folder",
                file=path,
                fix="pass a run folder written by `sam2-finetune train`, its best/ folder, or an "
                "export written by `sam2-finetune export`",
            )
        )
    is_run = (path / CHECKPOINTS_DIR).is_dir() or (path / BEST_DIR).is_dir()
    if checkpoint is not None:
        if not is_run:
            raise ModelError(
                describe(
                    "--checkpoint needs a run folder (with checkpoints/ and best/)",
                    file=path,
                    field="checkpoint",
                    found=checkpoint,
                    fix="pass the run folder written by `sam2-finetune train`, or leave out "
                    "--checkpoint to load this folder's model",
                )
            )
        return _checkpoint_folder(path, checkpoint), path
    if is_run and not _is_model(path):
        best = path / BEST_DIR
        if not best.is_dir():
            steps = list(_checkpoints(path))
            raise ModelError(
                describe(
                    "the run has no best/ model (it stopped before saving one)",
                    file=path,
                    found=f"checkpoints {steps}" if steps else "no checkpoint",
                    fix="pass --checkpoint last (or a step) to load a checkpoint"
                    if steps
                    else "train the run further, or point to another run",
                )
            )
        return best, best
    return path, path


def _checkpoint_folder(run: Path, checkpoint: str) -> Path:
    if checkpoint == "best":
        best = run / BEST_DIR
        if not best.is_dir():
            raise ModelError(
                describe(
                    "the run has no best/ model",
                    file=run,
                    field="checkpoint",
                    found="best",
                    fix="pass --checkpoint last, or a step of checkpoints/",
                )
            )
        return best
    found = _checkpoints(run)
    if checkpoint == "last":
        if found:
            return found[max(found)]
    else:
        match = _CHECKPOINT.match(checkpoint)
        if match and int(match.group(1)) in found:
            return found[int(match.group(1))]
    raise ModelError(
        describe(
            "no such checkpoint in the run",
            file=run / CHECKPOINTS_DIR,
            field="checkpoint",
            expected="best, last, N or checkpoint-N with N in "
            + (", ".join(str(step) for step in found) or "(none saved)"),
            found=checkpoint,
            fix="pick one of the saved steps (the Trainer keeps save_total_limit of them)",
        )
    )


def _check_processor_files(folder: Path) -> None:
    missing = []
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        missing.append(" or ".join(PROCESSOR_FILES))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise ModelError(
            describe(
                "the model folder has no saved processor, and inference must use the processor "
                "the model was trained with (its image size and chat template), not a default",
                file=folder,
                expected="the files processor.save_pretrained writes next to the weights",
                found="missing " + "; ".join(missing),
                fix="pass the run folder or its best/ (train saves the processor there), or "
                "export the model with `sam2-finetune export`, which copies it",
            )
        )


def _check_weights(folder: Path) -> None:
    if not _is_model(folder) or not _has_weights(folder):
        raise ModelError(
            describe(
                "no model weights in the folder",
                file=folder,
                expected=f"{ADAPTER_CONFIG} (an adapter) or {MODEL_CONFIG} (a full model), with "
                ".safetensors or .bin weights",
                found=", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "an empty folder",
                fix="pass a run folder, its best/, a checkpoint, or an export",
            )
        )


def _resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_for_inference(
    path: str | Path,
    *,
    checkpoint: str | None = None,
    device: str | None = None,
    dtype: Any = None,
) -> InferenceModel:
    """Load the model at ``path`` for generation (see the module for what ``path`` may be).

    ``checkpoint`` picks one of a run's checkpoints (``"best"``, ``"last"``, ``"N"``,
    ``"checkpoint-N"``); ``device`` defaults to CUDA when present, else the CPU; ``dtype``
    (a torch dtype or its name) defaults to the saved weights' dtype.

    >>> loaded = load_for_inference("runs/quick_test")  # doctest: +SKIP
    >>> loaded.record.family, loaded.source.name        # doctest: +SKIP
    ('smolvlm', 'best')
    """
    from sam2_finetune.models.chat import apply_image_settings
    from sam2_finetune.models.loading import load_model, load_processor, quiet_peft

    folder, record_folder = model_folder(path, checkpoint)
    if not (record_folder / RECORD_NAME).is_file() and (folder / RECORD_NAME).is_file():
        record_folder = folder
    record = read_record(record_folder)
    _check_weights(folder)
    _check_processor_files(folder)
    device = _resolve_device(device)
    processor = load_processor(folder, record.family, trust_remote_code=record.trust_remote_code)
    apply_image_settings(processor, record.family, record.image)
    quantized = record.quantization != "none" and not record.merged
    placement: dict[str, Any] = {"device_map": {"": device}} if quantized else {}
    if (folder / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        base = load_model(
            record.base_model,
            record.family,
            quantization=record.quantization if quantized else "none",  # type: ignore[arg-type]
            dtype=dtype,
            trust_remote_code=record.trust_remote_code,
            **placement,
        )
        try:
            with quiet_peft():
                model = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(
                describe(
                    f"the adapter does not fit its base model {record.base_model!r}: {exc}",
                    file=folder,
                    fix="check that the record's base_model is the checkpoint the adapter was "
                    "trained from (a run's sam2_finetune.json names it)",
                )
            ) from None
    else:
        model = load_model(
            folder, record.family, dtype=dtype, trust_remote_code=record.trust_remote_code
        )
    if not quantized:
        model = model.to(device)
    model.eval()
    return InferenceModel(model=model, processor=processor, record=record, source=folder)
