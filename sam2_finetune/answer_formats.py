"""Answer formats: how each model family writes boxes and polygons, as one table of data.

A model learns whatever text we put in the assistant turn, and each family was pretrained on its
own syntax (``docs/answer-formats.md``). The canonical dataset stays format-free: objects are
rendered to a family's text only when building examples (``render_answer``), and every renderer
has an exact inverse (``parse_answer``) used on generated text at evaluation time.

Coordinates: an :class:`AnswerObject` holds a box ``(x, y, w, h)`` and optional polygons in image
pixels with pixel-*edge* coordinates (the COCO convention: ``x + w`` may equal the image width).
Each format maps them to the integers it writes through a :class:`Grid`; one integer step is the
format's quantisation step and ``parse(render(objects))`` gives the boxes back within it.

``parse_answer`` never raises on model output: whatever can be read is returned, and anything
that could not (truncated JSON, stray text, out-of-range or swapped coordinates) is listed in
``problems`` with ``ok=False``. It does raise :class:`OptionsError` on caller mistakes (unknown
format, missing ``resized_wh``), which are bugs, not model behaviour.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sam2_finetune.errors import OptionsError, describe

TASKS = ("detect", "ground", "segment", "count")

Point = tuple[float, float]


@dataclass(frozen=True)
class AnswerObject:
    """One object of an answer: a label, a box ``(x, y, w, h)`` in image pixels, and optionally
    the polygons of its mask (several for a multi-part mask), also in image pixels."""

    label: str
    bbox: tuple[float, float, float, float]
    polygons: list[list[Point]] | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as ``(x1, y1, x2, y2)``."""
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


@dataclass(frozen=True)
class ParsedAnswer:
    """What :func:`parse_answer` read from a generated text.

    ``objects`` in image pixels; ``count`` when the text states a number (the ``count`` task);
    ``ok`` is False when any part of the text could not be read, and ``problems`` says what.
    """

    objects: list[AnswerObject]
    count: int | None
    ok: bool
    problems: list[str]


@dataclass(frozen=True)
class Grid:
    """Maps image-pixel coordinates to a format's integers and back.

    ``scale_x`` is the integer written for the right edge of the image (``round`` mode), or the
    number of bins (``bins`` mode, Florence-2: ``floor`` into bins, read back at bin centres).
    """

    width: int
    height: int
    scale_x: int
    scale_y: int
    bins: bool = False

    @property
    def max_x(self) -> int:
        return self.scale_x - 1 if self.bins else self.scale_x

    @property
    def max_y(self) -> int:
        return self.scale_y - 1 if self.bins else self.scale_y

    @property
    def step(self) -> tuple[float, float]:
        """One integer step in image pixels (x, y)."""
        return (self.width / self.scale_x, self.height / self.scale_y)

    def to_x(self, v: float) -> int:
        return self._to(v, self.width, self.scale_x, self.max_x)

    def to_y(self, v: float) -> int:
        return self._to(v, self.height, self.scale_y, self.max_y)

    def from_x(self, q: float) -> float:
        return (q + 0.5 if self.bins else q) * self.width / self.scale_x

    def from_y(self, q: float) -> float:
        return (q + 0.5 if self.bins else q) * self.height / self.scale_y

    def _to(self, v: float, size: int, scale: int, top: int) -> int:
        scaled = v * scale / size
        q = math.floor(scaled) if self.bins else math.floor(scaled + 0.5)
        return min(max(q, 0), top)


@dataclass(frozen=True)
class AnswerFormat:
    """One row of :data:`ANSWER_FORMATS`: how a family writes answers and how to read them.

    ``task_prompts`` are fixed prompts the family was pretrained on (PaliGemma's ``detect car``,
    Florence-2's ``<OD>``), with ``{label}`` / ``{labels}`` placeholders; tasks missing there use
    the phrasing templates of :mod:`sam2_finetune.tasks`, followed by ``prompt_hint``.
    """

    name: str
    family: str
    coordinates: str
    render: Callable[[Sequence[AnswerObject], Grid, bool], str]
    parse: Callable[[str, Grid, list[str]], list[AnswerObject]]
    grid: Callable[[tuple[int, int], tuple[int, int] | None], Grid]
    needs_resized_wh: bool = False
    supports_polygons: bool = False
    empty_answer: str = "None"
    render_count: Callable[[int], str] = str
    task_prompts: Mapping[str, str] = field(default_factory=dict)
    prompt_hint: str = ""
    prompt_label_separator: str = ", "
    forbidden_in_labels: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Grids


