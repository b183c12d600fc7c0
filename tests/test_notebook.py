"""The exploration notebook runs top to bottom against the database it is given, and the threads
it makes are the ones `agent threads` lists; without AGENT_DB it finds the project's own database
from its folder, not from wherever the kernel happens to start."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import ROOT, agent_cmd, agent_env

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"


def _real_checkpoints() -> dict[str, tuple[int, int]]:
    """The project's own checkpoints/ folder, which no test may touch."""
    folder = ROOT / "checkpoints"
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()} if folder.is_dir() else {}


def _execute(notebook, cwd, monkeypatch) -> None:
    monkeypatch.delenv("AGENT_MODEL", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the project's modules, from another working directory
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()


def _outputs(notebook, kind: str) -> list[str]:
    """The data of every display output of MIME type `kind`, in cell order."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {}).get(kind)
            if data is not None:
                found.append("".join(data) if isinstance(data, list) else data)
    return found


def test_explore_notebook_runs_against_agent_db(tmp_path, monkeypatch):
    db_path = tmp_path / "notebook.db"
    monkeypatch.setenv("AGENT_DB", str(db_path))  # the kernel inherits the environment
    before = _real_checkpoints()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    _execute(notebook, tmp_path, monkeypatch)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert db_path.exists() and not (tmp_path / "checkpoints").exists()  # it used the database it was given
    assert _real_checkpoints() == before

    listed = subprocess.run(agent_cmd("threads", "--json"), cwd=tmp_path, env=agent_env(db_path), capture_output=True, text=True, timeout=120)
    threads = {t["thread_id"]: t for t in json.loads(listed.stdout)}
    research = next(t for t in threads if t.startswith("nb-") and threads[t]["graph"] == "research" and not t.endswith("-b") and "-fleet-" not in t)
    queue = threads[research + "-queue"]
    assert queue["graph"] == "task_queue" and queue["status"] == "completed"

    from runtime import get_history, iter_results, open_database, thread_status

    with open_database(db_path) as db:
        results = list(iter_results(db, queue["thread_id"]))
        rows = get_history(db, research)
        calls = thread_status(db, queue["thread_id"])["spend"]["calls"]
    assert len(results) == 20 and [r["status"] for r in results].count("failed") == 1

    (table,) = [html for html in _outputs(notebook, "text/html") if "queue-results" in html]
    assert table.count("<tr>") == 21 and all(r["item"] in table for r in results)  # a header, then each result
    (picture,) = _outputs(notebook, "image/svg+xml")
    assert picture.count("<circle") == len(rows)  # one dot per checkpoint of the forked thread
    assert sorted(int(b) for b in re.findall(r'data-branch="(\d+)"', picture)) == sorted(r.branch for r in rows)
    assert len({r.branch for r in rows}) == 3  # the run, the resume from step 1, the edit at step 1
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "20/20 (100%), 19 done, 1 failed" in text and f"over {calls} model calls" in text and calls
    assert "['queued', 'queued', 'queued']" in text and "worker: 3 run(s), at most 3 at once" in text
    assert "['completed', 'completed', 'completed']" in text
    assert sum(t.startswith(research + "-fleet-") and threads[t]["status"] == "completed" for t in threads) == 3


def test_without_agent_db_it_opens_the_projects_database_from_its_own_folder(tmp_path, monkeypatch):
    """A kernel starts in the notebook's folder; the database is the project's checkpoints/agent.db
    (what `agent threads` reads from the project's root), not one under notebooks/."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "runtime").mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "agent"\n')
    monkeypatch.delenv("AGENT_DB", raising=False)
    before = _real_checkpoints()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells = [next(cell for cell in notebook.cells if cell.cell_type == "code")]  # the one that opens the database
    _execute(notebook, project / "notebooks", monkeypatch)
    printed = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.output_type == "stream").strip()
    assert printed == str((project / "checkpoints" / "agent.db").resolve())
    assert (project / "checkpoints" / "agent.db").exists() and not (project / "notebooks" / "checkpoints").exists()
    assert _real_checkpoints() == before
