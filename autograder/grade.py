"""Grade a folder of submissions: one trusted judge process per submission (forked from a judge server per worker
slot, or with --judge process a fresh interpreter), in parallel.

    python -m autograder grade SUBMISSIONS --assignment vit --out build/grades/vit --workers 2

SUBMISSIONS holds archives from CollectSubmission.sh (`<student-id>.tar.gz`, also .tgz/.tar.xz/.tar.bz2/.tar/.zip, in
any case), loose notebooks (`<student-id>.ipynb`) or folders (`<student-id>/`); every other entry is listed as a
warning, symbolic links are refused, and two submissions of one student are an error (survey). Each result is kept
in OUT/results/ as soon as it is known (autograder/store.py), so a rerun grades only what is new or changed.
Before the first student, `preflight` grades the release notebook through the same judge and sandbox and stops the
batch with a grader-error (and the worker's log) if the grader itself is broken; a worker that cannot start for one
submission is that submission's grader-error, never its zero. Pipeline for each one:
  1. unpack: only the files the assignment's submission.txt names, size-capped, never a path from
     the archive (unpack_submission);
  2. judge: `pytest <hidden tests> -p autograder.judge` in a process of its own (Judges), which runs the student's
     code in a new sandboxed worker and writes results.json (autograder/judge.py);
  3. record: a gradebook row, whatever happened (build_row).
Then gradebook.csv, gradebook.json and feedback/<student-id>.md are written (autograder/gradebook.py), and integrity.md
(autograder/integrity.py), the TA's report of flagged answer cells and similar pairs.
With --slurm, steps 1-3 run in the tasks of a Slurm job array instead of local workers, each through grade_and_store
as here (autograder/slurm.py); the survey, what to grade and the gradebook are this module's either way.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from autograder.assignments import PROJECT_ROOT, Assignment, load_assignment
from autograder.csvfiles import csv_rows
from autograder.judge_server import JudgeServer, JudgeServerError
from autograder.options import GradeOptions
from autograder.gradebook import Gradebook
from autograder.results import FormatError, Outcome, Status, SubmissionResult
from autograder.sandbox import PASSIVE_OPENMP, log_tail
from autograder.store import ResultStore, StoredResult, grader_digest, kill_group, kill_tree, submission_digest

try:
    from lzma import LZMAError  # a corrupt .tar.xz raises it (not an OSError)
except ImportError:  # Python without lzma: tarfile cannot open .xz at all then
    LZMAError = OSError

MAX_FILE_BYTES = 1 << 30
MAX_TOTAL_BYTES = 2 << 30
# Matched case-insensitively; tarfile reads each compression from the bytes, whatever the name says.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar", ".zip")
NOTEBOOK_SUFFIX = ".ipynb"
COPY_MARK = re.compile(r"\s*\(\d+\)$")  # "alice (1).ipynb": the same student's file downloaded twice


class BadSubmission(Exception):
    """The submission could not be unpacked (its message goes into the gradebook)."""


@dataclass
class Submission:
    student_id: str
    path: Path
    sha256: str = ""  # of its bytes (autograder/store.py), set when it is graded


@dataclass
class Survey:
    """What discovery found: the submissions, and every other entry of the folder with why it is not one."""
    submissions: list[Submission]
    warnings: list[str]


def submission_id(path: Path) -> str | None:
    """The student id a folder entry's name gives, or None when the grader cannot read that kind of file.
    Archive and notebook suffixes match in any case; a trailing " (1)" (a browser's second download) is dropped."""
    name, lower = path.name, path.name.lower()
    if path.is_dir():
        stem = name
    else:
        suffix = next((s for s in (*ARCHIVE_SUFFIXES, NOTEBOOK_SUFFIX) if lower.endswith(s)), None)
        if suffix is None:
            return None
        stem = name[: -len(suffix)]
    return COPY_MARK.sub("", stem).strip() or None


def survey(folder: Path, duplicates: str = "error") -> Survey:
    """Every entry of `folder` as a submission or a warning. Two entries for one student id are an error listing them
    (`duplicates="error"`), or the newest is graded and the others listed (`duplicates="latest"`)."""
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder of submissions")
    warnings, by_id = [], {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            warnings.append(f"{path.name}: skipped, a hidden file (names starting with '.' are never submissions)")
        elif path.is_symlink():
            warnings.append(f"{path.name}: refused, a symbolic link (copy the submission itself into {folder})")
        elif not (path.is_file() or path.is_dir()):
            warnings.append(f"{path.name}: refused, not a regular file or folder")
        elif (sid := submission_id(path)) is None:
            warnings.append(f"{path.name}: not a submission the grader can read (it reads {', '.join(ARCHIVE_SUFFIXES)}, "
                            f"{NOTEBOOK_SUFFIX} and folders); ask the student for a .tar.gz from CollectSubmission.sh")
        else:
            by_id.setdefault(sid, []).append(path)
    clashes = {sid: paths for sid, paths in by_id.items() if len(paths) > 1}
    if clashes and duplicates != "latest":
        listing = "\n".join(f"  {sid}: {', '.join(p.name for p in paths)}" for sid, paths in sorted(clashes.items()))
        raise SystemExit(f"{folder} has more than one submission for the same student:\n{listing}\n"
                         "Keep one per student, or pass --duplicates latest to grade the newest (by modification time).")
    found = []
    for sid, paths in sorted(by_id.items()):
        newest = max(paths, key=lambda p: (p.stat().st_mtime, p.name))
        found.append(Submission(sid, newest))
        warnings += [f"{p.name}: not graded, {newest.name} is newer (--duplicates latest)" for p in paths if p != newest]
    return Survey(found, warnings)


def discover(folder: Path) -> list[Submission]:
    """The submissions in `folder` (see survey for what is not one, and why)."""
    return survey(folder).submissions


def read_roster(path: Path) -> list[str]:
    """The student ids of a roster CSV with a `student_id` column (other columns are ignored)."""
    try:
        with csv_rows(path) as reader:
            if "student_id" not in (reader.fieldnames or ()):
                raise SystemExit(f"--roster {path}: expected a CSV with a header row naming a student_id column")
            ids = []
            for row in reader:
                sid = (row["student_id"] or "").strip()
                if not sid:
                    raise SystemExit(f"--roster {path}: line {reader.line_num} has no student_id")
                ids.append(sid)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"--roster {path}: cannot read it ({exc})") from None
    return list(dict.fromkeys(ids))


def unpack_submission(sub: Submission, assignment: Assignment, dest: Path) -> list[str]:
    """Copy the assignment's files out of the submission into `dest`; return the names found."""
    wanted = set(assignment.files)
    dest.mkdir(parents=True, exist_ok=True)

    def accept(member_name: str) -> str | None:
        parts = Path(member_name).parts
        if len(parts) == 1 or (len(parts) == 2 and parts[0] == assignment.name):
            return parts[-1] if parts[-1] in wanted else None
        return None

    written, total = [], 0

    def write(name: str, size: int, read) -> None:
        nonlocal total
        total += size
        if size > MAX_FILE_BYTES or total > MAX_TOTAL_BYTES:
            raise BadSubmission(f"{name} is too large ({size / 2**20:.0f} MiB)")
        (dest / name).write_bytes(read())
        written.append(name)

    path = sub.path
    if path.is_symlink():
        raise BadSubmission(f"{path.name} is a symbolic link, which the grader refuses; copy the submission itself")
    try:
        if path.is_dir():
            for f in assignment.files:
                for candidate in (path / f, path / assignment.name / f):
                    # a symlink (say to source/) must not become the student's file, nor a linked folder lead to one
                    if any(p.is_symlink() for p in (candidate, candidate.parent)):
                        continue
                    if candidate.is_file() and path.resolve() in candidate.resolve().parents:
                        write(f, candidate.stat().st_size, candidate.read_bytes)
                        break
        elif path.name.lower().endswith(NOTEBOOK_SUFFIX):
            write(assignment.notebook, path.stat().st_size, path.read_bytes)
        elif path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    name = accept(info.filename)
                    if name and not info.is_dir() and name not in written:
                        write(name, info.file_size, lambda info=info: archive.read(info))
        else:
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    name = accept(member.name)
                    if name and member.isfile() and name not in written:
                        write(name, member.size, lambda member=member: archive.extractfile(member).read())
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, LZMAError) as exc:
        raise BadSubmission(f"{path.name} could not be unpacked ({type(exc).__name__}: {exc}); "
                            "make it again with CollectSubmission.sh") from None
    return written


