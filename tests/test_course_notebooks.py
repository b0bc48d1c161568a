"""The course-level notebooks (notebooks/setup.ipynb, notebooks/gradebook_report.ipynb) are valid and run.

They are executed for real with nbclient, in a "python3" kernel: with ipykernel installed in the
interpreter running pytest, that kernel is this same interpreter, so it imports the same `dlcourse`.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str) -> nbformat.NotebookNode:
    """Execute notebooks/<name> from the notebooks folder; any cell error fails the test."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def text_of(nb: nbformat.NotebookNode) -> str:
    """All text the notebook printed or displayed."""
    parts = []
    for out in outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images_in(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def assert_clean(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"] == {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} is saved with outputs"


# --- setup.ipynb -----------------------------------------------------------------------------------

def test_setup_notebook_is_clean_and_valid():
    assert_clean("setup.ipynb")
    source = "\n".join(cell.source for cell in nbformat.read(NOTEBOOKS / "setup.ipynb", as_version=4).cells)
    assert 'COURSE_PACKAGE = ""' in source  # `python -m autograder publish` writes the wheel's URL in
    assert "git clone" not in source, "students must never clone the course repository: it holds the solutions"
    assert "DLCOURSE_DATA_MIRROR" in source and "DLCOURSE_SETUP_SKIP_DOWNLOAD" in source


def test_setup_notebook_environment_check_runs(monkeypatch):
    # Loading CIFAR-10 takes minutes: the download cell honours this variable and says it skipped.
    monkeypatch.setenv("DLCOURSE_SETUP_SKIP_DOWNLOAD", "1")
    monkeypatch.setenv("DLCOURSE_DEVICE", "cpu")  # same output on any machine
    nb = run_notebook("setup.ipynb")
    text = text_of(nb)
    assert "dlcourse OK: imported from" in text, text
    assert "import dlcourse` failed" not in text, text
    assert "Python " in text and "torch " in text and "torchvision " in text, text
    assert "Using device: cpu" in text, text
    assert "CIFAR-10 training needs a GPU" in text, text
    assert "Skipped the dataset download (DLCOURSE_SETUP_SKIP_DOWNLOAD" in text, text
    assert not any(out.output_type == "error" for out in outputs(nb))


# --- gradebook_report.ipynb ------------------------------------------------------------------------

TESTS = [
    {"id": "test_patchify_shape", "title": "Patchify output shape", "group": "Patchify", "points": 1.0},
    {"id": "test_patchify_values", "title": "Patchify values", "group": "Patchify", "points": 2.0},
    # Parametrised tests share a title (as in the real grader): the report must keep them apart.
    {"id": "test_attention[16-1]", "title": "Attention matches reference", "group": "Attention", "points": 3.0},
    {"id": "test_attention[32-4]", "title": "Attention matches reference", "group": "Attention", "points": 3.0},
    {"id": "test_cifar_accuracy", "title": "CIFAR-10 accuracy", "group": "Training", "points": 4.0},
]


def result(outcome: str, points: float) -> dict:
    earned = points if outcome == "passed" else 0.0
    return {"outcome": outcome, "points": points, "earned": earned, "message": "" if outcome == "passed" else outcome}


def submission(student: str, status: str, outcomes: dict[str, str], analysis: float | None) -> dict:
    tests = {t["id"]: result(outcomes[t["id"]], t["points"]) for t in TESTS if t["id"] in outcomes}
    # Tests without a result (the run stopped) count as failed; skipped ones are not judged.
    judged = [t for t in TESTS if outcomes.get(t["id"]) != "skipped"] if outcomes else []
    hand_graded = {"analysis": {"points": 10, "earned": analysis}} if status == "ok" else {}
    not_judged = (sum(t["points"] for t in TESTS if outcomes.get(t["id"]) == "skipped")
                  + (10 if hand_graded and analysis is None else 0))
    return {
        "student_id": student, "status": status,
        "score": sum(r["earned"] for r in tests.values()) + (analysis or 0),
        "max_score": sum(t["points"] for t in judged) + (10 if hand_graded and analysis is not None else 0),
        "not_judged_points": not_judged,
        "tests": tests,
        "hand_graded": hand_graded,
    }


def gradebook(assignment: str, submissions: list[dict]) -> dict:
    return {
        "assignment": assignment, "graded_at": "2026-11-23T20:00:00Z", "isolation": "bubblewrap (uid 1000004242, seccomp)", "device": "cpu",
        "tests": TESTS, "hand_graded": [{"grade_id": "analysis", "points": 10}], "submissions": submissions,
    }


def write_gradebook(folder: Path, book: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "gradebook.json").write_text(json.dumps(book, indent=2))


def test_gradebook_report_is_clean_and_valid():
    assert_clean("gradebook_report.ipynb")


def test_gradebook_report_runs_on_a_gradebook(tmp_path, monkeypatch):
    skipped = "skipped"  # the CIFAR test is not judged for them: borderline models beyond the threshold budget
    write_gradebook(tmp_path / "vit", gradebook("vit", [
        # alice: all judged tests pass; her analysis cell is still pending.
        submission("alice", "ok", {"test_patchify_shape": "passed", "test_patchify_values": "passed",
                                   "test_attention[16-1]": "passed", "test_attention[32-4]": "passed",
                                   "test_cifar_accuracy": skipped}, analysis=None),
        # bob: one failure, one error, analysis graded.
        submission("bob", "ok", {"test_patchify_shape": "passed", "test_patchify_values": "failed",
                                 "test_attention[16-1]": "error", "test_attention[32-4]": "passed",
                                 "test_cifar_accuracy": skipped}, analysis=7),
        # carol: timed out after the first test.
        submission("carol", "timeout", {"test_patchify_shape": "passed"}, analysis=None),
    ]))
    # A second assignment next to it: the report draws one box per assignment.
    write_gradebook(tmp_path / "cnn", gradebook("cnn", [
        submission("alice", "ok", {t["id"]: "passed" for t in TESTS}, analysis=9),
        submission("bob", "crashed", {}, analysis=None),
    ]))
    monkeypatch.setenv("GRADES_DIR", str(tmp_path / "vit"))

    nb = run_notebook("gradebook_report.ipynb")
    text = text_of(nb)
    assert not any(out.output_type == "error" for out in outputs(nb))
    assert "Run the grader first" not in text, text
    # Histogram, pass rate per test, mean per group, box plot per assignment.
    assert images_in(nb) == 4, text
    assert all(name in text for name in ("alice", "bob", "carol")), text
    assert all(test["id"] in text for test in TESTS), text  # one row per test, also for shared titles
    assert "not judged" in text, text
    assert "1 hand-graded cell(s) pending" in text, text  # alice's analysis (carol has no hand-graded cells)
    assert "Only 1 assignment" not in text, text


def test_gradebook_report_without_gradebook_says_to_run_the_grader(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("GRADES_DIR", str(empty))

    nb = run_notebook("gradebook_report.ipynb")
    text = text_of(nb)
    assert not any(out.output_type == "error" for out in outputs(nb))
    assert "Run the grader first" in text, text
    assert "make demo" in text and "python -m autograder grade" in text, text
    assert images_in(nb) == 0
