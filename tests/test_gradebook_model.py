"""The typed gradebook (autograder/pipeline/gradebook.py) and the results it is made from (autograder/pipeline/results.py): statuses and
outcomes are the known ones, the judge decides the status, and a results.json or gradebook.json of another format is
refused naming the file and the fix. (The one scoring rule over every output: tests/test_scoring_rule.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.assignments import load_assignment
from autograder.pipeline.grade import gradebook_of_store, rebuild_gradebook
from autograder.pipeline.survey import Submission
from autograder.pipeline.gradebook import Gradebook, build_gradebook, format_table
from autograder.pipeline.results import Outcome, Status, SubmissionResult, judged_status
from autograder.pipeline.results import TestResult as JudgedTest  # (a name pytest does not collect)
from autograder.pipeline.store import ResultStore, StoredResult


def test_the_judge_decides_the_status_from_what_happened():
    assert judged_status("no cnn.ipynb in the submission", True, []) == Status.MISSING_NOTEBOOK
    assert judged_status("cnn.ipynb: not JSON", False, ["crashed"]) == Status.BAD_NOTEBOOK
    assert judged_status(None, False, ["timeout", "crashed"]) == Status.CRASHED
    assert judged_status(None, False, ["timeout"]) == Status.TIMEOUT
    assert judged_status(None, False, []) == Status.OK


def test_statuses_and_outcomes_are_the_known_strings_and_nothing_else():
    assert SubmissionResult("grader-error").status is Status.GRADER_ERROR
    assert JudgedTest("A", "A", "G", 1, 1, "passed", "").outcome is Outcome.PASSED
    with pytest.raises(ValueError):
        SubmissionResult("grader_error")
    with pytest.raises(ValueError):
        JudgedTest("A", "A", "G", 1, 0, "xfailed", "")
    assert json.dumps({"status": Status.NO_SUBMISSION}) == '{"status": "no-submission"}'  # the files keep the strings


def test_a_submission_without_results_still_has_a_row_with_every_test_ungraded():
    assignment = load_assignment("cnn")
    judged = SubmissionResult("ok", tests=[JudgedTest("A", "A", "G", 4, 4, "passed", ""),
                                           JudgedTest("B", "B", "G", 2, 0, "failed", "wrong")])
    gradebook = build_gradebook(assignment, [(Submission("ann", Path("a.ipynb")), judged),
                                             (Submission("bob", Path("b.tar.gz")),
                                              SubmissionResult.without_results(Status.BAD_ARCHIVE, "cannot unpack"))])
    bob = gradebook.row("bob")
    assert (bob.status, bob.score, bob.max_score, bob.percentage) == (Status.BAD_ARCHIVE, 0, 6, 0.0)
    assert {t.outcome for t in bob.tests.values()} == {Outcome.ERROR}
    alone = Gradebook.without_results(assignment, "submission", Status.GRADER_ERROR, "the grader broke")
    assert [(r.student_id, r.status, r.message) for r in alone.rows] == [("submission", "grader-error", "the grader broke")]
    assert "grader-error" in format_table(alone)


def stored_batch(out: Path) -> None:
    """OUT with one stored result and its gradebook, as `grade` leaves them."""
    assignment = load_assignment("cnn")
    store = ResultStore(out, "cnn")
    store.put(StoredResult("ann", "cnn", "ann.ipynb", "0" * 64, 1.0,
                           SubmissionResult("ok", tests=[JudgedTest("A", "A", "G", 4, 4, "passed", "")])))
    gradebook_of_store(assignment, store.all(), {}, {}, {}, [], out)


def test_a_results_file_of_another_format_is_refused_naming_it_and_the_fix(tmp_path):
    stored_batch(tmp_path)
    path = tmp_path / "results" / "ann.json"
    record = json.loads(path.read_text())
    assert record["result"]["format"] == 1
    record["result"]["format"] = 2
    path.write_text(json.dumps(record))
    with pytest.raises(SystemExit) as refused:
        ResultStore(tmp_path, "cnn").get("ann")
    assert str(path) in str(refused.value) and "format 2" in str(refused.value)
    assert "Grade the submissions again" in str(refused.value)


def test_a_gradebook_of_another_format_is_refused_naming_it_and_the_fix(tmp_path):
    stored_batch(tmp_path)
    path = tmp_path / "gradebook.json"
    assert rebuild_gradebook(tmp_path).row("ann").score == 4  # format 1, read back
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": 7}))
    with pytest.raises(SystemExit) as refused:
        rebuild_gradebook(tmp_path)
    assert str(path) in str(refused.value) and "format 7" in str(refused.value)
    assert "Grade the submissions again" in str(refused.value)
