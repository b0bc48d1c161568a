"""The trusted judge: a pytest plugin that grades one submission with an assignment's hidden tests.

    python -m pytest autograder/hidden_tests/test_vit.py -p autograder.pipeline.judge \
        --submission-dir WORK/alice --results-json WORK/alice/results.json

Hidden tests ask for the `student` fixture, a `StudentCode` (autograder/kit/student.py). Each test carries
`@pytest.mark.points(n)`. Thresholds are judged wherever the grader runs (its GPU when it has one), within the
run's threshold budget; one that cannot be decided in it is skipped as "not judged" (autograder/kit/scoring.py), and with
a budget of 0 none is judged (`--threshold-budget 0`: the code's tests only). The results
file holds one entry per test (outcome, points earned, a message safe for the student) plus what happened to
the worker (timeouts, crashes), which the batch grader turns into a gradebook row.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from autograder.assignments import assignment_of
from autograder.feedback import Feedback, sanitise
from autograder.fingerprints import grader_fingerprints
from autograder.pipeline.integrity import scan_answer_cells
from autograder.options import GradeOptions
from autograder.pipeline.results import Outcome, Status, SubmissionResult, TestResult, judged_status
from autograder.sandbox import IsolationUnavailable, WorkerStartFailed
from autograder.kit.student import StudentCode


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--submission-dir", help="folder holding one unpacked submission")
    group.addoption("--results-json", help="where to write the results")
    group.addoption("--grade-options", help="the grading run's options (autograder/options.py), as JSON; default: defaults")
    group.addoption("--worker-log", default=None, help="file for the worker's stdout/stderr")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): how many points the test is worth")
    config.addinivalue_line("markers", "cell(*grade_ids): answer cells checked for forbidden APIs before the test runs")
    config.pluginmanager.register(ResultCollector(config), "autograder-results")
    # Which grader code judges (a checkout, an installed wheel): the first line of every judge log, for the TA
    print(f"[judge] grader code: {Path(sys.modules[StudentCode.__module__].__file__ or '?').resolve().parents[1]}",
          flush=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """The forbidden-API rule, declared: before a test marked @pytest.mark.cell("grade_id", ...) (on its class, or on
    the test itself, which then overrides the class's), each of those answer cells is read for what the assignment
    forbids (StudentCode.check_rules); a hit fails the test with Feedback."""
    marker = item.get_closest_marker("cell")
    for grade_id in marker.args if marker else ():
        item.funcargs["student"].check_rules(grade_id)
    student = item.funcargs.get("student")
    if student is not None and student.threshold_budget_s <= 0 and is_threshold(item):
        pytest.skip("not judged in this run (--threshold-budget 0: the code's tests only)")


def is_threshold(item) -> bool:
    """Whether the test judges one of the assignment's thresholds (spec.thresholds), whatever its parameters."""
    return item.nodeid.split("::", 1)[1].split("[", 1)[0] in assignment_of(item.module.__file__).spec.threshold_tests


@pytest.fixture(scope="module")
def student(request) -> Iterator[StudentCode]:
    config, module = request.config, request.module
    if not config.getoption("submission_dir"):
        pytest.exit("hidden tests need --submission-dir (run them through `python -m autograder grade`)", returncode=4)
    submission_dir = Path(config.getoption("submission_dir"))
    options_file = config.getoption("grade_options")
    options = GradeOptions.read(Path(options_file)) if options_file else GradeOptions()
    try:
        code = StudentCode.for_assignment(assignment_of(module.__file__), submission_dir,
                                          Path(config.getoption("worker_log") or submission_dir / "worker.log"), options)
    except IsolationUnavailable as exc:  # the grader's problem, not the student's: no results file, a grader-error row
        pytest.exit(f"cannot grade: {exc}", returncode=3)
    config._autograder_student = code
    yield code
    code.close()


class ResultCollector:
    def __init__(self, config):
        self.config, self.tests, self.started = config, {}, time.time()
        self.notes_before: dict[str, str] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.excinfo is not None and call.excinfo.errisinstance(WorkerStartFailed):
            item.session.shouldstop = "the sandboxed worker could not start"  # no test can run; results say why
            return
        notes = getattr(getattr(self.config, "_autograder_student", None), "notes", {})
        if report.when == "setup":
            self.notes_before = dict(notes)  # what this test adds is its own (a threshold's measured value)
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.tests[item.nodeid] = self._entry(item, report, call)
            self.tests[item.nodeid].notes = {k: v for k, v in notes.items() if self.notes_before.get(k) != v}

    def _entry(self, item, report, call) -> TestResult:
        marker = item.get_closest_marker("points")
        if marker is None:
            raise RuntimeError(f"hidden test {item.name} has no @pytest.mark.points(n)")
        points = float(marker.args[0])
        doc = (item.function.__doc__ or item.name).strip().splitlines()[0]
        entry = TestResult(id=item.nodeid.split("::", 1)[1], title=doc, group=getattr(item.cls, "GROUP", None) or "General",
                           points=points, earned=0.0, outcome=Outcome(report.outcome), message="")
        if report.passed:
            entry.earned = points
        elif report.skipped:
            entry.message = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) else "skipped"
        elif call.excinfo is not None and call.excinfo.errisinstance(Feedback):
            student = getattr(self.config, "_autograder_student", None)
            hidden = student.hidden if student is not None else grader_fingerprints(assignment_of(item.module.__file__))
            entry.message = sanitise(str(call.excinfo.value), hidden, student=False)
        else:
            entry.outcome = Outcome.ERROR
            entry.message = "the test could not complete (an internal grader error; your instructor has the details)"
            # the judge runs with --tb=no (no traceback made for the failures a student reads): this one it makes
            trace = item._repr_failure_py(call.excinfo, style="long") if call.excinfo is not None else report.longreprtext
            print(f"[judge] internal error in {item.name}:\n{trace}", file=sys.stderr)
        return entry

    def pytest_sessionfinish(self, session, exitstatus):
        """Write results.json; not when the judge could not start the student's code at all (no sandbox, a broken
        hidden test module): then the batch grader records a grader-error, never blaming the student. A worker that
        could not start (WorkerStartFailed) is a results.json with status grader-error and the worker's log."""
        path = self.config.getoption("results_json")
        student = getattr(self.config, "_autograder_student", None)
        if not path or student is None:
            return
        if student.start_failure:  # the grader's environment, not the student: a grader-error row with the worker's log
            result = SubmissionResult.without_results(Status.GRADER_ERROR, student.start_failure)
            result.isolation = student.isolation
            result.write(Path(path))
            return
        SubmissionResult(status=judged_status(student.fatal, student.notebook_missing, student.events),
                         message=student.fatal or "", tests=list(self.tests.values()), events=student.events, fatal=student.fatal,
                         problems=student.problems, notes=student.notes,
                         reviews=student.reviews, integrity=scan_answer_cells(student.answers),
                         answers=student.answers, written=student.written, cell_errors=student.cell_errors,
                         forbidden_calls=sorted(student.forbidden_calls), isolation=student.isolation,
                         memory_cap=student.memory_cap, device="cuda" if torch.cuda.is_available() else "cpu",
                         seconds=round(time.time() - self.started, 1)).write(Path(path))