def _relative(scale: int) -> Callable[[tuple[int, int], tuple[int, int] | None], Grid]:
    def grid(image_wh: tuple[int, int], resized_wh: tuple[int, int] | None) -> Grid:
        return Grid(image_wh[0], image_wh[1], scale, scale)

    return grid


def _florence_bins(image_wh: tuple[int, int], resized_wh: tuple[int, int] | None) -> Grid:
    return Grid(image_wh[0], image_wh[1], 1000, 1000, bins=True)


def _resized_pixels(image_wh: tuple[int, int], resized_wh: tuple[int, int] | None) -> Grid:
    assert resized_wh is not None  # checked by _checked_grid
    return Grid(image_wh[0], image_wh[1], resized_wh[0], resized_wh[1])


# --------------------------------------------------------------------------------------------
# Shared rendering helpers


def _box_ints(obj: AnswerObject, grid: Grid) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = obj.xyxy
    return (grid.to_x(x1), grid.to_y(y1), grid.to_x(x2), grid.to_y(y2))


def _polygon_ints(polygon: Sequence[Point], grid: Grid) -> list[list[int]]:
    return [[grid.to_x(x), grid.to_y(y)] for x, y in polygon]


def _groups(objects: Sequence[AnswerObject]) -> list[tuple[str, list[AnswerObject]]]:
    """Runs of consecutive objects with the same label (formats that write a label once)."""
    groups: list[tuple[str, list[AnswerObject]]] = []
    for obj in objects:
        if groups and groups[-1][0] == obj.label:
            groups[-1][1].append(obj)
        else:
            groups.append((obj.label, [obj]))
    return groups


# --------------------------------------------------------------------------------------------
# Shared parsing helpers

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_GAP_OK = re.compile(r"[\s,;.]*")
# Markers a decoder may leave around the answer when special tokens are kept.
_WRAPPERS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|end|>",
    "<end_of_turn>",
    "<eos>",
    "<bos>",
    "</s>",
    "<s>",
    "<pad>",
)
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    )
}


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _is_number(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # a JSON integer with hundreds of digits
        return False


def _read_coord(q: float, axis: str, grid: Grid, problems: list[str]) -> float:
    top = grid.max_x if axis == "x" else grid.max_y
    if q < 0 or q > top:
        problems.append(f"{axis} coordinate {q:g} outside 0..{top}; clipped")
        q = min(max(q, 0), top)
    return grid.from_x(q) if axis == "x" else grid.from_y(q)


def _read_box(
    values: object, grid: Grid, problems: list[str], order: str = "xyxy"
) -> tuple[float, float, float, float] | None:
    """Four numbers (``xyxy`` or PaliGemma's ``yxyx``) to an ``(x, y, w, h)`` pixel box."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        problems.append(f"a box needs 4 numbers, found {_short(str(values))}")
        return None
    if not all(_is_number(v) for v in values):
        problems.append(f"a box has a value that is not a finite number: {_short(str(values))}")
        return None
    a, b, c, d = (float(v) for v in values)
    x1, y1, x2, y2 = (b, a, d, c) if order == "yxyx" else (a, b, c, d)
    if x2 < x1 or y2 < y1:
        problems.append(f"box corners in the wrong order {_short(str(values))}; swapped")
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    px1, px2 = (_read_coord(v, "x", grid, problems) for v in (x1, x2))
    py1, py2 = (_read_coord(v, "y", grid, problems) for v in (y1, y2))
    return (px1, py1, px2 - px1, py2 - py1)


def _read_polygon(values: Sequence[float], grid: Grid, problems: list[str]) -> list[Point] | None:
    """Flat ``x, y, x, y, ...`` integers to a pixel polygon (3 points at least)."""
    if len(values) % 2:
        problems.append("a polygon has an odd number of coordinates; dropped the last")
        values = values[:-1]
    if len(values) < 6:
        problems.append(f"a polygon needs 3 points at least, found {len(values) // 2}; dropped")
        return None
    return [
        (_read_coord(x, "x", grid, problems), _read_coord(y, "y", grid, problems))
        for x, y in zip(values[0::2], values[1::2], strict=True)
    ]


def _bounds(polygons: Sequence[Sequence[Point]]) -> tuple[float, float, float, float]:
    xs = [x for polygon in polygons for x, _ in polygon]
    ys = [y for polygon in polygons for _, y in polygon]
    return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _check_gap(text: str, problems: list[str]) -> None:
    if not _GAP_OK.fullmatch(text):
        problems.append(f"unexpected text {_short(text.strip())}")


def _unwrap(text: str) -> str:
    """Strip the decoder's markers (``<|im_end|>``, ``</s>``, padding, ...) around the answer."""
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for marker in _WRAPPERS:
            if text.startswith(marker):
                text, changed = text[len(marker) :].strip(), True
            if text.endswith(marker):
                text, changed = text[: -len(marker)].strip(), True
    return text


def _parse_count(text: str) -> int | None:
    """A stated count: ``3``, ``{"count": 3}``, ``three``, or a short sentence with one number."""
    match = re.fullmatch(r"\{\s*\"count\"\s*:\s*(\d{1,9})\s*\}|(\d{1,9})\.?", text)
    if match:
        return int(match.group(1) or match.group(2))
    if re.search(r"[<\[{]", text) or len(text) > 200:
        return None
    numbers = re.findall(r"(?<![\w.])\d{1,9}(?![\w.]\d)", text)
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS]
    if len(numbers) == 1 and not words:
        return int(numbers[0])
    if not numbers and len(words) == 1:
        return _NUMBER_WORDS[words[0]]
    return None


