"""What exporting costs: merge time against loading the base alone, and export sizes against
the base weights, in one run.

For each tiny family asked (default llava and smolvlm), a 2-step LoRA run on the street scene
(raw frames) is trained once, then, interleaved ``--repeat`` times:

(a) merge time: ``export --merge`` (base loaded unquantised + adapter attached + merged + saved
    with processor, card and deploy files) against the baseline of loading the base model alone
    with the same loader (``models.loading.load_model``) and saving it (``save_pretrained``):
    the floor any merge pays. Ratio = median of per-pair ratios.
(b) sizes: the adapter export and the merged export (whole folders, card and deploy files
    included) against the base model's weight files. Merged / base should be ~1.0 (same tensors;
    fp32 tiny models); adapter / base is what LoRA saves.

Tiny models are ~0.1-1 MB, so (b) for them is dominated by tokenizer files; the script also
prints, for the families' real default checkpoints, the adapter / base weight ratio that the
registry's architecture numbers give for LoRA rank 16 on every LM projection (fp32 adapter
against bf16 base): what a real export's adapter saves.

    .venv/bin/python benchmarks/bench_export.py
    .venv/bin/python benchmarks/bench_export.py --families llava smolvlm qwen2_vl --repeat 5 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size(folder: Path, patterns: tuple[str, ...] = ("*",)) -> int:
    return sum(p.stat().st_size for pat in patterns for p in folder.rglob(pat) if p.is_file())


def train_tiny(family: str, dataset: Path, run_dir: Path) -> Path:
    from sam2_finetune.train.config import load_config
    from sam2_finetune.train.run import train

    config = load_config(
        preset="quick_test",
        overrides=[
            f"data.dataset={dataset}",
            f"output.run_dir={run_dir}",
            "output.loggers=[]",
            f"model.family={family}",
            f"model.checkpoint=tiny:{family}",
            "training.max_steps=2",
            "training.save_steps=2",
            "training.eval_steps=null",
            "training.metric_for_best_model=null",
            "training.eval_generation_samples=0",
        ],
    )
    train(config)
    return run_dir


def bench_family(family: str, dataset: Path, work: Path, repeat: int) -> dict:
    from sam2_finetune.export import ExportOptions, export
    from sam2_finetune.models.loading import load_model
    from sam2_finetune.models.tiny import resolve_checkpoint

    work = work / family
    run = train_tiny(family, dataset, work / "run")
    base_dir = Path(resolve_checkpoint(f"tiny:{family}"))
    merge_s, floor_s, ratios = [], [], []
    for i in range(repeat):
        started = time.perf_counter()
        merged = export(ExportOptions(run=run, out=work / f"merged-{i}", merge=True))
        merge_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        model = load_model(f"tiny:{family}", family)
        model.save_pretrained(str(work / f"floor-{i}"))
        floor_s.append(time.perf_counter() - started)
        ratios.append(merge_s[-1] / floor_s[-1])
        del model
    adapter = export(ExportOptions(run=run, out=work / "adapter"))
    base_bytes = _size(base_dir, ("*.safetensors",))
    return {
        "family": family,
        "merge_export_s": round(statistics.median(merge_s), 3),
        "merge_only_s": round(merged.merge_seconds or 0.0, 3),
        "floor_load_save_s": round(statistics.median(floor_s), 3),
        "merge_vs_floor": round(statistics.median(ratios), 2),
        "base_weights_bytes": base_bytes,
        "merged_weights_bytes": _size(merged.out_dir, ("*.safetensors",)),
        "merged_export_bytes": merged.size_bytes,
        "adapter_weights_bytes": _size(adapter.out_dir, ("adapter_model.safetensors",)),
        "adapter_export_bytes": adapter.size_bytes,
        "merged_weights_vs_base": round(_size(merged.out_dir, ("*.safetensors",)) / base_bytes, 3),
        "adapter_weights_vs_base": round(
            _size(adapter.out_dir, ("adapter_model.safetensors",)) / base_bytes, 3
        ),
    }


def real_adapter_ratios(rank: int = 16) -> list[dict]:
    """Adapter (fp32) / base (bf16) weight bytes for each family's default checkpoint."""
    from sam2_finetune.models.memory import lora_parameters
    from sam2_finetune.models.registry import FAMILIES

    rows = []
    for name, family in FAMILIES.items():
        checkpoint = family.default_checkpoint
        arch = checkpoint.architecture
        adapter = 4 * lora_parameters(arch, rank)
        base = 2 * arch.parameters
        rows.append(
            {
                "family": name,
                "checkpoint": checkpoint.name,
                "base_gib": round(base / 2**30, 2),
                "adapter_mib": round(adapter / 2**20, 1),
                "adapter_vs_base": round(adapter / base, 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["llava", "smolvlm"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    os.chdir(ROOT)
    from sam2_finetune.convert import ConvertOptions, convert

    work = Path(tempfile.mkdtemp(prefix="bench_export-"))
    try:
        dataset = work / "hf"
        convert(
            ConvertOptions(
                exports=[ROOT / "sample_data" / "street_scene.zip"],
                frames=[str(ROOT / "sample_data" / "street_scene_frames")],
                to="hf",
                out=dataset,
            )
        )
        tiny = [bench_family(f, dataset, work, args.repeat) for f in args.families]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    real = real_adapter_ratios()
    if args.json:
        print(json.dumps({"tiny": tiny, "real_rank16": real}, indent=2))
        return
    print("family    merge export  merge only  floor(load+save)  ratio   merged/base  adapter/base")
    for r in tiny:
        print(
            f"{r['family']:<9} {r['merge_export_s']:>10.2f} s {r['merge_only_s']:>8.2f} s "
            f"{r['floor_load_save_s']:>13.2f} s {r['merge_vs_floor']:>8.2f}x "
            f"{r['merged_weights_vs_base']:>10.3f} {r['adapter_weights_vs_base']:>12.3f}"
        )
        print(
            f"          bytes: base weights {r['base_weights_bytes']}, merged weights "
            f"{r['merged_weights_bytes']} (folder {r['merged_export_bytes']}), adapter "
            f"{r['adapter_weights_bytes']} (folder {r['adapter_export_bytes']})"
        )
    print("\nreal default checkpoints, LoRA rank 16 on every LM projection (fp32 vs bf16 base):")
    for r in real:
        print(
            f"  {r['family']:<11} {r['checkpoint']:<44} base {r['base_gib']:>6.2f} GiB  "
            f"adapter {r['adapter_mib']:>7.1f} MiB  ratio {r['adapter_vs_base']:.4f}"
        )


if __name__ == "__main__":
    main()
