"""Benchmark: reading a large SAM2 export into canonical records, against the floor.

    .venv/bin/python benchmarks/bench_ingest.py              # 2000 frames x 8 objects, 3 repeats
    .venv/bin/python benchmarks/bench_ingest.py --frames 500 --repeat 1     # a quick look

Generates ``synthetic.write_large_export`` at 1x (``--frames``, default 2000, x 8 objects with
irregular 256 x 256 masks, 1280 x 720) and 2x the frames, and reports in one run:

- **canonical records**: frames/s and objects/s of ``read_export`` + reading every frame
  (``export.frames``: masks rescaled to 1280 x 720 and compressed, boxes, areas) + every image's
  bytes; and the same without the images;
- **the floor**: reading every ZIP member, ``json.loads`` of annotations.json and parsing every
  mask's count string into integers (``np.fromstring``), nothing more: what any reader must do.
  Ratio target: canonical within 10x the floor (each like for like: with and without images);
- **``sam2-finetune info``** as a whole process (imports included) against the floor as a whole
  process (``python -c`` importing only json, zipfile, numpy). Target: within 2x;
- **peak RSS** at 1x and 2x, each in a fresh process: the RSS after ``read_export`` (the parsed
  annotations.json it holds, the part that must grow with the export), and the peak of the
  canonical pass on top of it (Linux ``clear_refs`` resets the high-water mark in between).
  Target: at 2x, under 1.2 x the 1x figure beyond the JSON.

Times are wall-clock, best of ``--repeat`` (the machine is shared); ratios are the median of the
per-repeat ratios, each floor measured right before its counterpart. CPU times are shown too:
on a loaded machine they vary less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

FLOOR_SCRIPT = """
import json, sys, zipfile
import numpy as np
with zipfile.ZipFile(sys.argv[1]) as archive:
    for name in archive.namelist():
        archive.read(name)
    annotations = json.loads(archive.read("annotations.json"))
for frame in annotations["annotations"]:
    for obj in frame["objects"]:
        np.fromstring(obj["mask_rle"], dtype=np.int64, sep=" ")
"""


def floor(path: Path, images: bool = True) -> int:
    """The floor: every member read (``images=False``: annotations.json only), the JSON parsed,
    every count string parsed into integers. Returns the number of objects."""
    objects = 0
    with zipfile.ZipFile(path) as archive:
        if images:
            for name in archive.namelist():
                archive.read(name)
        annotations = json.loads(archive.read("annotations.json"))
    for frame in annotations["annotations"]:
        for obj in frame["objects"]:
            np.fromstring(obj["mask_rle"], dtype=np.int64, sep=" ")
            objects += 1
    return objects


def canonical(path: Path, images: bool = True) -> int:
    """Every frame's canonical record (and, with ``images``, every image's bytes)."""
    from sam2_finetune.ingest import read_export

    objects = 0
    with read_export(path) as export:
        for frame in export.frames:
            objects += len(frame.objects)
            if images and frame.image is not None:
                frame.image.read_bytes()
    return objects


def timed(function, *args) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def in_process(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Floor and canonical, with and without images, interleaved ``repeat`` times."""
    runs: dict[str, list[tuple[float, float]]] = {}
    ratios: dict[str, list[float]] = {"images": [], "records": []}
    objects = 0
    canonical(path)  # warm the caches (imports, page cache) once
    for _ in range(repeat):
        for images, key in ((True, "images"), (False, "records")):
            f_wall, f_cpu, objects = timed(floor, path, images)
            c_wall, c_cpu, got = timed(canonical, path, images)
            assert got == objects
            runs.setdefault(f"floor_{key}", []).append((f_wall, f_cpu))
            runs.setdefault(f"canonical_{key}", []).append((c_wall, c_cpu))
            ratios[key].append(c_wall / f_wall)
    out: dict[str, dict[str, float]] = {}
    for name, values in runs.items():
        wall = min(v[0] for v in values)
        out[name] = {"wall_s": wall, "cpu_s": min(v[1] for v in values), "objects": objects}
    for key, values in ratios.items():
        out[f"ratio_{key}"] = {"median": statistics.median(values), "runs": values}
    return out


