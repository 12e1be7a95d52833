"""The ``sam2-finetune`` command: one sub-command per stage, generated from the stages' options.

Each stage declares its options once, as a pydantic model (field types, defaults, descriptions,
bounds). This module turns such a model into an ``argparse`` parser, so a flag exists exactly
where the Python API's option does and cannot drift from it:

- ``list[...]`` fields take several values (``--ratios 0.8 0.1 0.1``; positional ``EXPORT...``);
  a repeated flag adds to them,
- ``bool`` fields become ``--flag / --no-flag``, ``Literal`` fields get ``choices``,
- nested models become dotted flags (``--training.learning_rate 1e-4``),
- a field marked ``json_schema_extra={"positional": True}`` is positional; written after a
  multi-value flag's values it is still read as the positional when it cannot be one of the
  flag's items (``check --set a=b CONFIG``).

Values go to pydantic unchanged, so the CLI and Python report the same validation errors, all at
once. Stage modules are imported only for the command that runs, which keeps data commands free
of torch and transformers.

Why plain ``argparse`` and not jsonargparse, typer or pydantic-settings' CLI: the options already
are pydantic models, and this mapping is the only glue needed (about a hundred lines, no
dependency). typer reads function signatures, not models, so every option would be declared a
second time; jsonargparse and pydantic-settings bring their own config-file semantics and
validation layers next to pydantic's, and add start-up time to data commands that must stay
lean (``info`` is benchmarked against reading the ZIP alone).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from sam2_finetune.errors import OptionsError, Sam2FinetuneError

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
    "check": (
        "sam2_finetune.train.check:check_command",
        "Check hardware against a training config.",
    ),
    "tiny-model": (
        "sam2_finetune.models.tiny:tiny_model_command",
        "Build a tiny random offline model of a family (for tests and demos).",
    ),
}

_MISSING = object()


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


def add_model_arguments(
    parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str = ""
) -> None:
    """Add one argument per field of ``model`` (recursively for nested models)."""
    group = parser.add_argument_group(prefix.rstrip(".") or None) if prefix else parser
    for name, info in model.model_fields.items():
        flag_name = info.alias or name
        dest = prefix + flag_name
        annotation = _unwrap_optional(info.annotation)
        if _is_model(annotation):
            add_model_arguments(parser, annotation, prefix=dest + ".")
            continue
        kwargs = _argument_kwargs(annotation, info)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("positional") and not prefix:
            if kwargs.get("nargs") is None and info.is_required():
                kwargs.pop("nargs", None)
            elif not info.is_required():
                kwargs["nargs"] = "*" if kwargs.get("nargs") else "?"
            kwargs.pop("required", None)
            kwargs["metavar"] = flag_name.upper()
            group.add_argument(dest, **kwargs)
            continue
        flag = "--" + (prefix + flag_name).replace("_", "-")
        if kwargs.get("nargs") == "+":
            kwargs["action"] = "extend"  # `--set a=1 --set b=2` keeps both, not only the last
        group.add_argument(flag, dest=dest, **kwargs)


def _argument_kwargs(annotation: Any, info: FieldInfo) -> dict[str, Any]:
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
    if annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        kwargs.pop("required", None)
        return kwargs
    if origin in (list, tuple, Sequence, set, frozenset) or annotation in (list, tuple):
        kwargs["nargs"] = "+"
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


def _multi_value_flags(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """``--flag`` -> item type, for every option of ``model`` that takes several values."""
    flags: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        flag_name = info.alias or name
        annotation = _unwrap_optional(info.annotation)
        if _is_model(annotation):
            flags.update(_multi_value_flags(annotation, prefix + flag_name + "."))
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("positional") and not prefix:
            continue
        if _argument_kwargs(annotation, info).get("nargs") == "+":
            inner = get_args(annotation)
            flags["--" + (prefix + flag_name).replace("_", "-")] = inner[0] if inner else str
    return flags


def _positional_names(model: type[BaseModel]) -> list[str]:
    return [
        info.alias or name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("positional")
    ]


def _is_flag(token: str) -> bool:
    # As argparse: "-5" and "-.5" are values, "-x" / "--x" are flags.
    return token.startswith("-") and not re.fullmatch(r"-\d+|-\d*\.\d+", token)


# A number out of range is still the flag's (validation reports the range), not a positional.
_OUT_OF_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _is_item(adapter: TypeAdapter[Any], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        return all(error["type"] in _OUT_OF_RANGE for error in exc.errors())
    return True


def _positionals_first(argv: list[str], command: str, model: type[BaseModel]) -> list[str]:
    """``argv`` with the values after a multi-value flag that cannot be its items moved to just
    after ``command``: ``check --set a=b CONFIG`` -> ``check CONFIG --set a=b``.

    argparse gives a ``nargs="+"`` flag every value up to the next flag, so a positional
    written after one would be swallowed. Only the trailing run of values that fail the item
    type moves (``CONFIG`` is no ``KEY=VALUE``, ``qwen2_vl`` no frame size; ``0`` is one,
    out of range).
    """
    flags = _multi_value_flags(model)
    start = argv.index(command) + 1
    kept, moved = list(argv[:start]), []
    i = start
    while i < len(argv):
        token = argv[i]
        if token == "--":
            kept += argv[i:]
            break
        kept.append(token)
        i += 1
        if token not in flags:
            continue
        end = i
        while end < len(argv) and not _is_flag(argv[end]) and argv[end] != "--":
            end += 1
        values = argv[i:end]
        adapter = TypeAdapter(flags[token])
        fit = len(values)
        while fit > 0 and not _is_item(adapter, values[fit - 1]):
            fit -= 1
        kept += values[:fit]
        moved += values[fit:]
        i = end
    return kept[:start] + moved + kept[start:]


def _parse_args(parser: argparse.ArgumentParser, argv: list[str], command: str | None) -> Any:
    """``parser.parse_args(argv)``, reading a positional written after a multi-value flag's
    values as the positional (see :func:`_positionals_first`)."""
    if command is None or "-h" in argv or "--help" in argv:
        return parser.parse_args(argv)
    model = options_model(_load(COMMANDS[command][0]))
    reordered = _positionals_first(argv, command, model)
    if reordered == argv:
        return parser.parse_args(argv)
    # Move values only when the positionals came out empty, and keep the move only if it
    # parses: otherwise a value that does not fit its flag is the user's typo (--frame-size 0
    # 0), which validation reports naming the option.
    namespace = _parse_quietly(parser, argv)
    if namespace is None:
        return parser.parse_args(reordered)
    if all(getattr(namespace, name, None) for name in _positional_names(model)):
        return namespace
    return _parse_quietly(parser, reordered) or namespace


def _parse_quietly(parser: argparse.ArgumentParser, argv: list[str]) -> Any:
    """``parser.parse_args(argv)``, or None (and nothing printed) where it would exit."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return parser.parse_args(argv)
        except SystemExit:
            return None


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def format_validation_error(error: ValidationError, what: str) -> str:
    """Every problem of a pydantic validation, one per line, with path, value and rule."""
    lines = [f"{what}: {error.error_count()} invalid option(s):"]
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(options)"
        value = item.get("input", _MISSING)
        shown = "" if value is _MISSING or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  - {path}: {item['msg']}{shown}")
    lines.append("Fix: correct the options above; `sam2-finetune <command> --help` lists them.")
    return "\n".join(lines)


