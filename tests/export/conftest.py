"""Tiny training runs to export, trained once per session (a few steps each, ~5 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
FRAMES = sorted((SAMPLE / "street_scene_frames").glob("frame_*.png"))


@pytest.fixture(scope="session")
def train_run(street_dataset, tmp_path_factory):
    """``train_run(family, *overrides)``: a 2-step run folder, trained once per session."""
    import torch

    from sam2_finetune.train.config import load_config
    from sam2_finetune.train.run import train

    made: dict[tuple[str, ...], Path] = {}

    def get(family: str, *overrides: str) -> Path:
        key = (family, *overrides)
        if key not in made:
            run_dir = tmp_path_factory.mktemp(f"run-{family}") / "run"
            config = load_config(
                preset="quick_test",
                overrides=[
                    f"data.dataset={street_dataset}",
                    f"output.run_dir={run_dir}",
                    "output.loggers=[]",
                    f"model.family={family}",
                    f"model.checkpoint=tiny:{family}",
                    "training.max_steps=2",
                    "training.save_steps=2",
                    "training.eval_steps=null",
                    "training.metric_for_best_model=null",
                    "training.eval_generation_samples=0",
                    *overrides,
                ],
            )
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train(config)
            finally:
                torch.set_num_threads(threads)
            made[key] = run_dir
        return made[key]

    return get


def write_metrics(folder: Path) -> Path:
    """A metrics.json of the shape `sam2-finetune evaluate` writes (contract 3)."""
    summary = {
        "map": 0.41,
        "map50": 0.62,
        "map75": 0.4,
        "ar100": 0.5,
        "mean_iou": 0.55,
        "parse_failure_rate": 0.05,
        "mask_iou": None,
        "count_accuracy": 0.7,
        "count_mae": 0.4,
        "map/car": 0.5,
    }
    prior = {k: (0.1 if v is not None else None) for k, v in summary.items()}
    empty = {k: 0.0 for k in summary}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(
        json.dumps(
            {
                "model": "runs/x",
                "data": "data/split",
                "split": "test",
                "examples": 3,
                "metrics": summary,
                "report": {},
                "baselines": {"prior": prior, "empty": empty},
                "below_baselines": [],
                "unknown_labels": {"truck": 2},
                "record": {},
            }
        )
    )
    return folder
