"""Running untrusted student code: the `Sandbox` (trusted side) and its worker (untrusted side).

    sandbox = Sandbox(cells, policy=SandboxPolicy(...), log_path=...)
    reply, tensors = sandbox.request({"cmd": "call", ...}, tensors, timeout=10)  # see autograder/kit/requests.py

The worker runs under bubblewrap (`bwrap`, the sandbox Flatpak uses), which builds its view of the
machine from an allow-list (`worker_view`): the Python installation, the virtualenv, the course package
and the worker's own code, all read-only; a private tmpfs as /tmp and working folder; a fresh /proc; a
minimal /dev. Nothing else exists for it: no /etc beyond the linker cache, no shell, no home, no
checkout, no data, no other submission, no network (empty network namespace), no other process (PID
namespace). When the grader is root, the worker runs as a uid of its own (WORKER_UID_BASE + the judge's
pid) that owns no file outside its tmpfs (see confine.py); otherwise as the grader's user, mapped to
65534. The worker then installs a seccomp filter (seccomp.py: no exec, no fork, no new namespaces) and
a Python audit hook before it runs any student code.

Memory: a cgroup of its own where one can be made (cgroups.py), else RLIMIT_AS above torch's own
reservation. Time: a timeout per request, the whole process tree killed when it passes. Output: the
worker's stdout/stderr go through a pipe into a log file that keeps the first and last LOG_KEEP_BYTES.

Where bubblewrap cannot build its namespaces (a Docker container such as Gradescope's, whose default seccomp profile
refuses unshare(CLONE_NEWUSER)) and the grader is root, the **uid backend** runs the worker without namespaces:
confine.py enters a network and an IPC namespace where the host allows them, drops to the worker's own uid (no
file on the machine is its own, it is in no group), and execs the interpreter; the worker then installs the same
seccomp filter, denying sockets of every family (it sees the host's unix sockets), and caps its address space,
processes and file size. What it must not read is kept from it by file modes instead of an allow-list:
`worker_private_paths` lists what the grader makes private (mode o-rwx) before a batch, or refuses to grade naming
the path (`make_private`). `choose_backend` picks the strongest backend that works here (bubblewrap, then uid) or
the one forced (`GradeOptions.sandbox`, `grade --sandbox`).

Without either (macOS, a container where the grader is not root) the worker would run as a plain subprocess guarded
only by its audit hook: `SandboxPolicy.allow_weak_isolation` must say that is acceptable, and `Sandbox.isolation`
(recorded per gradebook row) says which was used.
"""
from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autograder.sandbox.cgroups import WorkerLimits
from autograder.sandbox.protocol import MAX_HEADER_BYTES, ProtocolError, decode_header, decode_payload, encode

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
MAX_REPLY_BYTES = 1 << 30
WORKER_UID_BASE = 1_000_000_000  # + the judge's pid: a uid no account or file on the machine has
TMPFS_BYTES = 512 << 20  # the worker's /tmp (it also counts against the memory cgroup)
LOG_KEEP_BYTES = 1 << 20  # of the worker's output, the first and the last MiB are kept
SYSTEM_LIBRARIES = ["/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32"]
WEAK_ISOLATION = "weak: no bubblewrap, the audit hook only"
BACKENDS = ("auto", "bubblewrap", "uid")  # GradeOptions.sandbox: auto picks the first of the others that works
UID_NAMESPACES = ["net", "ipc"]  # entered by the uid backend's launcher where the host allows (confine.py)
# The environment of every process that runs torch for a grade (judge servers, judges, sandboxed workers): OpenMP
# threads that sleep when idle. They otherwise spin at the end of every parallel region while another process holds
# the core they wait for: on this project's shared 2-core machine a 2-thread torch loop cost 10.0 CPU s spinning and
# 3.3 passive (20 s and 7 s of wall time; dlcourse/threads.py, issue 29). Scores do not change: the same thread
# count splits the same work.
PASSIVE_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE"}


class StandInAnswerer(Protocol):
    """What answers the worker's calls of the grader's stand-ins (autograder/kit/stand_ins/remote.py: StandInServer)."""

    def answer(self, call, tensors: dict) -> tuple[dict, dict]: ...


class SandboxTimeout(Exception):
    """The worker did not answer in time; it has been killed."""


class SandboxCrashed(Exception):
    """The worker exited or broke the protocol; it is gone."""


