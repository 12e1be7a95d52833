"""The option tables in ``docs/``, generated from the commands' own parsers so they cannot drift.

A docs page holds a table between two markers::

    <!-- options: convert -->
    | Option | Value | Default | What it does |
    ...
    <!-- /options -->

``python -m sam2_finetune.reference`` (``make docs``) rewrites every such block from
:func:`options_table`, which reads the argparse parser :mod:`sam2_finetune.cli` builds from the
command's options model (the flags, choices and help a user sees); ``--check`` only reports the
blocks that differ (a test runs it, so a changed option fails the suite until the docs follow).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from sam2_finetune.cli import COMMANDS, build_parser

__all__ = ["BLOCK", "options_table", "update_docs"]

BLOCK = re.compile(
    r"(<!-- options: (?P<command>[\w-]+) -->\n)(?P<body>.*?)(<!-- /options -->)", re.S
)
DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser(command)
    for action in parser._actions:  # argparse keeps subparsers only there
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)


def options_table(command: str) -> str:
    """The Markdown table of ``sam2-finetune COMMAND``'s arguments, in ``--help`` order."""
    if command not in COMMANDS:
        raise KeyError(f"no command {command!r}; commands: {', '.join(COMMANDS)}")
    rows = ["| Option | Value | Default | What it does |", "| --- | --- | --- | --- |"]
    for action in _subparser(command)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        help_text = action.help or ""
        default = ""
        found = re.search(r" \(default: (.*)\)$", help_text)
        if found:
            help_text, default = help_text[: found.start()], found.group(1)
        help_text = help_text.replace("%%", "%").removesuffix(".") + "."
        if action.option_strings:
            name = ", ".join(f"`{o}`" for o in action.option_strings)
        else:
            name = f"`{action.metavar or action.dest}` (positional)"
        if isinstance(action, argparse.BooleanOptionalAction):
            value = "flag"
            default = {"True": "on", "False": "off"}.get(default, default) or "off"
        elif action.choices:
            value = " \\| ".join(f"`{c}`" for c in action.choices)
        else:
            value = f"`{action.metavar or action.dest.upper()}`"
            if action.nargs not in (None, "?", 0):
                value += f" × {action.nargs}" if isinstance(action.nargs, int) else " …"
        if action.required:
            default = "required"
        elif action.option_strings and action.nargs == "?" and action.const is not None:
            default = default or f"alone: `{action.const}`"
        rows.append(f"| {name} | {value} | {_cell(default) or '—'} | {_cell(help_text)} |")
    return "\n".join(rows) + "\n"


def update_docs(docs: Path = DOCS_DIR, *, check: bool = False) -> list[Path]:
    """Rewrite every options block under ``docs`` (and the README beside it); the files that
    changed (with ``check``, that would change, nothing is written)."""
    changed = []
    pages = [*sorted(docs.glob("*.md")), docs.parent / "README.md"]
    for page in pages:
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        new = BLOCK.sub(lambda m: m.group(1) + options_table(m.group("command")) + m.group(4), text)
        if new != text:
            changed.append(page)
            if not check:
                page.write_text(new, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only report stale tables.")
    args = parser.parse_args(argv)
    changed = update_docs(check=args.check)
    for page in changed:
        print(f"{'stale' if args.check else 'updated'}: {page}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
