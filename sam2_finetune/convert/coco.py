"""``convert --to coco``: COCO instances JSON with RLE segmentations, plus the images folder.

Layout of the output folder::

    instances.json             # what pycocotools.coco.COCO(...) loads
    images/<video_id>/frame_000006.png

``file_name`` is relative to ``images/``. Categories are the dataset labels in sorted order, with
ids from 1. Segmentations are compressed RLE at image size with ``iscrowd: 0`` (so COCOeval
scores them as ordinary instances). Extra keys pycocotools ignores keep the video structure:
``video_id``, ``frame_index`` and ``image_key`` (the canonical ``image_id``) on images,
``track_id`` on annotations.

The JSON is streamed: image and annotation entries go to two temporary part files, joined at the
end, so memory stays flat. Entries are one per line, in row order: identical inputs give
byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sam2_finetune import __version__
from sam2_finetune.convert.rows import save_image

COCO_FILE = "instances.json"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def rows_to_coco(rows: Iterable[dict[str, Any]], labels: Sequence[str], folder: Path) -> Path:
    """Write ``rows`` as ``folder/instances.json`` and ``folder/images/``; return the JSON path."""
    images_dir = folder / "images"
    parts = {name: folder / f".{name}.part" for name in ("images", "annotations")}
    annotation_id = 0
    with (
        parts["images"].open("w", encoding="utf-8") as images_part,
        parts["annotations"].open("w", encoding="utf-8") as annotations_part,
    ):
        for number, row in enumerate(rows, start=1):
            image = {
                "id": number,
                "file_name": save_image(row, images_dir),
                "width": row["width"],
                "height": row["height"],
                "video_id": row["video_id"],
                "frame_index": row["frame_index"],
                "image_key": row["image_id"],
            }
            images_part.write(("" if number == 1 else ",\n") + _dumps(image))
            for obj in row["objects"]:
                annotation_id += 1
                annotation = {
                    "id": annotation_id,
                    "image_id": number,
                    "category_id": obj["category"] + 1,
                    "segmentation": obj["segmentation"],
                    "area": obj["area"],
                    "bbox": obj["bbox"],
                    "iscrowd": 0,
                    "track_id": obj["track_id"],
                }
                annotations_part.write(("" if annotation_id == 1 else ",\n") + _dumps(annotation))
    categories = [
        {"id": i + 1, "name": label, "supercategory": "object"} for i, label in enumerate(labels)
    ]
    target = folder / COCO_FILE
    with target.open("w", encoding="utf-8") as out:
        info = {"description": "SAM2 exports converted by sam2-finetune", "version": __version__}
        out.write('{"info":' + _dumps(info) + ',\n"licenses":[],\n"categories":[\n')
        out.write(",\n".join(_dumps(c) for c in categories))
        for name in ("images", "annotations"):
            out.write(f'\n],\n"{name}":[\n')
            with parts[name].open(encoding="utf-8") as part:
                shutil.copyfileobj(part, out)
        out.write("\n]}\n")
    for part in parts.values():
        part.unlink()
    return target
