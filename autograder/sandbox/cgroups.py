"""A memory and process cap for one worker: a cgroup of its own where the grader may create one.

cgroup v2 (`memory.max`, `pids.max` in one tree) and v1 (separate `memory` and `pids` hierarchies, as on
the course's machines) are both supported. A group is created below the grader's own group (as root, or
in a subtree delegated to the grader's user); the launcher (confine.py) moves the worker into it before
dropping privileges. Where no group can be made, the worker caps its own address space (RLIMIT_AS) above
what torch reserves, and `WorkerLimits.memory_cap` says which cap applied.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_PROCESSES = 256  # threads count: torch's pools, plus a margin; fork is refused by seccomp anyway


def _own_group(controller: str | None) -> Path | None:
    """This process's group folder in the v1 hierarchy of `controller`, or the v2 tree with None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or (controller and controller in controllers.split(",")):
            base = CGROUP_ROOT if controller is None else CGROUP_ROOT / controller
            folder = base / path.lstrip("/")
            return folder if folder.is_dir() else None
    return None


@dataclass
class WorkerLimits:
    """The cgroup folders made for one worker (empty where none could be made) and what they cap."""

    memory_mb: int
    groups: list[Path] = field(default_factory=list)
    memory_cap: str = ""  # for the gradebook: "cgroup v1 memory.limit_in_bytes 4096 MiB", or the RLIMIT_AS fallback
    _memory_group: Path | None = None
    _version: int = 0

    @classmethod
    def create(cls, memory_mb: int, use_cgroup: bool) -> "WorkerLimits":
        """The limits of one worker: a cgroup when `use_cgroup` (the grader is root and the worker is under
        bubblewrap) and one can be made, else the worker's own RLIMIT_AS (see `by_cgroup`)."""
        limits = cls(memory_mb)
        if use_cgroup:
            name = f"dlcourse-worker-{uuid.uuid4().hex[:12]}"
            unified = CGROUP_ROOT / "cgroup.controllers"
            if unified.exists() and "memory" in unified.read_text().split():
                limits._try_v2(name)
            else:
                limits._try_v1(name)
        if not limits.by_cgroup:
            limits.memory_cap = f"RLIMIT_AS {memory_mb} MiB above torch's own reservation"
        return limits

    @classmethod
    def uncapped(cls) -> "WorkerLimits":
        """No memory cap: a CUDA run, where the device's memory is not the host's and RLIMIT_AS breaks CUDA."""
        return cls(0, memory_cap="none (CUDA run)")

    @property
    def rlimit_mb(self) -> int | None:
        """The MiB above torch's reservation at which the worker caps its own address space; None where a cgroup
        caps it, or nothing does."""
        return None if self.by_cgroup or not self.memory_mb else self.memory_mb

    @property
    def by_cgroup(self) -> bool:
        """Whether a cgroup caps the worker's memory (else the worker must cap its own address space)."""
        return self._memory_group is not None

    def _make(self, parent: Path | None, name: str, settings: dict[str, str]) -> Path | None:
        if parent is None:
            return None
        folder = parent / name
        try:
            folder.mkdir()
        except OSError:
            return None
        try:
            for key, value in settings.items():
                if (folder / key).exists():
                    (folder / key).write_text(value)
        except OSError:
            folder.rmdir()
            return None
        self.groups.append(folder)
        return folder

    def _try_v2(self, name: str) -> None:
        group = self._make(_own_group(None), name, {"memory.max": str(self.memory_mb << 20), "memory.swap.max": "0",
                                                    "pids.max": str(MAX_PROCESSES)})
        if group:
            self._memory_group, self._version = group, 2
            self.memory_cap = f"cgroup v2 memory.max {self.memory_mb} MiB"

    def _try_v1(self, name: str) -> None:
        memory = self._make(_own_group("memory"), name, {"memory.limit_in_bytes": str(self.memory_mb << 20),
                                                          "memory.memsw.limit_in_bytes": str(self.memory_mb << 20)})
        if memory:
            self._memory_group, self._version = memory, 1
            self.memory_cap = f"cgroup v1 memory.limit_in_bytes {self.memory_mb} MiB"
        self._make(_own_group("pids"), name, {"pids.max": str(MAX_PROCESSES)})

    @property
    def procs_files(self) -> list[str]:
        """The files the launcher writes its pid into to join every group."""
        return [str(g / "cgroup.procs") for g in self.groups]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this group for reaching the memory cap."""
        if self._memory_group is None:
            return False
        events = self._memory_group / ("memory.events" if self._version == 2 else "memory.oom_control")
        try:
            text = events.read_text()
        except OSError:
            return False
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", "0")) > 0

    def kill_all(self) -> None:
        """SIGKILL every process still in the groups (the worker's whole tree, whatever session it made)."""
        for group in self.groups:
            try:
                pids = (group / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def remove(self) -> None:
        """Remove the groups once their processes are gone (a group with processes cannot be removed)."""
        deadline = time.monotonic() + 5
        for group in self.groups:
            while True:
                try:
                    os.rmdir(group)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    self.kill_all()
                    time.sleep(0.05)
        self.groups.clear()
