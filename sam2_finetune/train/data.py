"""What a run trains and evaluates on: ``data.dataset`` resolved to a train and an eval split.

``data.dataset`` may be

- a split ``DatasetDict`` folder (``sam2-finetune split``): used as it is;
- a canonical dataset folder (``sam2-finetune convert --to hf``): split temporally in the run
  folder with the run's seed (``<run>/data/split``, its manifest records how);
- SAM2 export ZIPs or a folder of them: converted (with ``data.frames`` as raw frames) and split
  in the run folder (``<run>/data/hf``, ``<run>/data/split``), so ``train quick_test`` works alone.

Before any model is loaded it refuses, with one message each: overlay images (the annotations are
drawn in, so the model would read the answer off the image) unless ``data.allow_overlays``, an
empty train split, a missing or empty evaluation split that evaluation needs, and evaluation labels
that the train split never shows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2_finetune.dataset import category_names, load_canonical
from sam2_finetune.errors import DatasetError, describe

if TYPE_CHECKING:
    import datasets

    from sam2_finetune.train.config import TrainConfig

DATA_DIR = "data"
MANIFEST_NAME = "data_manifest.json"


@dataclass
class TrainingData:
    """The splits a run uses, and what ``data_manifest.json`` records about them."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    labels: list[str]
    manifest: dict[str, Any] = field(repr=False)


def _is_dataset_dict(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file()


def _is_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def split_folder(config: TrainConfig, run_dir: Path) -> tuple[Path, str]:
    """The split DatasetDict folder the run reads, and how it is obtained (nothing written)."""
    source = Path(config.data.dataset)
    if source.is_dir() and _is_dataset_dict(source):
        return source, "split dataset"
    if source.is_dir() and _is_dataset(source):
        how = "canonical dataset, split in the run (temporal, the run's seed)"
    else:
        how = "SAM2 exports, converted and split in the run (temporal, the run's seed)"
    return run_dir / DATA_DIR / "split", how


def prepare_split_folder(config: TrainConfig, run_dir: str | Path) -> Path:
    """Convert and split into ``run_dir/data`` what :func:`split_folder` says must be (in one
    process only: the others wait, then read it)."""
    run_dir = Path(run_dir)
    folder, _ = split_folder(config, run_dir)
    source = Path(config.data.dataset)
    if folder == source:
        return folder
    from sam2_finetune.split import SplitOptions, split

    canonical = source
    if not (source.is_dir() and _is_dataset(source)):
        from sam2_finetune.convert import ConvertOptions, convert

        canonical = run_dir / DATA_DIR / "hf"
        convert(
            ConvertOptions(
                exports=[source],
                to="hf",
                out=canonical,
                frames=config.data.frames,
                overwrite=True,
            )
        )
    split(SplitOptions(dataset=canonical, out=folder, seed=config.training.seed, overwrite=True))
    return folder


def _overlay_videos(dataset: datasets.Dataset) -> list[str]:
    if "image_is_overlay" not in dataset.column_names:
        return []
    flags = dataset["image_is_overlay"]
    videos = dataset["video_id"]
    return sorted({v for v, overlay in zip(videos, flags, strict=True) if overlay})


def _labels_present(dataset: datasets.Dataset) -> set[str]:
    return {obj["label"] for objects in dataset["objects"] for obj in objects}


def _fingerprint(dataset: datasets.Dataset) -> str:
    digest = hashlib.sha256()
    for image_id in dataset["image_id"]:
        digest.update(image_id.encode() + b"\n")
    return digest.hexdigest()[:16]


def load_training_data(config: TrainConfig, run_dir: str | Path) -> TrainingData:
    """Read and check the train / eval splits of ``config.data`` (after
    :func:`prepare_split_folder`)."""
    folder, how = split_folder(config, Path(run_dir))
    splits = load_canonical(folder)
    data = config.data
    if data.train_split not in splits:
        raise DatasetError(
            describe(
                f"the dataset has no {data.train_split!r} split",
                file=folder,
                field="data.train_split",
                expected=" | ".join(splits),
                found=repr(data.train_split),
                fix="set data.train_split to one of the dataset's splits",
            )
        )
    train = splits[data.train_split]
    if len(train) == 0:
        raise DatasetError(
            describe(
                f"the {data.train_split!r} split has no frames",
                file=folder,
                fix="split with a larger train ratio, or add exports",
            )
        )
    evaluation = None
    wants_eval = config.training.eval_steps is not None and data.eval_split is not None
    if wants_eval:
        evaluation = splits.get(data.eval_split)
        if evaluation is None or len(evaluation) == 0:
            found = "missing" if evaluation is None else "empty"
            raise DatasetError(
                describe(
                    f"evaluation needs the {data.eval_split!r} split, which is {found}",
                    file=folder,
                    field="data.eval_split",
                    fix="split with a validation ratio above 0 (e.g. --ratios 0.8 0.1 0.1), or "
                    "set training.eval_steps=null to train without evaluation",
                )
            )
    used = [(data.train_split, train)] + ([(data.eval_split, evaluation)] if evaluation else [])
    overlays = sorted({v for _, part in used for v in _overlay_videos(part)})
    if overlays and not data.allow_overlays:
        raise DatasetError(
            describe(
                "the images of these videos are overlays (the masks and labels are drawn in): "
                "a model trained on them learns to read the answer off the image",
                file=folder,
                found=", ".join(overlays),
                fix="convert with the raw frames (`convert --frames VIDEO=FRAMES_DIR_OR_VIDEO`, "
                "or data.frames in the config), or set data.allow_overlays=true to train on "
                "them anyway (recorded in the run summary)",
            )
        )
    train_labels = _labels_present(train)
    if evaluation is not None:
        unseen = sorted(_labels_present(evaluation) - train_labels)
        if unseen:
            raise DatasetError(
                describe(
                    f"the {data.eval_split!r} split has labels the train split never shows",
                    file=folder,
                    found=", ".join(unseen),
                    fix="split so that every label has training frames (--strategy stratified), "
                    "merge or drop those labels with `convert --label-map`, or add exports",
                )
            )
    manifest = {
        "source": str(data.dataset),
        "how": how,
        "split_folder": str(folder),
        "splits": {name: len(part) for name, part in used},
        "fingerprints": {name: _fingerprint(part) for name, part in used},
        "overlay_frames": {
            name: sum(part["image_is_overlay"]) if "image_is_overlay" in part.column_names else 0
            for name, part in used
        },
        "allow_overlays": data.allow_overlays,
        "labels": category_names(splits),
        "train_labels": sorted(train_labels),
    }
    return TrainingData(train, evaluation, manifest["labels"], manifest)


def write_manifest(data: TrainingData, run_dir: str | Path) -> Path:
    """``run_dir/data_manifest.json``: where the data came from and what it holds."""
    path = Path(run_dir) / MANIFEST_NAME
    path.write_text(json.dumps(data.manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