JUDGE_GRACE_S = 120.0  # the judge's own work past the student's budget (datasets, scoring) before it is killed


def check_isolation(options: GradeOptions, progress=print, private: list[Path] = (), own: list[Path] = ()) -> str | None:
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


def judge_command(assignment: Assignment, work: Path, results_path: Path, logs: Path, options: GradeOptions) -> list[str]:
    """The judge's command line. -E -s: no PYTHON* variables, no user site-packages; the checkout (cwd) comes first.
    --disable-plugin-autoload: the judge plugin only, none of the pytest plugins installed beside it (xdist, anyio).
    no:unraisableexception: that plugin only turns an exception no one could catch into a warning (no outcome changes),
    and runs full garbage collections at the end of every judge that cost up to a CPU second. no:logging and --tb=no:
    no log capture around every test phase, and no traceback (source read and parsed) made for each failed test: a
    student reads the Feedback's message, and the judge prints an internal error's traceback itself (judge.py)."""
    return [sys.executable, "-E", "-s", "-m", "pytest", str(assignment.hidden_tests), "-p", "autograder.judge",
            "-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:logging", "--tb=no",
            "--disable-plugin-autoload", "-q", "--no-header", "--rootdir", str(PROJECT_ROOT),
            "--submission-dir", str(work), "--results-json", str(results_path), "--worker-log", str(logs / "worker.log"),
            "--grade-options", str(options.write(logs / "options.json"))]