# --------------------------------------------------------------------------------------------
# JSON formats: generic ``json`` (0-1000) and Qwen2.5-VL (pixels after smart_resize, in a fence)


def _json_item(obj: AnswerObject, grid: Grid, polygons: bool, label_first: bool) -> dict:
    box = list(_box_ints(obj, grid))
    item = {"label": obj.label, "bbox_2d": box} if label_first else {"bbox_2d": box}
    if not label_first:
        item["label"] = obj.label
    if polygons and obj.polygons:
        parts = [_polygon_ints(p, grid) for p in obj.polygons]
        # One part is written as [[x, y], ...] (the common case, as the docs show); several parts
        # as a list of those. The parser reads both.
        item["polygon"] = parts[0] if len(parts) == 1 else parts
    return item


def _render_json(objects: Sequence[AnswerObject], grid: Grid, polygons: bool) -> str:
    return json.dumps([_json_item(o, grid, polygons, True) for o in objects], ensure_ascii=False)


def _render_qwen25(objects: Sequence[AnswerObject], grid: Grid, polygons: bool) -> str:
    lines = ",\n".join(
        "\t" + json.dumps(_json_item(o, grid, polygons, False), ensure_ascii=False) for o in objects
    )
    return f"```json\n[\n{lines}\n]\n```"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _strip_fence(text: str) -> str:
    if text.startswith("```"):
        first_newline = text.find("\n")
        text = text[first_newline + 1 :] if first_newline != -1 else text[3:].lstrip("json")
    text = text.rstrip()
    if text.endswith("```"):
        text = text[:-3]
    return text.strip()


def _json_polygons(value: object, grid: Grid, problems: list[str]) -> list[list[Point]] | None:
    if not isinstance(value, list) or not value:
        problems.append(f"'polygon' is not a list of points: {_short(str(value))}")
        return None
    parts = (
        [value] if isinstance(value[0], list) and value[0] and _is_number(value[0][0]) else value
    )
    polygons = []
    for part in parts:
        if not isinstance(part, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in part
        ):
            problems.append(f"a polygon is not a list of [x, y] pairs: {_short(str(part))}")
            continue
        polygon = _read_polygon([float(v) for p in part for v in p], grid, problems)
        if polygon:
            polygons.append(polygon)
    return polygons or None


