"""Training augmentation: boxes and masks follow the image exactly, cut-away objects leave the
answer, colour jitter touches only pixels, draws are seeded, evaluation is never augmented."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from sam2_finetune.answer_formats import format_grid, parse_answer, render_answer
from sam2_finetune.errors import OptionsError
from sam2_finetune.masks import rle_area, rle_bbox, rle_decode, rle_encode
from sam2_finetune.tasks import answer_objects
from sam2_finetune.train import augment as augment_module
from sam2_finetune.train.augment import AugmentOptions, augment_rng, augment_row
from sam2_finetune.train.config import load_config

W, H = 96, 64
# label -> (colour, x0, y0, x1, y1): large shapes, and a small one in the top-left corner that
# a zoom-in crop cuts away.
SHAPES = {
    "box": ((255, 0, 0), 50, 20, 80, 50),
    "bar": ((0, 255, 0), 10, 30, 40, 40),
    "dot": ((0, 0, 255), 0, 0, 3, 3),
}


def make_row(image_id: str = "video/000001") -> tuple[dict, Image.Image]:
    """A frame whose pixels are its objects' masks painted in their colours (so the image and
    the masks can be checked against each other after a transform)."""
    pixels = np.zeros((H, W, 3), dtype=np.uint8)
    objects = []
    for track, (label, (colour, x0, y0, x1, y1)) in enumerate(SHAPES.items()):
        mask = np.zeros((H, W), dtype=np.uint8)
        mask[y0:y1, x0:x1] = 1
        pixels[mask == 1] = colour
        objects.append(
            {
                "track_id": track,
                "label": label,
                "category": track,
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "area": int(mask.sum()),
                "segmentation": rle_encode(mask),
            }
        )
    # An occluded track: SAM2 keeps it with an empty mask; it stays invisible.
    empty = np.zeros((H, W), dtype=np.uint8)
    objects.append(
        {"track_id": 9, "label": "gone", "category": 3, "bbox": [0.0, 0.0, 0.0, 0.0], "area": 0,
         "segmentation": rle_encode(empty)}
    )  # fmt: skip
    row = {"image_id": image_id, "width": W, "height": H, "objects": objects, "image": None}
    return row, Image.fromarray(pixels)


def check_consistent(row: dict, image: Image.Image) -> None:
    """Each object's box and area are its mask's own, and the image shows the object's colour
    inside its mask (pixels one step away from the edge: resampling blends the edge itself)."""
    pixels = np.asarray(image)
    assert image.size == (row["width"], row["height"])
    for obj in row["objects"]:
        mask = rle_decode(obj["segmentation"])
        assert mask.shape == (row["height"], row["width"])
        assert obj["area"] == int(mask.sum()) == int(rle_area([obj["segmentation"]])[0]) > 0
        assert tuple(obj["bbox"]) == rle_bbox(obj["segmentation"])
        inner = mask.copy()
        inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        inner[[0, -1], :] = 0
        inner[:, [0, -1]] = 0
        colour = np.array(SHAPES[obj["label"]][0])
        if inner.any():
            assert np.abs(pixels[inner == 1].astype(int) - colour).max() <= 2, obj["label"]
        # And the other way: the object's colour is nowhere beyond its mask's edge.
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        painted = np.abs(pixels.astype(int) - colour).max(axis=2) <= 2
        assert not (painted & (grown == 0)).any(), obj["label"]


def test_default_options_leave_the_row_untouched_without_decoding(monkeypatch):
    def no_decode(rle):
        raise AssertionError("a mask was decoded")

    monkeypatch.setattr(augment_module, "rle_decode", no_decode)
    row, image = make_row()
    for options in (None, AugmentOptions()):
        assert augment_row(row, image, options, random.Random(0)) == (row, image)
        out_row, out_image = augment_row(row, image, options, random.Random(0))
        assert out_row is row and out_image is image
    # A flip that is not drawn decodes nothing either; only colour jitter happens.
    jitter = AugmentOptions(hflip=0.5, brightness=0.5)
    seed = next(s for s in range(100) if random.Random(s).random() >= 0.5)
    out_row, out_image = augment_row(row, image, jitter, random.Random(seed))
    assert out_row["objects"] == row["objects"] and out_image is not image


def test_hflip_moves_masks_boxes_and_the_rendered_answer_with_the_image():
    row, image = make_row()
    out_row, out_image = augment_row(row, image, AugmentOptions(hflip=1.0), random.Random(0))
    assert np.array_equal(np.asarray(out_image), np.asarray(image)[:, ::-1])
    check_consistent(out_row, out_image)
    before = {obj["label"]: obj for obj in row["objects"] if obj["area"]}
    for obj in out_row["objects"]:
        original = before[obj["label"]]
        x, y, w, h = original["bbox"]
        assert obj["bbox"] == [W - x - w, y, w, h]
        assert np.array_equal(
            rle_decode(obj["segmentation"]), rle_decode(original["segmentation"])[:, ::-1]
        )
    assert "gone" not in {obj["label"] for obj in out_row["objects"]}
    # The answer a model is trained on, read back, is the flipped masks' boxes (within the
    # format's quantisation).
    for fmt in ("json", "qwen2_vl", "paligemma", "florence2"):
        text = render_answer(answer_objects(out_row), fmt, (W, H))
        parsed = parse_answer(text, fmt, (W, H))
        assert parsed.ok, (fmt, parsed.problems)
        step_x, step_y = format_grid(fmt, (W, H)).step
        truth = sorted((o["label"], rle_bbox(o["segmentation"])) for o in out_row["objects"])
        got = sorted((o.label, o.bbox) for o in parsed.objects)
        assert [label for label, _ in got] == [label for label, _ in truth], fmt
        for (_, (x, y, w, h)), (_, (gx, gy, gw, gh)) in zip(truth, got, strict=True):
            assert abs(gx - x) <= step_x and abs(gy - y) <= step_y, fmt
            assert abs((gx + gw) - (x + w)) <= step_x + 1 and abs((gy + gh) - (y + h)) <= step_y + 1


def test_scale_crop_keeps_masks_and_image_together_and_drops_objects_cut_away():
    options = AugmentOptions(scale_crop=1.0, scale_min=0.5, scale_max=2.0, hflip=0.5)
    row, image = make_row()
    cut = zoomed_out = 0
    for seed in range(40):
        out_row, out_image = augment_row(row, image, options, random.Random(seed))
        assert out_image.size == (W, H) and (out_row["width"], out_row["height"]) == (W, H)
        check_consistent(out_row, out_image)
        labels = {obj["label"] for obj in out_row["objects"]}
        pixels = np.asarray(out_image)
        if "dot" not in labels:
            cut += 1
            # Gone from the image too, and from every answer built from the row.
            assert not (np.abs(pixels.astype(int) - (0, 0, 255)).max(axis=2) <= 2).any()
            text = render_answer(answer_objects(out_row), "json", (W, H))
            assert "dot" not in text and parse_answer(text, "json", (W, H)).ok
        if (pixels == (114, 114, 114)).all(axis=2).any():
            zoomed_out += 1
    assert cut > 0 and zoomed_out > 0  # both sides of the jitter were drawn
    assert row == make_row()[0]  # the input row is not changed


def test_colour_jitter_changes_pixels_only():
    options = AugmentOptions(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2)
    row, image = make_row()
    out_row, out_image = augment_row(row, image, options, random.Random(3))
    assert out_row["objects"] == row["objects"]
    assert out_image.size == image.size
    assert not np.array_equal(np.asarray(out_image), np.asarray(image))


def test_the_same_seed_gives_the_same_result_and_another_epoch_another():
    options = AugmentOptions(hflip=0.5, scale_crop=0.8, brightness=0.3, hue=0.1)
    row, image = make_row()

    def run(seed: int, epoch: int, image_id: str) -> tuple[dict, bytes]:
        out_row, out_image = augment_row(row, image, options, augment_rng(seed, epoch, image_id))
        return out_row, out_image.tobytes()

    ids = [f"video/{i:06d}" for i in range(8)]
    assert [run(42, 1, i) for i in ids] == [run(42, 1, i) for i in ids]
    assert [run(42, 1, i) for i in ids] != [run(42, 2, i) for i in ids]
    assert [run(42, 1, i) for i in ids] != [run(7, 1, i) for i in ids]


def test_options_nest_in_yaml_and_on_the_command_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  augment: {hflip: 0.5}\n", encoding="utf-8")
    config = load_config(path, preset="quick_test", overrides=["data.augment.scale_crop=0.3"])
    assert config.data.augment == AugmentOptions(hflip=0.5, scale_crop=0.3)
    assert load_config(preset="quick_test").data.augment is None  # off unless asked
    with pytest.raises(OptionsError, match=r"data\.augment\.hflip: .*allowed: >= 0 and <= 1"):
        load_config(preset="quick_test", overrides=["data.augment.hflip=2"])
    with pytest.raises(OptionsError, match=r"did you mean 'data\.augment\.hflip'"):
        load_config(preset="quick_test", overrides=["data.augment.hlip=0.5"])


def test_docs_table_of_augment_options_matches_the_model():
    """docs/config.md's data.augment table is what AugmentOptions accepts, field for field."""
    import json
    import re
    from pathlib import Path

    from sam2_finetune.errors import allowed_values
    from sam2_finetune.train.config import TrainConfig

    text = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    block = re.search(r"#### `data\.augment`\n\n.*?\n\n(\| option.*?)(?:\n\n|\Z)", text, re.S)
    assert block, "docs/config.md has no data.augment table"
    rows = [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in block.group(1).splitlines()[2:]
    ]
    fields = AugmentOptions.model_fields
    assert [row[0].strip("`") for row in rows] == list(fields)
    for name, default, allowed, what in rows:
        info = fields[name.strip("`")]
        assert default == f"`{json.dumps(info.default)}`", name
        assert allowed == allowed_values(TrainConfig, ("data", "augment", name.strip("`"))), name
        assert what == info.description, name


