"""`make demo`: every stage, on sample_data/, with a tiny offline model.

Run with ``python -m sam2_finetune.demo [--out DIR]``. Each step calls the same stage function
the CLI and notebooks call, and the run ends with a printed summary. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="Output folder.")
    args = parser.parse_args(argv)
    exports = sorted(SAMPLE_DATA.glob("*.zip"))
    if not exports:
        raise SystemExit(f"no exports in {SAMPLE_DATA}: run sample_data/generate.py")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    # Every sample export comes with its raw frames: use them instead of the overlay PNGs, whose
    # drawn-in masks and labels would give the answer away to a model trained on them.
    raw_frames = {e.stem: SAMPLE_DATA / f"{e.stem}_frames" for e in exports}
    frames = [str(raw_frames[e.stem]) if e.stem in raw_frames else None for e in exports]
    frame_pairs = [f"{stem}={path}" for stem, path in raw_frames.items()]
    summary: list[str] = []
    started = time.perf_counter()

    from sam2_finetune.ingest import format_summary, read_exports, summarize_export

    print("== 1. ingest: sam2-finetune info")
    read = read_exports(exports, frames=frames)
    summaries = [summarize_export(e) for e in read]
    for export in read:
        export.close()
    print("\n\n".join(format_summary(s) for s in summaries))
    summary.append(
        f"ingest    {len(summaries)} exports, "
        f"{sum(s.frames_listed for s in summaries)} frames listed, "
        f"{sum(s.objects for s in summaries)} objects, "
        f"{sum(s.empty_masks for s in summaries)} empty masks"
    )

    from sam2_finetune.validate import ValidateOptions, validate
    from sam2_finetune.validate.report import relabel_path, summary_text

    print("\n== 2. validate: sam2-finetune validate (exports)")
    report = validate(
        ValidateOptions(
            inputs=exports,
            frames=frame_pairs,
            report=out / "validate" / "report.md",
            json_report=out / "validate" / "report.json",
            overwrite=True,
        )
    )
    print(summary_text(report))
    # validate writes its suggested relabel map beside the report, ready for convert.
    label_map = relabel_path(out / "validate" / "report.md")
    summary.append(
        f"validate  {report.status}: {report.counts['error']} errors, "
        f"{report.counts['warning']} warnings; relabel map {report.relabel} -> {label_map}"
    )

    from sam2_finetune.convert import ConvertOptions, convert

    print("\n== 3. convert: canonical HF dataset, LLaVA, COCO (with the relabel map)")
    common = {"exports": exports, "frames": frame_pairs, "label_map": label_map, "overwrite": True}
    hf = convert(ConvertOptions(**common, to="hf", out=out / "hf"))
    llava = convert(
        ConvertOptions(
            **common,
            to="llava",
            out=out / "llava",
            tasks=["detect=0.4", "ground=0.3", "segment=0.2", "count=0.1"],
            seed=42,
        )
    )
    coco = convert(ConvertOptions(**common, to="coco", out=out / "coco"))
    for result in (hf, llava, coco):
        print(f"  {result.to:7} {result.rows} rows, {result.objects} objects -> {result.out}")
        for note in result.warnings:
            print(f"          warning: {note}")
    fidelity = llava.polygon_fidelity or {}
    summary.append(
        f"convert   {hf.rows} rows, {hf.objects} objects, labels {hf.labels}; "
        f"polygon IoU vs mask {fidelity.get('mean_iou', float('nan')):.3f}"
    )

    from sam2_finetune.split import SplitOptions, SplitWarning, format_split, split

    print("\n== 4. split: temporal (leak-free)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)  # listed in result.warnings instead
        parts = split(
            SplitOptions(
                dataset=out / "hf",
                out=out / "split",
                strategy="temporal",
                ratios=[0.8, 0.1, 0.1],
                seed=42,
                overwrite=True,
            )
        )
    print(format_split(parts))
    for note in parts.warnings:
        print("  warning:", note)
    summary.append(
        f"split     {parts.temporal_unit}s: "
        + ", ".join(f"{k} {v}" for k, v in parts.sizes.items())
        + f"; {parts.dropped} dropped at gaps; leakage "
        + ("none" if parts.leakage.ok else "FOUND")
    )

    print("\n== 5. models: the registry with memory estimates (sam2-finetune models)")
    from sam2_finetune.models.table import ModelsOptions, format_models_table, models_table

    models = ModelsOptions(family=["smolvlm", "qwen2_5_vl", "llava"])
    print(format_models_table(models_table(models), models))

    print("\n== 6. config + hardware check: quick_test preset (sam2-finetune check)")
    from sam2_finetune.train.check import (
        check_config,
        format_report,
        gather_hardware_facts,
        needs_bitsandbytes,
    )
    from sam2_finetune.train.config import load_config

    config = load_config(
        preset="quick_test",
        overrides=[f"data.dataset={out / 'split'}", f"output.run_dir={out / 'run'}"],
    )
    facts = gather_hardware_facts(probe_bitsandbytes=needs_bitsandbytes(config))
    check = check_config(config, facts)
    print(format_report(check))
    summary.append(
        f"config    quick_test: {config.model.family} {config.model.checkpoint}, "
        f"check {'ok' if check.ok else 'FAILED'}"
    )

    print("\n== 7. model: a tiny offline SmolVLM (sam2-finetune tiny-model)")
    from sam2_finetune.models.tiny import build_tiny_model

    tiny = build_tiny_model("smolvlm", out / "tiny-smolvlm", overwrite=True)
    size_kb = sum(p.stat().st_size for p in tiny.rglob("*") if p.is_file()) / 1024
    print(f"  built {tiny} ({size_kb:.0f} KB)")
    summary.append(f"model     tiny smolvlm at {tiny} ({size_kb:.0f} KB)")

    print("\n== 8. train: LoRA on the tiny model, quick_test (sam2-finetune train)")
    from sam2_finetune.train.callbacks import read_metrics
    from sam2_finetune.train.run import format_result, train

    config = config.model_copy(
        update={"output": config.output.model_copy(update={"overwrite": True})}
    )
    trained = train(config)
    print(format_result(trained))
    losses = [r["eval_loss"] for r in read_metrics(trained.run_dir) if "eval_loss" in r]
    summary.append(
        f"train     {trained.global_step} steps ({trained.stopped}), eval loss "
        f"{losses[0]:.3f} -> {losses[-1]:.3f} (a tiny random model: plumbing, not grounding); "
        f"best model {trained.best_dir}"
    )

    print("\n== 9. evaluate: the best model on the test split, next to the baselines")
    from sam2_finetune.evaluate import EvaluateOptions, evaluate
    from sam2_finetune.evaluate.generate import GenerationOptions
    from sam2_finetune.evaluate.run import format_result as format_evaluation

    evaluation = evaluate(
        EvaluateOptions(
            model=trained.run_dir,
            data=out / "split",
            split="test",
            # A tiny random model rarely ends its answer by itself: cap it.
            generation=GenerationOptions(max_new_tokens=96),
            out=out / "evaluation",
            overwrite=True,
        )
    )
    print(format_evaluation(evaluation))
    key = evaluation.headline
    prior = evaluation.baselines["prior"].get(key)
    empty = evaluation.baselines["empty"].get(key)
    mine = evaluation.metrics.get(key)
    summary.append(
        f"evaluate  {evaluation.examples} test examples: {key} {_number(mine)}"
        f" vs prior {_number(prior)}, empty {_number(empty)}; parse failures "
        f"{_number(evaluation.metrics.get('parse_failure_rate'))} (a random model is expected to"
        f" lose to the prior) -> {evaluation.out_dir}/summary.md"
    )

    print("\n== 10. export: the merged model, its card and deploy/ files")
    from sam2_finetune.export import ExportOptions, export
    from sam2_finetune.export import format_result as format_export

    exported = export(
        ExportOptions(
            run=trained.run_dir,
            out=out / "export",
            merge=True,
            evaluation=evaluation.out_dir,
            overwrite=True,
        )
    )
    print(format_export(exported))
    summary.append(
        f"export    {exported.kind} model ({exported.size_bytes / 1024:.0f} KB) -> "
        f"{exported.out_dir} (README.md card, deploy/)"
    )

    print("\n== summary")
    for line in summary:
        print("  " + line)
    print(f"  took {time.perf_counter() - started:.1f} s; outputs in {out}/")
    return 0


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
