"""The ``sam2-finetune`` command: one sub-command per stage, generated from the stages' options.

Each stage declares its options once, as a pydantic model (field types, defaults, descriptions,
bounds). This module turns such a model into an ``argparse`` parser, so a flag exists exactly
where the Python API's option does and cannot drift from it. The mapping, in one place
(:func:`add_model_arguments`):

- ``json_schema_extra={"bare": VALUE}`` lets the flag stand alone for VALUE (``--resume``);
- a field marked ``json_schema_extra={"positional": True}`` is positional; a list one takes
  every positional value (``EXPORTS...``). Only positionals take a variable number of values,
  so no flag can swallow them, and ``--`` ends the flags as POSIX says: everything after it is
  positional (``info -- -odd-name.zip``);
- a list of fixed length takes exactly that many values: ``tuple[int, int]``, a list with
  ``min_length == max_length``, or ``json_schema_extra={"nargs": 3}`` where the model checks the
  length itself with its own message (``--ratios 0.8 0.1 0.1``, ``--frame-size 1920 1080``);
- any other list takes one value per flag, and the flag is repeated for more
  (``--frames a=DIR --frames b=DIR``, ``--set a.b=1 --set c=2``);
- ``bool`` fields become ``--flag / --no-flag``, ``Literal`` fields get ``choices``,
- nested models become dotted flags (``--training.learning-rate 1e-4``).

Values go to pydantic unchanged, so the CLI and Python report the same validation errors, all at
once; :func:`validate_options` words them with the shared formatter
(:func:`sam2_finetune.errors.format_validation_error`), naming each option as it is typed
(``--ratios``, ``DATASET``). Stage modules are imported only for the command that runs, which
keeps data commands free of torch and transformers.

Why plain ``argparse`` and not jsonargparse, typer or pydantic-settings' CLI: the options already
are pydantic models, and this mapping is the only glue needed (about a hundred lines, no
dependency). typer reads function signatures, not models, so every option would be declared a
second time; jsonargparse and pydantic-settings bring their own config-file semantics and
validation layers next to pydantic's, and add start-up time to data commands that must stay
lean (``info`` is benchmarked against reading the ZIP alone).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from sam2_finetune import __version__
from sam2_finetune.errors import (
    OptionsError,
    Sam2FinetuneError,
    format_validation_error,
    model_field,
)

# name -> ("module:function", one-line help). The function takes one options model and returns
# an exit status. Literal table: adding a stage is adding a row.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("sam2_finetune.ingest:info_command", "Summarise SAM2 exports."),
    "convert": (
        "sam2_finetune.convert:convert_command",
        "Convert exports to a HF dataset, LLaVA, ShareGPT or COCO.",
    ),
    "validate": (
        "sam2_finetune.validate:validate_command",
        "Check data quality; write a Markdown + JSON report.",
    ),
    "split": (
        "sam2_finetune.split:split_command",
        "Split a dataset into train/validation/test without leakage.",
    ),
    "leakage": (
        "sam2_finetune.split:leakage_command",
        "Check a split dataset for near frames or identical images across splits.",
    ),
    "models": (
        "sam2_finetune.models.table:models_command",
        "List supported model families with memory estimates.",
    ),
    "train": (
        "sam2_finetune.train.run:train_command",
        "Fine-tune a model (LoRA, QLoRA or full) on a dataset or SAM2 exports.",
    ),
    "check": (
        "sam2_finetune.train.check:check_command",
        "Check hardware against a training config.",
    ),
    "evaluate": (
        "sam2_finetune.evaluate:evaluate_command",
        "Score a fine-tuned model on a split: COCO mAP, mask IoU, counts, vs baselines.",
    ),
    "export": (
        "sam2_finetune.export:export_command",
        "Export a trained model: adapter or merged weights, model card, deploy files.",
    ),
    "tiny-model": (
        "sam2_finetune.models.tiny:tiny_model_command",
        "Build a tiny random offline model of a family (for tests and demos).",
    ),
    "predict": (
        "sam2_finetune.evaluate.predict:predict_command",
        "Run a fine-tuned model on images or videos; videos become SAM2 exports (pseudo-labels).",
    ),
    "run": (
        "sam2_finetune.pipeline:run_command",
        "Run every stage from one PIPELINE.yaml, skipping unchanged ones.",
    ),
}


def options_model(function: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic model a command function takes as its single argument."""
    hints = typing.get_type_hints(function)
    hints.pop("return", None)
    (model,) = hints.values()
    return model


