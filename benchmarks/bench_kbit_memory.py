"""Memory of a 4-bit model after our k-bit preparation against after peft's, on the CPU.

The model is a registry checkpoint's architecture at full size with random weights (built from
the registry's numbers by ``models.architecture.full_size_config``; nothing is downloaded),
saved once in bf16 to a temporary folder, then loaded in 4-bit (NF4, double quantisation, bf16
compute) through our loader (``models.loading.load_model``, the family's vision tower, projector
and output head unquantised) in one fresh child process per variant:

``ours``
    what ``train.model.prepare_model`` does for ``quantization: 4bit, method: lora``:
    ``prepare_quantized`` (freeze, dtypes as loaded), CPU 4-bit packing off, non-reentrant
    gradient checkpointing with input gradients, then peft LoRA (adapters fp32).
``peft``
    peft's ``prepare_model_for_kbit_training`` (upcasts every non-quantised parameter to fp32;
    non-reentrant gradient checkpointing), then the same LoRA.

Each child reports the parameter + buffer bytes of the prepared model by dtype (exact), its RSS
after loading, its peak RSS while preparing (the high-water mark reset through
``/proc/self/clear_refs`` after loading) and over the whole process, and, unless ``--no-step``,
one forward + backward on a tiny input (a 56 x 56 image = 4 image tokens for Qwen2-VL, plus a few
text tokens) under bf16 autocast, with the peak RSS of that step.

    .venv/bin/python benchmarks/bench_kbit_memory.py
    .venv/bin/python benchmarks/bench_kbit_memory.py --no-step --checkpoint \
        HuggingFaceTB/SmolVLM-256M-Instruct
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sam2_finetune.models.architecture import VISION_INPUT, full_size_config
from sam2_finetune.models.registry import CHECKPOINT_FAMILY

VARIANTS = ("ours", "peft")


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (VmRSS, VmHWM, RssAnon, RssFile)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def build(checkpoint: str, folder: str) -> dict:
    """Build the full-size architecture in bf16 with random weights and save it to ``folder``."""
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    started = time.perf_counter()
    model = AutoModelForImageTextToText.from_config(
        full_size_config(checkpoint), dtype=torch.bfloat16
    )
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    return {"parameters": parameters, "seconds": round(time.perf_counter() - started, 1)}


def bytes_by_dtype(model) -> dict[str, int]:
    """Parameter and buffer bytes of ``model`` by dtype (4-bit weights are uint8 storage)."""
    seen: set[int] = set()
    out: dict[str, int] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        key = str(tensor.dtype).removeprefix("torch.")
        out[key] = out.get(key, 0) + tensor.numel() * tensor.element_size()
    # Quantisation statistics (absmax, nested code and scales) hang off the 4-bit weights.
    from bitsandbytes.nn import Params4bit

    for tensor in model.parameters():
        state = getattr(tensor, "quant_state", None) if isinstance(tensor, Params4bit) else None
        if state is None:
            continue
        for part in (
            state.absmax,
            state.code,
            *((state.state2.absmax, state.state2.code) if state.nested else ()),
        ):
            key = "quant_state"
            out[key] = out.get(key, 0) + part.numel() * part.element_size()
    return out


def tiny_inputs(family: str, model) -> dict:
    """A tiny training batch: a 56 x 56 image (Qwen2-VL: 16 patches, 4 tokens) and 8 text tokens
    for the Qwen-VL families; 16 text tokens otherwise (the vision tower then does not run)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, 1000, (8,), generator=generator)
    if family in ("qwen2_vl", "qwen2_5_vl"):
        config = model.config
        vision = config.vision_config
        channels = 3 * vision.temporal_patch_size * vision.patch_size**2
        pixel_values = torch.randn(16, channels, generator=generator)
        image = torch.tensor(
            [config.vision_start_token_id, *[config.image_token_id] * 4, config.vision_end_token_id]
        )
        ids = torch.cat([image, text])[None]
        return {
            "input_ids": ids,
            "mm_token_type_ids": (ids == config.image_token_id).long(),
            "attention_mask": torch.ones_like(ids),
            "pixel_values": pixel_values,
            "image_grid_thw": torch.tensor([[1, 4, 4]]),
            "labels": torch.cat([torch.full_like(image, -100), text])[None],
        }
    ids = torch.randint(3, 1000, (1, 16), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def measure(variant: str, folder: str, family: str, step: bool) -> dict:
    """One variant in this (fresh) process: load in 4-bit, prepare, optionally one step."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from sam2_finetune.models.loading import load_model
    from sam2_finetune.models.quantization import disable_cpu_4bit_packing
    from sam2_finetune.train.config import ModelSection
    from sam2_finetune.train.model import lora_config, prepare_quantized

    options = ModelSection(family=family, checkpoint="tiny:" + family, quantization="4bit")
    result: dict = {"variant": variant, "rss_start": _status("VmRSS")}
    started = time.perf_counter()
    model = load_model(folder, family, quantization="4bit", dtype=torch.bfloat16)
    result["load_seconds"] = round(time.perf_counter() - started, 1)
    # Weights loaded from safetensors may still be file pages that count in the RSS only once
    # read; read every page now, so that RSS after loading holds the whole model in both variants
    # and the later peaks are what preparing and the step allocate.
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.detach().reshape(-1)[::512].float().sum()
    result["rss_anon_loaded"] = _status("RssAnon")
    result["rss_file_loaded"] = _status("RssFile")
    result["rss_loaded"] = _status("VmRSS")
    result["peak_load"] = _status("VmHWM")
    _reset_peak()
    started = time.perf_counter()
    if variant == "ours":  # train.model.prepare_model, quantised branch, in its order
        prepare_quantized(model)
        disable_cpu_4bit_packing(model)
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
        model.enable_input_require_grads()
        model.config.use_cache = False
    else:
        disable_cpu_4bit_packing(model)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        model.config.use_cache = False
    model = get_peft_model(model, lora_config(family, options))
    result["prepare_seconds"] = round(time.perf_counter() - started, 1)
    result["bytes_by_dtype"] = bytes_by_dtype(model)
    result["bytes"] = sum(result["bytes_by_dtype"].values())
    result["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result["rss_prepared"] = _status("VmRSS")
    result["peak_prepare"] = _status("VmHWM")
    if step:
        _reset_peak()
        started = time.perf_counter()
        model.train()
        batch = tiny_inputs(family, model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        # lora_B starts at zero, so lora_A's first gradient is zero: lora_B's must not be.
        b_grads = [g for n, g in grads.items() if "lora_B" in n]
        result["step"] = {
            "loss": float(loss),
            "seconds": round(time.perf_counter() - started, 1),
            "trainable_tensors": len(grads),
            "finite_grads": sum(
                g is not None and bool(torch.isfinite(g).all()) for g in grads.values()
            ),
            "lora_B": len(b_grads),
            "lora_B_nonzero": sum(g is not None and bool(g.abs().sum() > 0) for g in b_grads),
            "peak_rss": _status("VmHWM"),
        }
    return result


def child(argv: list[str]) -> dict:
    """Run this script in a fresh interpreter and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child {argv} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="Qwen/Qwen2-VL-2B-Instruct", choices=VISION_INPUT)
    parser.add_argument("--no-step", action="store_true", help="Skip the forward + backward step.")
    parser.add_argument("--json", action="store_true", help="Print the full results as JSON.")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--build", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    family = CHECKPOINT_FAMILY[args.checkpoint]
    if args.build:
        print(json.dumps(build(args.checkpoint, args.build)))
        return
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], family, not args.no_step)))
        return

    base = ["--checkpoint", args.checkpoint] + (["--no-step"] if args.no_step else [])
    with tempfile.TemporaryDirectory(prefix="bench-kbit-") as folder:
        built = child([*base, "--build", folder])
        print(
            f"{args.checkpoint}: {built['parameters'] / 1e9:.2f} B parameters, built and saved "
            f"in bf16 in {built['seconds']} s (random weights, full size)",
            flush=True,
        )
        results = {v: child([*base, "--child", v, folder]) for v in VARIANTS}
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "build": built, **results}, indent=2))
    gib = 2**30
    ours, peft = results["ours"], results["peft"]
    dtypes = sorted(set(ours["bytes_by_dtype"]) | set(peft["bytes_by_dtype"]))
    print(
        "| variant | " + " | ".join(f"{d} GiB" for d in dtypes) + " | params+buffers GiB | "
        "RSS loaded GiB (anon + file) | peak RSS preparing GiB | step peak RSS GiB | step s |"
    )
    print("| --- " * (len(dtypes) + 6) + "|")
    for r in (ours, peft):
        step = r.get("step")
        cells = [f"{r['bytes_by_dtype'].get(d, 0) / gib:.3f}" for d in dtypes]
        print(
            f"| {r['variant']} | "
            + " | ".join(cells)
            + f" | {r['bytes'] / gib:.3f} | {r['rss_loaded'] / gib:.2f} "
            f"({r['rss_anon_loaded'] / gib:.2f} + {r['rss_file_loaded'] / gib:.2f}) | "
            f"{r['peak_prepare'] / gib:.2f} | "
            + (f"{step['peak_rss'] / gib:.2f} | {step['seconds']} |" if step else "n/a | n/a |")
        )
    print(f"params+buffers ours/peft: {ours['bytes'] / peft['bytes']:.3f}x (target <= 0.8x)")
    print(f"peak RSS preparing ours/peft: {ours['peak_prepare'] / peft['peak_prepare']:.3f}x")
    peaks = {
        r["variant"]: max(r["peak_load"], r["peak_prepare"], r.get("step", {}).get("peak_rss", 0))
        for r in (ours, peft)
    }
    print(
        f"peak RSS of the whole process: ours {peaks['ours'] / gib:.2f} GiB, peft "
        f"{peaks['peft'] / gib:.2f} GiB, {peaks['ours'] / peaks['peft']:.3f}x"
    )
    if "step" in ours:
        print(
            f"step peak RSS ours/peft: {ours['step']['peak_rss'] / peft['step']['peak_rss']:.3f}x"
        )
        for r in (ours, peft):
            s = r["step"]
            print(
                f"{r['variant']} step: loss {s['loss']:.3f}, {s['finite_grads']}/"
                f"{s['trainable_tensors']} trainable tensors with a finite gradient, "
                f"{s['lora_B_nonzero']}/{s['lora_B']} lora_B non-zero"
            )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
