"""Running untrusted student code: the `Sandbox` (trusted side) and its worker (untrusted side).

    sandbox = Sandbox(cells, policy=SandboxPolicy(...))
    reply = sandbox.request({"cmd": "run", ...}, tensors, timeout=10)

Isolation, strongest available first:
- Linux with unshare/setpriv (util-linux): network, PID and mount namespaces (see launch.sh), no
  capabilities; hidden paths are not there at all for the worker.
- elsewhere (macOS, some containers): the worker runs as a plain subprocess, and only its Python audit
  hook keeps it from the network, subprocesses and hidden paths. `Sandbox.isolation` says which was used,
  and the gradebook records it.
Both: memory cap (RLIMIT_AS), per-request timeout with the whole process group killed, and
stdout/stderr to a log file, never into the protocol.
"""
from __future__ import annotations

import functools
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

from autograder.sandbox.protocol import MAX_HEADER_BYTES, ProtocolError, decode_header, decode_payload, encode

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
MAX_REPLY_BYTES = 1 << 30


class SandboxTimeout(Exception):
    """The worker did not answer in time; it has been killed."""


class SandboxCrashed(Exception):
    """The worker exited or broke the protocol; it is gone."""


@dataclass
class SandboxPolicy:
    memory_mb: int = 4096
    threads: int = 1
    device: str = "cpu"
    forbidden_attributes: list[str] = field(default_factory=list)
    forbidden_modules: list[str] = field(default_factory=list)
    hide: list[str] = field(default_factory=list)  # absolute paths the worker must not see (submissions, output)
    allow_weak_isolation: bool = True  # run without namespaces where they are unavailable
    audit_hook: bool = True  # False only to test the namespace layer on its own; never in grading
    preload_modules: list[str] = field(default_factory=list)  # imported before the audit hook (e.g. transformers)


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Whether unshare + setpriv can build the full sandbox on this machine (probed once)."""
    if sys.platform != "linux" or not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    try:
        probe = subprocess.run(_unshare_prefix() + ["sh", "-c", "mount -t tmpfs tmpfs /mnt && setpriv --bounding-set=-all true"],
                               capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _unshare_prefix() -> list[str]:
    prefix = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        prefix.append("--map-root-user")
    return prefix


def _keep_paths() -> list[str]:
    """Paths under the project root that the worker needs: the course package, its own code, the venv."""
    keep = [PROJECT_ROOT / "dlcourse", HERE]
    prefix = Path(sys.prefix).resolve()
    if PROJECT_ROOT in prefix.parents:
        keep.append(prefix)
    return [str(p.relative_to(PROJECT_ROOT)) for p in keep]


class Sandbox:
    """One worker process running one submission's cells. Not thread-safe; one per submission."""

    def __init__(self, cells: list[dict], policy: SandboxPolicy, log_path: Path):
        self.cells, self.policy, self.log_path = cells, policy, Path(log_path)
        self.process: subprocess.Popen | None = None
        self.isolation = "namespaces" if namespaces_available() else "audit-hook-only"
        if self.isolation != "namespaces" and not policy.allow_weak_isolation:
            raise RuntimeError("Linux namespaces (unshare/setpriv) are unavailable and weak isolation is not allowed")

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float) -> dict:
        """Start the worker and run the cells; returns the load reply ({"cell_errors": {...}})."""
        self.close()
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        # The worker's working folder. With namespaces it is also where launch.sh stages its mounts, so it
        # must lie outside the project.
        workdir = tempfile.mkdtemp(prefix="dlcourse-sandbox-", dir="/tmp" if Path("/tmp").is_dir() else None)
        if PROJECT_ROOT in Path(workdir).resolve().parents:
            raise RuntimeError(f"the sandbox's folder {workdir} must be outside the project {PROJECT_ROOT}")
        settings = {
            "memory_mb": self.policy.memory_mb if self.policy.device == "cpu" else None,
            "threads": self.policy.threads, "device": self.policy.device,
            "audit_hook": self.policy.audit_hook, "preload_modules": self.policy.preload_modules,
            "blocked_roots": [str(PROJECT_ROOT), *self.policy.hide],
            "allowed_roots": [str(PROJECT_ROOT / k) for k in _keep_paths()] + [workdir],
        }
        worker = [sys.executable, "-I", str(HERE / "worker.py"), str(request_r), str(response_w), json.dumps(settings)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": str(self.policy.threads),
               "PYTHONHASHSEED": "0",
               # Hugging Face libraries must never try the network (the sandbox has none anyway).
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
        for name in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES"):
            if name in os.environ:
                env[name] = os.environ[name]
        if self.isolation == "namespaces":
            env.update(SANDBOX_ROOT=str(PROJECT_ROOT), SANDBOX_KEEP=":".join(_keep_paths()), SANDBOX_STAGING=workdir,
                       SANDBOX_HIDE=":".join(p for p in self.policy.hide if Path(p).is_dir()))
            command = _unshare_prefix() + ["sh", str(HERE / "launch.sh"), *worker]
        else:
            command = worker
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                            cwd=workdir, pass_fds=(request_r, response_w), start_new_session=True)
        os.close(request_r)
        os.close(response_w)
        os.set_blocking(request_w, False)
        self._request_fd, self._response_fd = request_w, response_r
        self._workdir = workdir
        return self.request({"cmd": "load", "cells": self.cells,
                             "forbidden_attributes": self.policy.forbidden_attributes,
                             "forbidden_modules": self.policy.forbidden_modules}, timeout=timeout)[0]

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
        for fd in (self._request_fd, self._response_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self.process = None

    # -- requests ----------------------------------------------------------------------------------
    def request(self, header: dict, tensors: dict | None = None, timeout: float = 30.0) -> tuple[dict, dict]:
        """Send one request and wait at most `timeout` seconds for the reply (header, tensors)."""
        if not self.alive:
            raise SandboxCrashed(self._exit_description())
        deadline = time.monotonic() + timeout
        try:
            self._write_all(encode(header, tensors), deadline)
            (length,) = struct.unpack("<I", self._read_exact(4, deadline))
            if length > MAX_HEADER_BYTES:
                raise ProtocolError("reply header too large")
            reply = decode_header(self._read_exact(length, deadline))
            if reply["payload"] > MAX_REPLY_BYTES:
                raise ProtocolError("reply payload too large")
            payload = decode_payload(self._read_exact(reply["payload"], deadline))
        except SandboxTimeout:
            self.close()
            raise
        except (ProtocolError, OSError) as exc:
            description = self._exit_description(wait=True)
            self.close()
            raise SandboxCrashed(description if "exited" in description else f"worker broke the protocol: {exc}") from None
        return reply, payload

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
