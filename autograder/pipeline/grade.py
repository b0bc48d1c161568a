"""Grade a folder of submissions: one trusted judge process per submission (forked from a judge server per worker
slot, or with --judge process a fresh interpreter), in parallel.

    python -m autograder grade SUBMISSIONS --assignment vit --out build/grades/vit --workers 2

SUBMISSIONS holds archives from CollectSubmission.sh (`<student-id>.tar.gz`, also .tgz/.tar.xz/.tar.bz2/.tar/.zip, in
any case), loose notebooks (`<student-id>.ipynb`) or folders (`<student-id>/`); every other entry is listed as a
warning, symbolic links are refused, and two submissions of one student are an error (survey.py). Each result is kept
in OUT/results/ as soon as it is known (autograder/pipeline/store.py), so a rerun grades only what is new or changed.
Before the first student, `preflight` (preflight.py) grades the release notebook through the same judge and sandbox and stops the
batch with a grader-error (and the worker's log) if the grader itself is broken; a worker that cannot start for one
submission is that submission's grader-error, never its zero. Pipeline for each one:
  1. unpack: only the files the assignment's submission.txt names, size-capped, never a path from
     the archive (unpack.py: unpack_submission);
  2. judge: `pytest <hidden tests> -p autograder.pipeline.judge` in a process of its own (judges.py: Judges), which runs the student's
     code in a new sandboxed worker and writes results.json (autograder/pipeline/judge.py);
  3. record: a gradebook row, whatever happened (build_row).
Then gradebook.csv, gradebook.json and feedback/<student-id>.md are written (autograder/pipeline/gradebook.py), and integrity.md
(autograder/pipeline/integrity.py), the TA's report of flagged answer cells and similar pairs.
With --slurm, steps 1-3 run in the tasks of a Slurm job array instead of local workers, each through grade_and_store
as here (autograder/deploy/slurm.py); the survey, what to grade and the gradebook are this module's either way.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from autograder.assignments import Assignment, load_assignment
from autograder.options import BatchOptions, GradeOptions
from autograder.pipeline.gradebook import Gradebook
from autograder.pipeline.judges import Interrupted, Judges, judge, kill_leftovers
from autograder.pipeline.preflight import check_datasets, check_isolation, preflight
from autograder.pipeline.results import FormatError, Status, SubmissionResult
from autograder.pipeline.store import ResultStore, StoredResult, grader_digest, submission_digest
from autograder.pipeline.survey import Submission, read_roster, survey


def choose(subs: list[Submission], store: ResultStore, grader: str, force: bool,
           only: list[str] | None) -> list[Submission]:
    """What this run grades: with `only`, those students; otherwise what is new, changed, `force`d, left pending by an
    interrupted run, graded by another version of the grader (`grader`: store.grader_digest), or a grader-error (the
    grader's fault, so worth another try). Recorded as pending until each is stored, so an interrupted run is resumed
    exactly."""
    todo, pending = [], store.pending()
    for sub in subs:
        sub.sha256 = submission_digest(sub.path)
        stored = store.get(sub.student_id)
        if only is not None:
            chosen = sub.student_id in only
        else:
            chosen = (force or stored is None or stored.sha256 != sub.sha256 or sub.student_id in pending
                      or stored.grader != grader or stored.result.status == Status.GRADER_ERROR)
        if chosen:
            todo.append(sub)
    present = {s.student_id for s in subs}
    store.set_pending({s.student_id for s in todo} | (pending & present if only is not None else set()))
    return todo


def grade_and_store(sub: Submission, assignment: Assignment, out: Path, options: GradeOptions, store: ResultStore,
                    grader: str, judges: Judges) -> SubmissionResult:
    """Judge one submission and keep its result in the store (Interrupted when the batch is stopping): what every
    grader does for each submission, here or in a Slurm array task (autograder/deploy/slurm.py)."""
    if judges.stopping.is_set():  # not even unpacked
        raise Interrupted(sub.student_id)
    started = time.monotonic()
    try:
        result = judge(sub, assignment, out, options, judges)
    except Interrupted:
        raise
    except Exception as exc:  # the grader's own failure on this submission: its row says so, the batch goes on
        result = SubmissionResult.without_results(Status.GRADER_ERROR, f"the grader failed on this submission "
                                                  f"({type(exc).__name__}: {exc}); a rerun tries it again")
    store.put(StoredResult(sub.student_id, assignment.name, sub.path.name, sub.sha256,
                           round(time.monotonic() - started, 1), result, grader))  # durable before anything else
    return result


def grade_each(todo: list[Submission], assignment: Assignment, out: Path, options: GradeOptions, store: ResultStore,
               grader: str, judges: Judges, progress, bar: bool) -> None:
    """Judge `todo` on options.workers threads, storing each result as soon as it is known."""
    counts: dict[str, int] = {}
    meter = tqdm(total=len(todo), unit="submission", disable=not bar, dynamic_ncols=True,
                 bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}")
    lock = threading.Lock()

    def one(sub: Submission) -> None:
        result = grade_and_store(sub, assignment, out, options, store, grader, judges)
        store.done(sub.student_id)
        with lock:
            counts[result.status] = counts.get(result.status, 0) + 1
            if bar:
                meter.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(counts.items())), refresh=False)
                meter.update()
            else:
                progress(f"  {sub.student_id}: {result.status}")

    try:
        with ThreadPoolExecutor(max_workers=options.workers) as pool:
            futures = [pool.submit(one, sub) for sub in todo]
            for future in as_completed(futures):
                if judges.stopping.is_set():
                    for f in futures:
                        f.cancel()
                try:
                    future.result()
                except (Interrupted, CancelledError):
                    pass
    finally:
        meter.close()


def write_gradebook(assignment: Assignment, store: ResultStore, subs: list[Submission], submissions: Path,
                    roster_ids: list[str] | None, hand: dict, graded_answers: dict, warnings: list[str],
                    out: Path) -> Gradebook:
    """The gradebook of every result kept in OUT/results/ (plus a no-submission row per roster student without one),
    written to OUT: gradebook.csv, gradebook.json, feedback/."""
    graded = store.all()
    present = {s.student_id for s in subs}
    warnings = warnings + [f"{sid}: row kept from an earlier run ({stored.source} is no longer in {submissions})"
                           for sid, stored in graded.items() if sid not in present]
    missing = {sid: f"no submission was found in {submissions.name}" for sid in roster_ids or () if sid not in graded}
    gradebook = gradebook_of_store(assignment, graded, missing, hand, graded_answers, warnings, out)
    write_integrity(assignment, gradebook, {sid: stored.result for sid, stored in graded.items()}, out)
    return gradebook


def gradebook_of_store(assignment: Assignment, graded: dict, missing: dict[str, str], hand: dict, graded_answers: dict,
                       warnings: list[str], out: Path) -> Gradebook:
    """The gradebook of the results kept in OUT (`graded`: ResultStore.all()) and a no-submission row for each student
    of `missing` (student_id -> why), with the hand grades and the TA's comments kept in OUT; written to OUT."""
    from autograder.pipeline.gradebook import build_gradebook, hand_grade_comments, write_outputs

    results = [(Submission(s.student_id, Path(s.source)), s.result) for s in graded.values()]
    results += [(Submission(sid, Path()), SubmissionResult.without_results(Status.NO_SUBMISSION, why))
                for sid, why in missing.items()]
    gradebook = build_gradebook(assignment, results, hand, graded_answers, hand_grade_comments(out))
    gradebook.warnings = warnings
    for row in gradebook.rows:
        row.wall_s = graded[row.student_id].wall_s if row.student_id in graded else None
    write_outputs(gradebook, out)
    return gradebook


def rebuild_gradebook(out: Path) -> Gradebook:
    """Write OUT's gradebook again from what OUT keeps, grading nothing: the stored results, the hand grades (after a
    TA gave some in the hand-grading page), and the last gradebook's no-submission rows and warnings."""
    from autograder.pipeline.gradebook import kept_hand_grades

    path = out / "gradebook.json"
    try:
        last = Gradebook.read(path)
    except FormatError as exc:
        raise SystemExit(str(exc)) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: no gradebook to add hand grades to ({exc}); grade the submissions into {out} "
                         "first (python -m autograder grade SUBMISSIONS --assignment A --out OUT)") from None
    assignment = load_assignment(last.assignment)
    store = ResultStore(out, assignment.name)
    graded = store.all()
    missing = {row.student_id: row.message for row in last.rows
               if row.status == Status.NO_SUBMISSION and row.student_id not in graded}
    hand, graded_answers, _ = kept_hand_grades(out, None)
    return gradebook_of_store(assignment, graded, missing, hand, graded_answers, last.warnings, out)


