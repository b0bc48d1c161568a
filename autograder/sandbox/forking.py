"""The trusted side of the worker template (template.py): `WorkerTemplate` starts one, sandboxed, and asks it for a
worker per submission; `TemplateWorker` is such a worker's handle, with the part of subprocess.Popen's interface
that `Sandbox` uses.

A judge server starts one template per worker slot (supervisor.py: `start_template`, before it forks its first
judge); the judges it forks inherit it (`current_template`), and `Sandbox.start` forks each worker from it where the worker
would run under bubblewrap on the CPU, instead of starting a new interpreter that imports torch again. Anything else
(the uid backend, weak isolation, CUDA, a Sandbox outside a judge server, a template that failed its probe or ended)
starts the worker as before.
"""
from __future__ import annotations

import array
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.sandbox.backends import (HERE, TMPFS_BYTES, WORKER_UID_BASE, compile_worker_code, grader_is_root,
                                         sandbox_command, view_under_tmp, worker_environment)
from autograder.sandbox.cgroups import WorkerLimits

TEMPLATE_MEMORY_MB = 2048  # the template's own cap: its imports (about 400 MiB); each worker has a cgroup of its own
START_TIMEOUT_S = 120.0


class TemplateUnavailable(RuntimeError):
    """The template ended, or did not answer a fork in time: start the worker without it."""


class TemplateWorker:
    """A worker forked by the template: its exit code arrives on a connection of its own."""

    def __init__(self, connection: socket.socket, pid: int):
        self.connection, self.pid = connection, pid  # pid: in the template's PID namespace, not this one's
        self.returncode: int | None = None

    def _read(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        if not select.select([self.connection], [], [], timeout)[0]:
            return
        try:
            message = self.connection.recv(4096)
        except OSError:
            message = b""
        # The connection's end without an exit code: the template itself ended, and its workers with it.
        self.returncode = json.loads(message)["exit"] if message else -9

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("template worker", timeout or 0.0)
            self._read(left)
        self.connection.close()
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the worker (its PID namespace goes with it)."""
        try:
            self.connection.send(b'{"kill": true}')
        except OSError:
            pass


class WorkerTemplate:
    """One template process, sandboxed like a worker, and the trusted side's end of its listener."""

    def __init__(self, log_path: Path, preload: tuple[str, ...] = ()):
        """`preload`: modules the template imports besides what every worker imports (an assignment's libraries)."""
        compile_worker_code()  # what the template imports from the checkout, which it sees read-only
        self.log_path = Path(log_path)
        self.uid = WORKER_UID_BASE + os.getpid() if grader_is_root() else None
        self.limits = WorkerLimits.create(TEMPLATE_MEMORY_MB, use_cgroup=grader_is_root())
        self.staging = tempfile.mkdtemp(prefix="dlcourse-template-", dir="/tmp" if Path("/tmp").is_dir() else None)
        self.listener, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        tmp_binds, tmp_links = view_under_tmp("cpu")
        settings = {"course_root": str(HERE.parents[1]), "tmpfs_bytes": TMPFS_BYTES, "preload_modules": list(preload),
                    "tmp_binds": tmp_binds, "tmp_links": tmp_links}
        template = [sys.executable, "-I", str(HERE / "template.py"), str(theirs.fileno()), json.dumps(settings)]
        command = sandbox_command(self.staging, template, "cpu", self.limits, self.uid or 0, allow_user_namespaces=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.staging,
                                            env=worker_environment("/tmp", threads=1), pass_fds=(theirs.fileno(),),
                                            start_new_session=True)
        theirs.close()
        self.owner = os.getpid()  # only the process that started it may stop it (judges inherit this object)

    def fork(self, request: dict, fds: list[int], cgroup_procs: list[str], timeout: float) -> TemplateWorker:
        """A worker: the template forks, the child confines itself and runs worker.py with `request` ({"worker",
        "argv_settings", "env"}) on the pipes `fds` (request read end, response write end, output write end), after
        joining the cgroups whose cgroup.procs files are `cgroup_procs`. TemplateUnavailable when the template is
        gone or does not answer within `timeout` seconds."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        procs = [os.open(path, os.O_WRONLY) for path in cgroup_procs]
        try:
            descriptors = array.array("i", [theirs.fileno(), *fds, *procs])
            self.listener.sendmsg([json.dumps(request).encode()],
                                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, descriptors.tobytes())])
        except OSError as exc:
            ours.close()
            raise TemplateUnavailable(f"the worker template is gone ({exc})") from None
        finally:
            theirs.close()
            for fd in procs:
                os.close(fd)
        if not select.select([ours], [], [], timeout)[0]:
            ours.close()
            raise TemplateUnavailable(f"the worker template did not answer within {timeout:.0f} s")
        message = ours.recv(4096)
        if not message:
            ours.close()
            raise TemplateUnavailable(f"the worker template ended; its log ({self.log_path}) says why")
        return TemplateWorker(ours, json.loads(message)["pid"])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None if os.getpid() == self.owner else True

    def close(self) -> None:
        """Stop the template (its workers die with it: it is PID 1 of their namespace's parent)."""
        if os.getpid() != self.owner:
            return
        self.listener.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.limits.kill_all()
        self.limits.remove()
        shutil.rmtree(self.staging, ignore_errors=True)


_current: WorkerTemplate | None = None


def current_template() -> WorkerTemplate | None:
    """The template this process (a judge forked by a judge server) may fork workers from, if any."""
    return _current


def use_template(template: WorkerTemplate | None) -> None:
    """Make `template` the one this process and the judges it forks fork their workers from."""
    global _current
    _current = template


def stop_template() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None
