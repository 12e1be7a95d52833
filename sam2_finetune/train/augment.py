"""Training-time augmentation of canonical rows: horizontal flip, scale jitter, colour jitter.

:func:`augment_row` transforms a row's frame and, exactly with it, every object's mask and box:
the geometric transforms are one index map from output pixels to source pixels, applied to the
image (PIL) and to each decoded mask (numpy, nearest neighbour, the same pixel-centre mapping as
PIL's resampling), and each box and area is then measured on the transformed mask, as ingest
measures them. An object a crop cuts away entirely (empty mask) leaves the row, so it is never
asked for or answered. Colour jitter changes only the pixels.

Scale jitter (``scale_crop``) is the "random resize, then crop or pad back to the input size" of
detection training (SSD's zoom in/out, the large-scale jitter of Copy-Paste, YOLO's random scale):
the frame is resized by ``s ~ U(scale_min, scale_max)``; zoomed in (``s > 1``) a random window of
the original size is cut out, zoomed out (``s < 1``) the frame is placed at a random position on a
grey canvas (:data:`FILL`) of the original size. The frame size never changes, so token counts and
``max_length`` budgets stay as they were.

Cost: nothing is decoded unless a geometric transform is drawn for the row; then each visible mask
is decoded, the window its box maps to is gathered, and it is re-encoded, one object at a time
(memory: two ``h x w`` bytes at most). ``benchmarks/bench_augment.py`` (1280 x 720, 8 objects per
frame, on the loaded 2-core dev machine): a flip adds about 1x the cost of decoding the frame
itself, flip and scale jitter about 1.5x (the image resize is half of it), colour jitter about
1.5x; default options add nothing.

Draws come from the ``random.Random`` the collator derives from the run's seed, the epoch and
the frame's ``image_id`` (:func:`augment_rng`), so a run and its resumption augment the
same frame of the same epoch alike.

:class:`sam2_finetune.train.callbacks.AugmentCallback` keeps evaluation unaugmented: the Trainer
uses one collator for training and evaluation, so the callback tells the collator when the Trainer
trains. Importing this module does not import torch or transformers (the config imports it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.masks import rle_bbox, rle_decode, rle_encode

# The grey of the canvas a zoomed-out frame is placed on (YOLO's padding colour).
FILL = (114, 114, 114)


class AugmentOptions(BaseModel):
    """Augmentation of training frames (``data.augment``); every transform is off by default.
    Evaluation is never augmented."""

    model_config = ConfigDict(extra="forbid")

    hflip: float = Field(0.0, ge=0, le=1, description="Probability of a horizontal flip.")
    scale_crop: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Probability of scale jitter: resize by U(scale_min, scale_max), then crop "
        "(zoom in) or pad with grey (zoom out) back to the frame's size.",
    )
    scale_min: float = Field(0.8, ge=0.1, le=1, description="Smallest scale of scale jitter.")
    scale_max: float = Field(1.2, ge=1, le=4, description="Largest scale of scale jitter.")
    brightness: float = Field(
        0.0, ge=0, le=1, description="Brightness factor drawn from U(1 - b, 1 + b); 0: off."
    )
    contrast: float = Field(
        0.0, ge=0, le=1, description="Contrast factor drawn from U(1 - c, 1 + c); 0: off."
    )
    saturation: float = Field(
        0.0, ge=0, le=1, description="Saturation factor drawn from U(1 - s, 1 + s); 0: off."
    )
    hue: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="Hue shift drawn from U(-h, h), in turns of the colour wheel.",
    )

    @property
    def active(self) -> bool:
        """Whether any transform can happen (all-zero options leave rows untouched)."""
        return any(
            (self.hflip, self.scale_crop, self.brightness, self.contrast, self.saturation, self.hue)
        )


def augment_rng(seed: int, epoch: int, image_id: str) -> random.Random:
    """The random source of one frame's augmentation in one epoch: independent of the example
    draw (:func:`sam2_finetune.tasks.example_rng`), the same on every process and on resume."""
    return random.Random(f"augment:{seed}:{epoch}:{image_id}")


def _objects(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    objects = row.get("objects") or []
    if isinstance(objects, Mapping):  # a columnar struct (dict of lists), as some readers give
        keys = list(objects)
        return [
            dict(zip(keys, values, strict=True)) for values in zip(*objects.values(), strict=True)
        ]
    return [dict(obj) for obj in objects]


def _source_index(size: int, scaled: int, offset: int) -> np.ndarray:
    """For each output index ``0..size``: the source index (nearest neighbour, pixel centres)
    after resizing ``size -> scaled`` and shifting by ``offset``; -1 outside the scaled frame."""
    at = np.arange(size, dtype=np.int64) + offset
    inside = (at >= 0) & (at < scaled)
    source = ((2 * at + 1) * size) // (2 * scaled)
    return np.where(inside, source, -1)


def _offset(rng: random.Random, scaled: int, size: int) -> int:
    """Zoomed in: where the window starts in the scaled frame; zoomed out: minus where the
    scaled frame is placed on the canvas. Uniform over the positions that keep it inside."""
    if scaled >= size:
        return rng.randint(0, scaled - size)
    return -rng.randint(0, size - scaled)


def _window(index: np.ndarray, low: int, high: int) -> slice:
    """The output positions whose source index lies in ``low..high`` (inclusive): one run,
    since the map is monotonic (reversed by a flip) apart from the -1 of padding."""
    inside = np.flatnonzero((index >= low) & (index <= high))
    return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)


def _map_mask(rle: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The mask of ``rle`` moved by the index maps. Only the window of output pixels that the
    mask's own box maps to is gathered (a few percent of the frame for a typical object)."""
    x, y, w, h = (int(v) for v in rle_bbox(rle))
    out = np.zeros((rows.size, cols.size), dtype=np.uint8)
    if w <= 0 or h <= 0:
        return out
    row_window, col_window = _window(rows, y, y + h - 1), _window(cols, x, x + w - 1)
    out[row_window, col_window] = rle_decode(rle)[rows[row_window]][:, cols[col_window]]
    return out