def write_integrity(assignment: Assignment, gradebook: Gradebook, results: dict[str, SubmissionResult], out: Path) -> Path:
    """OUT/integrity.md (autograder/pipeline/integrity.py): each row's flags and the most similar pairs of answer cells, the
    release's own text of those cells removed. For the TA; scores are not touched."""
    from autograder.pipeline.integrity import integrity_report, similar_pairs
    from autograder.notebook import extract_graded_code, read_notebook
    from autograder.pipeline.store import atomic_write

    release = read_notebook(assignment.release_dir / assignment.notebook)
    template = extract_graded_code(release, release, list(assignment.spec.run_cells))
    boilerplate = "\n\n".join(c["source"] for c in template.cells if c["grade_id"] in template.answer_ids)
    answers = {sid: "\n\n".join(result.answers.values()) for sid, result in results.items()}
    flags = {row.student_id: row.integrity for row in gradebook.rows}
    path = out / "integrity.md"
    atomic_write(path, integrity_report(assignment.name, flags, similar_pairs(answers, boilerplate)))
    return path


def survey_batch(submissions: Path, duplicates: str, roster: Path | None, only: list[str] | None,
                 progress=print) -> tuple[list[Submission], list[str], list[str] | None]:
    """The batch's submissions, its warnings (printed: every folder entry not graded, every graded student missing
    from the roster) and the roster's student ids (None without one). Stops (SystemExit) on a folder without a
    submission, or an --only naming a student without one."""
    found = survey(submissions, duplicates)
    subs, warnings = found.submissions, list(found.warnings)
    roster_ids = read_roster(roster) if roster else None
    if roster is not None and roster_ids is not None:
        warnings += [f"{s.path.name}: graded, but {s.student_id} is not on the roster {roster.name}"
                     for s in subs if s.student_id not in roster_ids]
    if not subs:
        raise SystemExit(f"no submissions in {submissions} (expected <student-id>.tar.gz archives, notebooks or folders)"
                         + "".join(f"\n  {w}" for w in warnings))
    for warning in warnings:
        progress(f"WARNING: {warning}")
    if only:
        unknown = sorted(set(only) - {s.student_id for s in subs})
        if unknown:
            raise SystemExit(f"--only names student(s) with no submission in {submissions}: {', '.join(unknown)}")
    return subs, warnings, roster_ids


