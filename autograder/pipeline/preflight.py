"""Before the first student: the isolation check, the datasets the thresholds read, and the preflight (the release
notebook graded through the real judge and sandbox). Each stops the batch as the grader's fault."""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from autograder.assignments import Assignment
from autograder.options import GradeOptions
from autograder.pipeline.judge_server import JudgeServerError
from autograder.pipeline.judges import Interrupted, Judges, judge
from autograder.pipeline.results import Outcome, Status
from autograder.pipeline.survey import Submission
from autograder.sandbox import log_tail

def check_isolation(options: GradeOptions, progress=print, private: Sequence[Path] = (), own: Sequence[Path] = ()) -> str | None:
    """Refuse to grade where student code could not be confined, or where a worker could write what judges run; the
    backend that will confine it ("bubblewrap", "uid"; None: weak isolation, as --allow-weak-isolation allows). For the
    uid backend, whose worker sees the host's filesystem, the checkout's secrets, the datasets and `private` (the
    submissions, OUT) are made private first, or the batch is refused naming what is not (sandbox.make_private:
    paths under the checkout or a folder of `own` are fixed, others only checked)."""
    from autograder.sandbox import choose_backend, grader_files_writable_by_worker, make_private, worker_private_paths

    backend, problem = choose_backend(options.sandbox)
    if backend is None and not options.allow_weak_isolation:
        raise SystemExit(f"cannot grade safely: {problem}.\nInstall bubblewrap (or, in a container that forbids user "
                         "namespaces, run the grader as root for the uid backend), or pass --allow-weak-isolation to "
                         "grade with the Python audit hook only (each gradebook row records the isolation used).")
    if backend is None:
        progress(f"WARNING: {problem}; grading with weak isolation (the audit hook only), as --allow-weak-isolation asks")
        return None
    if problem:  # auto fell back to the uid backend
        progress(f"Sandbox: the uid backend (no namespaces; file modes keep the worker out), since {problem}")
    if os.geteuid() == 0:
        writable = grader_files_writable_by_worker()
        if writable:
            raise SystemExit(f"cannot grade safely: {len(writable)} file(s) the judges run could be written by a student "
                             f"worker, e.g. {writable[0]}; fix their owner or mode (chmod o-w) first")
    if backend == "uid":
        problems = make_private(worker_private_paths(list(private)), own=list(own))
        if problems:
            raise SystemExit("cannot grade safely with the uid backend: a student's worker could read "
                             f"{len(problems)} path(s):\n" + "\n".join(f"  {line}" for line in problems))
    return backend


PREFLIGHT_ID = ".preflight"  # its work and log folders; no student id starts with "." (survey skips such names)


def preflight(assignment: Assignment, out: Path, options: GradeOptions, judges: Judges, progress=print) -> None:
    """Before the first student: grade the assignment's release notebook (what every student starts from) through the
    same judge and sandbox as the students. It must be judged without a grader fault: the worker starts and answers,
    no test ends in an internal error. Otherwise the batch stops (SystemExit) with the cause and the worker's log,
    before any student is graded, so a broken grader environment never becomes a column of zeros."""
    progress(f"Preflight: grading the release notebook of '{assignment.name}' in the sandbox...")
    started = time.monotonic()
    canary = Submission(PREFLIGHT_ID, assignment.release_dir)
    try:
        result = judge(canary, assignment, out, options, judges)
    except Interrupted:
        return  # stopping: grade_folder says so
    except JudgeServerError as exc:
        raise SystemExit(f"grader-error: the preflight could not start a judge, so no student was graded: {exc}\n"
                         "Fix the grading environment, or pass --judge process, then run the same command again.") from exc
    logs = out / "logs" / PREFLIGHT_ID
    problems = []
    if result.status != Status.OK:
        problems.append(f"its status is {result.status}: {result.message}")
    problems += [f"worker {event}" for event in result.events]
    problems += [f"test {t.id} ended in an internal grader error (see {logs / 'judge.log'})"
                 for t in result.tests if t.outcome == Outcome.ERROR]
    if not result.tests and not problems:
        problems.append("no test ran")
    if problems:  # for the instructor's terminal only: the logs may quote the grader's own code
        worker_log, judge_log = logs / "worker.log", logs / "judge.log"
        judge_failed = not worker_log.exists() or any(t.outcome == Outcome.ERROR for t in result.tests)
        shown = [f"\nThe {name} log ({path}) ends with:\n{log_tail(path)}"
                 for name, path, show in (("worker's", worker_log, True), ("judge's", judge_log, judge_failed))
                 if show and path.exists()]
        raise SystemExit(f"grader-error: the preflight grading of {assignment.release_dir / assignment.notebook} failed, "
                         f"so no student was graded (no row is blamed on a student):\n  " + "\n  ".join(problems)
                         + "".join(shown) + "\nFix the grading environment, then run the same command again.")
    progress(f"Preflight passed in {time.monotonic() - started:.1f} s ({result.isolation}).")


def check_datasets(assignment: Assignment, progress=print) -> None:
    """Before the first student: read the datasets the thresholds name (autograder/pipeline/datasets.py). Data this grader
    cannot reach stops the batch (SystemExit) as the grader's problem, before any row is graded."""
    from autograder.pipeline.datasets import unreadable_datasets

    problems = unreadable_datasets(assignment)
    if problems:
        raise SystemExit(f"grader-error: the test data of '{assignment.name}''s thresholds cannot be read, so no student "
                         "was graded:\n  " + "\n  ".join(problems) + "\nOn a machine without internet, set "
                         "DLCOURSE_DATA_MIRROR to a folder holding the datasets (see shared/data's README) or fill "
                         "DLCOURSE_DATA where they are downloaded, then run the same command again.")
