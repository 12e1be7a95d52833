"""Where the learner's training step goes, and which cheap switch would make it cheaper.

bench_learning.py's 5-minute target is a matter of steps per minute (benchmarks/RESULTS.md).
This measures one step of ``tiny:llava-learner`` as bench_learning trains it (its language model
fully, the vision tower and projector frozen: forward, backward, gradient clipping, AdamW;
measured with everything trained until session 20) on batches of bench_learning's data as its
run builds them (``train_config``: detection answers, one phrasing, augmentation), in the same
process, against the default step (fp32, PyTorch's SDPA attention):

- ``eager``: transformers' eager attention (matmul + softmax) instead of SDPA;
- ``bf16``: the forward under ``torch.autocast("cpu", bfloat16)`` (oneDNN's bf16 kernels on a CPU
  with AVX512-BF16 / AMX);
- ``compile``: ``torch.compile(model, dynamic=True)`` (inductor; needs a C++ compiler; its
  compile time is printed apart, not in the step time), with ``--compile``.

It also prints the collator's time per batch and the top operators of a profiled default step,
and the FLOP-bound reading: the tokens per step and the matrix-multiply throughput.

    .venv/bin/python benchmarks/bench_learner_step.py
    .venv/bin/python benchmarks/bench_learner_step.py --compile --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_learning


def build(mode: str) -> tuple[Any, Any]:
    """A fresh learner (the same seeded weights for every mode) and its step function."""
    import torch

    from sam2_finetune.models.loading import load_model
    from sam2_finetune.models.tiny import resolve_checkpoint
    from sam2_finetune.train.model import freeze_parts

    torch.manual_seed(0)
    model = load_model(resolve_checkpoint(bench_learning.CHECKPOINT), "llava")
    if mode == "eager":
        model.set_attn_implementation("eager")
    model.train()
    # What bench_learning's run freezes (the vision tower and projector), the way train() does.
    config = bench_learning.train_config(Path("."), Path("."), 1, 0)
    freeze_parts(model, config.model.family, config.model)
    trained = [p for p in model.parameters() if p.requires_grad]
    forward = torch.compile(model, dynamic=True) if mode == "compile" else model
    optimizer = torch.optim.AdamW(trained, lr=1e-3, weight_decay=0.01)

    def step(batch: dict[str, Any]) -> float:
        if mode == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = forward(**batch).loss
        else:
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return float(loss.item())

    return model, step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=12, help="Distinct batches per pass.")
    parser.add_argument("--repeat", type=int, default=3, help="Timed passes over the batches.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the 2 cores).")
    parser.add_argument("--compile", action="store_true", help="Also time torch.compile.")
    parser.add_argument("--videos", type=int, default=60, help="Synthetic videos to draw from.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args(argv)
    import torch
    from torch.profiler import profile

    from sam2_finetune.dataset import category_names
    from sam2_finetune.models.loading import load_processor
    from sam2_finetune.models.tiny import resolve_checkpoint
    from sam2_finetune.train.collator import collator_for_config

    torch.set_num_threads(args.threads)
    modes = ["fp32", "eager", "bf16"] + (["compile"] if args.compile else [])
    with tempfile.TemporaryDirectory(prefix="bench-learner-step-") as tmp:
        data = bench_learning.prepare_data(Path(tmp), args.videos, 3, seed=0)
        config = bench_learning.train_config(data["split_dir"], Path(tmp) / "run", 100, 0)
        from datasets import load_from_disk

        rows = load_from_disk(str(data["split_dir"]))["train"]
        processor = load_processor(resolve_checkpoint(bench_learning.CHECKPOINT), "llava")
        collator = collator_for_config(config, processor, category_names(rows))
        collator.training = True  # augmented, as the run's batches are
        size = config.training.batch_size
        indices = [[(b * size + i) % len(rows) for i in range(size)] for b in range(args.batches)]
        started = time.perf_counter()
        batches = [collator([rows[i] for i in batch]) for batch in indices]
        collate_ms = (time.perf_counter() - started) / len(batches) * 1000

    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
    results: dict[str, Any] = {}
    for mode in modes:
        model, step = build(mode)
        started = time.perf_counter()
        step(batches[0])  # warm-up (and compilation)
        first_s = time.perf_counter() - started
        for batch in batches[1:3]:
            step(batch)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            for batch in batches:
                step(batch)
            times.append((time.perf_counter() - started) / len(batches) * 1000)
        results[mode] = {"ms_per_step": statistics.median(times), "first_step_s": first_s}
        if mode == "fp32":
            with profile() as profiled:
                for batch in batches[:4]:
                    step(batch)
            table = profiled.key_averages()
            total = sum(e.self_cpu_time_total for e in table)
            top = sorted(table, key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
            results["fp32"]["top_ops"] = {
                e.key: round(e.self_cpu_time_total / total, 3) for e in top
            }
            parameters = sum(p.numel() for p in model.parameters())
        del model, step
    base = results["fp32"]["ms_per_step"]
    for mode in modes:
        results[mode]["ratio_to_fp32"] = round(results[mode]["ms_per_step"] / base, 3)
    out = {
        "batch_size": size,
        "tokens_per_example": round(tokens / size, 1),
        "parameters": parameters,
        "collate_ms_per_batch": round(collate_ms, 1),
        "threads": args.threads,
        "modes": results,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    print(
        f"learner: {parameters / 1e6:.2f}M parameters, batch {size}, "
        f"{out['tokens_per_example']} tokens per example, collator {collate_ms:.1f} ms/batch"
    )
    for mode in modes:
        r = results[mode]
        print(
            f"  {mode:8s} {r['ms_per_step']:7.1f} ms/step  {r['ratio_to_fp32']:.3f}x fp32"
            f"  (first step {r['first_step_s']:.1f} s)"
        )
    shares = ", ".join(f"{k} {v:.0%}" for k, v in results["fp32"]["top_ops"].items())
    print(f"  fp32 step by operator (self CPU time): {shares}")


if __name__ == "__main__":
    main()
