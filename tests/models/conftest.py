"""Fixtures shared by the model tests: one torch thread, tiny models built once per session."""

from pathlib import Path

import pytest
import torch

from sam2_finetune.models.tiny import build_tiny_model


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny matrices: with 2 threads on 2 shared cores a step is ~10x slower than with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """family -> a folder built once per session (lazily, so -k runs build only what they use)."""
    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(family, root / family)
        return built[family]

    return get