def batch_hand_grades(hand_grades: Path | None, assignment: Assignment, subs: list[Submission],
                      roster_ids: list[str] | None, store: ResultStore, out: Path, progress=print) -> tuple[dict, dict]:
    """The hand grades kept in OUT with those of the `hand_grades` CSV checked in (gradebook.kept_hand_grades), and
    the answers they grade; each change printed."""
    from autograder.pipeline.gradebook import kept_hand_grades, read_hand_grades

    given = read_hand_grades(hand_grades, assignment, {s.student_id for s in subs} | set(store.all()) | set(roster_ids or ()))
    answers = {(sid, gid): text for sid, stored in store.all().items() for gid, text in stored.result.written.items()}
    hand, graded_answers, changed = kept_hand_grades(out, given, answers)
    for line in changed:
        progress(line)
    return hand, graded_answers


def interrupted(todo: list[Submission], store: ResultStore, out: Path, force: bool, only: list[str] | None) -> SystemExit:
    """What a batch stopped by SIGINT/SIGTERM says: how many it graded, and how to go on."""
    left = store.pending()
    again = " without --force" if force else " without --only" if only else ""
    return SystemExit(f"Interrupted: {len(todo) - len(left & {s.student_id for s in todo})} of {len(todo)} "
                      f"submission(s) graded in this run; the gradebook in {out} has every result kept so far "
                      f"({len(store.all())} row(s)). Run the same command again{again} to grade only the {len(left)} left "
                      "(and anything new or changed).")


