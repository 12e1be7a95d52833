"""The one exception family of sam2-finetune.

Every user-facing failure is a :class:`Sam2FinetuneError` whose message names where the problem
is (file, member, frame, object, field), what was expected, what was found, and what to do. The CLI
prints that message alone, without a traceback.

:func:`format_validation_error` words a pydantic ``ValidationError`` the same way for the CLI
(options named as flags, ``--ratios``) and for config files (YAML key paths,
``training.learning_rate``): one formatter, so both say the same things the same way.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from os import PathLike
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


def describe(
    problem: str,
    *,
    file: str | PathLike[str] | None = None,
    member: str | None = None,
    frame_index: int | None = None,
    object_id: int | str | None = None,
    field: str | None = None,
    expected: object = None,
    found: object = None,
    fix: str | None = None,
) -> str:
    """Build a message of the shape every error of the package uses.

    >>> print(describe("mask counts do not add up", file="a.zip", member="annotations.json",
    ...       frame_index=6, object_id=2, expected=65536, found=65535, fix="re-export it"))
    a.zip!annotations.json, frame 6, object 2: mask counts do not add up (expected 65536, \
found 65535). Fix: re-export it.
    """
    where = []
    if file is not None:
        where.append(f"{file}!{member}" if member else str(file))
    elif member:
        where.append(member)
    if frame_index is not None:
        where.append(f"frame {frame_index}")
    if object_id is not None:
        where.append(f"object {object_id}")
    if field:
        where.append(f"field {field!r}")
    message = (", ".join(where) + ": " if where else "") + problem
    if expected is not None:
        message += f" (expected {expected}, found {found})"
    elif found is not None:  # no "expected None" when only what was found is known
        message += f" (found {found})"
    message += "."
    if fix:
        message += f" Fix: {fix.rstrip('.')}."
    return message


class Sam2FinetuneError(Exception):
    """Base of every error the package raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ExportError(Sam2FinetuneError):
    """A SAM2 export (ZIP or folder) cannot be read as the export format says."""


class UnsafeArchiveError(ExportError):
    """An archive is refused: path traversal, absolute paths, symlinks, or a zip bomb."""


class MaskError(ExportError):
    """One object's mask cannot be decoded (unknown form, counts that do not add up, ...)."""


class DatasetError(Sam2FinetuneError):
    """A converted dataset is missing, unreadable, or lacks what a stage needs."""


class OutputExistsError(Sam2FinetuneError):
    """An output path already holds something and ``--overwrite`` was not given."""


class OptionsError(Sam2FinetuneError):
    """Options or a configuration failed validation; the message lists every problem at once."""


class ModelError(Sam2FinetuneError):
    """A model family, checkpoint or tiny model cannot be built, found or loaded as asked."""


# --------------------------------------------------------------------------------------------
# pydantic validation errors, in the package's words. One formatter for the CLI (options named
# as flags, ``--ratios``) and for config files (options named by YAML key path,
# ``training.learning_rate``): every problem on one line with the value found, what is allowed,
# and for an unknown key the closest valid one.


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X`` (a union of several types is kept)."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def field_at(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[Any, list[Any]] | None:
    """The annotation and constraint metadata of the option at ``loc`` (a pydantic error
    location, aliases allowed), or None when ``loc`` names no option."""
    annotation: Any = model
    metadata: list[Any] = []
    for part in loc:
        base = _unwrap(annotation)
        if _is_model(base):
            info = model_field(base, str(part))
            if info is None:
                return None
            annotation, metadata = info.annotation, list(info.metadata)
        elif get_origin(base) is dict:
            key_type, value_type = get_args(base)
            annotation = key_type if part == "[key]" else value_type
            metadata = []
        elif get_origin(base) in (list, tuple) and isinstance(part, int):
            annotation, metadata = get_args(base)[0], []
        else:
            return None
        if get_origin(annotation) is Annotated:
            for extra in get_args(annotation)[1:]:
                metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return annotation, metadata


def model_field(model: type[BaseModel], name: str) -> FieldInfo | None:
    """The field of ``model`` called ``name`` or aliased so (``json`` for ``json_output``)."""
    if name in model.model_fields:
        return model.model_fields[name]
    return next((i for i in model.model_fields.values() if i.alias == name), None)


def _choices(annotation: Any) -> list[Any]:
    base = _unwrap(annotation)
    if get_origin(base) in (list, tuple):
        base = _unwrap(get_args(base)[0])
    if get_origin(base) is Literal:
        return list(get_args(base))
    if get_origin(base) in (typing.Union, types.UnionType):
        return [c for arg in get_args(base) for c in _choices(arg)]
    return []


def allowed_values(model: type[BaseModel], loc: Sequence[str | int]) -> str | None:
    """What the option at ``loc`` accepts: ``"> 0 and <= 1"``, ``"one of: a, b"``; None if
    nothing more specific than its type is known.

    >>> from pydantic import Field
    >>> class Options(BaseModel):
    ...     rate: float = Field(0.1, gt=0, le=1)
    >>> allowed_values(Options, ("rate",))
    '> 0 and <= 1'
    """
    found = field_at(model, loc)
    if found is None:
        return None
    annotation, metadata = found
    bounds = []
    for item in metadata:
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata):
                bounds.append(
                    f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}"
                )
        if isinstance(item, annotated_types.MinLen):
            bounds.append(f"at least {item.min_length} long")
        if isinstance(item, annotated_types.MaxLen):
            bounds.append(f"at most {item.max_length} long")
        pattern = getattr(item, "pattern", None)
        if pattern:
            bounds.append(f"matching {pattern}")
    choices = _choices(annotation)
    parts = []
    if choices:
        parts.append("one of: " + ", ".join(str(c) for c in choices))
    if bounds:
        parts.append(" and ".join(bounds))
    if parts and type(None) in get_args(annotation):
        parts.append("or null")
    return " ".join(parts) or None


