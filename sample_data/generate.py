"""Regenerate the sample exports in this folder (deterministic: the same bytes every run, but for
the video's H.264 stream, whose decoded frames are the same: see docs/synthetic.md).

    .venv/bin/python sample_data/generate.py            # rewrites sample_data/
    .venv/bin/python sample_data/generate.py --out DIR  # writes elsewhere

Three SAM2 exports made of flat moving shapes, each exercising traps of real exports (see
README.md next to this file). ``tests/test_sample_data.py`` regenerates them into a temporary
folder and checks the committed files are reproduced.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam2_finetune.testing.synthetic import TrackSpec, write_export

HERE = Path(__file__).resolve().parent

STREET = [
    TrackSpec(1, "car", "rect", (200, 30, 30), (0.15, 0.72), (0.06, 0.0), (0.22, 0.14)),
    # Drives out of the frame on the right near the end: SAM2 loses it (empty masks).
    TrackSpec(2, "car", "rect", (30, 60, 200), (0.55, 0.85), (0.08, 0.0), (0.25, 0.16)),
    TrackSpec(3, "person", "ellipse", (240, 200, 40), (0.8, 0.62), (-0.04, 0.0), (0.06, 0.24)),
    TrackSpec(4, "bicycle", "triangle", (40, 160, 60), (0.25, 0.55), (0.05, 0.01), (0.12, 0.12)),
]

KITCHEN = [
    TrackSpec(1, "cup", "ellipse", (230, 230, 230), (0.2, 0.55), (0.01, 0.0), (0.1, 0.14)),
    # The same class typed with a capital letter: a case variant users really produce.
    TrackSpec(2, "Cup", "ellipse", (180, 60, 40), (0.75, 0.6), (-0.012, 0.0), (0.09, 0.13)),
    # Occluded in the middle of the session: listed with empty masks there.
    TrackSpec(
        3,
        "bowl",
        "ellipse",
        (90, 140, 200),
        (0.45, 0.75),
        (0.0, 0.0),
        (0.2, 0.1),
        hidden=((72, 108),),
    ),
    # Never named at first (the demo writes object_<id>), renamed mid-session.
    TrackSpec(
        4,
        "object_4",
        "rect",
        (120, 80, 40),
        (0.5, 0.35),
        (0.015, 0.005),
        (0.14, 0.08),
        renamed=(150, "cutting board"),
    ),
]

WAREHOUSE = [
    TrackSpec(1, "box", "rect", (170, 120, 70), (0.3, 0.65), (0.02, 0.0), (0.12, 0.16)),
    TrackSpec(2, "box", "rect", (150, 100, 60), (0.6, 0.7), (0.0, 0.0), (0.1, 0.14)),
    TrackSpec(3, "forklift", "rect", (230, 190, 20), (0.1, 0.7), (0.08, 0.0), (0.16, 0.22)),
    TrackSpec(4, "person", "ellipse", (60, 60, 60), (0.85, 0.6), (-0.05, 0.0), (0.05, 0.3)),
]


def generate(out: Path = HERE) -> list[Path]:
    """Write the sample exports, the raw frames of each (``<name>_frames/``, what training
    reads instead of the overlays) and the street scene's video into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_export(
            out / "street_scene.zip",
            STREET,
            width=320,
            height=240,
            duration_sec=8.0,
            empty_frames=(0, 234),
            seed=1,
            video_filename="street_scene.mp4",
            raw_frames_dir=out / "street_scene_frames",
            raw_video=out / "street_scene.mp4",
            overwrite=True,
        ),
        write_export(
            out / "kitchen.zip",
            KITCHEN,
            width=320,
            height=240,
            duration_sec=10.0,
            empty_frames=(0, 6, 12, 198, 204),
            seed=2,
            video_filename="kitchen.mov",
            layout="rezipped",
            raw_frames_dir=out / "kitchen_frames",
            overwrite=True,
        ),
        write_export(
            out / "warehouse.zip",
            WAREHOUSE,
            width=384,
            height=216,
            duration_sec=8.0,
            empty_frames=(228, 234),
            seed=3,
            video_filename="warehouse_cam2.mp4",
            raw_frames_dir=out / "warehouse_frames",
            image_format="jpg",
            image_dir="frames",
            with_metadata=False,
            overwrite=True,
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="Folder to write into.")
    for path in generate(parser.parse_args().out):
        print(path)
