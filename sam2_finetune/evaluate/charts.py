"""The evaluation's charts, each a function that writes one PNG and returns its path.

- :func:`predictions_grid`: frames with predictions over truth (:func:`~sam2_finetune.evaluate.
  pictures.draw_objects`), titled with the frame and the task;
- :func:`training_curves`: the run's losses and generated-answer metrics against the step, from
  its ``metrics.jsonl``;
- :func:`confusion_matrix`: true label against predicted label of objects matched by IoU;
- :func:`class_ap_bars`: AP and AP50 per class.

matplotlib's object API (``Figure``, no ``pyplot``): no global state, no display backend, safe
in a notebook and in a worker process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "MISSED",
    "NOTHING",
    "class_ap_bars",
    "confusion_matrix",
    "predictions_grid",
    "training_curves",
]

# The confusion matrix's extra row and column: a prediction that matched no true object, a true
# object no prediction matched.
NOTHING = "(nothing)"
MISSED = "(missed)"


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path)
    return path


def predictions_grid(pictures: Sequence[tuple[str, Any]], path: str | Path) -> Path:
    """``pictures`` (``(title, PIL image)``, drawn already) in a grid of up to 4 columns."""
    import numpy as np

    path = Path(path)
    columns = min(4, max(1, len(pictures)))
    rows = max(1, math.ceil(len(pictures) / columns))
    figure = _figure(4 * columns, 3.4 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(pictures):
            title, picture = pictures[i]
            ax.imshow(np.asarray(picture))
            ax.set_title(title, fontsize=9)
    if not pictures:
        axes[0, 0].text(0.5, 0.5, "no frame to draw", ha="center", va="center")
    return _save(figure, path)


def training_curves(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Loss and evaluation loss (left) and the generated-answer metrics (right:
    ``eval_map50``, ``eval_map``, ``eval_mean_iou``, ``eval_parse_failure_rate``) against the
    step, from a run's ``metrics.jsonl`` records; ``None`` (nothing written) when none holds a
    loss."""

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [
            (float(r["step"]), float(r[key]))
            for r in records
            if isinstance(r.get(key), (int, float)) and "step" in r
        ]
        return [p[0] for p in points], [p[1] for p in points]

    losses = {key: series(key) for key in ("loss", "eval_loss")}
    if not any(xs for xs, _ in losses.values()):
        return None
    metrics = {
        key: series(key)
        for key in ("eval_map50", "eval_map", "eval_mean_iou", "eval_parse_failure_rate")
    }
    metrics = {key: value for key, value in metrics.items() if value[0]}
    figure = _figure(11 if metrics else 6, 4)
    axes = figure.subplots(1, 2 if metrics else 1, squeeze=False)[0]
    for key, (xs, ys) in losses.items():
        if xs:
            axes[0].plot(xs, ys, marker="." if len(xs) < 50 else None, label=key)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].set_title("losses")
    axes[0].legend()
    if metrics:
        for key, (xs, ys) in metrics.items():
            axes[1].plot(xs, ys, marker=".", label=key.removeprefix("eval_"))
        axes[1].set_xlabel("step")
        axes[1].set_ylim(-0.02, 1.02)
        axes[1].set_title("generated answers (validation subset)")
        axes[1].legend()
    return _save(figure, Path(path))


def confusion_matrix(
    counts: Mapping[tuple[str, str], int], labels: Sequence[str], path: str | Path
) -> Path:
    """A heat map of ``counts[(true label, predicted label)]``: rows are the true labels and
    :data:`NOTHING` (predictions that matched no object), columns the predicted labels and
    :data:`MISSED` (objects no prediction matched). Labels seen only in ``counts`` (predicted
    labels outside the training labels) are added after ``labels``."""
    import numpy as np

    truth = [label for label in labels]
    predicted = [label for label in labels]
    for t, p in counts:
        if t != NOTHING and t not in truth:
            truth.append(t)
        if p != MISSED and p not in predicted:
            predicted.append(p)
    truth.append(NOTHING)
    predicted.append(MISSED)
    matrix = np.zeros((len(truth), len(predicted)), dtype=np.int64)
    for (t, p), n in counts.items():
        matrix[truth.index(t), predicted.index(p)] += n
    size = max(4.0, 0.6 * len(predicted) + 2.5)
    figure = _figure(size, max(3.5, 0.5 * len(truth) + 2))
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(predicted)), predicted, rotation=45, ha="right")
    ax.set_yticks(range(len(truth)), truth)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("objects matched at IoU >= 0.5 (label ignored)")
    high = matrix.max() if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    color="white" if matrix[i, j] > high / 2 else "black",
                    fontsize=8,
                )
    return _save(figure, Path(path))


def class_ap_bars(per_class: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """AP@[.5:.95] and AP50 per class (``per_class[label]["map"]`` / ``["map50"]``); a class
    without ground truth (AP undefined) is marked ``n/a``."""
    import numpy as np

    labels = list(per_class)
    figure = _figure(max(5.0, 0.7 * len(labels) + 2), 4)
    ax = figure.subplots()
    x = np.arange(len(labels))
    for offset, key in ((-0.2, "map"), (0.2, "map50")):
        values = [per_class[label].get(key) for label in labels]
        ax.bar(
            x + offset,
            [0.0 if v is None else float(v) for v in values],
            width=0.4,
            label={"map": "AP@[.5:.95]", "map50": "AP50"}[key],
        )
        for xi, value in zip(x, values, strict=True):
            if value is None:
                ax.text(xi + offset, 0.01, "n/a", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("average precision")
    ax.set_title("AP per class")
    ax.legend()
    return _save(figure, Path(path))
