"""A judge server: a trusted Python process that imports torch, pytest and the grader once, then starts each judge as a
fork of itself instead of a fresh interpreter, which saves the judge's imports (about 4-6 s) on every submission.

    python -E -s -m autograder.pipeline.judge_server --work OUT/work/ --preload autograder/hidden_tests/test_vit.py --course vit

Requests come on stdin, one JSON line each: {"argv": a judge's command line, "log": file, "cwd": folder}. For each,
the server forks a child that starts a session of its own (so the batch grader kills it and its worker as one process
group, exactly as a judge started with Popen), sends its output to the log and runs the command as `python` would run
it (runpy: `-m module` or a script). The server answers {"pid": ...} at once and {"exit": code} when the child ends
(negative: the signal that killed it). One judge at a time per server; the batch grader keeps one per worker slot,
all forked from one process after its imports, each answering on its own pair of pipes (--channels; JudgeServer.group,
below).

What a child inherits is trusted: the server imports only the grader's modules (and the hidden tests' imports, never
the hidden test module itself, which each child collects afresh) and runs nothing of a submission's. Student code runs,
as before, only in the sandboxed worker that the child starts: forked from this server's worker template
(--worker-template; autograder/sandbox/template.py, sandboxed, which imports torch once and runs no student code) or
a new bubblewrap sandbox, never with anything of the server's or an earlier child's memory. The command line holds
JUDGE_MARKER and --work OUT/work/, so a later grader's judges.kill_leftovers finds the server and every child it
forked.
"""
from __future__ import annotations

import argparse
import ast
import gc
import importlib
import importlib.util
import json
import os
import runpy
import select
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from autograder.sandbox import PASSIVE_OPENMP, current_template, log_tail, start_template, stop_template
from autograder.sandbox.worker_log import exit_child

INTERPRETER_FLAGS = {"-E", "-s", "-u"}  # a judge's own flags, which the server was started with (Judges.for_batch)


@dataclass(frozen=True)
class WorkerTemplateSettings:
    """A server's worker template: the sandbox backend asked for (GradeOptions.sandbox), the folder of its log, and the
    assignment's libraries it imports for its workers (spec.preload_modules)."""
    backend: str
    logs: Path
    preload: tuple[str, ...] = ()


# Imported inside functions, so every judge would import them again (about 1-2 CPU s each time): torch's attention
# checks load sympy through symbolic_shapes, its optimizers and torchvision's ops load torch._dynamo; the hidden tests
# import the trusted course models where a threshold needs them; pytest's debugging plugin imports pdb.
LAZY_IMPORTS = ("torch.fx.experimental.symbolic_shapes", "torch._dynamo", "autograder.kit.trusted", "pdb")


def top_level_imports(source: str | Path) -> list[tuple[str, list[str]]]:
    """The modules Python code (a file, or source text) imports at its top level, each with the names taken from it
    (read, not run): what its judges import anyway."""
    imports: list[tuple[str, list[str]]] = []
    for node in ast.parse(source.read_text() if isinstance(source, Path) else source).body:
        if isinstance(node, ast.Import):
            imports += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imports.append((node.module, [alias.name for alias in node.names]))
    return imports


def course_imports(assignment_name: str) -> list[tuple[str, list[str]]]:
    """What the judges of an assignment import besides the hidden tests' top-level imports: the libraries its stand-ins
    need (spec.preload_modules, which the worker loads too: transformers, torchvision) and the top-level imports of
    the source notebook's cells that the judge runs as the course's model (spec.run_cells, autograder/kit/trusted.py:
    course_namespace), such as matplotlib."""
    from autograder.assignments import load_assignment
    from autograder.course_cells import course_cells

    assignment = load_assignment(assignment_name)
    return [*((name, []) for name in assignment.spec.preload_modules),
            *(imported for code in course_cells(assignment).values() for imported in top_level_imports(code))]


def preload(test_files: list[Path], course: str | None = None) -> None:
    """Import what every judge imports: the judge plugin's imports (torch, StudentCode, the sandbox client), the
    hidden tests', the names taken from them included (`from dlcourse import seeded_randn` loads dlcourse.checks,
    which dlcourse imports on first use), the assignment's (course_imports), and LAZY_IMPORTS. Not the plugin
    and the test modules themselves: pytest imports those in each child, rewriting their asserts."""
    found = importlib.util.find_spec("autograder.pipeline.judge")
    if found is None or found.origin is None:
        raise ImportError("the judge plugin autograder.pipeline.judge cannot be found")
    plugin = Path(found.origin)
    imports = [imported for path in [plugin, *test_files] for imported in top_level_imports(path)]
    imports += course_imports(course) if course else []
    for module, names in [*imports, *((name, []) for name in LAZY_IMPORTS)]:
        __import__(module, fromlist=names)  # as `from module import names` does: submodules and lazy names load
    # The course package's whole API (data loaders, training loop, plots): the grading code imports parts of it inside
    # functions, which a forked judge would otherwise import again every time.
    __import__("dlcourse", fromlist=importlib.import_module("dlcourse").__all__)
    if course:  # computed from the trusted hidden tests, notebooks and data once per process: each judge reads them again
        from autograder.assignments import load_assignment
        from autograder.fingerprints import grader_fingerprints
        from autograder.kit.scoring import preload_test_splits

        assignment = load_assignment(course)
        grader_fingerprints(assignment)
        preload_test_splits(assignment.spec.thresholds.values())  # the thresholds' test images (the grader's data)
    # What is loaded now lives as long as the server: out of the garbage collector's sight, so that a judge's
    # collections do not walk (and, copy-on-write, copy) the hundreds of thousands of objects it inherits.
    gc.freeze()


