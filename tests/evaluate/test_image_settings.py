"""apply_image_settings: the one function training and inference resize images with."""

from __future__ import annotations

import pytest
from PIL import Image

from sam2_finetune.models.chat import apply_image_settings, processor_resized_wh, prompt_text
from sam2_finetune.models.loading import load_processor
from sam2_finetune.models.record import ImageSettings


def test_qwen_max_pixels_resizes_accordingly():
    processor = load_processor("tiny:qwen2_vl", "qwen2_vl")
    image = Image.new("RGB", (640, 480))
    default = processor_resized_wh(processor, 640, 480)
    apply_image_settings(processor, "qwen2_vl", ImageSettings(max_pixels=56 * 56 * 4))
    assert processor_resized_wh(processor, 640, 480) != default
    w, h = processor_resized_wh(processor, 640, 480)
    assert w * h <= 56 * 56 * 4 and (w, h) == (128, 96)  # 4:3 kept, multiples of 32
    out = processor(
        text=[prompt_text(processor, "qwen2_vl", "hi")], images=[[image]], return_tensors="pt"
    )
    # The processor really resizes so: one row of pixel_values per patch of the resized image.
    patch = processor.image_processor.patch_size
    assert out["image_grid_thw"].tolist() == [[1, h // patch, w // patch]]
    assert out["pixel_values"].shape[0] == (w // patch) * (h // patch)


def test_qwen_min_pixels_alone_keeps_the_processor_max():
    processor = load_processor("tiny:qwen2_5_vl", "qwen2_5_vl")
    before = dict(processor.image_processor.size)
    apply_image_settings(processor, "qwen2_5_vl", ImageSettings(min_pixels=100_000))
    size = processor.image_processor.size
    assert size["shortest_edge"] == 100_000 and size["longest_edge"] == before["longest_edge"]
    w, h = processor_resized_wh(processor, 64, 48)
    assert w * h >= 100_000


@pytest.mark.parametrize("family", ["smolvlm", "idefics3"])
def test_longest_edge_changes_the_tiles(family):
    processor = load_processor(f"tiny:{family}", family)
    processor.image_processor.do_image_splitting = True  # tiles, as the real checkpoints
    image = Image.new("RGB", (640, 480))

    def images_per_frame():
        out = processor(
            text=[prompt_text(processor, family, "hi")], images=[[image]], return_tensors="pt"
        )
        return out["pixel_values"].shape[1]

    apply_image_settings(processor, family, ImageSettings(longest_edge=32))
    assert images_per_frame() == 1  # one tile: no global image either
    apply_image_settings(processor, family, ImageSettings(longest_edge=64))
    assert processor.image_processor.size == {"longest_edge": 64}
    assert images_per_frame() == 2 * 2 + 1  # 2x2 tiles of 32 px and the whole image


def test_settings_left_unset_or_for_another_family_change_nothing():
    processor = load_processor("tiny:smolvlm", "smolvlm")
    before = dict(processor.image_processor.size)
    apply_image_settings(processor, "smolvlm", ImageSettings())
    apply_image_settings(processor, "smolvlm", ImageSettings(min_pixels=5000, max_slices=3))
    assert dict(processor.image_processor.size) == before
    llava = load_processor("tiny:llava", "llava")
    fixed = dict(llava.image_processor.size)
    apply_image_settings(llava, "llava", ImageSettings(max_pixels=5000, longest_edge=64))
    assert dict(llava.image_processor.size) == fixed


def test_the_training_collator_applies_the_runs_image_settings(tmp_path):
    from sam2_finetune.train.collator import collator_for_config
    from sam2_finetune.train.config import load_config

    config = load_config(
        preset="quick_test",
        overrides=[f"data.dataset={tmp_path}", "data.longest_edge=64"],
    )
    processor = load_processor("tiny:smolvlm", "smolvlm")
    collator_for_config(config, processor, ["car"])
    assert processor.image_processor.size == {"longest_edge": 64}
