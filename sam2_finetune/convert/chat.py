"""``convert --to llava`` and ``--to sharegpt``: conversations for other training tools.

Both write the frames into ``images/<video_id>/frame_<index>.<ext>`` (the source bytes) and one
record per example, built by :func:`sam2_finetune.tasks.build_example` from the canonical row, so
prompts and answers are exactly what ``train`` and ``evaluate`` use.

- ``llava``: ``llava.json`` (a JSON array, as LLaVA's ``LazySupervisedDataset`` loads it with
  ``--image_folder`` set to the output folder) and ``llava.jsonl`` (the same records, one a line):
  ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
  {"from": "gpt", "value": "..."}]}``.
- ``sharegpt``: LLaMA-Factory's multimodal ShareGPT form, ``sharegpt.json`` with
  ``{"messages": [{"role": "user", "content": "<image>..."}, {"role": "assistant", ...}],
  "images": ["images/..."]}``, and the ``dataset_info.json`` entry that registers it (use the
  output folder as LLaMA-Factory's ``dataset_dir``).

Every choice (task, label asked, phrasing) comes from a ``random.Random`` seeded with the seed
and the frame's ``image_id`` (:func:`sam2_finetune.tasks.example_rng`): the same inputs and seed
give byte-identical files, adding an export does not change the examples of the others, and the
training collator builds the same examples from the canonical rows (epoch 0).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2_finetune.convert.rows import save_image
from sam2_finetune.errors import DatasetError, describe

if TYPE_CHECKING:
    from sam2_finetune.convert import ConvertOptions

IMAGE_TOKEN = "<image>"
# The polygon fidelity is measured on at most this many rows with a segment example (a seeded
# reservoir sample), so its cost and memory stay bounded on large datasets.
FIDELITY_ROWS = 256


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _examples(
    rows: Iterable[dict[str, Any]],
    labels: Sequence[str],
    options: ConvertOptions,
    images_dir: Path,
    segment_rows: list[dict[str, Any]],
) -> Iterator[tuple[str, str, str, str]]:
    """(id, image path relative to the output folder, prompt, answer) per example, built by
    :func:`sam2_finetune.tasks.examples_for_row` (what the training collator calls too); a
    sample of the rows that got a ``segment`` example is kept in ``segment_rows`` (polygon
    fidelity)."""
    from sam2_finetune.tasks import examples_for_row

    options.task_weights(options.answer_format)  # checked once, before any image is written
    sampler = random.Random(options.seed)
    segmented_rows = 0
    for row in rows:
        image = "images/" + save_image(row, images_dir)
        examples = examples_for_row(
            row, options, options.answer_format, seed=options.seed, vocabulary=labels
        )
        for k, example in enumerate(examples):
            if IMAGE_TOKEN in example.prompt or IMAGE_TOKEN in example.answer:
                raise DatasetError(
                    describe(
                        f"the example would hold a second {IMAGE_TOKEN} token (in a label)",
                        file=row["image_id"],
                        found=", ".join(example.labels),
                        fix="rename the label with --label-map",
                    )
                )
            yield f"{row['image_id']}#{k}", image, example.prompt, example.answer
        if any(example.task == "segment" for example in examples):
            segmented_rows += 1
            if len(segment_rows) < FIDELITY_ROWS:
                segment_rows.append(_without_image(row))
            elif (slot := sampler.randrange(segmented_rows)) < FIDELITY_ROWS:
                segment_rows[slot] = _without_image(row)


def _without_image(row: dict[str, Any]) -> dict[str, Any]:
    # Keep the masks (for the fidelity) but not the image bytes.
    return {k: v for k, v in row.items() if k != "image"}


class _JsonArray:
    """Writes a JSON array one element at a time (one a line), never holding it whole."""

    def __init__(self, path: Path, stack: ExitStack):
        self.handle = stack.enter_context(path.open("w", encoding="utf-8"))
        self.handle.write("[")
        self.count = 0

    def append(self, text: str) -> None:
        self.handle.write(("\n" if self.count == 0 else ",\n") + text)
        self.count += 1

    def close(self) -> None:
        self.handle.write("\n]\n")


def rows_to_chat(
    rows: Iterable[dict[str, Any]],
    labels: Sequence[str],
    folder: Path,
    options: ConvertOptions,
) -> tuple[dict[str, Path], dict[str, Any] | None]:
    """Write ``rows`` in ``options.to`` (``llava`` or ``sharegpt``) into ``folder``.

    Returns the written paths by name and, when some example has the ``segment`` task, the
    polygon fidelity (:func:`sam2_finetune.tasks.polygon_fidelity`) over up to
    :data:`FIDELITY_ROWS` of those rows, sampled with the seed.
    """
    images_dir = folder / "images"
    segment_rows: list[dict[str, Any]] = []
    examples = _examples(rows, labels, options, images_dir, segment_rows)
    with ExitStack() as stack:
        if options.to == "llava":
            paths = {"llava_json": folder / "llava.json", "llava_jsonl": folder / "llava.jsonl"}
            array = _JsonArray(paths["llava_json"], stack)
            lines = stack.enter_context(paths["llava_jsonl"].open("w", encoding="utf-8"))
            for example_id, image, prompt, answer in examples:
                record = _dumps(
                    {
                        "id": example_id,
                        "image": image,
                        "conversations": [
                            {"from": "human", "value": f"{IMAGE_TOKEN}\n{prompt}"},
                            {"from": "gpt", "value": answer},
                        ],
                    }
                )
                array.append(record)
                lines.write(record + "\n")
            array.close()
        else:
            paths = {
                "sharegpt_json": folder / "sharegpt.json",
                "dataset_info": folder / "dataset_info.json",
            }
            array = _JsonArray(paths["sharegpt_json"], stack)
            for _, image, prompt, answer in examples:
                array.append(
                    _dumps(
                        {
                            "messages": [
                                {"role": "user", "content": f"{IMAGE_TOKEN}{prompt}"},
                                {"role": "assistant", "content": answer},
                            ],
                            "images": [image],
                        }
                    )
                )
            array.close()
            paths["dataset_info"].write_text(
                json.dumps(sharegpt_dataset_info(options.dataset_name), indent=2) + "\n",
                encoding="utf-8",
            )
    paths["images"] = images_dir
    fidelity = None
    if segment_rows:
        from sam2_finetune.tasks import polygon_fidelity

        fidelity = polygon_fidelity(segment_rows, max_points=options.max_polygon_points)
    return paths, fidelity


def sharegpt_dataset_info(name: str, file_name: str = "sharegpt.json") -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json`` content registering a multimodal ShareGPT file."""
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        }
    }
