"""The one recipe the tests use to make a tiny model memorise answers (tests/ is on sys.path).

LoRA r=16 on the language model's projections with the output head trained too: the tiny model's
random head (hidden size 64, weights ~0.02) caps every logit near 1.3, so adapters alone move the
argmax but leave the loss near log(vocabulary), and a few hundred steps are not enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def memorising_model(tiny_dir: Any, family: str) -> tuple[Any, Any]:
    """``(peft model, processor)`` of the tiny model in ``tiny_dir``, seeded (torch seed 0)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from sam2_finetune.models.loading import load_model, load_processor
    from sam2_finetune.models.registry import get_family

    torch.manual_seed(0)
    model = load_model(str(tiny_dir), family)
    processor = load_processor(tiny_dir, family)
    config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=get_family(family).lora_target_modules,
        modules_to_save=["lm_head"],
    )
    return get_peft_model(model, config), processor


def optimizer_for(model: Any, lr: float) -> Any:
    """AdamW over the trainable parameters (adapters and the output head)."""
    import torch

    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)


def fit(model: Any, optimizer: Any, batches: Sequence[dict[str, Any]], steps: int) -> float:
    """``steps`` optimizer steps cycling through ``batches``; the last loss."""
    model.train()
    loss = None
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return float(loss.detach()) if loss is not None else float("nan")
