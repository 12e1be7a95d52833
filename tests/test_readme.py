"""The README's quickstart runs as written: every block, in order, in one fresh folder.

A user pastes the CLI block, then the make block, then the Python block into one clone. Each block
must work after the ones before it (no output of an earlier block in the way, no file that no block
writes). The folder holds what a clone holds after `make setup`: the Makefile, the sample data, the
presets and the virtual environment (this one, linked; `make` is told not to re-install it).
"""

from __future__ import annotations

import pytest
from docs_blocks import ROOT, code_blocks, fresh_clone, run_block, section  # tests/ is on sys.path


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
