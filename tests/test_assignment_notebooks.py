"""The notebooks run in a real Jupyter kernel: the source top to bottom (with DLCOURSE_QUICK=1, the one
setting that shrinks training), the release until its first TODO, where it stops with NotImplementedError."""
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.assignments import list_assignments, load_assignment


def execute(path, cwd, timeout=900):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    return nb, client


@pytest.mark.parametrize("name", list_assignments())
def test_source_notebook_runs_top_to_bottom_in_quick_mode(name, tmp_path, monkeypatch, local_datasets):
    monkeypatch.setenv("DLCOURSE_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assignment = load_assignment(name)
    nb, client = execute(assignment.source_dir / assignment.notebook, tmp_path)
    client.execute()
    for saved in assignment.files[1:]:
        assert (tmp_path / saved).exists(), f"the notebook did not save {saved}"
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "rel_error" in text


@pytest.mark.parametrize("name", list_assignments())
def test_release_notebook_stops_at_the_first_todo(name, tmp_path):
    assignment = load_assignment(name)
    nb, client = execute(assignment.release_dir / assignment.notebook, tmp_path, timeout=300)
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError", f"stopped with {info.value.ename}: {info.value.evalue}"
