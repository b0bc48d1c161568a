"""The trusted side's handle on one sandboxed worker (`Sandbox`): it starts the worker under the backend chosen for
this machine (backends.py) with its limits (cgroups.py), sends it requests and reads the replies (protocol.py),
answers its calls of the grader's stand-ins, and kills its whole process tree on a timeout or a broken protocol.
`SandboxPolicy` is what a grade asks of it; the exceptions say how a worker failed."""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autograder.sandbox.backends import (HERE, PROJECT_ROOT, WORKER_UID_BASE, choose_backend,
                                         compile_worker_code, grader_is_root, sandbox_command, uid_command,
                                         worker_environment)
from autograder.sandbox.cgroups import WorkerLimits
from autograder.sandbox.forking import (START_TIMEOUT_S, TemplateUnavailable, TemplateWorker, WorkerTemplate,
                                        current_template, use_template)
from autograder.sandbox.protocol import MAX_HEADER_BYTES, ProtocolError, decode_header, decode_payload, encode
from autograder.sandbox.worker_log import TruncatingLog, log_tail

MAX_REPLY_BYTES = 1 << 30
WEAK_ISOLATION = "weak: no bubblewrap, the audit hook only"


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
    preload_if_used: list[str] = field(default_factory=list)  # the same, where this worker may use them: needed_preloads
    backend: str = "auto"  # "bubblewrap", "uid" or "auto" (the first of them that works here): see choose_backend


def needed_preloads(policy: SandboxPolicy, cells: list[dict]) -> list[str]:
    """What a worker running `cells` imports before its audit hook: `policy.preload_modules`, and each module of
    `policy.preload_if_used` (an assignment's libraries: its spec's preload_modules) whose top-level package a cell's
    source names (anywhere in its text) or one of the forbidden attributes lives in (the tripwires guard it in place).
    One left out is not loaded at all (torchvision: about 1.4 CPU s of each ViT worker's start, for tests that never
    use it); code that reaches it anyway imports it under the audit hook, which refuses ctypes.dlopen, so without its
    compiled extensions (torchvision's ops). A worker forked from a judge server's worker template finds the
    assignment's libraries loaded already: the template imported them once for all its workers (forking.py)."""
    def used(module: str) -> bool:
        package = module.partition(".")[0]
        return (any(package in cell["source"] for cell in cells)
                or any(name.partition(".")[0] == package for name in policy.forbidden_attributes))
    return list(dict.fromkeys([*(m for m in policy.preload_if_used if used(m)), *policy.preload_modules]))


