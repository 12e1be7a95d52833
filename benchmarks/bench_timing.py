"""Benchmark: the speeds the test suite used to assert with a clock, measured here instead.

    .venv/bin/python benchmarks/bench_timing.py              # best of 3
    .venv/bin/python benchmarks/bench_timing.py --repeat 5

A wall-clock bound inside the suite fails on a loaded machine (``pytest -n 2`` on two shared
cores), so the tests assert what makes these fast (a hostile archive is refused before its payload
is inflated: ``tests/test_ingest.py`` counts the inflated bytes; ``write_large_export`` encodes
each mask and image a fixed number of times: ``tests/testing/test_synthetic.py`` counts the
calls) and this script reports the times, against the bounds the tests once held:

- refusing each hostile archive of ``tests/test_ingest.py`` (a 2 x 4000 MiB zip bomb, a 3000 MiB
  bomb inside a ZIP, a member whose size is forged): was ``< 1 s`` each;
- ``write_large_export`` (2000 frames x 8 objects at 1280 x 720): was ``< 10 s``.

Times are wall-clock and CPU, best of ``--repeat`` (the machine is shared: CPU time varies less).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import forged_size_zip, write_zip, zip_bomb

from sam2_finetune.errors import ExportError
from sam2_finetune.ingest import read_export
from sam2_finetune.testing.synthetic import write_large_export


def _best(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def _refuse(path: Path) -> None:
    try:
        read_export(path).close()
    except ExportError:
        return
    raise SystemExit(f"{path.name} was not refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bomb = zip_bomb(work / "bomb.zip")
        inner = zip_bomb(work / "inner.zip", members=1, mebibytes=3000)
        nested = write_zip(
            work / "outer.zip",
            [("export/sam2_export.zip", inner.read_bytes())],
            zipfile.ZIP_STORED,
        )
        forged = forged_size_zip(work / "forged.zip")
        rows = [
            (f"refuse {p.name}", "1", *_best(lambda p=p: _refuse(p), args.repeat))
            for p in (bomb, nested, forged)
        ]
        large = work / "large.zip"
        rows.append(
            (
                "write_large_export 2000 x 8",
                "10",
                *_best(lambda: write_large_export(large, overwrite=True), args.repeat),
            )
        )
    print(f"{'what':<32} {'was < s':>8} {'wall s':>8} {'cpu s':>8}")
    for what, bound, wall, cpu in rows:
        print(f"{what:<32} {bound:>8} {wall:>8.3f} {cpu:>8.3f}")


if __name__ == "__main__":
    main()
