"""Every notebook in notebooks/ runs top to bottom without an error, from the repository root,
and shows what it is there to show (its charts and rendered Markdown)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Rich outputs a notebook must produce (at least this many of each MIME type): a display call
# that silently shows nothing, or a figure that is never drawn, fails here instead of in a
# reader's browser.
MIN_RICH_OUTPUTS = {
    "quickstart.ipynb": {"image/png": 1},
    # validate's class chart, the frame with its masks / boxes / polygons; the validation report
    # (shown in two parts around the chart) and the split summary tables.
    "pipeline.ipynb": {"image/png": 3, "text/markdown": 4},
    # the curves and the worst test images; the run summary and the metrics-vs-baselines table.
    "inspect_run.ipynb": {"image/png": 2, "text/markdown": 2},
}


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(MIN_RICH_OUTPUTS)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    # Raises CellExecutionError (with the failing cell and its traceback) on any error.
    client.execute()
    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = Counter(
        mime
        for o in outputs
        if o.get("output_type") in ("display_data", "execute_result")
        for mime in o.get("data", {})
    )
    for mime, least in MIN_RICH_OUTPUTS[path.name].items():
        assert shown[mime] >= least, f"{path.name}: {shown[mime]} {mime} outputs, expected {least}"


def test_committed_notebooks_have_no_outputs():
    nbformat = pytest.importorskip("nbformat")
    assert NOTEBOOKS, "no notebook found in notebooks/"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name
