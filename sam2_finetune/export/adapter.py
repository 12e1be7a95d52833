"""Which weights a run's export takes, checks on them, and the files an adapter export holds.

A run folder (``sam2-finetune train``) has ``best/`` (the best, or without a metric the last,
model: loadable alone) and ``checkpoints/checkpoint-N`` (the Trainer's, with optimizer state).
:func:`find_checkpoint` turns ``--checkpoint best|last|STEP`` into one folder; :func:`check_source`
refuses, with one message each, a folder with no weights, weights of another family than the
run's record, and a base model that is gone. :func:`copy_weights` copies what loading needs
(never the optimizer state); :func:`save_processor` writes the processor so that plain
``AutoProcessor.from_pretrained`` reads it (see :data:`STOCK_VIDEO_PROCESSORS`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2_finetune.errors import ModelError, describe
from sam2_finetune.files import read_json
from sam2_finetune.models.record import RECORD_NAME, InferenceRecord, read_record
from sam2_finetune.models.registry import get_family

ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
# What a model or adapter folder holds besides the processor files, as save_pretrained writes it.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
)
# Our processors without a video processor (models.processors) save their own class name, which
# a process without sam2_finetune cannot resolve: AutoProcessor then silently returns only the
# tokenizer. The export names the stock class instead, and writes the video processor config that
# stock class reads (a GPU host has torchvision, which it needs). Stock class -> video processor.
STOCK_VIDEO_PROCESSORS: dict[str, str] = {
    "SmolVLMProcessor": "SmolVLMVideoProcessor",
    "Qwen2VLProcessor": "Qwen2VLVideoProcessor",
    "Qwen2_5_VLProcessor": "Qwen2VLVideoProcessor",
}
VIDEO_CONFIG = "video_preprocessor_config.json"
# Image-processor settings a video processor of the same family shares.
_SHARED_VIDEO_SETTINGS = (
    "do_convert_rgb",
    "do_normalize",
    "do_rescale",
    "do_resize",
    "image_mean",
    "image_std",
    "rescale_factor",
    "resample",
    "size",
    "patch_size",
    "temporal_patch_size",
    "merge_size",
    "min_pixels",
    "max_pixels",
    "max_image_size",
)


class ExportSourceError(ModelError):
    """The run folder has nothing exportable, or the weights do not match the run."""


@dataclass(frozen=True)
class Checkpoint:
    """The folder exported, its training step (when known), the record it was trained with,
    and whether it holds a LoRA adapter (else full weights)."""

    folder: Path
    step: int | None
    record: InferenceRecord
    is_adapter: bool


def _has_weights(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() or (folder / MODEL_CONFIG).is_file()


def _step_of(folder: Path) -> int | None:
    info = folder / "best.json"
    if info.is_file():
        step = json.loads(info.read_text(encoding="utf-8")).get("step")
        return int(step) if step is not None else None
    tail = folder.name.rsplit("-", 1)[-1]
    return int(tail) if folder.name.startswith("checkpoint-") and tail.isdigit() else None


def _checkpoints(run: Path) -> list[Path]:
    from sam2_finetune.train.run import complete_checkpoints

    return complete_checkpoints(run)


def find_checkpoint(run: str | Path, which: str = "best") -> Checkpoint:
    """The folder of ``run`` that ``which`` names (``best``, ``last``, ``50``, ``checkpoint-50``).

    ``run`` may also be a folder that holds the weights and the record itself (a ``best/``
    folder, an adapter export). Raises :class:`ExportSourceError` naming the run folder and the
    checkpoints it does have.
    """
    run = Path(run)
    if not run.is_dir():
        raise ExportSourceError(
            describe(
                "no such run folder",
                file=run,
                fix="pass the folder `sam2-finetune train` wrote (output.run_dir, e.g. "
                "runs/quick_test)",
            )
        )
    if _has_weights(run) and (run / RECORD_NAME).is_file() and which == "best":
        return _checkpoint(run, read_record(run))
    if not (run / RECORD_NAME).is_file():
        read_record(run)  # raises, naming the file and what to pass instead
    record = read_record(run)
    found = _checkpoints(run)
    names = ", ".join(p.name for p in found) or "none"
    if which == "best":
        folder = run / "best"
        if not _has_weights(folder):
            raise ExportSourceError(
                describe(
                    "the run has no best/ model (did training stop before it saved anything?)",
                    file=folder,
                    found=f"complete checkpoints: {names}",
                    fix="export one of them with --checkpoint last or --checkpoint STEP, or "
                    "train the run to its end (`sam2-finetune train CONFIG --resume`)",
                )
            )
        return _checkpoint(folder, record)
    if which == "last":
        if not found:
            raise ExportSourceError(
                describe(
                    "the run has no complete checkpoint",
                    file=run / "checkpoints",
                    fix="export best/ (--checkpoint best), or train until a checkpoint is "
                    "saved (training.save_steps)",
                )
            )
        return _checkpoint(found[-1], record)
    name = which if which.startswith("checkpoint-") else f"checkpoint-{which}"
    folder = run / "checkpoints" / name
    if folder not in found:
        raise ExportSourceError(
            describe(
                f"the run has no complete {name}",
                file=run / "checkpoints",
                found=f"complete checkpoints: {names}",
                fix="pick one of those (--checkpoint STEP), or best / last",
            )
        )
    return _checkpoint(folder, record)


def _checkpoint(folder: Path, record: InferenceRecord) -> Checkpoint:
    return Checkpoint(
        folder=folder,
        step=_step_of(folder),
        record=record,
        is_adapter=(folder / ADAPTER_CONFIG).is_file(),
    )


def _model_type(config_file: Path) -> str | None:
    return read_json(config_file, "model config").get("model_type")


def check_source(checkpoint: Checkpoint) -> None:
    """Refuse weights of another family than the run's record, and a base model that is gone.

    The family of full weights is their ``config.json``'s ``model_type``; an adapter's is that
    of the base folder its ``adapter_config.json`` names (when that folder is on this machine).
    """
    record, folder = checkpoint.record, checkpoint.folder
    expected = get_family(record.family).model_type
    if checkpoint.is_adapter:
        base = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
        config_file = Path(str(base)) / MODEL_CONFIG if base else None
    else:
        config_file = folder / MODEL_CONFIG
    if config_file is not None and config_file.is_file():
        found = _model_type(config_file)
        if found != expected:
            raise ExportSourceError(
                describe(
                    f"the checkpoint is not a {record.family} model, the family the run "
                    f"trained (its {RECORD_NAME})",
                    file=folder,
                    field="model_type",
                    expected=repr(expected),
                    found=f"{found!r} (from {config_file})",
                    fix="export the checkpoint from the run that trained it; a checkpoint "
                    "copied between run folders does not carry its run's record",
                )
            )
    check_base_model(record)


def check_base_model(record: InferenceRecord) -> None:
    """Raise :class:`ExportSourceError` when ``record.base_model`` is a local folder that is gone.

    Checked for adapter exports too, which do not load the base: the adapter would be useless
    without it. A Hub id cannot be checked without the network; merging reports its error.
    """
    from sam2_finetune.models.tiny import TINY_PREFIX

    base = record.base_model
    if base.startswith(TINY_PREFIX):
        return
    local = base.startswith(("/", "./", "../", "~"))
    if local and not (Path(base).expanduser() / MODEL_CONFIG).is_file():
        raise ExportSourceError(
            describe(
                "the base model the run was trained from is missing (an adapter is useless "
                "without it, and merging needs its weights)",
                file=base,
                field=f"base_model in {RECORD_NAME}",
                fix="put the base checkpoint back at that path, or edit base_model in the run's "
                f"{RECORD_NAME} (and best/{RECORD_NAME}) to where it now is",
            )
        )


def copy_weights(checkpoint: Checkpoint, out: Path) -> list[str]:
    """Copy the adapter (or the full weights) of ``checkpoint`` into ``out``; the names copied.

    The adapter's ``base_model_name_or_path`` is set to the record's base model when that is a
    Hub id or a folder, so that ``AutoPeftModel`` finds it (a ``tiny:`` base keeps the cache
    folder it was built in).
    """
    from sam2_finetune.models.tiny import TINY_PREFIX

    copied = []
    if checkpoint.is_adapter:
        names = [n for n in ADAPTER_FILES if (checkpoint.folder / n).is_file()]
    else:
        names = sorted(
            {p.name for pattern in MODEL_FILE_PATTERNS for p in checkpoint.folder.glob(pattern)}
        )
    for name in names:
        shutil.copy2(checkpoint.folder / name, out / name)
        copied.append(name)
    if checkpoint.is_adapter and not checkpoint.record.base_model.startswith(TINY_PREFIX):
        config_file = out / ADAPTER_CONFIG
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = checkpoint.record.base_model
        config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return copied


def copy_remote_code(base_folder: Path, out: Path) -> list[str]:
    """Copy the modelling code (``*.py``) of a ``trust_remote_code`` base next to merged or full
    weights: their ``config.json`` names it (``auto_map``), and without it they do not load."""
    copied = []
    for path in sorted(base_folder.glob("*.py")):
        if not (out / path.name).exists():
            shutil.copy2(path, out / path.name)
            copied.append(path.name)
    return copied


def load_checkpoint_processor(checkpoint: Checkpoint) -> Any:
    """The processor saved with ``checkpoint`` (one :class:`ModelError` when it has none)."""
    from sam2_finetune.models.loading import load_processor

    record = checkpoint.record
    return load_processor(
        checkpoint.folder, record.family, trust_remote_code=record.trust_remote_code
    )


def save_processor(processor: Any, out: Path, base_folder: str | None = None) -> None:
    """``processor.save_pretrained(out)``, made loadable by plain ``AutoProcessor``.

    One of our ``*WithoutVideo`` processors is saved under its stock class name, with the
    stock class's video processor config: copied from the base checkpoint when it has one, else
    written from the image processor's settings (the stock class reads it; it needs torchvision,
    which a GPU host has).
    """
    from sam2_finetune.models.processors import LOCAL_PROCESSORS

    processor.save_pretrained(str(out))
    config_file = out / "processor_config.json"
    if type(processor).__name__ not in LOCAL_PROCESSORS or not config_file.is_file():
        return
    stock = type(processor).__mro__[1].__name__
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["processor_class"] = stock
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    video = STOCK_VIDEO_PROCESSORS.get(stock)
    if video is None or (out / VIDEO_CONFIG).is_file():
        return
    base_video = Path(base_folder) / VIDEO_CONFIG if base_folder else None
    if base_video is not None and base_video.is_file():
        shutil.copy2(base_video, out / VIDEO_CONFIG)
        return
    image = processor.image_processor.to_dict()
    settings = {k: image[k] for k in _SHARED_VIDEO_SETTINGS if k in image}
    settings.update(video_processor_type=video, processor_class=stock)
    (out / VIDEO_CONFIG).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
