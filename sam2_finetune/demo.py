"""`make demo`: every stage that exists, on sample_data/, with a tiny offline model.

Run with ``python -m sam2_finetune.demo [--out DIR]``. Each step calls the same stage function
the CLI and notebooks call, and the run ends with a printed summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sam2_finetune.ingest import InfoOptions, format_summary, info

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
    summary: list[str] = []
    started = time.perf_counter()

    print("== 1. ingest: sam2-finetune info")
    summaries = info(InfoOptions(exports=exports))
    for s in summaries:
        print(format_summary(s))
    summary.append(
        f"ingest    {len(summaries)} exports, "
        f"{sum(s.frames_listed for s in summaries)} frames, "
        f"{sum(s.objects for s in summaries)} objects"
    )

    print("\n== summary")
    for line in summary:
        print("  " + line)
    print(f"  took {time.perf_counter() - started:.1f} s; outputs in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