class Interrupted(Exception):
    """The batch is stopping (SIGINT/SIGTERM): the judge was killed, its submission is left for the next run."""


class ServerJudge:
    """A judge forked by a JudgeServer, with the part of subprocess.Popen's interface that Judges uses."""

    def __init__(self, server: JudgeServer, pid: int):
        self.server, self.pid, self.returncode = server, pid, None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.server.wait(timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"judge {self.pid}", timeout)
            self.returncode = code
        return self.returncode


class Judges:
    """The judges in flight, each in a process group of its own, so that stopping the batch kills them and their
    workers (a rerun after SIGKILL finds and kills what is left: ResultStore.kill_leftovers). A judge is a fresh
    interpreter (`servers` empty: --judge process) or a fork of an idle judge server, one server per worker slot, all
    forked from one process that imported once (--judge server: autograder/judge_server.py; the judge and its sandbox
    are the same, only its imports are saved)."""

    def __init__(self, servers: list[JudgeServer] | None = None):
        self.stopping = threading.Event()
        self._procs: dict[str, subprocess.Popen | ServerJudge] = {}
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[JudgeServer] = queue.SimpleQueue()
        self._servers = list(servers or ())
        for server in self._servers:
            self._idle.put(server)

    @classmethod
    def for_batch(cls, assignment: Assignment, out: Path, options: GradeOptions, tag: str = "") -> "Judges":
        """The batch's judges: with options.judge == "server", one judge server per worker, importing already.
        `tag` names their logs apart where several graders share OUT (Slurm array tasks)."""
        if options.judge == "process":
            return cls()
        if options.judge != "server":
            raise SystemExit(f"unknown judge kind {options.judge!r} (expected server or process)")
        (out / "logs").mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-E", "-s", "-m", "autograder.judge_server", "--work", f"{out}/work/",
                   "--preload", str(assignment.hidden_tests), "--course", assignment.name]
        # One process for the batch, forking a server per worker: started by warm(), or by the first judge
        return cls(JudgeServer.group(command, out / "logs" / f".judge-server{tag}.log", PROJECT_ROOT,
                                     max(1, options.workers)))

    def run(self, student_id: str, command: list[str], log, timeout: float) -> int | None:
        """The judge's exit code, or None when it ran past `timeout`; Interrupted when the batch is stopping."""
        server = self._idle.get() if self._servers else None
        try:
            if server:
                server.wait_ready()  # its imports, the first time: outside the lock, so that stop() is never held up
            with self._lock:
                if self.stopping.is_set():
                    raise Interrupted(student_id)
                if server:
                    proc = ServerJudge(server, server.start(command, Path(log.name), PROJECT_ROOT))
                else:
                    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=PROJECT_ROOT, start_new_session=True, env={**os.environ, **PASSIVE_OPENMP})
                self._procs[student_id] = proc
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)  # before it is reaped: the pid is still the judge's
                proc.wait()
                return None
            finally:
                with self._lock:
                    self._procs.pop(student_id, None)
                kill_group(proc.pid)  # a judge that ended may still have left something in its group
                if self.stopping.is_set():
                    raise Interrupted(student_id)
        finally:
            if server:
                self._idle.put(server)

    def stop(self) -> None:
        with self._lock:
            self.stopping.set()
            procs = list(self._procs.values())
        for proc in procs:
            if proc.returncode is None:
                kill_tree(proc.pid)

    def warm(self, count: int) -> None:
        """Start `count` judge servers now, so that their imports overlap with other work (the rest start when needed)."""
        for server in self._servers[:count]:
            if not server.alive:
                server.launch()

    def close(self) -> None:
        """End the judge servers (they exit at the end of their input)."""
        for server in self._servers:
            server.close()