def run_like_python(argv: list[str]) -> int:
    """Run a command line `python [flags] (-m module | script) args...` in this process; its exit code."""
    if not argv or os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        raise SystemExit(f"judge server: {argv[:1]} is not this server's interpreter {sys.executable}")
    rest = argv[1:]
    while rest and rest[0] in INTERPRETER_FLAGS:
        rest = rest[1:]
    if not rest or rest[0].startswith("-") and rest[0] != "-m":
        raise SystemExit(f"judge server: cannot run {argv} (expected -m module or a script)")
    try:
        if rest[0] == "-m":
            sys.argv = [rest[1], *rest[2:]]
            runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(rest)
            sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))
            runpy.run_path(rest[0], run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0


def child(request: dict, channel: tuple[int, int]) -> None:
    """In the forked child: become a judge of its own and never return."""
    code = 1
    try:
        os.setsid()
        for fd in set(channel) - {0, 1}:  # the server's end of the batch grader's pipes (0 and 1 are replaced below)
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        for target, fd in ((0, null), (1, log), (2, log)):
            os.dup2(fd, target)
        os.close(log)
        os.close(null)
        sys.stdin = open(0, closefd=False)  # the server's buffered requests are not the judge's input
        os.chdir(request["cwd"])
        code = run_like_python(request["argv"])
    except BaseException:  # noqa: BLE001  (whatever happens, the child must not return into the server's loop)
        traceback.print_exc()
    finally:
        exit_child(code)


def start_worker_template(template: WorkerTemplateSettings | None) -> None:
    """Start this server's worker template (autograder/sandbox/forking.py) where asked and possible; where it is not,
    the log says why and the judges start their workers as without one."""
    if template is None:
        return
    problem = start_template(template.logs / f".worker-template-{os.getpid()}.log", template.backend, template.preload)
    if problem:
        print(f"judge server {os.getpid()}: no worker template ({problem}); each worker imports torch itself",
              file=sys.stderr, flush=True)


def serve(requests_fd: int = 0, replies_fd: int = 1, template: WorkerTemplateSettings | None = None) -> None:
    """Answer the requests of one channel (stdin and stdout by default), one judge at a time, forking their
    workers from a worker template of this server's when `template` asks for one."""
    def reply(message: dict) -> None:
        os.write(replies_fd, (json.dumps(message) + "\n").encode())

    reply({"ready": True})
    tried = False
    for line in open(requests_fd, "rb", closefd=False):
        request = json.loads(line)
        current = current_template()
        # Started with the first judge (a worker slot that gets none costs nothing), and again if it ended (killed?).
        if template is not None and (not tried or (current is not None and not current.alive)):
            stop_template()
            start_worker_template(template)
            tried = True
        if threading.active_count() != 1:  # a fork copies only the calling thread: locks held by others stay held
            raise SystemExit("judge server: a thread is running; refusing to fork judges from it")
        pid = os.fork()
        if pid == 0:
            child(request, (requests_fd, replies_fd))
        reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        reply({"pid": pid, "exit": os.waitstatus_to_exitcode(status)})
    stop_template()


def serve_channels(channels: list[tuple[int, int]], template: WorkerTemplateSettings | None = None) -> None:
    """One server process for all of a batch's worker slots: after the imports, it forks one server per channel (a
    pair of pipes the batch grader passed), each serving it as serve() serves stdin and stdout. The imports are then
    paid once per batch rather than once per worker; each channel's judges are still forks that share nothing."""
    servers = []
    for i, channel in enumerate(channels):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for other in channels[:i] + channels[i + 1:]:
                    for fd in other:
                        os.close(fd)
                serve(*channel, template=template)
                code = 0
            except BaseException:  # noqa: BLE001  (a forked server must not return into this loop)
                traceback.print_exc()
            finally:
                exit_child(code)
        servers.append(pid)
    for channel in channels:
        for fd in channel:
            os.close(fd)
    for pid in servers:
        os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="the batch's OUT/work/ (found by kill_leftovers)")
    parser.add_argument("--preload", type=Path, nargs="*", default=[], help="hidden test files whose imports to load")
    parser.add_argument("--course", help="the assignment whose libraries and course cells' imports to load (course_imports)")
    parser.add_argument("--channels", help="REQUESTS_FD:REPLIES_FD,... pipes to serve instead of stdin and stdout, one "
                        "forked server each (JudgeServer.group)")
    parser.add_argument("--worker-template", metavar="BACKEND", help="fork the judges' workers from a worker template "
                        "per server where BACKEND (GradeOptions.sandbox) picks bubblewrap here (autograder/sandbox/forking.py)")
    args = parser.parse_args()
    preload(args.preload, args.course)
    template = None
    if args.worker_template and not torch_cuda_available():
        template = WorkerTemplateSettings(args.worker_template, Path(args.work).parent / "logs", course_libraries(args.course))
    if args.channels:
        serve_channels([(int(r), int(w)) for r, w in (pair.split(":") for pair in args.channels.split(","))], template)
    else:
        serve(template=template)


