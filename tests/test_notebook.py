"""examples/*.ipynb run end to end on a real Jupyter kernel, as a user runs them (no shell cells)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.ipynb")))
def test_example_notebook_runs(name, tmp_path, monkeypatch):
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    assert not any(cell.source.lstrip().startswith("!") or "%%bash" in cell.source or "%%sh" in cell.source
                   for cell in notebook.cells if cell.cell_type == "code"), "a shell cell"
    # small sizes here; the kernel inherits this environment
    monkeypatch.setenv("GALAXY_NOTEBOOK_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("GALAXY_NOTEBOOK_IMAGES", "300")
    monkeypatch.setenv("GALAXY_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any failure
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "holdout RMSE" in outputs and "match the folder's" in outputs