class IsolationUnavailable(RuntimeError):
    """bubblewrap cannot build the sandbox here, and weak isolation was not allowed."""


class WorkerStartFailed(RuntimeError):
    """The worker ended (or hung) before it said it was ready, that is before any student code ran: the grader's
    environment is at fault (the interpreter not visible in the sandbox, a package that does not import), never the
    student. The message ends with the worker's log."""


@dataclass
class SandboxPolicy:
    memory_mb: int = 4096  # memory cap of the worker (RSS where a cgroup can be made)
    threads: int = 1  # torch threads in the worker (GradeOptions.judge_threads)
    device: str = "cpu"  # "cuda": the worker also gets the GPU device files
    forbidden_attributes: list[str] = field(default_factory=list)  # dotted names tripped at run time
    forbidden_modules: list[str] = field(default_factory=list)  # modules student code may not import
    hide: list[str] = field(default_factory=list)  # weak isolation only: paths the audit hook refuses
    allow_weak_isolation: bool = False  # grade without bubblewrap (audit hook only) where it is unavailable
    audit_hook: bool = True  # False only to test the bubblewrap layer on its own; never in grading
    preload_modules: list[str] = field(default_factory=list)  # imported before the audit hook (e.g. transformers)
    backend: str = "auto"  # "bubblewrap", "uid" or "auto" (the first of them that works here): see choose_backend


def log_tail(path: Path, lines: int = 20, indent: str = "    ") -> str:
    """The last `lines` non-blank lines of a log file, indented, for an error message ("(empty)" when there are none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"{indent}(cannot read {path}: {exc.strerror})"
    kept = [line.strip() if lines == 1 else line for line in text.splitlines() if line.strip()][-lines:] or ["(empty)"]
    return "\n".join(f"{indent}{line}" for line in kept)


def worker_view(device: str = "cpu") -> tuple[list[str], dict[str, str]]:
    """What the worker sees of the machine: (paths bound read-only at the same place, symlinks path -> target).
    Everything else does not exist for it."""
    binds, links = [], {}
    for folder in SYSTEM_LIBRARIES:  # the C library, libstdc++, ... (a merged /usr has symlinks here)
        if os.path.islink(folder) and os.path.dirname(folder) == "/":
            links[folder] = os.readlink(folder)
        elif os.path.isdir(folder):
            binds.append(folder)
    if os.path.exists("/etc/ld.so.cache"):
        binds.append("/etc/ld.so.cache")
    base, prefix = os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)
    if base in ("/", "/usr"):  # a system Python: its standard library is under /usr/lib already
        binds.append(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    else:
        binds.append(base)
    if prefix != base:
        binds.append(prefix)  # the virtualenv
    binds += [str(PROJECT_ROOT / "dlcourse"), str(HERE)]
    if device == "cuda":
        binds += [str(p) for p in sorted(Path("/dev").glob("nvidia*"))] + ["/sys"]
    return list(dict.fromkeys(binds)), links


def _grader_is_root() -> bool:
    return os.geteuid() == 0


def bwrap_command(binds: list[str], links: dict[str, str], sources: dict[str, str]) -> list[str]:
    """The unprivileged bubblewrap command line: bind `sources.get(path, path)` read-only at each path of
    `binds`, nothing else, then run what follows it."""
    command = [shutil.which("bwrap") or "bwrap", "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
               "--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
               # the worker is pid 1 of its namespace: no bubblewrap init beside it without the seccomp filter
               "--as-pid-1",
               "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
               "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    for path, target in links.items():
        command += ["--symlink", target, path]
    for path in binds:
        kind = "--dev-bind" if path.startswith("/dev/") else "--ro-bind"
        command += [kind, sources.get(path, path), path]
    return command + ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]


@functools.lru_cache(maxsize=2)
def bwrap_problem(device: str = "cpu") -> str | None:
    """Why bubblewrap cannot run the worker's interpreter on this machine (None when it can). Probed once: the
    full sandbox, started as grading starts it, runs `python -c pass`."""
    if sys.platform != "linux":
        return f"bubblewrap needs Linux (this is {sys.platform})"
    if not shutil.which("bwrap"):
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="dlcourse-probe-") as staging:
        uid = WORKER_UID_BASE + os.getpid()
        command = _sandbox_command(staging, [sys.executable, "-I", "-S", "-c", "pass"], device, WorkerLimits(0), uid)
        try:
            probe = subprocess.run(command, capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap could not start ({exc})"
    if probe.returncode != 0:
        return f"bubblewrap could not start the worker: {probe.stderr.decode(errors='replace').strip()[:300]}"
    return None


def uid_command(worker: list[str], uid: int, cgroup_procs: list[str]) -> list[str]:
    """The uid backend's launch: confine.py (as root) joins the worker's cgroups, enters the UID_NAMESPACES the host
    allows, drops to `uid` and execs the worker's interpreter, which reads only what an unprivileged uid may read."""
    settings = json.dumps({"uid": uid, "gid": uid, "cgroup_procs": cgroup_procs, "namespaces": UID_NAMESPACES})
    return [sys.executable, "-I", "-S", str(HERE / "confine.py"), settings, *worker]