class Sandbox:
    """One worker process running one submission's cells. Not thread-safe; one per submission."""

    def __init__(self, cells: list[dict], policy: SandboxPolicy, log_path: Path, template: WorkerTemplate | None = None):
        """`template`: the worker template to fork the worker from (forking.py); by default this process's, if any."""
        self.cells, self.policy, self.log_path = cells, policy, Path(log_path)
        self.template = template
        self.forked = False  # whether the running worker was forked from a template
        self.process: subprocess.Popen | TemplateWorker | None = None
        self.limits: WorkerLimits | None = None
        self.seccomp = "not started"
        self._workdir: str | None = None
        self._log_thread: TruncatingLog | None = None
        self.namespaces: list[str] = []
        self.backend, problem = choose_backend(policy.backend, policy.device)
        if self.backend is None and not policy.allow_weak_isolation:
            raise IsolationUnavailable(f"{problem}; refusing to run student code without it "
                                       "(pass --allow-weak-isolation to grade with the audit hook only)")
        self.uid = WORKER_UID_BASE + os.getpid() if grader_is_root() else None
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
        forked = ", forked from the worker template into namespaces of its own" if self.forked else ""
        return f"bubblewrap ({user}, {self.seccomp}{forked})"

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
            self.limits = WorkerLimits.create(self.policy.memory_mb, use_cgroup=self.strong and grader_is_root())
        else:
            self.limits = WorkerLimits.uncapped()
        settings = {
            "memory_mb": self.limits.rlimit_mb,
            "max_processes": 256 if self.uid is not None and self.strong else None,  # per uid: only for a uid of its own
            "threads": self.policy.threads, "device": self.policy.device, "seccomp": self.strong, "backend": self.backend,
            "course_root": str(PROJECT_ROOT),  # dlcourse is imported from this checkout, as on the trusted side
            "audit_hook": self.policy.audit_hook, "preload_modules": needed_preloads(self.policy, self.cells),
            "blocked_roots": [str(PROJECT_ROOT), *self.policy.hide],
            "allowed_roots": [str(PROJECT_ROOT / "dlcourse"), str(HERE), sys.prefix, workdir if uid_backend or not self.strong else "/tmp"],
        }
        home = workdir if uid_backend or not self.strong else "/tmp"
        env = worker_environment(home, self.policy.threads)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.forked = False
        template = self.template or current_template()
        if template is not None and self.backend == "bubblewrap" and self.policy.device == "cpu":
            request = {"worker": str(HERE / "worker.py"), "argv_settings": json.dumps(settings), "env": env}
            try:
                self.process = template.fork(request, [request_r, response_w, output_w], self.limits.procs_files,
                                             timeout=max(1.0, deadline - time.monotonic()))
                self.forked, self.uid = True, template.uid
            except TemplateUnavailable as exc:  # started as without a template, below; the judge's log says why
                print(f"sandbox: {exc}; starting the worker without it", file=sys.stderr, flush=True)
                # New pipes: a template that answers late may still have forked a worker holding the old ones.
                for fd in (request_r, request_w, response_r, response_w, output_r, output_w):
                    os.close(fd)
                request_r, request_w = os.pipe()
                response_r, response_w = os.pipe()
                output_r, output_w = os.pipe()
        if not self.forked:
            worker = [sys.executable, "-I", str(HERE / "worker.py"), str(request_r), str(response_w), json.dumps(settings)]
            if uid_backend:
                assert self.uid is not None, "choose_backend picks the uid backend only for a root grader"
                command = uid_command(worker, self.uid, self.limits.procs_files)
            elif self.strong:
                command = sandbox_command(workdir, worker, self.policy.device, self.limits, self.uid or 0)
            else:
                env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
                command = worker
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w, env=env,
                                            cwd=workdir, pass_fds=(request_r, response_w), start_new_session=True)
        for fd in (request_r, response_w, output_w):
            os.close(fd)
        self._log_thread = log_thread = TruncatingLog(output_r, self.log_path)
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
            if isinstance(self.process, TemplateWorker):
                self.process.kill()
            else:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a template that no longer answers: the cgroup's kill below, or its own loop
            pass                           # when it reads the connection closed here, ends the worker
        if isinstance(self.process, TemplateWorker):
            self.process.connection.close()
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


def template_problem(template: WorkerTemplate) -> str | None:
    """Why workers cannot be forked from `template` (None when they can): a worker is forked, confined and loaded as
    grading does it, running one cell that checks it is PID 1 of a namespace of its own and can write its /tmp."""
    cell = {"grade_id": "probe",
            "source": "import os\nassert os.getpid() == 1, os.getpid()\nopen('/tmp/probe', 'w').close()"}
    sandbox = Sandbox([cell], SandboxPolicy(memory_mb=512), template.log_path.with_suffix(".probe.log"), template=template)
    try:
        reply = sandbox.start(timeout=START_TIMEOUT_S)
    except WorkerStartFailed as exc:
        return str(exc)
    finally:
        sandbox.close()
    if not sandbox.forked:
        return "the probe's worker was not forked from the template"
    if reply.get("cell_errors"):
        return f"a worker forked from the template is not confined as it should be: {reply['cell_errors']}"
    return None


def start_template(log_path: Path, backend: str = "auto", preload: tuple[str, ...] = ()) -> str | None:
    """Start this process's worker template (a judge server does, before it forks judges), importing `preload` too,
    and make it the one its Sandboxes fork from; or say why not (None when started)."""
    if choose_backend(backend)[0] != "bubblewrap":
        return "workers do not run under bubblewrap here"
    template = WorkerTemplate(log_path, preload)
    problem = template_problem(template)
    if problem:
        template.close()
        return problem
    use_template(template)
    return None
