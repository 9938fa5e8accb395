"""Guided notebooks: paired with jupytext, outputs stripped, public API only, and all of them run headless in
order in one workspace, as a class would run them."""

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = [p for p in NOTEBOOKS if p.stem[:2].isdigit()]
ARTIFACTS = Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "notebooks"


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS][:1] == ["00_quickstart"] and len(CHAPTERS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_paired_stripped_parametrised_and_public_api_only(path):
    import jupytext

    notebook = nbformat.read(path, as_version=4)
    paired = jupytext.read(path.with_suffix(".py"))
    assert [c.source for c in notebook.cells] == [c.source for c in paired.cells], "run: jupytext --sync"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs before committing"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    source = "\n".join(c.source for c in code)
    assert "%pip" not in source and "sys.path" not in source and "!pip" not in source
    assert "workbench.core" not in source, "notebooks use the public API: import workbench as wb"
    prose = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "{T0" not in prose and "{BENCH" not in prose, "a placeholder for a measured figure is left in the prose"


@pytest.mark.notebook
@pytest.mark.timeout(2400)  # 10 min alone on a 2-core machine; up to twice that beside the demo under `make test`
def test_the_chapters_run_in_order_in_one_workspace(tmp_path, monkeypatch):
    """00 to 08 in order (01, where to deploy, after 00), then the app, with their small parameters, sharing one
    workspace: no chapter trips on another's variants. The time each took is written to
    test-artifacts/notebooks/timings.json."""
    from nbclient import NotebookClient

    workspace = tmp_path / "shared-workspace"
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(workspace))  # what `make lab` sets; kernels inherit it
    timings = {}
    for path in [*CHAPTERS, *(p for p in NOTEBOOKS if p not in CHAPTERS)]:
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        start = time.perf_counter()
        client.execute()  # raises CellExecutionError naming the failing cell
        timings[path.stem] = round(time.perf_counter() - start, 1)
        errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, path.stem
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    assert (workspace / "workbench.db").is_file() and not (tmp_path / "workbench-runs").exists()
