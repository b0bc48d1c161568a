"""The judges: one trusted process per submission (forked from a judge server per worker slot, or a fresh
interpreter), run with a time limit and stopped, with everything they started, when the batch stops (step 3 of the
pipeline). Process control lives here: a judge's process group, its workers below it, and the leftovers of a grader
that was killed without warning."""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from autograder.assignments import PROJECT_ROOT, Assignment
from autograder.options import GradeOptions
from autograder.pipeline.judge_server import JudgeServer
from autograder.pipeline.results import Status, SubmissionResult
from autograder.pipeline.survey import Submission
from autograder.pipeline.unpack import BadSubmission, unpack_submission
from autograder.sandbox import PASSIVE_OPENMP

JUDGE_GRACE_S = 120.0  # the judge's own work past the student's budget (datasets, scoring) before it is killed


# In every judge's command line, and in a judge server's (`-m autograder.pipeline.judge_server`, whose forked judges keep its
# command line): only such a process is killed as a leftover.
JUDGE_MARKER = "autograder.pipeline.judge"


def judge_command(assignment: Assignment, work: Path, results_path: Path, logs: Path, options: GradeOptions) -> list[str]:
    """The judge's command line. -E -s: no PYTHON* variables, no user site-packages; the checkout (cwd) comes first.
    --disable-plugin-autoload: the judge plugin only, none of the pytest plugins installed beside it (xdist, anyio).
    no:unraisableexception: that plugin only turns an exception no one could catch into a warning (no outcome changes),
    and runs full garbage collections at the end of every judge that cost up to a CPU second. no:logging and --tb=no:
    no log capture around every test phase, and no traceback (source read and parsed) made for each failed test: a
    student reads the Feedback's message, and the judge prints an internal error's traceback itself (judge.py)."""
    return [sys.executable, "-E", "-s", "-m", "pytest", str(assignment.hidden_tests), "-p", "autograder.pipeline.judge",
            "-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:logging", "--tb=no",
            "--disable-plugin-autoload", "-q", "--no-header", "--rootdir", str(PROJECT_ROOT),
            "--submission-dir", str(work), "--results-json", str(results_path), "--worker-log", str(logs / "worker.log"),
            "--grade-options", str(options.write(logs / "options.json"))]


class Interrupted(Exception):
    """The batch is stopping (SIGINT/SIGTERM): the judge was killed, its submission is left for the next run."""


class ServerJudge:
    """A judge forked by a JudgeServer, with the part of subprocess.Popen's interface that Judges uses."""

    def __init__(self, server: JudgeServer, pid: int):
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.server.wait(timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"judge {self.pid}", timeout or 0.0)  # (None waits for the end)
            self.returncode = code
        return self.returncode


class Judges:
    """The judges in flight, each in a process group of its own, so that stopping the batch kills them and their
    workers (a rerun after SIGKILL finds and kills what is left: judges.kill_leftovers). A judge is a fresh
    interpreter (`servers` empty: --judge process) or a fork of an idle judge server, one server per worker slot, all
    forked from one process that imported once (--judge server: autograder/pipeline/judge_server.py; the judge and its sandbox
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
        command = [sys.executable, "-E", "-s", "-m", "autograder.pipeline.judge_server", "--work", f"{out}/work/",
                   "--preload", str(assignment.hidden_tests), "--course", assignment.name]
        if options.worker_template and options.sandbox != "uid":  # workers forked from a template under bubblewrap
            command += ["--worker-template", options.sandbox]
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
                proc: subprocess.Popen | ServerJudge
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


def kill_leftovers(out: Path) -> int:
    """Kill the judges (and their workers) that a grader killed without warning left running; how many."""
    work = f"{out.resolve()}/work/"
    leftovers = [pid for pid in _pids() if pid != os.getpid()
                 and JUDGE_MARKER in (cmdline := _cmdline(pid)) and work in cmdline]
    for pid in leftovers:
        kill_tree(pid)
    return len(leftovers)


def _pids() -> list[int]:
    """Every process id, from /proc; none where there is no /proc (macOS: only the judge's process group is killed)."""
    try:
        return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, found through /proc (a worker may run in a session of its own)."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a judge started in its own process group, that group, and every process below it (its workers, which
    may be in sessions of their own). The judge is stopped first, so it cannot start another while they are found."""
    for stop in (os.killpg, os.kill):
        try:
            stop(pid, signal.SIGSTOP)
        except (ProcessLookupError, PermissionError):
            pass
    targets = [pid, *_descendants(pid)]
    for target in targets:
        for kill in (os.killpg, os.kill):
            try:
                kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a finished judge's process group (safe after the judge was reaped: a group id is not
    reused while the group has a member)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