def _all_option_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        base = _unwrap(info.annotation)
        if _is_model(base):
            paths += _all_option_paths(base, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def closest_key(model: type[BaseModel], loc: Sequence[str | int]) -> str | None:
    """The valid option path closest to the unknown ``loc`` (a typo, or a key in the wrong
    section), or None when nothing is close."""
    name = str(loc[-1])
    found = field_at(model, loc[:-1]) if loc[:-1] else (model, [])
    parent = _unwrap(found[0]) if found else None
    siblings = list(parent.model_fields) if _is_model(parent) else []
    prefix = ".".join(str(p) for p in loc[:-1])
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        return f"{prefix}.{close[0]}" if prefix else close[0]
    # The right name in another section (learning_rate under model instead of training).
    everywhere = _all_option_paths(model)
    by_leaf = {p.rsplit(".", 1)[-1]: p for p in everywhere}
    close = difflib.get_close_matches(name, list(by_leaf), n=1, cutoff=0.8)
    if close:
        return by_leaf[close[0]]
    close = difflib.get_close_matches(".".join(str(p) for p in loc), everywhere, n=1, cutoff=0.6)
    return close[0] if close else None


def _is_union_member(model: type[BaseModel], loc: tuple[str | int, ...]) -> bool:
    """Whether ``loc`` ends in the tag pydantic adds per member of a union (``str``,
    ``list[str]``) rather than in an option name."""
    if len(loc) < 2 or field_at(model, loc) is not None:
        return False
    parent = field_at(model, loc[:-1])
    return parent is not None and get_origin(_unwrap(parent[0])) in (
        typing.Union,
        types.UnionType,
    )


def dotted_name(loc: Sequence[str | int]) -> str:
    """An option as a config file names it: ``training.learning_rate``, ``data.task_mix``."""
    return ".".join(str(p) for p in loc) or "(config)"


# pydantic prefixes the message of a ValueError / assert raised in a validator with these.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def clean_message(message: str) -> str:
    """pydantic's message without its ``Value error, `` prefix: the validator's own words."""
    for prefix in _PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def _per_option(error: ValidationError, model: type[BaseModel]) -> list[Any]:
    """pydantic's errors, with a model-level validator's ``"ratios: must add up to 1; ..."``
    (no location of its own) split into one error per ``option: problem`` part, located at
    that option, so that it is named as the user wrote it."""
    items = []
    for item in error.errors():
        parts = clean_message(item["msg"]).split("; ")
        heads = [part.partition(": ") for part in parts]
        if item["loc"] or not all(sep and field_at(model, (head,)) for head, sep, _ in heads):
            items.append(item)
            continue
        for head, _, problem in heads:
            items.append({**item, "loc": (head,), "msg": problem, "type": "value_error"})
    return items


def format_validation_error(
    error: ValidationError,
    what: str,
    model: type[BaseModel],
    *,
    fix: str,
    name: Callable[[tuple[str | int, ...]], str] = dotted_name,
    shown: Callable[[Any], str] = repr,
) -> str:
    """Every problem of a pydantic validation of ``model``, one per line: the option (as
    ``name`` spells its location), the problem in plain words, the value found (as ``shown``
    writes it), what is allowed, and for an unknown key the closest valid one; then ``fix``.

    >>> from pydantic import Field
    >>> class Options(BaseModel):
    ...     rate: float = Field(0.1, gt=0, le=1)
    >>> try:
    ...     Options(rate=2)
    ... except ValidationError as exc:
    ...     print(format_validation_error(exc, "options", Options, fix="lower it"))
    options: 1 invalid option(s):
      - rate: Input should be less than or equal to 1 (got 2); allowed: > 0 and <= 1
    Fix: lower it.
    """
    lines: list[str] = []
    union_lines: dict[tuple[str | int, ...], int] = {}
    for item in _per_option(error, model):
        loc = tuple(item["loc"])
        value = item.get("input")
        if _is_union_member(model, loc):
            # One error per accepted type (lora_targets.str, ...list[str]): merge them into
            # one line at the option's own path.
            option, wanted = loc[:-1], item["msg"].removeprefix("Input should be ")
            if option in union_lines:
                lines[union_lines[option]] = lines[union_lines[option]].replace(
                    " (got ", f" or {wanted} (got ", 1
                )
            else:
                union_lines[option] = len(lines)
                lines.append(f"  - {name(option)}: Input should be {wanted} (got {shown(value)})")
            continue
        if item["type"] == "extra_forbidden":
            hint = closest_key(model, loc)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            lines.append(f"  - {name(loc)}: unknown option (got {shown(value)}){suggestion}")
            continue
        if item["type"] == "missing":
            lines.append(f"  - {name(loc)}: required option is missing")
            continue
        got = "" if isinstance(value, dict) and item["type"] != "cross_field" else shown(value)
        where = f"{name(loc)}: " if loc else ""  # a rule of the whole model says what it is
        line = f"  - {where}{clean_message(item['msg'])}{f' (got {got})' if got else ''}"
        # Literal errors already list the choices; cross-field and the validators' own
        # messages state their rule.
        if item["type"] not in ("cross_field", "literal_error", "value_error", "assertion_error"):
            rule = allowed_values(model, loc)
            if rule:
                line += f"; allowed: {rule}"
        lines.append(line)
    lines.insert(0, f"{what}: {len(lines)} invalid option(s):")
    lines.append(f"Fix: {fix.rstrip('.')}.")
    return "\n".join(lines)
