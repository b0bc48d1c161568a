"""How the worker is launched, and under which backend: bubblewrap (`worker_view`, the allow-list it binds read-only;
`bwrap_command`; as root `sandbox_command` adds a staging tmpfs, confine.py and the worker's own uid) or the uid backend
(`uid_command`: confine.py drops to the worker's uid, no namespaces but the network's and IPC's where the host allows).
`choose_backend` picks the strongest that works here (each probed once: `bwrap_problem`, `uid_problem`). What the
package's docstring (autograder/sandbox/__init__.py) says of each."""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.sandbox.cgroups import WorkerLimits

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
WORKER_UID_BASE = 1_000_000_000  # + the judge's pid: a uid no account or file on the machine has
TMPFS_BYTES = 512 << 20  # the worker's /tmp (it also counts against the memory cgroup)
SYSTEM_LIBRARIES = ["/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32"]
BACKENDS = ("auto", "bubblewrap", "uid")  # GradeOptions.sandbox: auto picks the first of the others that works
UID_NAMESPACES = ["net", "ipc"]  # entered by the uid backend's launcher where the host allows (confine.py)
# The environment of every process that runs torch for a grade (judge servers, judges, sandboxed workers): OpenMP
# threads that sleep when idle. They otherwise spin at the end of every parallel region while another process holds
# the core they wait for: on this project's shared 2-core machine a 2-thread torch loop cost 10.0 CPU s spinning and
# 3.3 passive (20 s and 7 s of wall time; dlcourse/threads.py, issue 29). Scores do not change: the same thread
# count splits the same work.
PASSIVE_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE"}


def worker_environment(home: str, threads: int) -> dict[str, str]:
    """The environment of a sandboxed worker (and of the worker template): nothing of the grader's."""
    env = {"PATH": "/nonexistent", "HOME": home, "TMPDIR": home, "USER": "student", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib",
           # the judge's thread count, also for any dlcourse helper the student's code calls (dlcourse.threads)
           "OMP_NUM_THREADS": str(threads), "DLCOURSE_THREADS": str(threads), **PASSIVE_OPENMP,
           "PYTHONHASHSEED": "0", "HF_HOME": f"{home}/.hf",
           # Hugging Face libraries must never try the network (the sandbox has none anyway).
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


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
    if base not in ("/", "/usr"):  # (a system Python's standard library is under /usr/lib already)
        binds.append(base)
    if prefix != base:
        binds.append(prefix)  # the virtualenv
    binds += [str(PROJECT_ROOT / "dlcourse"), str(HERE)]
    # The interpreter the worker's command names, and every symlink on the way to it where no folder above is bound:
    # a virtualenv over Debian's Python runs .venv/bin/python -> /usr/bin/python3 -> python3.11.
    chain, interpreter = symlink_chain(sys.executable)
    if not inside(interpreter, binds):
        binds.append(interpreter)
    links.update((path, target) for path, target in chain.items() if not inside(path, binds))
    if device == "cuda":
        binds += [str(p) for p in sorted(Path("/dev").glob("nvidia*"))] + ["/sys"]
    return list(dict.fromkeys(binds)), links


def symlink_chain(path: str) -> tuple[dict[str, str], str]:
    """({link: its target as written}, the file at the end) for each symlink followed from `path`, one hop at a time,
    each link named in its folder's real path (a merged /usr's /bin/python3 is /usr/bin/python3)."""
    chain: dict[str, str] = {}
    path = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symlinks followed
        path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if not os.path.islink(path):
            break
        chain[path] = os.readlink(path)
        path = os.path.join(os.path.dirname(path), chain[path])  # (an absolute target replaces the folder)
    return chain, path


def inside(path: str, folders: list[str]) -> bool:
    """Whether `path` is one of `folders` or lies under one (plain strings: resolve them first where it matters)."""
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def view_under_tmp(device: str = "cpu") -> tuple[list[str], dict[str, str]]:
    """What of the worker's view lies under /tmp (a checkout or virtualenv there): (binds, links) as `worker_view`
    gives them. A worker forked from the template mounts a tmpfs of its own on /tmp and puts these back on top."""
    binds, links = worker_view(device)
    return ([path for path in binds if inside(path, ["/tmp"])],
            {path: target for path, target in links.items() if inside(path, ["/tmp"])})


def grader_is_root() -> bool:
    return os.geteuid() == 0


def bwrap_command(binds: list[str], links: dict[str, str], sources: dict[str, str],
                  allow_user_namespaces: bool = False) -> list[str]:
    """The unprivileged bubblewrap command line: bind `sources.get(path, path)` read-only at each path of
    `binds`, nothing else, then run what follows it. `allow_user_namespaces` only for the worker template, whose
    forked workers make namespaces of their own (template.py) before their seccomp filter refuses any more."""
    command = [shutil.which("bwrap") or "bwrap", "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
               "--unshare-uts", "--unshare-cgroup-try", *([] if allow_user_namespaces else ["--disable-userns"]),
               "--die-with-parent", "--new-session",
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
        command = sandbox_command(staging, [sys.executable, "-I", "-S", "-c", "pass"], device, WorkerLimits(0), uid)
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
    if not grader_is_root():
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


def sandbox_command(staging: str, worker: list[str], device: str, limits: WorkerLimits, uid: int,
                    allow_user_namespaces: bool = False) -> list[str]:
    """The whole launch (`allow_user_namespaces`: see bwrap_command). As root: an outer bubblewrap that only adds a staging tmpfs holding the allowed paths
    (the unprivileged sandbox could not reach a Python installed under /root), confine.py (cgroups, then the
    worker's uid), and the unprivileged bubblewrap. Otherwise the unprivileged bubblewrap alone."""
    binds, links = worker_view(device)
    if not grader_is_root():
        return bwrap_command(binds, links, {}, allow_user_namespaces) + ["--", *worker]
    staged = {path: f"{staging}/{i}" for i, path in enumerate(binds) if not path.startswith("/dev/") and path != "/sys"}
    outer = [shutil.which("bwrap") or "bwrap", "--dev-bind", "/", "/", "--tmpfs", staging, "--die-with-parent"]
    for path, stage in staged.items():
        outer += ["--ro-bind", path, stage]
    settings = json.dumps({"uid": uid, "gid": uid, "cgroup_procs": limits.procs_files})
    return outer + ["--", sys.executable, "-I", "-S", str(HERE / "confine.py"), settings,
                    *bwrap_command(binds, links, staged, allow_user_namespaces), "--", *worker]


@functools.cache
def compile_worker_code() -> None:
    """Byte-compile the course's code that every worker imports (dlcourse, this package) into its __pycache__, once per
    process: the worker sees the checkout read-only and cannot cache what it compiles, so a module no trusted process
    has imported yet (or one run with PYTHONDONTWRITEBYTECODE) would be compiled again by every worker. Up-to-date
    files cost a stat each; a checkout the grader cannot write is left as it is."""
    import compileall

    for folder in (PROJECT_ROOT / "dlcourse", HERE):
        compileall.compile_dir(folder, quiet=2, workers=1)
