"""Run a command as on a container host where only the uid sandbox backend can work (tests of the uid backend).

`container_like(argv, stash)` wraps `argv` in a private mount namespace of the test's own (root only) that changes
what the command sees, never the machine:
- where the grader's Python lies under a folder other users cannot search (pyenv under /root, mode 700, on the
  course's build machines), that folder is replaced by an empty one (mode 755) holding only the Python installation,
  bound back at its path: as in Gradescope's image, whose Python (/usr/bin) any uid can run;
- bubblewrap is made unrunnable (/dev/null bound over it) with `no_bwrap`: a host where it cannot start, as inside a
  container whose seccomp profile forbids user namespaces;
- with `no_cgroups`, the cgroup filesystem is hidden under an empty read-only one, as in a container whose cgroups
  the grader cannot write (Docker mounts them read-only): the worker's memory cap is then its own RLIMIT_AS;
- the dataset mirror (DLCOURSE_DATA_MIRROR), which the machine shares world-readable, is moved under a mode-700 folder
  of `stash` and an empty folder is put in its place, as a container's private copy would be.
Everything the command writes goes where it would without the wrapper.
"""
from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path


def blocked_ancestor(path: str) -> str | None:
    """The highest folder above `path` that other users cannot search (o-x), or None."""
    parts = Path(os.path.realpath(path)).parts
    for depth in range(2, len(parts)):
        folder = os.path.join(*parts[:depth])
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def problem() -> str | None:
    """Why no such namespace can be made here (None when it can)."""
    if os.geteuid() != 0:
        return "the container-like wrapper needs root (a private mount namespace)"
    if not shutil.which("unshare"):
        return "no unshare command (util-linux)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare --mount failed: {probe.stderr.strip()[:200]}"


def container_like(argv: list[str], stash: Path, no_bwrap: bool = True,
                   no_cgroups: bool = False) -> tuple[list[str], dict[str, str]]:
    """(command, environment) running `argv` as described above; `stash`: an empty folder of the test's."""
    env = dict(os.environ)
    lines = ["set -eu"]
    base = os.path.realpath(sys.base_prefix)
    blocked = blocked_ancestor(base)
    if blocked:
        lines += [f"mkdir -p {stash}/python", f"mount --bind {shlex.quote(base)} {stash}/python",
                  f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(blocked)}", f"mkdir -p {shlex.quote(base)}",
                  f"mount --bind {stash}/python {shlex.quote(base)}"]
    if no_bwrap and shutil.which("bwrap"):
        lines.append(f"mount --bind /dev/null {shlex.quote(os.path.realpath(shutil.which('bwrap')))}")
    if no_cgroups and os.path.isdir("/sys/fs/cgroup"):
        lines.append("mount -t tmpfs -o ro,mode=755 tmpfs /sys/fs/cgroup")
    mirror = os.environ.get("DLCOURSE_DATA_MIRROR")
    if mirror and os.path.isdir(mirror):
        private = stash / "private"
        private.mkdir(mode=0o700)
        (private / "data").mkdir()
        lines += [f"mount --bind {shlex.quote(mirror)} {private}/data",
                  f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(mirror)}"]
        env["DLCOURSE_DATA_MIRROR"] = str(private / "data")
    lines.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines), "sh", *argv], env
