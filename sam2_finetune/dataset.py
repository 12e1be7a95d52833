"""The canonical dataset: one row per annotated frame, format-free (no prompts, no answer text).

Written by ``convert --to hf`` and read by ``validate``, ``split``, ``train`` and ``evaluate``.
Columns follow the Hub's object-detection convention; ``objects`` is a list of dicts per row:

==================  =====================================================================
``image``           ``datasets.Image`` (the source PNG/JPEG bytes, not re-encoded)
``image_id``        unique string ``"<video_id>/<frame_index:06d>"``
``video_id``        the export's stable video id (groups frames for leak-free splits)
``frame_index``     frame number in the source video
``timestamp_sec``   as the export states it
``width/height``    image size in pixels
``image_is_overlay`` True when the image has the annotations drawn in
``objects``         list of ``{track_id, label, category (ClassLabel), bbox [x, y, w, h] float
                    image pixels, area (pixels), segmentation {size: [h, w], counts: str}}``
==================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2_finetune.errors import DatasetError, describe

if TYPE_CHECKING:
    import datasets


def normalize_label(label: str) -> str:
    """The one spelling labels that differ only in case or whitespace share: ``"  Red   Car "``
    -> ``"red car"``, ``"Straße"`` and ``"STRASSE"`` -> ``"strasse"`` (``casefold``, not
    ``lower``). ``convert --normalize-labels`` merges by it and ``validate``'s label-variants
    rule groups by it, so the advice and the option always agree."""
    return " ".join(label.split()).casefold()


def image_id(video_id: str, frame_index: int) -> str:
    """The canonical row id of a frame."""
    return f"{video_id}/{frame_index:06d}"


def canonical_features(labels: Sequence[str]) -> datasets.Features:
    """The ``datasets.Features`` of the canonical dataset, with ``category`` over ``labels``."""
    from datasets import ClassLabel, Features, Image, List, Value

    return Features(
        {
            "image": Image(),
            "image_id": Value("string"),
            "video_id": Value("string"),
            "frame_index": Value("int32"),
            "timestamp_sec": Value("float64"),
            "width": Value("int32"),
            "height": Value("int32"),
            "image_is_overlay": Value("bool"),
            "objects": List(
                {
                    "track_id": Value("int32"),
                    "label": Value("string"),
                    "category": ClassLabel(names=list(labels)),
                    "bbox": List(Value("float32"), length=4),
                    "area": Value("int64"),
                    "segmentation": {
                        "size": List(Value("int32"), length=2),
                        "counts": Value("string"),
                    },
                }
            ),
        }
    )


def category_names(dataset: datasets.Dataset | datasets.DatasetDict) -> list[str]:
    """The label names of a canonical dataset (the ``objects.category`` ClassLabel)."""
    from datasets import DatasetDict

    ds = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    objects = ds.features["objects"]
    feature = objects.feature if hasattr(objects, "feature") else objects[0]
    return list(feature["category"].names)


# Files save_to_disk writes: a Dataset folder has state.json, a DatasetDict dataset_dict.json.
DATASET_MARKERS = ("dataset_dict.json", "state.json")

# The columns every stage reads; `columns=` lets a reader that needs fewer ask for fewer.
CANONICAL_COLUMNS = ("image", "image_id", "video_id", "frame_index", "objects")


def load_canonical(
    path: str | Path, columns: Sequence[str] = CANONICAL_COLUMNS
) -> datasets.Dataset | datasets.DatasetDict:
    """``datasets.load_from_disk`` with a clear error when ``path`` is not a canonical dataset
    (lacks one of ``columns``)."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.exists():
        raise DatasetError(
            describe(
                "no such dataset folder",
                file=path,
                fix=f"create it with `sam2-finetune convert EXPORT... --to hf --out {path}`",
            )
        )
    _refuse_exports(path)
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(
            describe(
                f"not a dataset saved with save_to_disk ({exc})",
                file=path,
                fix="point at the folder `sam2-finetune convert --to hf` or "
                "`sam2-finetune split` wrote",
            )
        ) from None
    from datasets import DatasetDict

    first = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    missing = set(columns) - set(first.column_names)
    if missing:
        raise DatasetError(
            f"{path}: not a canonical sam2-finetune dataset (missing columns {sorted(missing)}; "
            f"found {first.column_names}). Fix: convert the exports with "
            "`sam2-finetune convert --to hf`."
        )
    return dataset


def _refuse_exports(path: Path) -> None:
    """A SAM2 export (ZIP, folder, or a folder of them) or any other file is not a dataset: say
    what it is and give the convert command that makes one, rather than ``datasets``' "Directory
    ... is neither a Dataset directory" (which it also says of a file)."""
    source = path
    if path.is_dir():
        zips = sorted(p.name for p in path.glob("*.zip"))
        exports = (path / "annotations.json").is_file() or any(path.glob("*/annotations.json"))
        if not (exports or zips) or any((path / m).is_file() for m in DATASET_MARKERS):
            return
        what = "a SAM2 export folder" if exports else f"a folder of export ZIPs ({zips[0]}, ...)"
    elif path.suffix.lower() == ".zip":
        what = "a ZIP file (a SAM2 export?)"
    elif path.name == "annotations.json":
        what, source = "an export's annotations.json", path.parent
    else:
        raise DatasetError(
            describe(
                "this is a file, not a canonical dataset",
                file=path,
                fix="pass the folder `sam2-finetune convert --to hf` or `sam2-finetune split` "
                "wrote",
            )
        )
    raise DatasetError(
        describe(
            f"this is {what}, not a canonical dataset (a folder written by `convert --to hf` "
            "or `split`)",
            file=path,
            fix=f"convert it first: `sam2-finetune convert {source} --to hf --out data/hf`, "
            "then pass data/hf",
        )
    )


def row_image(row: Mapping[str, Any]) -> Any:
    """The row's frame as an RGB ``PIL.Image`` (decoded ``datasets.Image`` or raw bytes)."""
    from PIL import Image

    image = row["image"]
    if isinstance(image, Mapping):
        data = image.get("bytes")
        image = Image.open(BytesIO(data) if data is not None else image["path"])
    return image.convert("RGB")
