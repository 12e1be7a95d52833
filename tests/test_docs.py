"""The docs' option tables are generated from the commands' parsers and cannot go stale."""

from __future__ import annotations

from pathlib import Path

from sam2_finetune.cli import COMMANDS
from sam2_finetune.reference import BLOCK, options_table, update_docs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_no_options_table_is_stale():
    assert update_docs(DOCS, check=True) == [], "run `make docs` and commit the result"


def test_every_command_has_its_options_table_in_the_docs():
    documented = {
        m.group("command") for page in DOCS.glob("*.md") for m in BLOCK.finditer(page.read_text())
    }
    assert documented == set(COMMANDS)


def test_a_stale_table_is_found_and_rewritten(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "page.md"
    page.write_text("# x\n<!-- options: split -->\n| old |\n<!-- /options -->\ntail\n")
    assert update_docs(docs, check=True) == [page]
    assert "| old |" in page.read_text()  # --check writes nothing
    assert update_docs(docs) == [page]
    text = page.read_text()
    assert options_table("split") in text and "| old |" not in text and text.endswith("tail\n")
    assert "`--strategy` | `temporal` \\| `stratified` \\| `random` | temporal |" in text
    assert update_docs(docs, check=True) == []