# --- in the collator and the Trainer -----------------------------------------------------------

torch = pytest.importorskip("torch")


def test_the_collator_trains_on_the_augmented_frame_and_answer(tiny_dirs, one_torch_thread):
    from sam2_finetune.models.loading import load_processor
    from sam2_finetune.tasks import ExampleOptions
    from sam2_finetune.train.collator import VisionLanguageCollator

    row, image = make_row()
    row["image"] = image
    options = AugmentOptions(hflip=1.0, scale_crop=1.0)

    def collator(**fields):
        return VisionLanguageCollator(
            processor=load_processor(tiny_dirs("smolvlm"), "smolvlm"),
            family="smolvlm",
            answer_format="json",
            vocabulary=["bar", "box", "dot", "gone"],
            options=ExampleOptions(task_mix={"detect": 1}),
            **fields,
        )

    training = collator(augment=options, training=True)
    plain = collator()
    augmented, augmented_image = augment_row(
        row, image, options, augment_rng(42, 0, row["image_id"])
    )
    expected = plain([{**augmented, "image": augmented_image}])
    got = training([row])
    for key in ("input_ids", "labels", "pixel_values"):
        assert torch.equal(got[key], expected[key]), key
    assert not torch.equal(got["input_ids"], plain([row])["input_ids"])  # the answer moved
    # Not training (evaluation, or a collator used on its own): never augmented.
    training.training = False
    assert torch.equal(training([row])["input_ids"], plain([row])["input_ids"])


