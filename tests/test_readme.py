"""The README's quickstart runs as written: every block, in order, in one fresh folder.

A user pastes the CLI block, then the make block, then the Python block into one clone. Each block
must work after the ones before it (no output of an earlier block in the way, no file that no block
writes). The folder holds what a clone holds after `make setup`: the Makefile, the sample data, the
presets and the virtual environment (this one, linked; `make` is told not to re-install it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def section(text: str, heading: str) -> str:
    """The Markdown between ``## heading`` and the next ``## `` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(markdown)]


def fresh_clone(tmp_path: Path) -> Path:
    """A folder shaped like a clone after ``make setup``, without any output of an earlier run."""
    folder = tmp_path / "clone"
    folder.mkdir()
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy2(ROOT / name, folder / name)
        os.utime(folder / name, (0, 0))  # older than the venv's stamp: `make` keeps the venv
    (folder / "sample_data").symlink_to(ROOT / "sample_data")
    (folder / "presets").symlink_to(ROOT / "sam2_finetune" / "presets")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def run_block(language: str, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        # Never (re)install the linked venv from inside the test, even if a file looks newer.
        "MAKEFLAGS": "o .venv/.installed-stamp",
    }
    if language == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_quickstart_blocks_run_in_order_in_one_fresh_folder(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [(lang, code) for lang, code in code_blocks(section(readme, "Quickstart"))]
    languages = [lang for lang, _ in blocks]
    assert languages.count("bash") >= 2 and "python" in languages, languages
    folder = fresh_clone(tmp_path)
    for number, (language, code) in enumerate(blocks, 1):
        result = run_block(language, code, folder)
        output = result.stdout[-4000:] + result.stderr[-4000:]
        assert result.returncode == 0, f"quickstart block {number} ({language}) failed:\n{output}"
        assert "Traceback" not in result.stderr, f"block {number} printed a traceback:\n{output}"
