"""Fixtures of the evaluate stage's tests: a canonical dataset with raw frames, a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluate.memorise import memorise

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


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


@pytest.fixture(scope="session")
def split_dataset(street_dataset, tmp_path_factory):
    """The street scene split into train / validation / test (temporal blocks)."""
    import warnings

    from sam2_finetune.split import SplitOptions, split

    out = tmp_path_factory.mktemp("split") / "split"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one video: time blocks, said by a SplitWarning
        split(SplitOptions(dataset=street_dataset, out=out))
    return out


@pytest.fixture(scope="session")
def memorised(split_dataset, tiny_dirs, tmp_path_factory):
    """An adapter export of a tiny SmolVLM that memorised the detect answers of the test
    split's frames (what evaluate asks with tasks=[detect] and the default seed)."""
    import torch

    from sam2_finetune.dataset import category_names, load_canonical

    dataset = load_canonical(split_dataset)
    rows = [dataset["test"][i] for i in range(len(dataset["test"]))]
    folder = tmp_path_factory.mktemp("memorised") / "model"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loss = memorise(rows, category_names(dataset), folder, tiny_dir=tiny_dirs("smolvlm"))
    finally:
        torch.set_num_threads(threads)
    assert loss < 0.1, loss
    return folder
