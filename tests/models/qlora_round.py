"""The QLoRA round a training run makes, shared by test_quantization.py and the subprocess it
starts: an evaluation pass (no autograd: where AVX512-BF16 CPUs repack 4-bit weights), then,
on a fresh load, LoRA, an evaluation step and a training step. Returns what tests assert on."""

from __future__ import annotations

from typing import Any


def batch_of(processor: Any) -> dict:
    from PIL import Image

    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find cars."}]},
        {"role": "assistant", "content": [{"type": "text", "text": '[{"label": "car"}]'}]},
    ]
    text = processor.apply_chat_template(messages)
    image = Image.new("RGB", (48, 40), (200, 30, 30))
    batch = dict(processor(text=[text], images=[[image]], return_tensors="pt"))
    batch.pop("labels", None)
    return batch


def qlora_round(path: Any, family: str, quantization: str) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from sam2_finetune.models.loading import load_model, load_processor
    from sam2_finetune.models.quantization import disable_cpu_4bit_packing
    from sam2_finetune.models.registry import FAMILIES

    processor = load_processor(path, family)
    batch = batch_of(processor)
    model = load_model(path, family, quantization=quantization)
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    with torch.no_grad():
        eval_logits = model(**batch).logits
    packed = [
        n
        for n, m in model.named_modules()
        if getattr(
            getattr(getattr(m, "weight", None), "quant_state", None),
            "packing_format_for_cpu",
            False,
        )
    ]
    model = load_model(path, family, quantization=quantization)
    if quantization == "4bit":
        disable_cpu_4bit_packing(model)  # before the first pass: training follows
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=FAMILIES[family].lora_target_modules)
    )
    with torch.no_grad():
        model.eval()
        model(**batch)  # an evaluation step between training steps
    model.train()
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    grads = {
        n: float(p.grad.abs().sum()) if p.grad is not None else None
        for n, p in model.named_parameters()
        if "lora_B" in n
    }
    return {
        "kinds": kinds,
        "eval_finite": bool(torch.isfinite(eval_logits).all()),
        "packed": packed,
        "loss": float(loss),
        "grads": grads,
    }
