"""Pictures of what a model answered, drawn on the image it was asked about.

- :func:`draw_objects`: predicted objects (dashed, thinner) over the true ones (solid), boxes and
  predicted polygons, each class in its own colour (the same colour for a label in every
  picture of a run: its position in the training labels picks it), labels written on a filled
  tag so they stay legible on any background, and a legend strip under the image. What
  ``evaluate``'s grid and ``predict``'s overlays show.
- :func:`prediction_picture`: the training callback's quick picture for TensorBoard (truth green,
  prediction red, an array). It lives here because ``train`` may import ``evaluate``, never the
  reverse.

Pure PIL (no matplotlib): a picture per image is cheap and needs no display backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sam2_finetune.answer_formats import AnswerObject
from sam2_finetune.metrics import GroundTruthObject

__all__ = ["PALETTE", "UNKNOWN_COLOUR", "class_colour", "draw_objects", "prediction_picture"]

# Tableau's 20 colours (matplotlib's tab20 order, dark shades first): distinct on photos.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
)  # fmt: skip
# A predicted label outside the training labels.
UNKNOWN_COLOUR = (255, 0, 255)


def class_colour(label: str, labels: Sequence[str]) -> tuple[int, int, int]:
    """The colour of ``label``: its position in ``labels`` picks a :data:`PALETTE` entry (so a
    class keeps its colour across pictures); :data:`UNKNOWN_COLOUR` for a label not in them."""
    try:
        return PALETTE[list(labels).index(label) % len(PALETTE)]
    except ValueError:
        return UNKNOWN_COLOUR


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _dashed_line(draw: Any, points: Sequence[tuple[float, float]], colour: Any, width: int) -> None:
    """A closed dashed outline through ``points`` (PIL draws no dashes)."""
    dash = max(4, 3 * width)
    for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]], strict=True):
        length = math.hypot(x1 - x0, y1 - y0)
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            a, b = i / steps, min(1.0, (i + 1) / steps)
            draw.line(
                (x0 + (x1 - x0) * a, y0 + (y1 - y0) * a, x0 + (x1 - x0) * b, y0 + (y1 - y0) * b),
                fill=colour,
                width=width,
            )


def _tag(
    draw: Any, xy: tuple[float, float], text: str, colour: Any, font: Any, bounds: Any
) -> None:
    """``text`` in white (or black on light colours) on a ``colour`` tag at ``xy``, kept inside
    the picture."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    x = min(max(0.0, xy[0]), max(0.0, bounds[0] - w))
    y = min(max(0.0, xy[1] - h), max(0.0, bounds[1] - h))
    draw.rectangle((x, y, x + w, y + h), fill=colour)
    ink = (0, 0, 0) if sum(colour[:3]) > 450 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)


def draw_objects(
    image: Any,
    predicted: Sequence[AnswerObject],
    truth: Sequence[GroundTruthObject] | None = None,
    labels: Sequence[str] = (),
) -> Any:
    """``image`` (a ``PIL.Image``) with ``truth`` drawn solid and ``predicted`` dashed and
    thinner (boxes, and polygons when an answer has them), a colour per class of ``labels``
    (:func:`class_colour`), label tags, and a legend strip underneath. Returns a new RGB image;
    ``image`` is left as it was.

    >>> from PIL import Image
    >>> picture = draw_objects(Image.new("RGB", (64, 48)), [AnswerObject("car", (4, 4, 20, 20))],
    ...                        labels=["car"])
    >>> picture.width, picture.height > 48
    (64, True)
    """
    from PIL import Image, ImageDraw

    base = image.convert("RGB")
    width, height = base.size
    scale = max(width, height)
    font = _font(max(10, scale // 45))
    thick = max(2, scale // 200)
    thin = max(1, thick // 2)
    truth = list(truth or [])
    drawn = {obj.label for obj in [*truth, *predicted]}
    # The legend: the classes drawn, in training-label order, then unknown labels.
    shown = [label for label in labels if label in drawn]
    shown += sorted(drawn - set(shown))

    legend_font = _font(max(10, scale // 50))
    probe = ImageDraw.Draw(base)
    entries = [
        *shown,
        "solid: truth   dashed: predicted" if truth else "dashed: predicted",
    ]
    row_height = int(probe.textbbox((0, 0), "Ag", font=legend_font)[3]) + 6
    # Lay the entries out left to right, wrapping at the image width.
    rows, x = 1, 4
    for i, entry in enumerate(entries):
        w = int(probe.textbbox((0, 0), entry, font=legend_font)[2]) + (32 if i < len(shown) else 18)
        if x + w > width and x > 4:
            rows, x = rows + 1, 4
        x += w
    legend_height = rows * row_height + 4

    picture = Image.new("RGB", (width, height + legend_height), (255, 255, 255))
    picture.paste(base, (0, 0))
    draw = ImageDraw.Draw(picture)
    bounds = (width, height)
    for obj in truth:
        colour = class_colour(obj.label, labels)
        x0, y0, w, h = obj.bbox
        draw.rectangle((x0, y0, x0 + w, y0 + h), outline=colour, width=thick)
        _tag(draw, (x0, y0), obj.label, colour, font, bounds)
    for obj in predicted:
        colour = class_colour(obj.label, labels)
        x0, y0, w, h = obj.bbox
        outlines = [[(float(p[0]), float(p[1])) for p in poly] for poly in obj.polygons or []]
        outlines = [poly for poly in outlines if len(poly) >= 3]
        if not outlines:
            outlines = [[(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]]
        for outline in outlines:
            _dashed_line(draw, outline, colour, thin)
        _tag(draw, (x0, y0 + h + font.size + 4), f"{obj.label}?", colour, font, bounds)

    x, y = 4, height + 4
    for i, entry in enumerate(entries):
        swatch = i < len(shown)
        w = int(draw.textbbox((0, 0), entry, font=legend_font)[2]) + (32 if swatch else 18)
        if x + w > width and x > 4:
            x, y = 4, y + row_height
        if swatch:
            colour = class_colour(shown[i], labels)
            draw.rectangle((x, y + 2, x + 10, y + row_height - 6), fill=colour)
        draw.text((x + (14 if swatch else 0), y), entry, fill=(0, 0, 0), font=legend_font)
        x += w
    return picture


def prediction_picture(image: Any, truth: Any, parsed: Any) -> Any:
    """``image`` as an RGB ``uint8`` array (height, width, 3) with the true boxes in green and
    the predicted ones in red, each with its label: what TensorBoard shows per evaluation
    (``truth``: a :class:`~sam2_finetune.metrics.GroundTruth`, ``parsed``: a
    :class:`~sam2_finetune.answer_formats.ParsedAnswer`)."""
    import numpy as np
    from PIL import ImageDraw

    picture = image.convert("RGB").copy()
    draw = ImageDraw.Draw(picture)
    for objects, colour in ((truth.objects, (40, 200, 60)), (parsed.objects, (230, 40, 40))):
        for obj in objects:
            x, y, w, h = obj.bbox
            draw.rectangle((x, y, x + w, y + h), outline=colour, width=2)
            draw.text((x + 2, y + 1), obj.label, fill=colour)
    return np.asarray(picture)