@pytest.mark.slow
def test_evaluation_batches_are_never_augmented(tmp_path, monkeypatch, one_torch_thread):
    """A real run with evaluation before step 0, during training and at the end: every frame
    the collator sees while the Trainer evaluates is left as it is; every training frame is
    augmented."""
    from pathlib import Path

    from sam2_finetune.convert import ConvertOptions, convert
    from sam2_finetune.dataset import load_canonical
    from sam2_finetune.train.collator import VisionLanguageCollator
    from sam2_finetune.train.data import split_folder
    from sam2_finetune.train.run import train

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    dataset = tmp_path / "hf"
    convert(
        ConvertOptions(
            exports=[sample / "street_scene.zip"],
            frames=[str(sample / "street_scene_frames")],
            to="hf",
            out=dataset,
        )
    )
    seen: list[tuple[bool, str]] = []
    original = VisionLanguageCollator.__call__

    def spy(self, rows):
        seen.extend((self.training, str(row["image_id"])) for row in rows)
        return original(self, rows)

    monkeypatch.setattr(VisionLanguageCollator, "__call__", spy)
    config = load_config(
        preset="quick_test",
        overrides=[
            f"data.dataset={dataset}",
            f"output.run_dir={tmp_path / 'run'}",
            "output.loggers=[]",
            "training.max_steps=4",
            "training.eval_steps=2",
            "training.save_steps=4",
            "data.augment.hflip=1.0",
        ],
    )
    train(config)
    folder, _ = split_folder(config, tmp_path / "run")
    splits = load_canonical(folder)
    eval_ids = set(splits[config.data.eval_split]["image_id"])
    train_ids = set(splits[config.data.train_split]["image_id"])
    assert eval_ids and not eval_ids & train_ids
    assert {image_id for training, image_id in seen if image_id in eval_ids} == eval_ids
    assert not [image_id for training, image_id in seen if training and image_id in eval_ids]
    trained = [image_id for training, image_id in seen if image_id in train_ids]
    assert trained and all(training for training, image_id in seen if image_id in train_ids)