def judge(sub: Submission, assignment: Assignment, out: Path, options: GradeOptions,
          judges: Judges | None = None) -> SubmissionResult:
    """Unpack and judge one submission; always returns a result, with its status (Interrupted when stopping)."""
    work = out / "work" / sub.student_id
    logs = out / "logs" / sub.student_id
    shutil.rmtree(work, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    try:
        files = unpack_submission(sub, assignment, work)
    except BadSubmission as exc:
        return SubmissionResult.without_results(Status.BAD_ARCHIVE, str(exc))
    results_path = work / "results.json"
    budget = options.budget(assignment)
    command = judge_command(assignment, work, results_path, logs, options)
    judges = judges or Judges()
    with open(logs / "judge.log", "wb") as log:
        returncode = judges.run(sub.student_id, command, log, budget + JUDGE_GRACE_S)
    if returncode is None:
        return SubmissionResult.without_results(Status.TIMEOUT, f"grading took more than {budget:.0f} s")
    if not results_path.exists():
        return SubmissionResult.without_results(Status.GRADER_ERROR, f"the judge exited with code {returncode} without "
                                                f"results (see {logs / 'judge.log'})")
    result = SubmissionResult.read(results_path)  # its status is the judge's (results.judged_status)
    result.files = files
    return result


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
    """Before the first student: read the datasets the thresholds name (autograder/datasets.py). Data this grader
    cannot reach stops the batch (SystemExit) as the grader's problem, before any row is graded."""
    from autograder.datasets import unreadable_datasets

    problems = unreadable_datasets(assignment)
    if problems:
        raise SystemExit(f"grader-error: the test data of '{assignment.name}''s thresholds cannot be read, so no student "
                         "was graded:\n  " + "\n  ".join(problems) + "\nOn a machine without internet, set "
                         "DLCOURSE_DATA_MIRROR to a folder holding the datasets (see shared/data's README) or fill "
                         "DLCOURSE_DATA where they are downloaded, then run the same command again.")


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
    grader does for each submission, here or in a Slurm array task (autograder/slurm.py)."""
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
    from autograder.gradebook import build_gradebook, hand_grade_comments, write_outputs

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
    from autograder.gradebook import kept_hand_grades

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
    """OUT/integrity.md (autograder/integrity.py): each row's flags and the most similar pairs of answer cells, the
    release's own text of those cells removed. For the TA; scores are not touched."""
    from autograder.integrity import integrity_report, similar_pairs
    from autograder.notebook import extract_graded_code, read_notebook
    from autograder.store import atomic_write

    release = read_notebook(assignment.release_dir / assignment.notebook)
    template = extract_graded_code(release, release, list(assignment.spec.run_cells))
    boilerplate = "\n\n".join(c["source"] for c in template.cells if c["grade_id"] in template.answer_ids)
    answers = {sid: "\n\n".join(result.answers.values()) for sid, result in results.items()}
    flags = {row.student_id: row.integrity for row in gradebook.rows}
    path = out / "integrity.md"
    atomic_write(path, integrity_report(assignment.name, flags, similar_pairs(answers, boilerplate)))
    return path


def grade_folder(submissions: Path, assignment_name: str, out: Path, options: GradeOptions,
                 hand_grades: Path | None = None, progress=print, force: bool = False,
                 only: list[str] | None = None, roster: Path | None = None, duplicates: str = "error",
                 bar: bool = False, runner=None, collect: bool = False, check_release: bool = True) -> Gradebook:
    """Grade what is new or changed in `submissions` (everything with `force`; only the students `only` names,
    regraded, with it), keep each result in OUT/results/ as soon as its judge ends, and write the gradebook of every
    stored result, also when SIGINT/SIGTERM stops the batch. With a `roster`, its students without a submission get a
    `no-submission` row. Every folder entry that is not graded is listed as a warning, printed and kept in the gradebook.
    `bar`: a progress bar (n/N, elapsed, time left, count per status) instead of a line per submission.
    `runner`: grade elsewhere instead of here (autograder/slurm.py's SlurmRunner, called with what to grade); the
    preflight and the isolation checks are then its own, on the machines that grade. `collect`: grade nothing new,
    only let the runner wait for what it started earlier, then write the gradebook. `check_release=False` skips the
    dataset check and the preflight (`grade --no-preflight`): for the demo and the project's tests, which grade the
    untouched release (the notebook the preflight grades) and the reference (which reads the data) as samples."""
    from autograder.gradebook import kept_hand_grades, read_hand_grades

    assignment = load_assignment(assignment_name)
    found = survey(submissions, duplicates)
    subs, warnings = found.submissions, list(found.warnings)
    roster_ids = read_roster(roster) if roster else None
    if roster_ids is not None:
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
    out = out.resolve()  # judges run in PROJECT_ROOT, and leftovers are found by this path in their command line
    out.mkdir(parents=True, exist_ok=True)
    if runner is None:
        backend = check_isolation(options, progress, private=[submissions, out], own=[out])
        options = dataclasses.replace(options, sandbox=backend or options.sandbox)  # judges need not probe again
    store = ResultStore(out, assignment.name)
    store.lock()
    # hand grades are checked before the first judge, not after the last
    given = read_hand_grades(hand_grades, assignment, {s.student_id for s in subs} | set(store.all()) | set(roster_ids or ()))
    answers = {(sid, gid): text for sid, stored in store.all().items() for gid, text in stored.result.written.items()}
    hand, graded_answers, changed = kept_hand_grades(out, given, answers)
    for line in changed:
        progress(line)
    options = dataclasses.replace(options, hide=(str(submissions.resolve()), str(out.resolve())))
    if runner is not None:  # the judges run elsewhere (a Slurm array): no local leftovers to kill, no signal handlers
        try:
            grader = grader_digest(assignment)
            todo = [] if collect else choose(subs, store, grader, force, only)
            runner(todo, assignment, submissions, out, options, store, progress, bar)
        finally:
            gradebook = write_gradebook(assignment, store, subs, submissions, roster_ids, hand, graded_answers, warnings,
                                        out)
        return gradebook
    if (out / "slurm" / "job.json").exists():  # a Slurm job graded into OUT: not while it still runs
        from autograder.slurm import refuse_if_running

        refuse_if_running(out)
    leftovers = store.kill_leftovers()
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
        todo = choose(subs, store, grader, force, only)
        if todo:
            judges.warm(len(todo))  # the judge servers import while the first of them runs the preflight
            if check_release:  # (the demo and the project's tests grade the release and the data among their samples)
                check_datasets(assignment, progress)
                preflight(assignment, out, options, judges, progress)
        progress(f"Grading {len(todo)} submission(s) of '{assignment.name}' with {options.workers} worker(s)"
                 + (f"; {len(subs) - len(todo)} already graded, unchanged, by this grader (--force regrades them)"
                    if only is None and len(todo) < len(subs) else "") + "...")
        grade_each(todo, assignment, out, options, store, grader, judges, progress, bar)
    finally:
        judges.close()
        for s, handler in handlers.items():
            signal.signal(s, handler)
        gradebook = write_gradebook(assignment, store, subs, submissions, roster_ids, hand, graded_answers, warnings,
                                    out)
    if judges.stopping.is_set():
        left = store.pending()
        again = " without --force" if force else " without --only" if only else ""
        raise SystemExit(f"Interrupted: {len(todo) - len(left & {s.student_id for s in todo})} of {len(todo)} "
                         f"submission(s) graded in this run; the gradebook in {out} has every result kept so far "
                         f"({len(store.all())} row(s)). Run the same command again{again} to grade only the {len(left)} left "
                         "(and anything new or changed).")
    return gradebook
