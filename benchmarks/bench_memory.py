"""Measure peak GPU memory of LoRA / QLoRA training steps and compare with the estimator.

Nothing is downloaded: the model is a registry checkpoint's architecture at full size with random
weights (built from its numbers, as tests/models/test_registry.py does on the meta device).
Weights do not change memory, so the peak is the real one for that architecture. Steps are
text-only (random token ids, no image): the vision tower's weights are loaded but it runs no
forward, so compare against an estimate with the same token count as text and no image tokens.
For 8/4-bit the random model is saved to a temporary folder and reloaded through bitsandbytes,
then prepared with peft's ``prepare_model_for_kbit_training`` (the estimate with
``upcast_unquantized``; training's own lighter preparation: bench_kbit_memory.py).

    python benchmarks/bench_memory.py --checkpoint Qwen/Qwen2-VL-2B-Instruct --quantization 4bit
    python benchmarks/bench_memory.py --checkpoint llava-hf/llava-1.5-7b-hf --tokens 2048 \
        --no-gradient-checkpointing --json

On a machine without CUDA it runs the steps on the CPU (a smoke test of this script) and reports
no measurement. Paste the printed Markdown row into benchmarks/RESULTS.md, "Memory estimator".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from sam2_finetune.models.architecture import VISION_INPUT
from sam2_finetune.models.architecture import full_size_config as hf_config
from sam2_finetune.models.memory import CUDA_CONTEXT_BYTES, estimate_memory
from sam2_finetune.models.registry import CHECKPOINT_FAMILY, FAMILIES, get_checkpoint


def build_model(name: str, quantization: str, device: str, gradient_checkpointing: bool):
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    torch.manual_seed(0)
    dtype = torch.bfloat16
    with torch.device(device if quantization == "none" else "cpu"):
        model = AutoModelForImageTextToText.from_config(hf_config(name), dtype=dtype)
    if quantization == "none":
        return model
    family = FAMILIES[CHECKPOINT_FAMILY[name]]
    skip = [*family.vision_modules, *family.projector_modules, "lm_head"]
    bnb = (
        BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
        if quantization == "8bit"
        else BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=skip,
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        del model
        model = AutoModelForImageTextToText.from_pretrained(
            folder, quantization_config=bnb, dtype=dtype, device_map={"": device}
        )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def measure(args: argparse.Namespace) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    family = FAMILIES[CHECKPOINT_FAMILY[args.checkpoint]]
    started = time.perf_counter()
    model = build_model(args.checkpoint, args.quantization, device, args.gradient_checkpointing)
    # Bytes of parameters and buffers as loaded (quantised, upcast): the estimate's weights term.
    weights_bytes = model.get_memory_footprint()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.lora_rank,
            lora_alpha=2 * args.lora_rank,
            lora_dropout=0.05,
            target_modules=family.lora_target_modules,
        ),
    )
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        # Ids below 1000 are ordinary text tokens in every family's vocabulary (image and other
        # special tokens sit at the top), so no image features are expected.
        ids = torch.randint(3, 1000, (args.batch_size, args.tokens), generator=generator)
        ids = ids.to(device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    estimate = estimate_memory(
        get_checkpoint(args.checkpoint).architecture,
        quantization=args.quantization,
        lora_rank=args.lora_rank,
        batch_size=args.batch_size,
        seq_len=args.tokens,
        image_tokens=0,
        gradient_checkpointing=args.gradient_checkpointing,
        optimizer="adamw_torch",
        precision="bf16",
        upcast_unquantized=args.quantization != "none",  # as peft's preparation above
    )
    result = {
        "checkpoint": args.checkpoint,
        "quantization": args.quantization,
        "tokens": args.tokens,
        "batch_size": args.batch_size,
        "gradient_checkpointing": args.gradient_checkpointing,
        "lora_rank": args.lora_rank,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "trainable_parameters": sum(p.numel() for p in trainable),
        "estimated_trainable_parameters": estimate.trainable_parameters,
        "weights_bytes": weights_bytes,
        "estimated_weights_bytes": estimate.weights,
        "estimate_bytes": estimate.total,
        "estimate": estimate.as_dict(),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_allocated_bytes": None,
        "peak_reserved_bytes": None,
    }
    if device == "cuda":
        result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
        # The estimate includes the CUDA context, which the allocator's counters do not see.
        result["error_vs_reserved"] = (estimate.total - CUDA_CONTEXT_BYTES) / result[
            "peak_reserved_bytes"
        ] - 1
    return result


def markdown_row(r: dict) -> str:
    gib = 2**30
    measured = (
        f"{r['peak_reserved_bytes'] / gib:.2f} ({r['peak_allocated_bytes'] / gib:.2f} allocated)"
        if r["peak_reserved_bytes"]
        else "n/a (no CUDA)"
    )
    error = f"{r['error_vs_reserved']:+.0%}" if r.get("error_vs_reserved") is not None else "n/a"
    return (
        f"| {r['checkpoint']} | {r['quantization']} | {r['batch_size']} x {r['tokens']} | "
        f"{'on' if r['gradient_checkpointing'] else 'off'} | {r['device']} | "
        f"{(r['estimate_bytes'] - CUDA_CONTEXT_BYTES) / gib:.2f} | {measured} | {error} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="Qwen/Qwen2-VL-2B-Instruct", choices=VISION_INPUT)
    parser.add_argument("--quantization", default="4bit", choices=["none", "8bit", "4bit"])
    parser.add_argument("--tokens", type=int, default=1024, help="Tokens per sample.")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True
    )
    parser.add_argument("--json", action="store_true", help="Print the full result as JSON.")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    print(
        "| checkpoint | quantisation | batch x tokens | checkpointing | device | "
        "estimate GiB (w/o context) | measured peak reserved GiB | error |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(markdown_row(result))


if __name__ == "__main__":
    main()