@functools.lru_cache(maxsize=1)
def uid_problem() -> str | None:
    """Why the uid backend cannot run the worker here (None when it can): it needs Linux and a grader running as root
    (only root may switch to another uid), and the worker's interpreter, virtualenv and course code must be readable by
    an unprivileged uid. Probed once: the launcher, as grading starts it, runs `python -c "import numpy, dlcourse"` and
opens the course package's and the worker's files."""
    if sys.platform != "linux":
        return f"the uid backend needs Linux (this is {sys.platform})"
    if not _grader_is_root():
        return "the uid backend needs the grader to run as root (only root can run the worker as a uid of its own)"
    with tempfile.TemporaryDirectory(prefix="dlcourse-probe-") as scratch:
        uid = WORKER_UID_BASE + os.getpid()
        os.chown(scratch, uid, uid)
        code = (f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r}); import numpy, dlcourse; "
                f"open({str(PROJECT_ROOT / 'dlcourse' / '__init__.py')!r}).close(); open({str(HERE / 'worker.py')!r}).close()")
        try:
            probe = subprocess.run(uid_command([sys.executable, "-I", "-c", code], uid, []), capture_output=True,
                                   timeout=60, cwd=scratch, env={"PATH": "/nonexistent", "HOME": scratch})
        except (OSError, subprocess.SubprocessError) as exc:
            return f"the uid backend could not start ({exc})"
    if probe.returncode != 0:
        why = probe.stderr.decode(errors="replace").strip().splitlines()
        return (f"an unprivileged uid cannot run the worker's Python ({sys.executable}: "
                f"{why[-1][:300] if why else f'exit status {probe.returncode}'}); the interpreter, the virtualenv and "
                f"{PROJECT_ROOT / 'dlcourse'} must be readable by every user (not under a mode-700 home such as /root)")
    return None


