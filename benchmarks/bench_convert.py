"""Benchmark: convert the large generated export to the canonical HF dataset (``--to hf``).

    .venv/bin/python benchmarks/bench_convert.py                 # 2000 frames x 8 objects
    .venv/bin/python benchmarks/bench_convert.py --frames 4000 --repeat 3 --many 8

Reports, in one run:

- frames/s of ``convert(--to hf)`` on the 1x export (``write_large_export``: 1280 x 720,
  8 objects per frame with irregular 256 x 256 masks);
- its ratio to the *ingest floor*: reading every ZIP member, ``json.loads`` of annotations.json
  and parsing every mask's count string into integers (``masks.parse_counts``): what any reader
  of the export must do at least. Target: within 10x;
- the peak RSS of the conversion at 1x and 2x the frames. Target: 2x under 1.2 x the 1x figure
  (memory stays flat: rows are streamed in small Arrow batches);
- the peak RSS of converting 1 and ``--many`` (8) copies of the 1x export in one call. Target:
  8 under 1.2 x the 1 figure (each export is released once its rows are written; only the
  labels and video ids of a first pass are kept).

Each conversion runs in a fresh process (its peak RSS is its own). The time is that of the
``convert()`` call, with ``datasets`` already imported (an import costs the same at any size).
The floor runs in this process right before each 1x conversion and the ratio is the median of
the runs' ratios; times are the fastest of ``--repeat`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def ingest_floor(path: Path) -> float:
    """Seconds to read every member, parse annotations.json and every mask's count string."""
    from sam2_finetune.masks import parse_counts

    start = time.perf_counter()
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            archive.read(name)
        annotations = json.loads(archive.read("annotations.json"))
    for frame in annotations["annotations"]:
        for obj in frame["objects"]:
            parse_counts(obj["mask_rle"])
    return time.perf_counter() - start


def _child(paths: list[Path], out: Path) -> dict[str, float]:
    """One conversion of ``paths`` in this (fresh) process."""
    import datasets  # imported before the clock starts: a fixed cost

    from sam2_finetune.convert import ConvertOptions, convert

    datasets.disable_progress_bars()
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = convert(ConvertOptions(exports=paths, to="hf", out=out, overwrite=True))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert "torch" not in sys.modules
    return {
        "seconds": seconds,
        "rows": result.rows,
        "objects": result.objects,
        "rss_after_imports_mb": before_mb,
        "peak_rss_mb": peak_mb,
    }


def _measure(paths: Path | list[Path], out: Path) -> dict[str, float]:
    paths = [paths] if isinstance(paths, Path) else paths
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(out), *map(str, paths)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the conversion of {paths} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="Frames of the 1x export.")
    parser.add_argument("--objects", type=int, default=8, help="Objects per frame.")
    parser.add_argument("--repeat", type=int, default=2, help="Runs per size; fastest is kept.")
    parser.add_argument(
        "--many", type=int, default=8, help="Exports of the many-exports run (copies of 1x)."
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out, *paths = map(Path, args.child)
        print(json.dumps(_child(paths, out)))
        return

    from sam2_finetune.testing.synthetic import write_large_export

    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        work = Path(tmp)
        exports = {
            scale: write_large_export(
                work / f"large_{scale}x.zip", n_frames=args.frames * scale, n_objects=args.objects
            )
            for scale in (1, 2)
        }
        floors: list[float] = []
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for _ in range(args.repeat):
            # The floor right before each 1x conversion, so that both see the same machine load;
            # sizes alternate for the same reason.
            floors.append(min(ingest_floor(exports[1]) for _ in range(3)))
            for scale in (1, 2):
                runs[scale].append(_measure(exports[scale], work / f"hf_{scale}x"))
        # The same 1x export under other names (so other video ids), converted in one call.
        copies = [work / f"copy_{i}.zip" for i in range(args.many)]
        for copy in copies:
            copy.write_bytes(exports[1].read_bytes())
        many_rss = {
            n: min(_measure(copies[:n], work / f"hf_{n}_exports")["peak_rss_mb"] for _ in range(
                args.repeat)) for n in (1, args.many)
        }  # fmt: skip
        ratios = sorted(r["seconds"] / f for r, f in zip(runs[1], floors, strict=True))
        ratio = ratios[len(ratios) // 2]
        floor = min(floors)
        best = {scale: min(r, key=lambda m: m["seconds"]) for scale, r in runs.items()}
        rss = {scale: min(m["peak_rss_mb"] for m in r) for scale, r in runs.items()}

    one, two = best[1], best[2]
    rss_ratio = rss[2] / rss[1]
    print(f"export 1x: {args.frames} frames x {args.objects} objects, 1280 x 720")
    print(f"ingest floor (1x)          {floor:8.3f} s")
    print(
        f"convert --to hf (1x)       {one['seconds']:8.3f} s  "
        f"{one['rows'] / one['seconds']:8.0f} frames/s  {ratio:5.1f}x the floor "
        f"({'OK' if ratio <= 10 else 'ABOVE'} target 10x; median of the runs' ratios "
        f"{', '.join(f'{r:.1f}' for r in ratios)})"
    )
    print(
        f"convert --to hf (2x)       {two['seconds']:8.3f} s  "
        f"{two['rows'] / two['seconds']:8.0f} frames/s"
    )
    print(
        f"peak RSS 1x / 2x           {rss[1]:8.0f} / {rss[2]:.0f} MB  ratio {rss_ratio:.3f} "
        f"({'OK' if rss_ratio < 1.2 else 'ABOVE'} target 1.2); "
        f"{one['rss_after_imports_mb']:.0f} MB after imports"
    )
    many_ratio = many_rss[args.many] / many_rss[1]
    print(
        f"peak RSS 1 / {args.many} exports      {many_rss[1]:8.0f} / {many_rss[args.many]:.0f} MB  "
        f"ratio {many_ratio:.3f} ({'OK' if many_ratio <= 1.2 else 'ABOVE'} target 1.2)"
    )


if __name__ == "__main__":
    main()