def _unwrap_optional(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_positional(info: FieldInfo) -> bool:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return bool(extra.get("positional"))


def add_model_arguments(
    parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str = ""
) -> None:
    """Add one argument per field of ``model`` (recursively for nested models), following the
    mapping in this module's docstring."""
    group = parser.add_argument_group(prefix.rstrip(".") or None) if prefix else parser
    for name, info in model.model_fields.items():
        flag_name = info.alias or name
        dest = prefix + flag_name
        annotation = _unwrap_optional(info.annotation)
        if _is_model(annotation):
            add_model_arguments(parser, annotation, prefix=dest + ".")
            continue
        flag = "--" + (prefix + flag_name).replace("_", "-")
        kwargs = _argument_kwargs(annotation, info, flag)
        if _is_positional(info) and not prefix:
            if kwargs.pop("action", None) == "append":  # a list: every positional value
                kwargs["nargs"] = "+" if info.is_required() else "*"
                kwargs["help"] = kwargs["help"].removesuffix(_repeat_help(flag))
            elif not info.is_required():
                kwargs["nargs"] = "?"
            kwargs.pop("required", None)
            kwargs["metavar"] = flag_name.upper()
            group.add_argument(dest, **kwargs)
            continue
        if "choices" not in kwargs and kwargs.get("action") is not argparse.BooleanOptionalAction:
            kwargs.setdefault("metavar", flag_name.upper())  # MAX_RATIO, not LIMITS.MAX_RATIO
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "bare" in extra:
            # The flag alone means this value (`train CONFIG --resume` = `--resume latest`);
            # write positionals before such a flag, or it takes the next word as its value.
            kwargs.update(nargs="?", const=extra["bare"])
        group.add_argument(flag, dest=dest, **kwargs)


def _repeat_help(flag: str) -> str:
    return f" Repeat {flag} for each value."


def _fixed_length(annotation: Any, info: FieldInfo) -> int | None:
    """How many values a list option takes, when the model fixes it: ``tuple[int, int]``, a
    list with ``min_length == max_length``, or ``json_schema_extra={"nargs": N}``."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if isinstance(extra.get("nargs"), int):
        return int(extra["nargs"])
    args = get_args(annotation)
    if get_origin(annotation) is tuple and args and Ellipsis not in args:
        return len(args)
    lengths = {
        kind: getattr(item, kind)
        for item in info.metadata
        for kind in ("min_length", "max_length")
        if getattr(item, kind, None) is not None
    }
    if lengths and lengths.get("min_length") == lengths.get("max_length"):
        return lengths["min_length"]
    return None


def _argument_kwargs(annotation: Any, info: FieldInfo, flag: str) -> dict[str, Any]:
    help_text = (info.description or "").replace("%", "%%")
    if not info.is_required():
        default = info.get_default(call_default_factory=True)
        if default not in (None, [], ()) and not isinstance(default, BaseModel):
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            help_text += f" (default: {shown})"
    kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
    if info.is_required():
        kwargs["required"] = True
    origin = get_origin(annotation)
    if origin is dict:
        # KEY=VALUE items, one per flag or comma-separated (--tasks detect=2 --tasks count=1,
        # --tasks detect=2,count=1): like a list, a flag never takes a positional after it.
        kwargs.update(action="append", metavar="KEY=VALUE")
        kwargs["help"] += _repeat_help(flag)
        return kwargs
    if annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        kwargs.pop("required", None)
        return kwargs
    if origin in (list, tuple, Sequence, set, frozenset) or annotation in (list, tuple):
        count = _fixed_length(annotation, info)
        if count is None:
            # One value per flag: a flag that took "every value up to the next flag" would
            # also take a positional written after it.
            kwargs["action"] = "append"
            kwargs["help"] += _repeat_help(flag)
        else:
            kwargs["nargs"] = count
        inner = get_args(annotation)
        annotation = _unwrap_optional(inner[0]) if inner else str
        origin = get_origin(annotation)
    if origin is Literal:
        kwargs["choices"] = list(get_args(annotation))
        kwargs["type"] = _literal_type(get_args(annotation))
    if annotation is Path:
        kwargs["metavar"] = "PATH"
    return kwargs


def _literal_type(values: tuple[Any, ...]) -> Callable[[str], Any]:
    """argparse ``type`` for a ``Literal``: the literal itself for its text (``4``, not ``"4"``,
    which pydantic would refuse for ``Literal[1, 2, 4]``), any other text unchanged so argparse
    reports it as an invalid choice."""
    by_text = {str(v): v for v in values}

    def choice(text: str) -> Any:
        return by_text.get(text, text)

    return choice


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def option_name(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """An option as the user typed it, from a pydantic error location: ``("ratios",)`` ->
    ``--ratios``, ``("set", 0)`` -> ``--set``, ``("limits", "max_ratio")`` ->
    ``--limits.max-ratio``, a positional field -> its metavar (``DATASET``)."""
    parts: list[str] = []
    current: Any = model
    for part in loc:
        if not _is_model(current):
            break
        info = model_field(current, str(part))
        if info is None:
            break
        name = info.alias or str(part)
        if not parts and _is_positional(info):
            return name.upper()
        parts.append(name)
        current = _unwrap_optional(info.annotation)
    return "--" + ".".join(parts).replace("_", "-") if parts else "(options)"


def as_typed(value: Any) -> str:
    """A value as it was typed on the command line: ``-1``, ``0.5 0.6 0.1``; quoted only where
    the words would blur (empty, spaces)."""
    if isinstance(value, (list, tuple)):
        return " ".join(as_typed(v) for v in value)
    if isinstance(value, str) and value and not any(c.isspace() for c in value):
        return value
    return repr(value)


def validate_options(model: type[BaseModel], values: dict[str, Any], command: str) -> BaseModel:
    """Build ``model`` from ``values`` or raise :class:`OptionsError` listing every problem,
    each named as the flag of ``sam2-finetune COMMAND``."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message = format_validation_error(
            exc,
            f"sam2-finetune {command}",
            model,
            fix=f"correct the options above; `sam2-finetune {command} --help` lists them",
            name=lambda loc: option_name(model, loc),
            shown=as_typed,
        )
        raise OptionsError(message) from None


def _load(target: str) -> Callable[[Any], int | None]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


class _Parser(argparse.ArgumentParser):
    """argparse with the package's one-message errors instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}. Fix: see `{self.prog} --help`.\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to build its options."""
    parser = _Parser(
        prog="sam2-finetune",
        description="Turn SAM2 video-annotation exports into fine-tuned vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (target, help_text) in COMMANDS.items():
        if name == command:
            function = _load(target)
            model = options_model(function)
            sub_parser = sub.add_parser(
                name,
                help=help_text,
                description=inspect.cleandoc(model.__doc__ or help_text),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            add_model_arguments(sub_parser, model)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sam2-finetune`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    try:
        parser = build_parser(command)
        args = vars(parser.parse_args(argv))
        name = args.pop("command", None)
        if name is None:
            parser.print_help()
            return 0
        function = _load(COMMANDS[name][0])
        options = validate_options(options_model(function), _nest(args), name)
        return int(function(options) or 0)
    except Sam2FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