@dataclass(frozen=True)
class RunRequest:
    """What a runner that grades elsewhere is handed: the submissions to grade (`todo`: new, changed or failed; none
    with batch.collect) and where their results go (`store`, in OUT)."""
    todo: list[Submission]
    assignment: Assignment
    submissions: Path
    out: Path
    options: GradeOptions
    store: ResultStore
    batch: BatchOptions
    progress: Callable[[str], None]


class Runner(Protocol):
    """Grades a batch elsewhere instead of on local judges (autograder/deploy/slurm.py: SlurmRunner), storing each
    result in request.store; the preflight and the isolation checks are its own, on the machines that grade."""

    def __call__(self, request: RunRequest) -> None: ...


def grade_folder(submissions: Path, assignment_name: str, out: Path, options: GradeOptions,
                 batch: BatchOptions = BatchOptions(), progress: Callable[[str], None] = print,
                 runner: Runner | None = None) -> Gradebook:
    """Grade what is new or changed in `submissions` (everything with batch.force; only the students batch.only
    names, regraded, with it), keep each result in OUT/results/ as soon as its judge ends, and write the gradebook of
    every stored result, also when SIGINT/SIGTERM stops the batch. With batch.roster, its students without a
    submission get a `no-submission` row. Every folder entry that is not graded is listed as a warning, printed and
    kept in the gradebook. `runner`: grade elsewhere instead of here (a Runner: autograder/deploy/slurm.py's
    SlurmRunner). The batch's other choices: BatchOptions (autograder/options.py)."""
    assignment = load_assignment(assignment_name)
    only = list(batch.only) if batch.only is not None else None
    subs, warnings, roster_ids = survey_batch(submissions, batch.duplicates, batch.roster, only, progress)
    out = out.resolve()  # judges run in PROJECT_ROOT, and leftovers are found by this path in their command line
    out.mkdir(parents=True, exist_ok=True)
    if runner is None:
        backend = check_isolation(options, progress, private=[submissions, out], own=[out])
        options = dataclasses.replace(options, sandbox=backend or options.sandbox)  # judges need not probe again
    store = ResultStore(out, assignment.name)
    store.lock()
    # hand grades are checked before the first judge, not after the last
    hand, graded_answers = batch_hand_grades(batch.hand_grades, assignment, subs, roster_ids, store, out, progress)
    options = dataclasses.replace(options, hide=(str(submissions.resolve()), str(out.resolve())))
    if runner is not None:  # the judges run elsewhere (a Slurm array): no local leftovers to kill, no signal handlers
        try:
            grader = grader_digest(assignment)
            todo = [] if batch.collect else choose(subs, store, grader, batch.force, only)
            runner(RunRequest(todo, assignment, submissions, out, options, store, batch, progress))
        finally:
            gradebook = write_gradebook(assignment, store, subs, submissions, roster_ids, hand, graded_answers, warnings,
                                        out)
        return gradebook
    leftovers = kill_leftovers(out)
    if leftovers:
        progress(f"Killed {leftovers} judge(s) left running in {out} by an earlier grader that was killed")
    judges = Judges.for_batch(assignment, out, options)

    def stop(signum, frame):
        judges.stop()

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    todo = []
    try:
        grader = grader_digest(assignment)
        todo = choose(subs, store, grader, batch.force, only)
        if todo:
            judges.warm(len(todo))  # the judge servers import while the first of them runs the preflight
            if batch.check_release:  # (the demo and the project's tests grade the release and the data among their samples)
                check_datasets(assignment, progress)
                preflight(assignment, out, options, judges, progress)
        progress(f"Grading {len(todo)} submission(s) of '{assignment.name}' with {options.workers} worker(s)"
                 + (f"; {len(subs) - len(todo)} already graded, unchanged, by this grader (--force regrades them)"
                    if only is None and len(todo) < len(subs) else "") + "...")
        grade_each(todo, assignment, out, options, store, grader, judges, progress, batch.bar)
    finally:
        judges.close()
        for s, handler in handlers.items():
            signal.signal(s, handler)
        gradebook = write_gradebook(assignment, store, subs, submissions, roster_ids, hand, graded_answers, warnings,
                                    out)
    if judges.stopping.is_set():
        raise interrupted(todo, store, out, batch.force, only)
    return gradebook
