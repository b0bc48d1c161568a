"""Preflight and worker start-up failures (autograder/pipeline/preflight.py: preflight; autograder/pipeline/judges.py: judge; autograder/sandbox: WorkerStartFailed).

A broken grading environment must never become a student's zero. The break is injected through a real option,
`GradeOptions.preload_modules`: every worker imports those modules before any student code runs, so naming one that
does not exist makes the sandboxed interpreter fail at start-up, exactly as a package missing from the virtualenv
(or an interpreter the sandbox cannot see) would. The real judges and the real sandbox run here; nothing is patched.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from autograder.assignments import load_assignment
from autograder.pipeline.grade import grade_folder
from autograder.pipeline.judges import Judges, judge
from autograder.pipeline.preflight import preflight
from autograder.pipeline.survey import Submission
from autograder.options import GradeOptions

ASSIGNMENT = load_assignment("vit")
MISSING = "dlcourse_no_such_module_for_preflight"  # what the broken environment cannot import
BROKEN = GradeOptions(workers=1, preload_modules=(MISSING,), allow_weak_isolation=True)


def release_submissions(folder: Path, students: list[str]) -> Path:
    """Loose notebooks, one per student: the untouched release (an ordinary, gradable notebook)."""
    folder.mkdir()
    for sid in students:
        shutil.copy(ASSIGNMENT.release_dir / ASSIGNMENT.notebook, folder / f"{sid}.ipynb")
    return folder


def test_a_worker_that_cannot_start_stops_the_batch_before_any_student(tmp_path):
    subs = release_submissions(tmp_path / "subs", ["alice", "bob"])
    out = tmp_path / "grades"
    said = []
    with pytest.raises(SystemExit) as stopped:
        grade_folder(subs, "vit", out, BROKEN, progress=said.append)
    message = str(stopped.value)
    assert message.startswith("grader-error: the preflight grading")
    assert "no student was graded" in message
    assert f"No module named '{MISSING}'" in message  # the worker's own log says why
    assert "could not start" in message and "no student code ran" in message
    assert not (out / "logs" / "alice").exists() and not (out / "logs" / "bob").exists()  # no student's judge ran
    assert list((out / "results").glob("*.json")) == []  # nothing stored, so nothing to blame or to skip on a rerun
    assert json.loads((out / "gradebook.json").read_text())["submissions"] == []
    assert sorted(json.loads((out / "pending.json").read_text())["students"]) == ["alice", "bob"]  # the rerun grades them


def test_a_worker_start_failure_on_one_submission_is_a_grader_error_not_a_crash(tmp_path):
    subs = release_submissions(tmp_path / "subs", ["alice"])
    result = judge(Submission("alice", subs / "alice.ipynb"), ASSIGNMENT, tmp_path / "grades", BROKEN)
    assert result.status == "grader-error"
    assert "crashed" not in result.events and result.tests == []  # no test was scored: nothing is the student's zero
    assert f"No module named '{MISSING}'" in result.message and "no student code ran" in result.message
    assert "your notebook" not in result.message


def test_preflight_passes_in_a_working_environment(tmp_path):
    said = []
    out = tmp_path / "grades"
    out.mkdir()
    preflight(ASSIGNMENT, out, GradeOptions(workers=1, allow_weak_isolation=True), Judges(), progress=said.append)
    assert said[-1].startswith("Preflight passed")


def test_unreadable_threshold_data_stops_the_batch_before_any_student(tmp_path, monkeypatch):
    """An offline grader without the data mirror: the thresholds' test data cannot be read, which is the grader's
    problem (a grader-error naming the setting), not an internal error in every student's row."""
    from autograder.pipeline import datasets
    from autograder.assignments import load_assignment
    from autograder.pipeline.preflight import check_datasets

    def offline(split):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")
    monkeypatch.setitem(datasets.READERS, "cifar10", offline)
    with pytest.raises(SystemExit, match=r"(?s)grader-error: the test data .*cifar10:test: OSError.*DLCOURSE_DATA_MIRROR"):
        check_datasets(load_assignment("cnn"))
    assert datasets.unreadable_datasets(load_assignment("captioning")) == []  # generated data: nothing to read


def test_every_threshold_names_datasets_the_checker_knows():
    from autograder.pipeline import datasets
    from autograder.assignments import list_assignments, load_assignment

    for name in list_assignments():
        for threshold in load_assignment(name).spec.thresholds.values():
            assert all(entry.partition(":")[0] in datasets.READERS for entry in threshold.data), (name, threshold)
