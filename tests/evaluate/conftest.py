"""Fixtures of the evaluate stage's tests: a canonical dataset with raw frames, a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="session")
def street_dataset(tmp_path_factory):
    """The street scene with its raw frames, as a canonical dataset folder (no splits)."""
    from sam2_finetune.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("street") / "hf"
    convert(
        ConvertOptions(
            exports=[SAMPLE / "street_scene.zip"],
            frames=[str(SAMPLE / "street_scene_frames")],
            to="hf",
            out=out,
        )
    )
    return out


@pytest.fixture(scope="session")
def tiny_run(street_dataset, tmp_path_factory):
    """A real run folder of `train` on the tiny SmolVLM: 2 steps, a checkpoint at each, best/,
    metrics.jsonl, sam2_finetune.json, data/split (train/validation/test)."""
    import torch

    from sam2_finetune.train.config import load_config
    from sam2_finetune.train.run import train

    run_dir = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(
            load_config(
                preset="quick_test",
                overrides=[
                    f"data.dataset={street_dataset}",
                    f"output.run_dir={run_dir}",
                    "output.loggers=[]",
                    "training.max_steps=2",
                    "training.eval_steps=1",
                    "training.save_steps=1",
                    "training.logging_steps=1",
                    "training.save_total_limit=2",
                    "training.eval_generation_samples=0",
                ],
            )
        )
    finally:
        torch.set_num_threads(threads)
    return run_dir
