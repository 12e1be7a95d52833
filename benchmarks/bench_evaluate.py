"""What evaluate spends beside generation, and whether its memory stays flat as the split grows.

Same model for every measure: a tiny SmolVLM2 that memorised the detect answers of the street
scene's test frames (LoRA + output head, tests/evaluate/memorise.py), so that it writes real
answers (4 boxes in JSON) that parse and score like a trained model's, saved as an adapter
export. The splits evaluated are those frames repeated under new image ids (N rows).

(a) parsing and scoring against generation, on the same run (the largest split): generation is
    ``evaluate``'s time inside ``generate_answers`` minus the time parsing the answers takes
    (measured again on the texts of predictions.jsonl); parsing + scoring is that parse time plus
    everything ``evaluate`` does per example and at the end besides generating (label
    normalisation, the model's and both baselines' accumulators, the confusion counts, writing
    predictions.jsonl and per_image.csv, drawing the grid's frames, COCOeval and the charts).
    Target: at most 5 %. A tiny model generates in milliseconds; a real one is hundreds of times
    slower per token, so this share is an upper bound of what a user sees.
(b) peak RSS of a whole evaluate run (one fresh process per size, ``ru_maxrss``), for N rows and
    4N rows, against the RSS before ``evaluate`` is called (imports done, nothing loaded).
    Target: the growth from N to 4N rows is a small fraction of the run's own footprint (rows
    are streamed, predictions go to disk, only boxes are kept). The answers differ a little
    between repeated frames (a new image id draws another phrasing of the prompt), so not
    every box is right; each answer still holds boxes that are parsed and scored.

    .venv/bin/python benchmarks/bench_evaluate.py
    .venv/bin/python benchmarks/bench_evaluate.py --rows 50 200 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def _rss_kib() -> int:
    """The process's current resident set, in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def prepare(root: Path, sizes: list[int]) -> tuple[Path, dict[int, Path]]:
    """The memorised model and one split folder per size."""
    import torch
    from datasets import DatasetDict, concatenate_datasets

    from sam2_finetune.convert import ConvertOptions, convert
    from sam2_finetune.dataset import category_names, load_canonical
    from sam2_finetune.models.tiny import build_tiny_model
    from sam2_finetune.split import SplitOptions, split

    sys.path.insert(0, str(ROOT / "tests"))
    from evaluate.memorise import memorise  # the tests' helper: one way to memorise

    hf = root / "hf"
    convert(
        ConvertOptions(
            exports=[SAMPLE / "street_scene.zip"],
            frames=[str(SAMPLE / "street_scene_frames")],
            to="hf",
            out=hf,
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one video: split in time blocks
        split(SplitOptions(dataset=hf, out=root / "split"))
    dataset = load_canonical(root / "split")
    test = dataset["test"]
    torch.set_num_threads(1)
    model = root / "model"
    loss = memorise(
        [test[i] for i in range(len(test))],
        category_names(dataset),
        model,
        tiny_dir=build_tiny_model("smolvlm", root / "tiny"),
    )
    print(f"memorised {len(test)} frames (loss {loss:.4f})", file=sys.stderr)
    folders = {}
    for n in sizes:
        copies = []
        for k in range(-(-n // len(test))):
            copies.append(test.map(lambda row, k=k: {"image_id": f"{row['image_id']}#{k}"}))
        rows = concatenate_datasets(copies).select(range(n))
        folder = root / f"split_{n}"
        DatasetDict({"train": dataset["train"], "test": rows}).save_to_disk(str(folder))
        folders[n] = folder
    return model, folders


def child(model: str, data: str, out: str, batch_size: int) -> None:
    """One evaluate run in this process; print its timings and memory as JSON."""
    import torch

    from sam2_finetune.answer_formats import parse_answer
    from sam2_finetune.evaluate import EvaluateOptions, evaluate

    torch.set_num_threads(1)
    before = _rss_kib()
    options = EvaluateOptions(
        model=model,
        data=data,
        out=out,
        tasks=["detect"],
        batch_size=batch_size,
        generation={"max_new_tokens": 96},
        device="cpu",
    )
    result = evaluate(options)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    lines = [json.loads(line) for line in (result.out_dir / "predictions.jsonl").open()]
    sizes = {}
    from datasets import load_from_disk

    for row in load_from_disk(data)["test"].select_columns(["image_id", "width", "height"]):
        sizes[row["image_id"]] = (row["width"], row["height"])
    tick = time.perf_counter()
    for line in lines:
        parse_answer(line["text"], "json", sizes[line["image_id"]])
    parse = time.perf_counter() - tick
    print(
        json.dumps(
            {
                "rows": len(lines),
                "parsed_ok": sum(line["parse_ok"] for line in lines),
                "map50": result.metrics.get("map50"),
                "seconds": result.seconds,
                "parse_seconds": round(parse, 4),
                "rss_before_kib": before,
                "peak_rss_kib": peak,
            }
        )
    )


def run_child(model: Path, data: Path, out: Path, batch_size: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", str(model), str(data), str(out)]
    command += ["--batch-size", str(batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=[50, 200], metavar=("N", "M"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODEL", "DATA", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child, batch_size=args.batch_size)
        return
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        root = Path(tmp)
        model, folders = prepare(root, args.rows)
        runs = {
            n: run_child(model, folders[n], root / f"eval_{n}", args.batch_size) for n in args.rows
        }
    small, large = (runs[n] for n in args.rows)
    seconds = large["seconds"]
    generation = seconds["generation"] - large["parse_seconds"]
    overhead = large["parse_seconds"] + seconds["scoring"]
    grow = large["peak_rss_kib"] - small["peak_rss_kib"]
    footprint = small["peak_rss_kib"] - small["rss_before_kib"]
    results = {
        "runs": runs,
        "generation_seconds": round(generation, 3),
        "parse_and_score_seconds": round(overhead, 3),
        "parse_and_score_over_generation": round(overhead / generation, 4),
        "peak_rss_mib": {n: round(runs[n]["peak_rss_kib"] / 1024, 1) for n in args.rows},
        "peak_rss_growth_mib": round(grow / 1024, 1),
        "growth_over_run_footprint": round(grow / footprint, 4) if footprint else None,
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    n, m = args.rows
    print(
        f"(a) {m} rows, detect, batch {args.batch_size}, max_new_tokens 96, map50 {large['map50']}"
    )
    print(f"    generation               {generation:8.2f} s")
    print(
        f"    parsing + scoring        {overhead:8.2f} s  "
        f"({large['parse_seconds']:.3f} s parsing, {seconds['scoring']:.2f} s scoring and outputs)"
    )
    print(f"    ratio                    {overhead / generation:8.2%}  (target <= 5 %)")
    print("(b) peak RSS of an evaluate run (a fresh process each)")
    for rows in args.rows:
        print(
            f"    {rows:4d} rows               {runs[rows]['peak_rss_kib'] / 1024:8.1f} MiB "
            f"(before: {runs[rows]['rss_before_kib'] / 1024:.1f} MiB)"
        )
    print(
        f"    growth {n} -> {m} rows      {grow / 1024:8.1f} MiB "
        f"({results['growth_over_run_footprint']:.1%} of the {n}-row run's own footprint)"
    )


if __name__ == "__main__":
    main()