def course_libraries(assignment_name: str | None) -> tuple[str, ...]:
    """The libraries an assignment's workers import before their audit hook (its spec's preload_modules)."""
    if not assignment_name:
        return ()
    from autograder.assignments import load_assignment

    return tuple(load_assignment(assignment_name).spec.preload_modules)


def torch_cuda_available() -> bool:
    """Whether the judges' workers run on a GPU (the worker template forks CPU workers only)."""
    import torch

    return torch.cuda.is_available()


class JudgeServerError(RuntimeError):
    """The judge server ended or answered something unexpected (its log says why)."""


class JudgeServer:
    """The batch grader's end of one judge server (see the module's docstring): a process of its own, or one of the
    servers forked from a shared process (`group`)."""

    def __init__(self, command: list[str], log: Path, cwd: Path):
        """Started by launch(), or by the first judge that needs it."""
        self.command, self.log_path, self.cwd = command, log, cwd
        self.process: subprocess.Popen | None = None  # the server's process, shared by a group's servers
        self.peers: list[JudgeServer] = [self]  # the servers a launch starts together (group)
        self.lock = threading.Lock()  # shared by the peers: one launch at a time
        self._requests = self._replies = -1  # this server's pipes: requests written, replies read
        self._buffer, self._ready, self._ended = b"", False, False

    @classmethod
    def group(cls, command: list[str], log: Path, cwd: Path, count: int) -> list[JudgeServer]:
        """`count` servers that one process starts after its imports, one fork each (--channels): the imports once
        per batch, not once per worker. A server whose fork has ended is started again as a process of its own."""
        servers = [cls(command, log, cwd) for _ in range(count)]
        for server in servers:
            server.peers, server.lock = servers, servers[0].lock
        return servers

    def launch(self) -> None:
        """Start this server, with every peer that is not running."""
        with self.lock:
            if self.alive:  # a peer's launch started it meanwhile
                return
            self._close_channel()
            starting = [p for p in self.peers if p is self or (not p.alive and p.process is None)]
            ends, theirs = [], []
            for _ in starting:
                requests_read, requests_write = os.pipe()
                replies_read, replies_write = os.pipe()
                ends.append((requests_write, replies_read))
                theirs.append((requests_read, replies_write))
            command = [*self.command, "--channels", ",".join(f"{r}:{w}" for r, w in theirs)]
            with open(self.log_path, "ab") as stderr:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                           cwd=self.cwd, start_new_session=True, pass_fds=[fd for t in theirs for fd in t],
                                           env={**os.environ, **PASSIVE_OPENMP})
            for fd in (fd for t in theirs for fd in t):
                os.close(fd)
            for server, (requests, replies) in zip(starting, ends, strict=True):
                server.process, server._requests, server._replies = process, requests, replies
                server._buffer, server._ready, server._ended = b"", False, False

    def wait_ready(self) -> None:
        """Block until the server has done its imports; start a new one first if this one has ended."""
        if not self.alive:
            self.launch()
        if not self._ready:
            self._expect("ready", None)
            self._ready = True

    def start(self, argv: list[str], log: Path, cwd: Path) -> int:
        """Start one judge; its pid."""
        self.wait_ready()
        os.write(self._requests, (json.dumps({"argv": argv, "log": str(log), "cwd": str(cwd)}) + "\n").encode())
        return self._expect("pid", None)

    def wait(self, timeout: float | None) -> int | None:
        """The running judge's exit code, or None when it has not ended within `timeout` seconds."""
        try:
            return self._expect("exit", timeout)
        except TimeoutError:
            return None

    def _expect(self, key: str, timeout: float | None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._replies], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(self._replies, 4096)
            if not chunk:
                self._ended = True
                raise JudgeServerError(f"the judge server ended; its log ({self.log_path}) ends with:\n"
                                       f"{log_tail(self.log_path)}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if key not in message:
            raise JudgeServerError(f"the judge server answered {message}, expected {key!r}")
        return message[key]

    @property
    def alive(self) -> bool:
        return self.process is not None and not self._ended and self.process.poll() is None

    def _close_channel(self) -> None:
        for fd in (self._requests, self._replies):
            if fd >= 0:
                os.close(fd)
        self._requests = self._replies = -1

    def close(self) -> None:
        """End the server: no more requests (it exits at end of input); its process, once no peer uses it, is
        killed if it does not exit."""
        if self.process is None:
            return
        self._close_channel()
        process, self.process = self.process, None
        if any(peer.process is process for peer in self.peers):
            return  # a peer's server still runs in it
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