def _mask_box(mask: np.ndarray) -> list[float]:
    """``[x, y, w, h]`` of a non-empty mask, inclusive extents (as ``pycocotools.toBbox``)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def _color_jitter(image: Any, options: AugmentOptions, rng: random.Random) -> Any:
    from PIL import Image, ImageEnhance

    for strength, enhancer in (
        (options.brightness, ImageEnhance.Brightness),
        (options.contrast, ImageEnhance.Contrast),
        (options.saturation, ImageEnhance.Color),
    ):
        if strength > 0:
            image = enhancer(image).enhance(rng.uniform(max(0.0, 1 - strength), 1 + strength))
    if options.hue > 0:
        shift = round(rng.uniform(-options.hue, options.hue) * 256)
        h, s, v = image.convert("HSV").split()
        h = h.point(lambda value: (value + shift) % 256)
        image = Image.merge("HSV", (h, s, v)).convert("RGB")
    return image


def augment_row(
    row: Mapping[str, Any], image: Any, options: AugmentOptions | None, rng: random.Random
) -> tuple[dict[str, Any] | Mapping[str, Any], Any]:
    """``(row, image)`` transformed by ``options`` with draws from ``rng`` (see the module).

    The row returned is a new dict (the input is not changed) with ``objects`` transformed,
    objects cut away dropped, and ``width`` / ``height`` the image's; ``image`` is an RGB PIL
    image of the row's frame. Options that are all off return ``row`` and ``image`` themselves.
    """
    if options is None or not options.active:
        return row, image
    width, height = image.size
    flip = options.hflip > 0 and rng.random() < options.hflip
    scale = 1.0
    offset_x = offset_y = 0
    if options.scale_crop > 0 and rng.random() < options.scale_crop:
        scale = rng.uniform(options.scale_min, options.scale_max)
    scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (scaled_w, scaled_h) != (width, height):
        offset_x, offset_y = _offset(rng, scaled_w, width), _offset(rng, scaled_h, height)
    geometric = flip or (scaled_w, scaled_h) != (width, height)

    out = dict(row)
    if geometric:
        from PIL import Image

        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if (scaled_w, scaled_h) != (width, height):
            scaled = image.resize((scaled_w, scaled_h), Image.Resampling.BILINEAR)
            image = Image.new("RGB", (width, height), FILL)
            image.paste(scaled, (-offset_x, -offset_y))
        rows = _source_index(height, scaled_h, offset_y)
        cols = _source_index(width, scaled_w, offset_x)
        if flip:
            cols = np.where(cols >= 0, width - 1 - cols, -1)
        objects = []
        for obj in _objects(row):
            _, _, w, h = (float(v) for v in obj["bbox"])
            if w <= 0 or h <= 0 or obj.get("area", 1) == 0:
                continue  # already invisible: nothing to transform, nothing to answer
            mask = _map_mask(obj["segmentation"], rows, cols)
            area = int(np.count_nonzero(mask))
            if area == 0:
                continue  # cut away by the crop
            obj["segmentation"] = rle_encode(mask)
            obj["bbox"] = _mask_box(mask)
            obj["area"] = area
            objects.append(obj)
        out["objects"] = objects
    image = _color_jitter(image, options, rng)
    out["width"], out["height"] = image.size
    return out, image
