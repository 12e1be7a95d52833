"""Benchmark: validate the large generated export, against ingesting the same export.

    .venv/bin/python benchmarks/bench_validate.py                # 2000 frames x 8 objects
    .venv/bin/python benchmarks/bench_validate.py --frames 4000 --repeat 3

Ingesting means reading every frame's canonical record: ``read_export`` then every frame of
``export.frames`` (all masks rescaled to the video size and compressed) plus its image bytes,
which is what ``convert`` does before writing. (``ingest, no images`` skips the image bytes.)
Validating is ``validate()`` with every rule, writing the Markdown, JSON and chart (and, to
separate the fixed cost of the report files, with no report files).

Each measurement runs in a fresh process, so its peak RSS is its own; runs alternate between
kinds and the run with the least CPU time of ``--repeat`` is kept (CPU time, not wall time,
because the machine is shared and wall time swings with its load). Memory: validate and ingest
also run on an export twice as long; validate's peak RSS should grow no faster than ingest's
(which holds the parsed annotations.json): no mask or image is kept.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(kind: str, path: Path, work: Path) -> dict[str, float]:
    """Run one measurement in this (fresh) process and return its figures."""
    start = time.perf_counter()
    cpu_start = time.process_time()
    objects = 0
    if kind.startswith("validate"):
        from sam2_finetune.validate import ValidateOptions, validate

        outputs = (
            {}
            if kind == "validate_rules"
            else {
                "report": work / "report.md",
                "json_report": work / "report.json",
            }
        )
        report = validate(ValidateOptions(inputs=[path], overwrite=True, **outputs))
        objects = report.totals["objects"]
    else:
        from sam2_finetune.ingest import read_export

        with_images = kind == "ingest"
        export = read_export(path)
        for frame in export.frames:
            objects += len(frame.objects)
            if with_images and frame.image is not None:
                frame.image.read_bytes()
        export.close()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {"seconds": seconds, "cpu": cpu, "objects": objects, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak RSS. ``ru_maxrss`` would carry over the forking parent's peak
    across exec on Linux; ``VmHWM`` belongs to the new address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(kind: str, path: Path, work: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(work)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="Frames of the large export.")
    parser.add_argument("--objects", type=int, default=8, help="Objects per frame.")
    parser.add_argument("--repeat", type=int, default=2, help="Runs per kind; fastest is kept.")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, work = args.child
        print(json.dumps(_child(kind, Path(path), Path(work))))
        return

    from sam2_finetune.testing.synthetic import write_large_export

    with tempfile.TemporaryDirectory(prefix="bench_validate_") as tmp:
        work = Path(tmp)
        big = write_large_export(work / "large.zip", n_frames=args.frames, n_objects=args.objects)
        double = write_large_export(
            work / "double.zip", n_frames=2 * args.frames, n_objects=args.objects
        )
        runs = [
            ("ingest", "ingest", big),
            ("ingest_no_images", "ingest_no_images", big),
            ("validate_rules", "validate_rules", big),
            ("validate", "validate", big),
            ("ingest_2x", "ingest", double),
            ("validate_2x", "validate", double),
        ]
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):
            for name, kind, path in runs:
                result = _measure(kind, path, work)
                if name not in best or result["cpu"] < best[name]["cpu"]:
                    best[name] = result
    doubled, ingest_doubled = best["validate_2x"], best["ingest_2x"]

    ingest, validate = best["ingest"], best["validate"]
    rules = best["validate_rules"]
    growth = (doubled["peak_rss_mb"] - validate["peak_rss_mb"]) / args.frames * 1000
    ingest_growth = (ingest_doubled["peak_rss_mb"] - ingest["peak_rss_mb"]) / args.frames * 1000
    print(
        f"large export: {args.frames} frames x {args.objects} objects = "
        f"{validate['objects']:.0f} objects (256 x 256 masks -> 1280 x 720); best of "
        f"{args.repeat} by CPU time, each run a fresh process (imports included)"
    )
    print()
    print("| run | CPU s | wall s | objects/s (CPU) | peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = [
        ("ingest (records + image bytes)", ingest),
        ("ingest, no images", best["ingest_no_images"]),
        ("validate, rules only (no report files)", rules),
        ("validate (rules + Markdown, JSON, chart)", validate),
        (f"ingest, {2 * args.frames} frames", ingest_doubled),
        (f"validate, {2 * args.frames} frames", doubled),
    ]
    for label, r in rows:
        print(
            f"| {label} | {r['cpu']:.2f} | {r['seconds']:.2f} | {r['objects'] / r['cpu']:,.0f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    print()
    print(f"validate / ingest (CPU): {validate['cpu'] / ingest['cpu']:.2f}x (target <= 1.5x)")
    print(f"validate, rules only / ingest (CPU): {rules['cpu'] / ingest['cpu']:.2f}x")
    print(
        f"report files: {validate['cpu'] - rules['cpu']:.2f} CPU s, a fixed cost (matplotlib "
        "import, chart, JSON)"
    )
    print(
        f"at {2 * args.frames} frames: validate / ingest (CPU) "
        f"{doubled['cpu'] / ingest_doubled['cpu']:.2f}x"
    )
    print(
        f"peak RSS growth per 1000 more frames: validate {growth:.1f} MB, ingest "
        f"{ingest_growth:.1f} MB (ingest holds the parsed annotations.json)"
    )


if __name__ == "__main__":
    main()
