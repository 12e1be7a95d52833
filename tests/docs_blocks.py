"""Run the code blocks of a Markdown page as a user would paste them, in a folder like a clone.

Shared by ``test_readme.py`` (the README) and ``test_docs_commands.py`` (every ``docs/*.md``).
A fenced block is a command when its language is one of ``COMMAND_LANGUAGES``; ``text``,
``json``, ``yaml``... blocks are output or file contents. A command block that cannot run here
(a GPU, a real Hub download, several machines) is preceded by ``<!-- not run: REASON -->``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMAND_LANGUAGES = frozenset({"bash", "sh", "shell", "console", "python"})
# An opening fence: three or more backticks (or tildes) and an optional info string. A longer
# fence can hold shorter ones (answer-formats.md shows a ```json block inside a ```` block).
_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
_NOT_RUN = re.compile(r"^<!--\s*not run\s*:?(?P<reason>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its text, where it starts, and why it is not run."""

    language: str
    code: str
    line: int  # 1-based line of the opening fence
    not_run: str | None = None  # the reason of a `<!-- not run: REASON -->` above it

    @property
    def is_command(self) -> bool:
        return self.language in COMMAND_LANGUAGES


def section(text: str, heading: str) -> str:
    """The Markdown between ``## heading`` and the next ``## `` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def without_section(text: str, heading: str) -> str:
    """The Markdown with the ``## heading`` section (up to the next ``## ``) cut out."""
    cut = section(text, heading)
    return text.replace(cut, "\n", 1)


def blocks(markdown: str) -> list[Block]:
    """Every fenced block, in order, with the reason of a ``not run`` comment right above it.

    Only blank lines may stand between the comment and the fence, so that a comment cannot
    silently switch off a block further down the page.
    """
    lines = markdown.split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group("fence")
        closing = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        above = i - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        marker = _NOT_RUN.match(lines[above].strip()) if above >= 0 else None
        found.append(
            Block(
                language=opening.group("info").lower(),
                code="\n".join(lines[i + 1 : end]) + "\n",
                line=i + 1,
                not_run=marker.group("reason").strip() if marker else None,
            )
        )
        i = end + 1
    return found


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in order."""
    return [(block.language, block.code) for block in blocks(markdown)]


def console_commands(code: str) -> str:
    """The commands of a ``console`` block as a script: ``$ `` lines and their ``\\`` tails.

    Other lines are the output the commands print.
    """
    script: list[str] = []
    continued = False
    for line in code.splitlines():
        if continued:
            script.append(line)
        elif line.startswith("$ "):
            script.append(line[2:])
        else:
            continue
        continued = line.rstrip().endswith("\\")
    return "\n".join(script) + "\n"


def fresh_clone(tmp_path: Path) -> Path:
    """A folder shaped like a clone after ``make setup``, without any output of an earlier run.

    The committed folders the docs' commands read (sample data, presets, the package with its
    launcher configs) are linked, not copied; commands write only below the folder itself.
    """
    folder = tmp_path / "clone"
    folder.mkdir()
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy2(ROOT / name, folder / name)
        os.utime(folder / name, (0, 0))  # older than the venv's stamp: `make` keeps the venv
    (folder / "sample_data").symlink_to(ROOT / "sample_data")
    (folder / "presets").symlink_to(ROOT / "sam2_finetune" / "presets")
    (folder / "sam2_finetune").symlink_to(ROOT / "sam2_finetune")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def run_block(
    language: str, code: str, cwd: Path, *, activated: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run one block in ``cwd``: a ``python`` block with the venv's Python, others with bash.

    ``activated`` puts the venv's ``bin/`` first on PATH, as ``source .venv/bin/activate``
    does: the docs pages assume it, the README's quickstart does it itself.
    """
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        # Never (re)install the linked venv from inside the test, even if a file looks newer.
        "MAKEFLAGS": "o .venv/.installed-stamp",
    }
    if activated:
        env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(cwd / ".venv")
    if language == "python":
        command = [sys.executable, "-c", code]
    else:
        script = console_commands(code) if language == "console" else code
        command = ["bash", "-e", "-o", "pipefail", "-c", script]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