def choose_backend(requested: str = "auto", device: str = "cpu") -> tuple[str | None, str]:
    """(backend, why): the backend that runs workers here, "bubblewrap" or "uid", or None with why neither can. "auto"
    takes bubblewrap where it works (an allow-list view and namespaces of its own), else the uid backend (file modes
    and no namespaces but the network's where the host allows); "bubblewrap" or "uid" only that one."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    problems = []
    if requested in ("auto", "bubblewrap"):
        problem = bwrap_problem(device)
        if problem is None:
            return "bubblewrap", ""
        problems.append(problem)
    if requested in ("auto", "uid"):
        problem = uid_problem()
        if problem is None:
            return "uid", (f"bubblewrap cannot run here ({problems[0]})" if problems else "")
        problems.append(problem)
    return None, "; ".join(problems)


def _reachable_by_others(path: str) -> bool:
    """Whether a user who owns nothing and is in no group could open `path`: every folder above it searchable by
    others (o+x), and the path itself readable or writable (a file) or searchable (a folder) by them."""
    real = os.path.realpath(path)
    parts = Path(real).parts
    for depth in range(1, len(parts)):
        if not os.stat(os.path.join(*parts[:depth])).st_mode & 0o001:
            return False
    info = os.stat(real)
    if info.st_uid >= WORKER_UID_BASE:
        return True
    return bool(info.st_mode & (0o001 if stat.S_ISDIR(info.st_mode) else 0o006))


def worker_private_paths(extra: Sequence[Path] = ()) -> list[Path]:
    """What the uid backend's worker must not reach, since it sees the host's filesystem: every entry of the checkout
    but the course package, autograder/ and the virtualenv (source/ with the solutions, .git, build/ with reference
    weights and grades, data/, release/, ...), every entry of autograder/ but sandbox/ (the hidden tests, the
    stand-ins, the grader), the dataset folders the settings name (their labels) and `extra` (the submissions folder,
    the result store)."""
    root = PROJECT_ROOT.resolve()
    keep = {root / "dlcourse", root / "autograder"}
    prefix = Path(os.path.realpath(sys.prefix))
    if root in prefix.parents:
        keep.add(root / prefix.relative_to(root).parts[0])  # the virtualenv inside the checkout (.venv, venv)
    paths = [p for p in sorted(root.iterdir()) if p not in keep]
    paths += [p for p in sorted((root / "autograder").iterdir()) if p != root / "autograder" / "sandbox"]
    for variable in ("DLCOURSE_DATA", "DLCOURSE_DATA_MIRROR", "DLCOURSE_COCO"):
        if os.environ.get(variable):
            paths.append(Path(os.environ[variable]))
    return paths + [Path(p) for p in extra]


def make_private(paths: list[Path], own: Sequence[Path] = ()) -> list[str]:
    """Make each path of `paths` unreachable by the uid backend's worker; the problems left, one line each naming the
    path and the fix. A path is fixed (chmod o-rwx, never through a symbolic link) where it lies in the checkout or
    under a folder of `own` (the grader's output); elsewhere (a dataset mirror, the instructor's submissions) it is
    only checked: the grader does not change the modes of folders it was merely pointed at."""
    root = os.path.realpath(PROJECT_ROOT)
    mine = [root, *(os.path.realpath(p) for p in own)]
    problems = []
    for path in paths:
        if not os.path.lexists(path) or not _reachable_by_others(str(path)):
            continue
        real = os.path.realpath(path)
        if not os.path.islink(path) and any(real == m or real.startswith(m + os.sep) for m in mine):
            try:
                os.chmod(real, stat.S_IMODE(os.stat(real).st_mode) & ~0o007)
                if os.stat(real).st_uid >= WORKER_UID_BASE:
                    os.chown(real, 0, 0)
                continue
            except OSError as exc:
                problems.append(f"{path}: cannot make it private ({exc.strerror}); run: chmod o-rwx {path}")
                continue
        problems.append(f"{path}{f' (-> {real})' if real != os.path.abspath(path) else ''} can be read by every user, so "
                        f"a student's worker could read it: run chmod o-rwx {real} (or grade with bubblewrap)")
    return problems


@functools.cache
def compile_worker_code() -> None:
    """Byte-compile the course's code that every worker imports (dlcourse, this package) into its __pycache__, once per
    process: the worker sees the checkout read-only and cannot cache what it compiles, so a module no trusted process
    has imported yet (or one run with PYTHONDONTWRITEBYTECODE) would be compiled again by every worker. Up-to-date
    files cost a stat each; a checkout the grader cannot write is left as it is."""
    import compileall

    for folder in (PROJECT_ROOT / "dlcourse", HERE):
        compileall.compile_dir(folder, quiet=2, workers=1)


def grader_roots() -> set[str]:
    """The folders the trusted side imports or reads code from, walked whole: the grader's and course's code, the
    assignments' declarations and notebooks (source/: spec.py, samples.py; release/), the virtualenv, the Python
    installation and every other folder on this process's sys.path but the checkout itself (grader_top_level)."""
    roots = {str(PROJECT_ROOT / name) for name in ("autograder", "dlcourse", "source", "release")}
    roots |= {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    roots |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    roots = {r for r in roots if os.path.isdir(r)} - {"/", "/usr", os.path.realpath(PROJECT_ROOT)}
    return {r for r in roots if not any(r.startswith(other + os.sep) for other in roots)}  # each file walked once


def grader_top_level() -> list[str]:
    """The checkout itself and the files directly in it (pyproject.toml, ...): the judges' working folder, first on
    their sys.path. Its subfolders for submissions and grades (build/, data/) are the grader's to write, not walked."""
    root = os.path.realpath(PROJECT_ROOT)
    return [root] + [os.path.join(root, name) for name in sorted(os.listdir(root))
                     if os.path.isfile(os.path.join(root, name))]


def _writable_by_worker(path: str) -> bool:
    """Owned by a worker uid/gid, or writable by anyone: a sticky world-writable folder too (a worker could add a
    module of its own there)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return False
    return bool(info.st_uid >= WORKER_UID_BASE or (info.st_gid >= WORKER_UID_BASE and info.st_mode & 0o020)
                or info.st_mode & 0o002)


def grader_files_writable_by_worker() -> list[str]:
    """Files and folders the trusted side runs or reads (grader_roots(), walked, and grader_top_level()) that a
    worker's uid could write if it ever reached them. Grading must not start while there is one."""
    found = [path for path in grader_top_level() if _writable_by_worker(path)]
    for root in sorted(grader_roots()):
        found += [root] if _writable_by_worker(root) else []
        for folder, dirs, files in os.walk(root):
            found += [os.path.join(folder, name) for name in dirs + files
                      if _writable_by_worker(os.path.join(folder, name))]
    return found


def _sandbox_command(staging: str, worker: list[str], device: str, limits: WorkerLimits, uid: int) -> list[str]:
    """The whole launch. As root: an outer bubblewrap that only adds a staging tmpfs holding the allowed paths
    (the unprivileged sandbox could not reach a Python installed under /root), confine.py (cgroups, then the
    worker's uid), and the unprivileged bubblewrap. Otherwise the unprivileged bubblewrap alone."""
    binds, links = worker_view(device)
    if not _grader_is_root():
        return bwrap_command(binds, links, {}) + ["--", *worker]
    staged = {path: f"{staging}/{i}" for i, path in enumerate(binds) if not path.startswith("/dev/") and path != "/sys"}
    outer = [shutil.which("bwrap") or "bwrap", "--dev-bind", "/", "/", "--tmpfs", staging, "--die-with-parent"]
    for path, stage in staged.items():
        outer += ["--ro-bind", path, stage]
    settings = json.dumps({"uid": uid, "gid": uid, "cgroup_procs": limits.procs_files})
    return outer + ["--", sys.executable, "-I", "-S", str(HERE / "confine.py"), settings,
                    *bwrap_command(binds, links, staged), "--", *worker]


class _TruncatingLog(threading.Thread):
    """Copies the worker's output into the log file: the first LOG_KEEP_BYTES, then only a count of what was
    dropped and the last LOG_KEEP_BYTES, so a submission that prints gigabytes costs neither memory nor disk."""

    def __init__(self, fd: int, path: Path):
        super().__init__(daemon=True)
        self.fd, self.path = fd, path

    def run(self) -> None:
        head, tail, dropped = 0, bytearray(), 0
        with open(self.path, "ab", buffering=0) as log:
            while chunk := os.read(self.fd, 1 << 16):
                if head < LOG_KEEP_BYTES:
                    log.write(chunk[: LOG_KEEP_BYTES - head])
                    chunk, head = chunk[LOG_KEEP_BYTES - head:], head + min(len(chunk), LOG_KEEP_BYTES - head)
                    if head == LOG_KEEP_BYTES:
                        log.write(b"\n[... output past the first MiB is dropped by the grader; its last MiB follows "
                                  b"when the worker ends ...]\n")
                tail += chunk
                if len(tail) > LOG_KEEP_BYTES:
                    dropped += len(tail) - LOG_KEEP_BYTES
                    del tail[: len(tail) - LOG_KEEP_BYTES]
            if dropped:
                log.write(f"\n[... {dropped:,} bytes of output were dropped; the last ones follow ...]\n".encode())
            log.write(tail)
        os.close(self.fd)


class Sandbox:
    """One worker process running one submission's cells. Not thread-safe; one per submission."""

    def __init__(self, cells: list[dict], policy: SandboxPolicy, log_path: Path):
        self.cells, self.policy, self.log_path = cells, policy, Path(log_path)
        self.process: subprocess.Popen | None = None
        self.limits: WorkerLimits | None = None
        self.seccomp = "not started"
        self._workdir: str | None = None
        self._log_thread: _TruncatingLog | None = None
        self.namespaces: list[str] = []
        self.backend, problem = choose_backend(policy.backend, policy.device)
        if self.backend is None and not policy.allow_weak_isolation:
            raise IsolationUnavailable(f"{problem}; refusing to run student code without it "
                                       "(pass --allow-weak-isolation to grade with the audit hook only)")
        self.uid = WORKER_UID_BASE + os.getpid() if _grader_is_root() else None
        self.strong = self.backend is not None

    @property
    def isolation(self) -> str:
        """How the worker is confined, for the gradebook."""
        if not self.strong:
            return WEAK_ISOLATION
        if self.backend == "uid":
            spaces = (f"own {' and '.join(self.namespaces)} namespace{'s' if len(self.namespaces) > 1 else ''}"
                      if self.namespaces else "no namespace")
            return f"uid backend (uid {self.uid}, no user namespace, {spaces}, {self.seccomp})"
        user = f"uid {self.uid}" if self.uid is not None else "the grader's uid mapped to 65534"
        return f"bubblewrap ({user}, {self.seccomp})"

    @property
    def memory_cap(self) -> str:
        return self.limits.memory_cap if self.limits else "not started"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float) -> dict:
        """Start the worker and run the cells; returns the load reply ({"cell_errors": {...}, "seccomp": ...}).
        WorkerStartFailed when the worker does not get ready (its imports, its confinement) within `timeout`."""
        deadline = time.monotonic() + timeout
        self.close()
        compile_worker_code()
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        output_r, output_w = os.pipe()
        # Where the worker starts (weak isolation) or, as root, the staging tmpfs's mount point: never in the project.
        workdir = tempfile.mkdtemp(prefix="dlcourse-sandbox-", dir="/tmp" if Path("/tmp").is_dir() else None)
        uid_backend = self.backend == "uid"
        if uid_backend:  # the worker's private writable folder (mode 700): its cwd, HOME and TMPDIR
            assert self.uid is not None, "choose_backend picks the uid backend only for a root grader"
            os.chown(workdir, self.uid, self.uid)
        if PROJECT_ROOT in Path(workdir).resolve().parents:
            raise RuntimeError(f"the sandbox's folder {workdir} must be outside the project {PROJECT_ROOT}")
        if self.policy.device == "cpu":
            self.limits = WorkerLimits.create(self.policy.memory_mb, use_cgroup=self.strong and _grader_is_root())
        else:
            self.limits = WorkerLimits.uncapped()
        settings = {
            "memory_mb": self.limits.rlimit_mb,
            "max_processes": 256 if self.uid is not None and self.strong else None,  # per uid: only for a uid of its own
            "threads": self.policy.threads, "device": self.policy.device, "seccomp": self.strong, "backend": self.backend,
            "course_root": str(PROJECT_ROOT),  # dlcourse is imported from this checkout, as on the trusted side
            "audit_hook": self.policy.audit_hook, "preload_modules": self.policy.preload_modules,
            "blocked_roots": [str(PROJECT_ROOT), *self.policy.hide],
            "allowed_roots": [str(PROJECT_ROOT / "dlcourse"), str(HERE), sys.prefix, workdir if uid_backend or not self.strong else "/tmp"],
        }
        worker = [sys.executable, "-I", str(HERE / "worker.py"), str(request_r), str(response_w), json.dumps(settings)]
        home = workdir if uid_backend or not self.strong else "/tmp"
        env = {"PATH": "/nonexistent", "HOME": home, "TMPDIR": home, "USER": "student", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib",
               # the judge's thread count, also for any dlcourse helper the student's code calls (dlcourse.threads)
               "OMP_NUM_THREADS": str(self.policy.threads), "DLCOURSE_THREADS": str(self.policy.threads), **PASSIVE_OPENMP,
               "PYTHONHASHSEED": "0", "HF_HOME": f"{home}/.hf",
               # Hugging Face libraries must never try the network (the sandbox has none anyway).
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
        for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
            if name in os.environ:
                env[name] = os.environ[name]
        if uid_backend:
            assert self.uid is not None, "choose_backend picks the uid backend only for a root grader"
            command = uid_command(worker, self.uid, self.limits.procs_files)
        elif self.strong:
            command = _sandbox_command(workdir, worker, self.policy.device, self.limits, self.uid or 0)
        else:
            env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
            command = worker
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w, env=env,
                                        cwd=workdir, pass_fds=(request_r, response_w), start_new_session=True)
        for fd in (request_r, response_w, output_w):
            os.close(fd)
        self._log_thread = log_thread = _TruncatingLog(output_r, self.log_path)
        log_thread.start()
        os.set_blocking(request_w, False)
        self._request_fd, self._response_fd = request_w, response_r
        self._workdir = workdir
        self._await_ready(deadline)
        reply = self.request({"cmd": "load", "cells": self.cells,
                              "forbidden_attributes": self.policy.forbidden_attributes,
                              "forbidden_modules": self.policy.forbidden_modules},
                             timeout=max(1.0, deadline - time.monotonic()))[0]
        self.seccomp = reply.get("seccomp", "no seccomp filter")
        self.namespaces = list(reply.get("namespaces", []))
        return reply

    def _await_ready(self, deadline: float) -> None:
        """Wait for the worker's ready frame, which it sends once confined and before it reads the first request: until
        then no student code has run, so a worker that ends or hangs here is the grader's failure (WorkerStartFailed)."""
        try:
            ready, _ = self._read_reply(deadline)
            if ready.get("ready") is not True:
                raise ProtocolError(f"expected the worker's ready frame, got {sorted(ready)}")
        except (SandboxTimeout, ProtocolError, OSError) as exc:
            if isinstance(exc, SandboxTimeout):
                description = "the worker was not ready within the load timeout (importing its packages?)"
            else:
                description = self._exit_description(wait=True)
            self.close()
            # The message reaches the student's feedback too: one line of the log, the grader's traceback stays in it.
            raise WorkerStartFailed(f"the sandboxed worker could not start: {description}; no student code ran, so "
                                    f"this is the grader's fault. The last line of its log ({self.log_path}): "
                                    f"{log_tail(self.log_path, lines=1, indent='')}") from None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        if self.limits:
            self.limits.kill_all()  # the sandboxed processes (a session of their own) die with bwrap; make sure
        for fd in (self._request_fd, self._response_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._log_thread:
            self._log_thread.join(timeout=5)
        if self.limits:
            self.limits.remove()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self.process = None

    # -- requests ----------------------------------------------------------------------------------
    def request(self, header: dict, tensors: dict | None = None, timeout: float = 30.0,
                stand_ins: StandInAnswerer | None = None) -> tuple[dict, dict]:
        """Send one request and wait at most `timeout` seconds for the reply (header, tensors). Meanwhile the
        worker's calls of stand-ins the grader holds ({"stand_in": ...} frames) are answered by `stand_ins`."""
        if not self.alive:
            raise SandboxCrashed(self._exit_description())
        deadline = time.monotonic() + timeout
        try:
            self._write_all(encode(header, tensors), deadline)
            reply, payload = self._read_reply(deadline)
            while "stand_in" in reply:
                if stand_ins is None:
                    raise ProtocolError("the worker called a stand-in, but the request holds none")
                self._write_all(encode(*stand_ins.answer(reply["stand_in"], payload)), deadline)
                reply, payload = self._read_reply(deadline)
        except SandboxTimeout:
            self.close()
            raise
        except (ProtocolError, OSError) as exc:
            description = self._exit_description(wait=True)
            ended = self.process is not None and self.process.poll() is not None
            self.close()
            raise SandboxCrashed(description if ended else f"worker broke the protocol: {exc}") from None
        return reply, payload

    def _read_reply(self, deadline: float) -> tuple[dict, dict]:
        (length,) = struct.unpack("<I", self._read_exact(4, deadline))
        if length > MAX_HEADER_BYTES:
            raise ProtocolError("reply header too large")
        reply = decode_header(self._read_exact(length, deadline))
        if reply["payload"] > MAX_REPLY_BYTES:
            raise ProtocolError("reply payload too large")
        return reply, decode_payload(self._read_exact(reply["payload"], deadline))

    def _exit_description(self, wait: bool = False) -> str:
        if self.process is None:
            return "worker is not running"
        if wait:
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        code = self.process.poll()
        if code is None:
            return "worker stopped answering"
        if self.limits and self.limits.oom_killed():
            return f"worker was killed for using more than the memory cap ({self.policy.memory_mb} MiB)"
        if self.backend == "bubblewrap" and code > 128:  # bubblewrap reports a signal that killed the worker as 128 + its number
            code = -(code - 128)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return f"worker was killed by signal {name} (memory cap reached?)" if name == "SIGKILL" else f"worker exited on signal {name}"
        return f"worker exited with code {code} before answering"

    def _write_all(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxTimeout()
            _, writable, _ = select.select([], [self._request_fd], [], remaining)
            if not writable:
                raise SandboxTimeout()
            try:
                view = view[os.write(self._request_fd, view[: 1 << 16]):]
            except BlockingIOError:
                continue

    def _read_exact(self, n: int, deadline: float) -> bytes:
        chunks, remaining = [], n
        while remaining:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise SandboxTimeout()
            readable, _, _ = select.select([self._response_fd], [], [], wait)
            if not readable:
                raise SandboxTimeout()
            chunk = os.read(self._response_fd, min(remaining, 1 << 20))
            if not chunk:
                raise ProtocolError("pipe closed")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