def validate_options(model: type[BaseModel], values: dict[str, Any], what: str) -> BaseModel:
    """Build ``model`` from ``values`` or raise :class:`OptionsError` listing every problem."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise OptionsError(format_validation_error(exc, what)) from None


def _load(target: str) -> Callable[[Any], int | None]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


# Stages of the pipeline that have no command yet: named so that users get a plain answer.
NOT_BUILT = ("train", "evaluate", "predict", "export")


class _Parser(argparse.ArgumentParser):
    """argparse with the package's one-message errors instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        if "arguments are required" in message:
            hint = (
                " (if a multi-value option such as --frames came just before, it took them:"
                " put positional arguments first, or end the option's values with --)"
            )
        self.exit(2, f"error: {self.prog}: {message}{hint}. Fix: see `{self.prog} --help`.\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to build its options."""
    parser = _Parser(
        prog="sam2-finetune",
        description="Turn SAM2 video-annotation exports into fine-tuned vision-language models.",
    )
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
    if command in NOT_BUILT:
        print(
            f"error: sam2-finetune {command}: the {command} stage is not built yet. Fix: see the "
            "stage table in README.md; `sam2-finetune --help` lists the commands that exist.",
            file=sys.stderr,
        )
        return 2
    if command not in COMMANDS:
        command = None
    try:
        parser = build_parser(command)
        args = vars(_parse_args(parser, argv, command))
        name = args.pop("command", None)
        if name is None:
            parser.print_help()
            return 0
        function = _load(COMMANDS[name][0])
        options = validate_options(options_model(function), _nest(args), f"sam2-finetune {name}")
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
