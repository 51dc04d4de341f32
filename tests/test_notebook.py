"""The tutorial notebook runs from top to bottom (tiny sizes: FUME_NOTEBOOK_TINY=1)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "train_fume.ipynb"


@pytest.mark.slow  # the whole tutorial at a tiny size: ~9 s
def test_notebook_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FUME_NOTEBOOK_TINY", "1")  # the kernel inherits the environment
    monkeypatch.setenv("FUME_NOTEBOOK_OUT", str(tmp_path / "work"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
    # it produced what it describes: a trained run, test metrics and the figures shown inline
    metrics = list((tmp_path / "work" / "run").glob("*/eval-test-*/metrics.json"))
    assert len(metrics) == 1 and json.loads(metrics[0].read_text())["num_samples"] > 0
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the data example, training curves, confusion matrix, qualitative grid
