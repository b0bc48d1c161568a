"""The notebooks run in a real Jupyter kernel: the source top to bottom (with DLCOURSE_QUICK=1, the one
setting that shrinks training), the release (in quick mode too) until its first TODO, where it stops with
NotImplementedError."""
import json
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment


def execute(path, cwd, timeout=900):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    return nb, client


@pytest.mark.parametrize("name", list_assignments())
def test_source_notebook_runs_top_to_bottom_in_quick_mode(name, tmp_path, monkeypatch, local_datasets):
    monkeypatch.setenv("DLCOURSE_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # One OpenMP thread in the kernel: with two, a busy core (another test, the kernel's own I/O threads) makes
    # every small op wait for the other thread, and the seq2seq notebook's step-by-step decoder ran 60x slower.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assignment = load_assignment(name)
    nb, client = execute(assignment.source_dir / assignment.notebook, tmp_path)
    client.execute()
    for saved in assignment.files[1:]:
        assert (tmp_path / saved).exists(), f"the notebook did not save {saved}"
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "rel_error" in text

    # The student's path from here: pack with CollectSubmission.sh, then grade the archive.
    course = tmp_path / "course"
    (course / "release" / name).mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "CollectSubmission.sh", course)
    shutil.copy(assignment.release_dir / "submission.txt", course / "release" / name)
    nbformat.write(nb, course / "release" / name / assignment.notebook)
    for saved in assignment.files[1:]:
        shutil.copy(tmp_path / saved, course / "release" / name)
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    packed = subprocess.run(["bash", str(course / "CollectSubmission.sh"), "student42", name],
                            cwd=submissions, capture_output=True, text=True)
    assert packed.returncode == 0, packed.stderr
    graded = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submissions), "--assignment", name,
                             "--out", str(tmp_path / "grades"), "--workers", "1", "--threshold-budget", "0",
                             "--no-preflight"],  # the release notebook is graded by test_samples (untouched_release)
                            cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert graded.returncode == 0, graded.stderr[-2000:]
    row = json.loads((tmp_path / "grades" / "gradebook.json").read_text())["submissions"][0]
    assert row["student_id"] == "student42" and row["status"] == "ok"
    thresholds = assignment.spec.threshold_tests
    layer_tests = {tid: t for tid, t in row["tests"].items() if tid.split("[")[0] not in thresholds}
    assert layer_tests and all(t["outcome"] == "passed" for t in layer_tests.values()), layer_tests
    # Quick-mode weights are not what the thresholds judge: not judged in this run, with the reason, and no zero.
    assert all(row["tests"][t]["outcome"] == "skipped" and "--threshold-budget 0" in row["tests"][t]["message"]
               for t in thresholds), {t: row["tests"][t] for t in thresholds}


@pytest.mark.parametrize("name", list_assignments())
def test_release_notebook_stops_at_the_first_todo(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_QUICK", "1")  # the RNN notebook trains its tokenizer before the first TODO
    assignment = load_assignment(name)
    nb, client = execute(assignment.release_dir / assignment.notebook, tmp_path, timeout=300)
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError", f"stopped with {info.value.ename}: {info.value.evalue}"
