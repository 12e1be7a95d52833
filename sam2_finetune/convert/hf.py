"""``convert --to hf``: the canonical ``datasets`` dataset, written by streaming.

Rows are converted to Arrow in small record batches (``pyarrow.Table.from_pylist`` against the
canonical schema) and appended with ``datasets``' own ``ArrowWriter`` straight into the shard files
of the ``save_to_disk`` layout (``data-00000-of-00001.arrow``, ``dataset_info.json``,
``state.json``), which ``datasets.load_from_disk`` reads. Memory stays flat however many frames come
in, and nothing is written twice: ``Dataset.from_generator`` + ``save_to_disk`` would encode every
row in Python (4x slower here), cache a copy (in ``~/.cache/huggingface`` by default) and read that
whole copy back through a memory map (whose pages count in the peak RSS).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from sam2_finetune import __version__
from sam2_finetune.dataset import canonical_features

# Rows per Arrow record batch: bounds what is held in memory (about this many images).
WRITER_BATCH_SIZE = 32
# A new shard file starts past this size, as save_to_disk's default max_shard_size (500 MB).
MAX_SHARD_BYTES = 500 * 1000**2


def rows_to_hf(rows: Iterable[dict[str, Any]], labels: Sequence[str], folder: Path) -> Path:
    """Write ``rows`` (canonical rows) into ``folder`` in the layout of ``save_to_disk``."""
    import pyarrow as pa
    from datasets import DatasetInfo
    from datasets.arrow_writer import ArrowWriter

    features = canonical_features(labels)
    schema = features.arrow_schema
    parts: list[Path] = []
    iterator = iter(rows)
    batch = list(islice(iterator, WRITER_BATCH_SIZE))
    while True:  # one shard per pass; at least one, so that an empty dataset still loads
        part = folder / f".shard-{len(parts):05d}.arrow"
        parts.append(part)
        written = 0
        with ArrowWriter(features=features, path=str(part)) as writer:
            while batch and written < MAX_SHARD_BYTES:
                table = pa.Table.from_pylist(batch, schema=schema)
                writer.write_table(table)
                written += table.nbytes
                batch = list(islice(iterator, WRITER_BATCH_SIZE))
            writer.finalize()
        if not batch:
            break
    digest = hashlib.sha256()
    files = []
    for i, part in enumerate(parts):
        name = f"data-{i:05d}-of-{len(parts):05d}.arrow"
        with part.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        part.rename(folder / name)
        files.append({"filename": name})
    DatasetInfo(
        description=f"SAM2 exports converted by sam2-finetune {__version__} (convert --to hf).",
        features=features,
    ).write_to_directory(str(folder))
    # What load_from_disk reads back (the keys save_to_disk writes).
    state = {
        "_data_files": files,
        "_fingerprint": digest.hexdigest()[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": "train",
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return folder