def process_times(command: list[str], repeat: int) -> tuple[float, float]:
    """Best wall and CPU seconds (user + system, children) of a whole process."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def whole_processes(path: Path, repeat: int) -> dict[str, float]:
    cli = [sys.executable, "-m", "sam2_finetune", "info", str(path)]
    floor_cmd = [sys.executable, "-c", FLOOR_SCRIPT, str(path)]
    ratios = []
    best: dict[str, list[float]] = {"floor": [], "info": []}
    # Single process runs swing most on a shared machine: at least 5 pairs.
    for _ in range(max(repeat, 5)):
        f_wall, f_cpu = process_times(floor_cmd, 1)
        i_wall, i_cpu = process_times(cli, 1)
        best["floor"].append(f_wall)
        best["info"].append(i_wall)
        best.setdefault("floor_cpu", []).append(f_cpu)
        best.setdefault("info_cpu", []).append(i_cpu)
        ratios.append(i_wall / f_wall)
    return {
        "floor_wall_s": min(best["floor"]),
        "info_wall_s": min(best["info"]),
        "floor_cpu_s": min(best["floor_cpu"]),
        "info_cpu_s": min(best["info_cpu"]),
        "ratio_median": statistics.median(ratios),
        "ratio_best": min(best["info"]) / min(best["floor"]),
        "ratio_runs": ratios,
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(path: Path) -> dict[str, float]:
    """In a fresh process: RSS after imports, after ``read_export`` (the JSON held), and the
    peak of the canonical pass (records + image bytes)."""
    from sam2_finetune.ingest import read_export

    base = _status_kb("VmRSS")
    export = read_export(path)
    loaded = _status_kb("VmRSS")
    load_peak = _status_kb("VmHWM")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    sampled = loaded
    for i, frame in enumerate(export.frames):
        if frame.image is not None:
            frame.image.read_bytes()
        if not reset and i % 50 == 0:
            sampled = max(sampled, _status_kb("VmRSS"))
    peak = _status_kb("VmHWM") if reset else max(sampled, _status_kb("VmRSS"))
    export.close()
    return {
        "after_imports_mb": base / 1024,
        "json_mb": (loaded - base) / 1024,
        "load_peak_mb": load_peak / 1024,
        "pass_peak_mb": peak / 1024,
        "beyond_json_mb": (peak - loaded) / 1024,
        "peak_reset": reset,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def memory(path: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"the memory run on {path} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames at 1x (8 objects each)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each timing")
    parser.add_argument("--keep", type=Path, help="write the exports here and keep them")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return

    from sam2_finetune.testing.synthetic import write_large_export

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        one = write_large_export(folder / "large_1x.zip", n_frames=args.frames, overwrite=True)
        two = write_large_export(folder / "large_2x.zip", n_frames=2 * args.frames, overwrite=True)
        timings = in_process(one, args.repeat)
        processes = whole_processes(one, args.repeat)
        mem = {"1x": memory(one), "2x": memory(two)}
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    report(args, timings, processes, mem)


def report(args, timings, processes, mem) -> None:
    frames = args.frames
    objects = timings["floor_images"]["objects"]
    print(
        f"## Ingest: {frames} frames x 8 objects (1280 x 720), best of {args.repeat}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| run | wall s | CPU s | frames/s | objects/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    names = {
        "canonical_images": "canonical records + image bytes",
        "floor_images": "floor: every member + JSON + count strings",
        "canonical_records": "canonical records (no images)",
        "floor_records": "floor without images",
    }
    for key, label in names.items():
        t = timings[key]
        print(
            f"| {label} | {t['wall_s']:.3f} | {t['cpu_s']:.3f} | {frames / t['wall_s']:,.0f} "
            f"| {objects / t['wall_s']:,.0f} |"
        )
    for key, label in (("images", "with images"), ("records", "records only")):
        r = timings[f"ratio_{key}"]
        runs = ", ".join(f"{v:.1f}" for v in r["runs"])
        print(f"\ncanonical / floor, {label}: {r['median']:.2f}x (median; runs {runs}); target 10x")
    p = processes
    runs = ", ".join(f"{v:.2f}" for v in p["ratio_runs"])
    print(
        f"\n`sam2-finetune info` process: {p['info_wall_s']:.2f} s wall, {p['info_cpu_s']:.2f} s "
        f"CPU; floor process: {p['floor_wall_s']:.2f} s wall, {p['floor_cpu_s']:.2f} s CPU; "
        f"ratio {p['ratio_median']:.2f}x (median of pairs; runs {runs}; best against best "
        f"{p['ratio_best']:.2f}x); target 2x"
    )
    print(
        "\n| size | RSS after imports MB | + parsed JSON MB | canonical pass beyond the JSON MB |"
    )
    print("| --- | ---: | ---: | ---: |")
    for size, m in mem.items():
        print(
            f"| {size} | {m['after_imports_mb']:.0f} | {m['json_mb']:.0f} "
            f"| {m['beyond_json_mb']:.1f} |"
        )
    ratio = mem["2x"]["beyond_json_mb"] / max(mem["1x"]["beyond_json_mb"], 1e-9)
    print(
        f"\nbeyond-JSON peak at 2x / at 1x: {ratio:.2f} (target < 1.2; peak reset with "
        f"clear_refs: {mem['1x']['peak_reset']})"
    )
    print("\n" + json.dumps({"in_process": timings, "processes": processes, "memory": mem}))


if __name__ == "__main__":
    main()