def _json_object(item: object, grid: Grid, problems: list[str]) -> AnswerObject | None:
    if not isinstance(item, dict):
        problems.append(f"expected an object, found {_short(json.dumps(item))}")
        return None
    label = item.get("label", "")
    if not isinstance(label, str):
        problems.append(f"'label' is not a string: {_short(json.dumps(label))}")
        label = str(label)
    polygons = _json_polygons(item["polygon"], grid, problems) if "polygon" in item else None
    if "bbox_2d" in item:
        box = _read_box(item["bbox_2d"], grid, problems)
    elif polygons:
        box = _bounds(polygons)
    else:
        problems.append(f"object without 'bbox_2d': {_short(json.dumps(item, ensure_ascii=False))}")
        return None
    if box is None:
        return None
    return AnswerObject(label, box, polygons)


def _parse_json(text: str, grid: Grid, problems: list[str]) -> list[AnswerObject]:
    body = _strip_fence(text)
    try:
        value: Any = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        problems.append("not valid JSON (truncated or malformed); kept the complete objects")
        return _scan_json_objects(body, grid, problems)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        problems.append(f"expected a JSON list of objects, found {_short(body)}")
        return []
    objects = [_json_object(item, grid, problems) for item in value]
    return [o for o in objects if o is not None]


def _scan_json_objects(body: str, grid: Grid, problems: list[str]) -> list[AnswerObject]:
    """Every complete ``{...}`` object with a box or polygon in broken JSON (a truncated list)."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    objects = []
    start = body.find("{")
    while start != -1:
        try:
            item, end = decoder.raw_decode(body, start)
        except (ValueError, RecursionError):
            start = body.find("{", start + 1)
            continue
        if isinstance(item, dict) and ("bbox_2d" in item or "polygon" in item):
            obj = _json_object(item, grid, problems)
            if obj is not None:
                objects.append(obj)
        start = body.find("{", end)
    return objects


# --------------------------------------------------------------------------------------------
# Label / box token formats: Qwen2-VL, InternVL, MiniCPM-V share one scanner


@dataclass(frozen=True)
class _RefBox:
    ref: tuple[str, str]
    box: tuple[str, str]
    write_boxes: Callable[[list[tuple[int, int, int, int]]], str]
    read_boxes: Callable[[str], list[list[float]] | None]
    separator: str

    def render(self, objects: Sequence[AnswerObject], grid: Grid, polygons: bool) -> str:
        return self.separator.join(
            f"{self.ref[0]}{label}{self.ref[1]}"
            + self.write_boxes([_box_ints(o, grid) for o in group])
            for label, group in _groups(objects)
        )

    def parse(self, text: str, grid: Grid, problems: list[str]) -> list[AnswerObject]:
        (ro, rc), (bo, bc) = self.ref, self.box
        pattern = re.compile(
            f"{re.escape(ro)}(.*?){re.escape(rc)}|{re.escape(bo)}(.*?){re.escape(bc)}", re.S
        )
        objects: list[AnswerObject] = []
        label, label_used, position = "", True, 0
        for match in pattern.finditer(text):
            _check_gap(text[position : match.start()], problems)
            position = match.end()
            if match.group(1) is not None:
                if not label_used:
                    problems.append(f"label {_short(label)} has no box")
                label, label_used = match.group(1).strip(), False
                continue
            boxes = self.read_boxes(match.group(2))
            if boxes is None:
                problems.append(f"unreadable box {_short(match.group(0))}")
                continue
            label_used = True
            for values in boxes:
                box = _read_box(values, grid, problems)
                if box is not None:
                    objects.append(AnswerObject(label, box))
        _check_gap(text[position:], problems)
        if not label_used:
            problems.append(f"label {_short(label)} has no box")
        return objects


def _qwen2_boxes(boxes: list[tuple[int, int, int, int]]) -> str:
    return "".join(f"<|box_start|>({a},{b}),({c},{d})<|box_end|>" for a, b, c, d in boxes)


def _read_qwen2_box(content: str) -> list[list[float]] | None:
    n = _NUMBER
    match = re.fullmatch(
        rf"\s*\(\s*({n})\s*,\s*({n})\s*\)\s*,\s*\(\s*({n})\s*,\s*({n})\s*\)\s*", content
    )
    return [[float(v) for v in match.groups()]] if match else None


def _internvl_boxes(boxes: list[tuple[int, int, int, int]]) -> str:
    return "<box>" + json.dumps([list(b) for b in boxes]) + "</box>"


def _read_internvl_box(content: str) -> list[list[float]] | None:
    try:
        value = json.loads(content, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value):
        value = [value]  # a single box without the outer brackets
    if not isinstance(value, list) or not value:
        return None
    return value


def _minicpm_boxes(boxes: list[tuple[int, int, int, int]]) -> str:
    return "".join(f"<box>{a} {b} {c} {d}</box>" for a, b, c, d in boxes)


def _read_minicpm_box(content: str) -> list[list[float]] | None:
    n = _NUMBER
    match = re.fullmatch(rf"\s*({n})[\s,]+({n})[\s,]+({n})[\s,]+({n})\s*", content)
    return [[float(v) for v in match.groups()]] if match else None


_QWEN2 = _RefBox(
    ("<|object_ref_start|>", "<|object_ref_end|>"),
    ("<|box_start|>", "<|box_end|>"),
    _qwen2_boxes,
    _read_qwen2_box,
    "",
)
_INTERNVL = _RefBox(
    ("<ref>", "</ref>"), ("<box>", "</box>"), _internvl_boxes, _read_internvl_box, "\n"
)
_MINICPM = _RefBox(
    ("<ref>", "</ref>"), ("<box>", "</box>"), _minicpm_boxes, _read_minicpm_box, "\n"
)


# --------------------------------------------------------------------------------------------
# PaliGemma: <locYYYY> x4 in y_min, x_min, y_max, x_max order, then the label; " ; " between


_LOC4 = re.compile(r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>")


def _render_paligemma(objects: Sequence[AnswerObject], grid: Grid, polygons: bool) -> str:
    parts = []
    for obj in objects:
        x1, y1, x2, y2 = _box_ints(obj, grid)
        parts.append(f"<loc{y1:04d}><loc{x1:04d}><loc{y2:04d}><loc{x2:04d}> {obj.label}")
    return " ; ".join(parts)


def _parse_paligemma(text: str, grid: Grid, problems: list[str]) -> list[AnswerObject]:
    matches = list(_LOC4.finditer(text))
    if not matches:
        problems.append(f"no <locYYYY> boxes in {_short(text)}")
        return []
    _check_gap(text[: matches[0].start()], problems)
    objects = []
    for k, match in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        label = text[match.end() : end]
        if k + 1 < len(matches):
            label = re.sub(r"\s*;\s*$", "", label)
        elif label.rstrip().endswith(";"):
            problems.append("answer ends with ';' (truncated)")
            label = label.rstrip()[:-1]
        # PaliGemma's own segmentation tokens carry a mask we cannot decode: ignore them.
        label = re.sub(r"<seg\d{3}>", "", label)
        if "<loc" in label:
            problems.append(f"incomplete location tokens {_short(label.strip())}")
            label = re.sub(r"<loc\d*>?", "", label)
        box = _read_box([int(v) for v in match.groups()], grid, problems, order="yxyx")
        if box is not None:
            objects.append(AnswerObject(label.strip(), box))
    return objects


# --------------------------------------------------------------------------------------------
# Florence-2: label<loc_x1><loc_y1><loc_x2><loc_y2>... ; polygons label<poly><loc_x><loc_y>...


def _florence_locs(values: Iterable[int]) -> str:
    return "".join(f"<loc_{v}>" for v in values)


def _render_florence(objects: Sequence[AnswerObject], grid: Grid, polygons: bool) -> str:
    out = []
    for label, group in _groups(objects):
        out.append(label)
        for obj in group:
            if polygons:
                rings = [_polygon_ints(p, grid) for p in obj.polygons or []]
                out.append(
                    "<poly>"
                    + "<sep>".join(_florence_locs(v for pt in ring for v in pt) for ring in rings)
                    + "</poly>"
                )
            else:
                out.append(_florence_locs(_box_ints(obj, grid)))
    return "".join(out)


_FLORENCE_TOKEN = re.compile(r"<loc_(\d{1,6})>|<poly>|</poly>|<sep>|[^<]+|<")


def _parse_florence(text: str, grid: Grid, problems: list[str]) -> list[AnswerObject]:
    objects: list[AnswerObject] = []
    label, pending, locs = "", "", []
    rings: list[list[int]] | None = None  # inside <poly>...</poly>

    def flush_boxes() -> None:
        if len(locs) % 4:
            problems.append(f"incomplete box: {len(locs) % 4} location tokens left over")
        for i in range(0, len(locs) - 3, 4):
            box = _read_box(locs[i : i + 4], grid, problems)
            if box is not None:
                objects.append(AnswerObject(label, box))
        locs.clear()

    def close_poly() -> None:
        polygons = [p for p in (_read_polygon(r, grid, problems) for r in rings or []) if p]
        if polygons:
            objects.append(AnswerObject(label, _bounds(polygons), polygons))
        else:
            problems.append("a <poly> without a usable polygon")

    def take_label() -> None:
        nonlocal label, pending
        if pending.strip():
            label = pending.strip()
        pending = ""

    for match in _FLORENCE_TOKEN.finditer(text):
        token = match.group(0)
        if match.group(1) is not None:
            if rings is not None:
                rings[-1].append(int(match.group(1)))
            else:
                take_label()
                locs.append(int(match.group(1)))
        elif token == "<poly>":
            if rings is not None:
                problems.append("<poly> inside <poly>")
                close_poly()
            flush_boxes()
            take_label()
            rings = [[]]
        elif token == "<sep>":
            if rings is None:
                problems.append("<sep> outside <poly>")
            else:
                rings.append([])
        elif token == "</poly>":
            if rings is None:
                problems.append("</poly> without <poly>")
            else:
                close_poly()
                rings = None
        elif rings is not None:
            problems.append(f"text inside <poly>: {_short(token)}")
        else:
            flush_boxes()
            pending += token
    if rings is not None:
        problems.append("<poly> not closed (truncated)")
        close_poly()
    flush_boxes()
    if pending.strip():
        problems.append(f"text without boxes {_short(pending.strip())}")
    return objects


# --------------------------------------------------------------------------------------------
# The table


def _json_count(n: int) -> str:
    return json.dumps({"count": n})


_REF_BOX_FORBIDDEN = ("<ref>", "</ref>", "<box>", "</box>")

ANSWER_FORMATS: dict[str, AnswerFormat] = {
    "json": AnswerFormat(
        name="json",
        family="any (default; SmolVLM / Idefics3, LLaVA, Gemma 3, ...)",
        coordinates="integers 0-1000 relative to image width / height",
        render=_render_json,
        parse=_parse_json,
        grid=_relative(1000),
        supports_polygons=True,
        empty_answer="[]",
        render_count=_json_count,
        prompt_hint="Answer in JSON.",
    ),
    "qwen2_vl": AnswerFormat(
        name="qwen2_vl",
        family="Qwen2-VL",
        coordinates="integers 0-1000 relative to image width / height",
        render=_QWEN2.render,
        parse=_QWEN2.parse,
        grid=_relative(1000),
        forbidden_in_labels=("<|",),
    ),
    "qwen2_5_vl": AnswerFormat(
        name="qwen2_5_vl",
        family="Qwen2.5-VL",
        coordinates="absolute pixels of the image after the processor's smart_resize",
        render=_render_qwen25,
        parse=_parse_json,
        grid=_resized_pixels,
        needs_resized_wh=True,
        supports_polygons=True,
        empty_answer="```json\n[]\n```",
        prompt_hint="Output the coordinates in JSON format.",
    ),
    "paligemma": AnswerFormat(
        name="paligemma",
        family="PaliGemma / PaliGemma 2",
        coordinates="<locYYYY>: round(v / size * 1023), order y_min, x_min, y_max, x_max",
        render=_render_paligemma,
        parse=_parse_paligemma,
        grid=_relative(1023),
        task_prompts={
            "detect": "detect {labels}",
            "ground": "detect {label}",
            "count": "answer en how many instances of {label} are there?",
        },
        prompt_label_separator=" ; ",
        # A PaliGemma answer ends with a label, so a label may not end like a decoder marker.
        forbidden_in_labels=("<loc", "<seg", ";", *_WRAPPERS),
    ),
    "florence2": AnswerFormat(
        name="florence2",
        family="Florence-2",
        coordinates="<loc_N>: 1000 bins, N = floor(v / size * 1000), read back at bin centres",
        render=_render_florence,
        parse=_parse_florence,
        grid=_florence_bins,
        supports_polygons=True,
        task_prompts={
            "detect": "<OD>",
            "ground": "<OPEN_VOCABULARY_DETECTION>{label}",
            "segment": "<REFERRING_EXPRESSION_SEGMENTATION>{label}",
        },
        forbidden_in_labels=("<",),
    ),
    "internvl": AnswerFormat(
        name="internvl",
        family="InternVL",
        coordinates="integers 0-1000 relative to image width / height",
        render=_INTERNVL.render,
        parse=_INTERNVL.parse,
        grid=_relative(1000),
        forbidden_in_labels=_REF_BOX_FORBIDDEN,
    ),
    "minicpm_v": AnswerFormat(
        name="minicpm_v",
        family="MiniCPM-V",
        coordinates="integers 0-1000 relative to image width / height",
        render=_MINICPM.render,
        parse=_MINICPM.parse,
        grid=_relative(1000),
        forbidden_in_labels=_REF_BOX_FORBIDDEN,
    ),
}


# --------------------------------------------------------------------------------------------
# Public functions


def get_format(fmt: str) -> AnswerFormat:
    """The :data:`ANSWER_FORMATS` row named ``fmt``; :class:`OptionsError` naming the choices."""
    try:
        return ANSWER_FORMATS[fmt]
    except (KeyError, TypeError):
        raise OptionsError(
            describe(
                "unknown answer format",
                field="answer_format",
                expected=" | ".join(ANSWER_FORMATS),
                found=repr(fmt),
                fix="pick one of the formats listed in docs/answer-formats.md",
            )
        ) from None


def format_grid(
    fmt: str, image_wh: tuple[int, int], *, resized_wh: tuple[int, int] | None = None
) -> Grid:
    """The coordinate grid of ``fmt`` for an image (``grid.step`` is its quantisation step)."""
    spec = get_format(fmt)
    problems = []
    for name, wh in (("image_wh", image_wh), ("resized_wh", resized_wh)):
        if wh is None:
            continue
        if (
            not isinstance(wh, (tuple, list))
            or len(wh) != 2
            or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in wh
            )
        ):
            problems.append(
                describe(
                    "a size must be two positive integers (width, height)",
                    field=name,
                    found=repr(wh),
                )
            )
    if spec.needs_resized_wh and resized_wh is None:
        problems.append(
            describe(
                f"answer format {fmt!r} writes pixels of the image after the processor's resize",
                field="resized_wh",
                expected="(width, height) after resizing",
                found=None,
                fix="pass resized_wh computed with qwen_smart_resize(height, width, ...) using "
                "the processor's min_pixels / max_pixels",
            )
        )
    if problems:
        raise OptionsError(" ".join(problems))
    return spec.grid(
        (int(image_wh[0]), int(image_wh[1])),
        (int(resized_wh[0]), int(resized_wh[1])) if resized_wh is not None else None,
    )


def check_labels(labels: Iterable[str], fmt: str) -> None:
    """Raise :class:`OptionsError` listing every label ``fmt`` cannot write unambiguously."""
    spec = get_format(fmt)
    bad = []
    for label in dict.fromkeys(labels):
        if not isinstance(label, str):
            bad.append(f"{label!r} (not a string)")
        elif spec.forbidden_in_labels and (not label or label != label.strip()):
            bad.append(f"{label!r} (empty or surrounded by spaces)")
        elif any(s in label for s in spec.forbidden_in_labels):
            bad.append(f"{label!r} (contains one of {list(spec.forbidden_in_labels)})")
    if bad:
        raise OptionsError(
            describe(
                f"labels the {fmt} answer format cannot write",
                field="label",
                found=", ".join(bad),
                fix="rename those labels, or use --answer-format json, which writes any label",
            )
        )


def render_answer(
    objects: Sequence[AnswerObject],
    fmt: str,
    image_wh: tuple[int, int],
    *,
    resized_wh: tuple[int, int] | None = None,
    task: str = "detect",
) -> str:
    """The assistant text a model of format ``fmt`` should write for ``objects``.

    ``image_wh`` is the size the objects' pixel coordinates refer to; ``resized_wh`` the size
    after the processor's resize (required by ``qwen2_5_vl``). ``task="segment"`` writes the
    objects' polygons (formats with ``supports_polygons``), ``task="count"`` only their number;
    ``detect`` and ``ground`` write boxes. Objects are written in the order given.

    >>> render_answer([AnswerObject("car", (10, 20, 30, 40))], "json", (100, 200))
    '[{"label": "car", "bbox_2d": [100, 100, 400, 300]}]'
    """
    spec = get_format(fmt)
    if task not in TASKS:
        raise OptionsError(
            describe("unknown task", field="task", expected=" | ".join(TASKS), found=repr(task))
        )
    grid = format_grid(fmt, image_wh, resized_wh=resized_wh)
    if task == "count":
        return spec.render_count(len(objects))
    check_labels((o.label for o in objects), fmt)
    problems = []
    for i, obj in enumerate(objects):
        if len(obj.bbox) != 4 or not all(_is_number(v) for v in obj.bbox):
            problems.append(describe("box is not 4 finite numbers", object_id=i, found=obj.bbox))
        elif obj.bbox[2] < 0 or obj.bbox[3] < 0:
            problems.append(describe("box has a negative size", object_id=i, found=obj.bbox))
        if task == "segment" and not obj.polygons:
            problems.append(
                describe(
                    f"the segment task needs polygons, object {obj.label!r} has none",
                    object_id=i,
                    fix="build objects with polygons (tasks.answer_objects(..., polygons=True))",
                )
            )
    if task == "segment" and not spec.supports_polygons:
        problems.insert(0, _no_polygons_message(fmt))
    if problems:
        raise OptionsError(" ".join(problems))
    if not objects:
        return spec.empty_answer
    return spec.render(objects, grid, task == "segment")


def _no_polygons_message(fmt: str) -> str:
    able = [name for name, spec in ANSWER_FORMATS.items() if spec.supports_polygons]
    return describe(
        f"answer format {fmt!r} has no polygon syntax, so it cannot train the segment task",
        field="tasks",
        fix=f"drop 'segment' from the tasks, or use one of {able}",
    )


def parse_answer(
    text: str,
    fmt: str,
    image_wh: tuple[int, int],
    *,
    resized_wh: tuple[int, int] | None = None,
) -> ParsedAnswer:
    """Read a generated answer of format ``fmt`` back into objects in image pixels.

    Never raises on ``text``: what cannot be read is reported in ``problems`` (``ok=False``)
    alongside whatever could. ``""`` and ``None`` (any case) read as an empty answer; a bare
    number, ``{"count": n}``, a number word or a short sentence with one number read as a count.

    >>> parse_answer('[{"label": "car", "bbox_2d": [100, 100, 400, 300]}]', "json", (100, 200))
    ParsedAnswer(objects=[AnswerObject(label='car', bbox=(10.0, 20.0, 30.0, 40.0), \
polygons=None)], count=None, ok=True, problems=[])
    """
    spec = get_format(fmt)
    grid = format_grid(fmt, image_wh, resized_wh=resized_wh)
    if not isinstance(text, str):
        return ParsedAnswer([], None, False, [f"expected text, found {type(text).__name__}"])
    problems: list[str] = []
    try:
        body = _unwrap(text)
        if body.lower() in ("", "none", "none."):
            return ParsedAnswer([], None, True, [])
        count = _parse_count(body)
        if count is not None:
            return ParsedAnswer([], count, True, [])
        objects = spec.parse(body, grid, problems)
    except Exception as exc:  # the contract is "never raises"; tests keep this branch unused
        return ParsedAnswer([], None, False, [f"parser error: {exc!r}"])
    return ParsedAnswer(objects, None, not problems, problems)


def qwen_smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
) -> tuple[int, int]:
    """``(height, width)`` the Qwen2-VL / Qwen2.5-VL image processor resizes an image to.

    Same arithmetic as ``transformers``' ``smart_resize``: both sides rounded to multiples of
    ``factor`` (patch size x merge size, 28), the area brought within ``[min_pixels,
    max_pixels]`` keeping the aspect ratio. Pass the processor's own values (Qwen2.5-VL checkpoints
    often set ``max_pixels=12845056``). Note the order: height first, as in ``transformers``.
    """
    if height <= 0 or width <= 0:
        raise OptionsError(
            describe("image size must be positive", field="height/width", found=(height, width))
        )
    if max(height, width) / min(height, width) > 200:
        raise OptionsError(
            describe(
                "Qwen's processor refuses images with an aspect ratio above 200",
                field="height/width",
                found=(height, width),
                fix="crop or pad the image",
            )
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
