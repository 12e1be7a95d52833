"""What training augmentation (``data.augment``) costs per frame, against decoding the frame.

The collator decodes every frame it batches (``row_image``: PNG bytes -> RGB PIL image); this is
the floor augmentation is compared with, measured in the same run on the same frames. Cases:
a geometric transform drawn for every frame (``hflip=1, scale_crop=1``: every visible mask is
decoded, moved and re-encoded), colour jitter only (no mask touched), and default options
(identity). Frames are 1280 x 720 with ``--objects`` irregular masks each.

    .venv/bin/python benchmarks/bench_augment.py --frames 20 --objects 8 --repeat 5
"""

from __future__ import annotations

import argparse
import io
import random
import time

import numpy as np
from PIL import Image

from sam2_finetune.dataset import row_image
from sam2_finetune.masks import rle_encode
from sam2_finetune.train.augment import AugmentOptions, augment_rng, augment_row

W, H = 1280, 720


def make_rows(frames: int, objects: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    rows = []
    for f in range(frames):
        pixels = rng.integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((W, H), Image.Resampling.BILINEAR)
        data = io.BytesIO()
        image.save(data, format="PNG")
        objs = []
        for k in range(objects):
            cx, cy = rng.uniform(100, W - 100), rng.uniform(100, H - 100)
            rx, ry = rng.uniform(30, 200), rng.uniform(30, 150)
            wobble = 1 + 0.2 * np.sin(xx / rng.uniform(5, 20))
            mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= wobble).astype(np.uint8)
            ys, xs = np.nonzero(mask)
            objs.append(
                {
                    "track_id": k,
                    "label": f"object_{k}",
                    "bbox": [
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() - xs.min() + 1),
                        float(ys.max() - ys.min() + 1),
                    ],
                    "area": int(mask.sum()),
                    "segmentation": rle_encode(mask),
                }
            )
        rows.append(
            {
                "image_id": f"video/{f:06d}",
                "width": W,
                "height": H,
                "image": {"bytes": data.getvalue(), "path": None},
                "objects": objs,
            }
        )
    return rows


def time_pass(rows: list[dict], options: AugmentOptions | None) -> float:
    start = time.perf_counter()
    for row in rows:
        image = row_image(row)
        if options is not None:
            augment_row(row, image, options, augment_rng(42, 1, row["image_id"]))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = make_rows(args.frames, args.objects)
    cases = {
        "geometric (hflip + scale_crop every frame)": AugmentOptions(hflip=1, scale_crop=1),
        "horizontal flip every frame": AugmentOptions(hflip=1),
        "colour jitter only": AugmentOptions(
            brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05
        ),
        "default options (identity)": AugmentOptions(),
    }
    print(f"{args.frames} frames {W}x{H}, {args.objects} objects each, best of {args.repeat}")
    print("| case | ms per frame | floor ms per frame | added / floor |")
    print("| --- | ---: | ---: | ---: |")
    for name, options in cases.items():
        floors, totals = [], []
        for _ in range(args.repeat):  # interleaved: each floor right before its counterpart
            floors.append(time_pass(rows, None))
            totals.append(time_pass(rows, options))
        floor, total = min(floors), min(totals)
        per = 1000 / args.frames
        print(
            f"| {name} | {total * per:.1f} | {floor * per:.1f} | {(total - floor) / floor:.2f}x |"
        )


if __name__ == "__main__":
    random.seed(0)
    main()
