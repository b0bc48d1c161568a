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

**Forked workers.** Starting a worker costs its `import torch` (about 1.2 CPU s). A judge server therefore starts a
worker template once (template.py; forking.py: `WorkerTemplate`, `current_template`; `start_template` below): a
process in the same bubblewrap sandbox as a worker (allowed to make user namespaces) that imports what every worker
imports and never runs student code. A Sandbox whose worker would run under bubblewrap on the CPU asks it for a fork;
the child joins its cgroups, makes user, mount, PID, network, IPC and UTS namespaces of its own, becomes PID 1 of its
PID namespace with its own /tmp and /proc, drops its capabilities and runs worker.py as above. Anywhere else (the uid
backend, CUDA, no judge server, a template that failed `template_problem`) the worker is started anew as before.

Without either (macOS, a container where the grader is not root) the worker would run as a plain subprocess guarded
only by its audit hook: `SandboxPolicy.allow_weak_isolation` must say that is acceptable, and `Sandbox.isolation`
(recorded per gradebook row) says which was used.

The package's modules: supervisor.py (Sandbox, SandboxPolicy: the trusted side), backends.py (the launch and the choice
of backend), forking.py (the worker template's trusted side), file_access.py (what the worker must not reach or write), worker_log.py (the worker's output), cgroups.py
(its limits), protocol.py (the frames both sides exchange), and the worker's own side: worker.py, template.py,
confine.py, seccomp.py, tripwires.py, harness/. This file is the public surface only: what the rest of the grader imports.
"""
from autograder.sandbox.backends import (BACKENDS, HERE, PASSIVE_OPENMP, PROJECT_ROOT, TMPFS_BYTES, UID_NAMESPACES, WORKER_UID_BASE,
                                         bwrap_command, bwrap_problem, choose_backend, compile_worker_code, uid_command,
                                         uid_problem, worker_view)
from autograder.sandbox.file_access import (grader_files_writable_by_worker, grader_roots, grader_top_level, make_private,
                                            worker_private_paths)
from autograder.sandbox.forking import WorkerTemplate, current_template, stop_template
from autograder.sandbox.supervisor import (MAX_REPLY_BYTES, WEAK_ISOLATION, IsolationUnavailable, Sandbox,
                                           SandboxCrashed, SandboxPolicy, SandboxTimeout, StandInAnswerer,
                                           WorkerStartFailed, needed_preloads, start_template, template_problem)
from autograder.sandbox.worker_log import LOG_KEEP_BYTES, log_tail

__all__ = ["BACKENDS", "HERE", "LOG_KEEP_BYTES", "MAX_REPLY_BYTES", "PASSIVE_OPENMP", "PROJECT_ROOT", "TMPFS_BYTES",
           "UID_NAMESPACES", "WEAK_ISOLATION", "WORKER_UID_BASE", "IsolationUnavailable", "Sandbox", "SandboxCrashed",
           "SandboxPolicy", "SandboxTimeout", "StandInAnswerer", "WorkerStartFailed", "WorkerTemplate", "current_template",
           "needed_preloads", "start_template", "stop_template", "template_problem", "bwrap_command", "bwrap_problem",
           "choose_backend", "compile_worker_code", "grader_files_writable_by_worker", "grader_roots",
           "grader_top_level", "log_tail", "make_private", "uid_command", "uid_problem", "worker_private_paths",
           "worker_view"]
