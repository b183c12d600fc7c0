"""The exploration notebook runs top to bottom, in a temporary directory against a temporary database."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def test_explore_notebook_runs_without_error(tmp_path, monkeypatch):
    db_path = tmp_path / "notebook.db"
    monkeypatch.setenv("AGENT_DB", str(db_path))  # the kernel inherits the environment
    monkeypatch.delenv("AGENT_MODEL", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the project's modules, from the temp working directory
    notebook = nbformat.read(ROOT / "notebooks" / "explore.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert db_path.exists() and not (tmp_path / "checkpoints").exists()  # it used the database it was given
