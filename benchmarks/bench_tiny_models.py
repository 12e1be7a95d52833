"""Build time, size and LoRA training-step time of every tiny model family.

Run: ``.venv/bin/python benchmarks/bench_tiny_models.py [--threads N] [--steps N] [FAMILY...]``.
Builds into a temporary folder; prints one row per family.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("families", nargs="*")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import torch
    from PIL import Image

    from sam2_finetune.models.quantization import import_bitsandbytes

    import_bitsandbytes()  # quietly, before peft imports it
    from peft import LoraConfig, get_peft_model

    from sam2_finetune.models.loading import load_model, load_processor
    from sam2_finetune.models.registry import FAMILIES
    from sam2_finetune.models.tiny import TINY_FAMILIES, build_tiny_model

    if args.threads:
        torch.set_num_threads(args.threads)
    image = Image.new("RGB", (48, 40), (200, 30, 30))
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Find every car."}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": '[{"label": "car", "bbox_2d": [1, 2, 3, 4]}]'}],
        },
    ]
    print(f"torch threads: {torch.get_num_threads()}")
    print(
        f"{'family':<11} {'build s':>8} {'params':>8} {'MB':>6} {'tokens':>6} {'LoRA step ms':>13}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families or TINY_FAMILIES:
            started = time.perf_counter()
            path = build_tiny_model(family, Path(tmp) / family)
            build_s = time.perf_counter() - started
            size_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
            processor = load_processor(path, family)
            model = load_model(path, family)
            params = sum(p.numel() for p in model.parameters())
            prefix = re.escape(FAMILIES[family].language_model)
            model = get_peft_model(
                model,
                LoraConfig(r=8, target_modules=rf"{prefix}\..*\.(q_proj|k_proj|v_proj|o_proj)"),
            )
            batch = dict(
                processor(
                    text=[processor.apply_chat_template(messages)],
                    images=[[image]],
                    return_tensors="pt",
                )
            )
            batch.pop("labels", None)
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
            times = []
            for _ in range(args.steps + 2):
                started = time.perf_counter()
                model(**batch, labels=batch["input_ids"]).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                times.append(time.perf_counter() - started)
            step_ms = statistics.median(times[2:]) * 1000
            tokens = batch["input_ids"].shape[1]
            row = f"{family:<11} {build_s:>8.2f} {params:>8,} {size_mb:>6.2f} {tokens:>6}"
            print(f"{row} {step_ms:>13.1f}")


if __name__ == "__main__":
    main()
