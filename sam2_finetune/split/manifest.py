"""The split manifest: its assembly (:func:`build_manifest`, :func:`manifest_text`), the kept
test set read back from a previous one, and the per-class distribution and stratification bound
it records."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.files import read_json
from sam2_finetune.split.frames import Rows
from sam2_finetune.split.leakage import LeakageReport
from sam2_finetune.split.options import (
    RARE_CLASS_FRAMES,
    SPLIT_NAMES,
    STRATIFY_TOLERANCE,
    SplitOptions,
)

MANIFEST_NAME = "split_manifest.json"
MANIFEST_VERSION = 1


def read_test_ids(path: Path) -> list[str]:
    """The test image ids of a previous split manifest (a file or the folder holding it)."""
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.is_file():
        raise DatasetError(
            describe(
                "no split manifest to keep the test set from",
                file=file,
                fix="pass the split_manifest.json of a previous `sam2-finetune split` (or its "
                "folder) to --keep-test",
            )
        )
    try:
        manifest = read_json(file, "split manifest")
        ids = manifest["splits"]["test"]["image_ids"]
    except (OptionsError, KeyError, TypeError) as exc:
        # OptionsError: unreadable, not UTF-8, not a JSON object (files.read_json says which);
        # Key/TypeError: other JSON.
        raise DatasetError(
            describe(
                "not a split manifest: its test image ids cannot be read",
                file=file,
                field="splits.test.image_ids",
                expected="a list of image ids",
                found=f"{type(exc).__name__}: {exc}",
                fix="pass the split_manifest.json written by `sam2-finetune split`",
            )
        ) from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DatasetError(
            describe(
                "the test image ids are not a list of strings",
                file=file,
                field="splits.test.image_ids",
                fix="pass the split_manifest.json written by `sam2-finetune split`",
            )
        )
    if not ids:
        raise DatasetError(
            describe(
                "the manifest's test split is empty: there is no test set to keep",
                file=file,
                field="splits.test.image_ids",
                fix="drop --keep-test, or pass the manifest of a split that has a test set",
            )
        )
    return ids


def round6(x: float) -> float:
    return round(float(x), 6)


def class_distribution(
    rows: Rows, assign: np.ndarray, ratios: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """Frames showing each class (and its objects) per split, with shares and the worst gap to
    the ratios, in percentage points."""
    n_classes, n_splits = len(rows.names), len(SPLIT_NAMES)
    frames = np.zeros((n_splits, n_classes), dtype=int)
    objects = np.zeros((n_splits, n_classes), dtype=int)
    for i in np.flatnonzero(assign >= 0):
        s = assign[i]
        for c, n in Counter(rows.categories[i]).items():
            frames[s, c] += 1
            objects[s, c] += n
    result: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(rows.names):
        total = int(frames[:, c].sum())
        shares = [frames[s, c] / total if total else 0.0 for s in range(n_splits)]
        result[name] = {
            "frames": total,
            "objects": int(objects[:, c].sum()),
            "rare": 0 < total < RARE_CLASS_FRAMES,
            "max_deviation_pp": (
                round6(100 * max(abs(shares[s] - ratios[s]) for s in range(n_splits)))
                if total
                else None
            ),
            "splits": {
                split_name: {
                    "frames": int(frames[s, c]),
                    "objects": int(objects[s, c]),
                    "share": round6(shares[s]),
                }
                for s, split_name in enumerate(SPLIT_NAMES)
            },
        }
    return result


def class_bound(distribution: dict[str, dict[str, Any]], promised: bool) -> dict[str, Any]:
    """What the stratified bound counts, which classes it covers, and whether it held (``met``
    is None where it was not promised: other strategies, or a kept test set)."""
    tolerance_pp = 100 * STRATIFY_TOLERANCE
    held = sorted(name for name, d in distribution.items() if d["frames"] >= RARE_CLASS_FRAMES)
    return {
        # The split moves frames, so a class's "instances" are the frames showing it: a frame
        # with five cars moves five cars at once. Objects are reported, not bounded.
        "counts": "frames showing the class",
        "min_frames": RARE_CLASS_FRAMES,
        "tolerance_pp": tolerance_pp,
        "classes": held,
        "met": (
            all(distribution[n]["max_deviation_pp"] <= tolerance_pp + 1e-6 for n in held)
            if promised
            else None
        ),
    }


def build_manifest(
    options: SplitOptions,
    rows: Rows,
    assign: np.ndarray,
    *,
    ratios: Sequence[float],
    unit: str | None,
    gap_info: dict[str, dict[str, Any]],
    kept_test: dict[str, Any] | None,
    dropped_gap: Sequence[int],
    dropped_identical: Sequence[int],
    distribution: dict[str, dict[str, Any]],
    bound: dict[str, Any],
    leakage: LeakageReport,
    notes: list[str],
) -> dict[str, Any]:
    """Everything a split decided, in a form whose JSON depends only on the data and the options
    (ids sorted, floats rounded): ``assign[i]`` is row ``i``'s split index, -1 for dropped."""
    sizes = {name: int((assign == s).sum()) for s, name in enumerate(SPLIT_NAMES)}
    return {
        "format_version": MANIFEST_VERSION,
        "strategy": options.strategy,
        "temporal_unit": unit,
        "ratios": dict(zip(SPLIT_NAMES, ratios, strict=True)),
        "seed": options.seed,
        "source": {
            "frames": len(rows),
            "videos": len(set(rows.video_ids)),
            "classes": rows.names,
            "image_ids_sha256": hashlib.sha256(
                "\n".join(sorted(rows.image_ids)).encode("utf-8")
            ).hexdigest(),
        },
        "gap": {
            "seconds": options.gap_seconds,
            "gap_frames_option": options.gap_frames,
            "fps_option": options.fps,
            "videos": gap_info,
        },
        "keep_test": kept_test,
        "splits": {
            name: {
                "frames": sizes[name],
                "share": round6(sizes[name] / max(sum(sizes.values()), 1)),
                "target": ratios[s],
                "videos": sorted({rows.video_ids[i] for i in np.flatnonzero(assign == s)}),
                "image_ids": sorted(rows.image_ids[i] for i in np.flatnonzero(assign == s)),
            }
            for s, name in enumerate(SPLIT_NAMES)
        },
        "dropped": {
            "frames": len(dropped_gap) + len(dropped_identical),
            "gap": sorted(rows.image_ids[i] for i in dropped_gap),
            "identical_image": sorted(rows.image_ids[i] for i in dropped_identical),
        },
        "class_bound": bound,
        "class_distribution": distribution,
        "leakage": leakage.to_dict(),
        "warnings": notes,
    }


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest's bytes: sorted keys, so the same split gives the same file."""
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
