"""The files between the grader and its workers: what the uid backend's worker (which sees the host's filesystem) must
not reach (`worker_private_paths`, made private by `make_private` before a batch), and what the trusted side runs or
reads that a worker's uid must not be able to write (`grader_files_writable_by_worker`: the preflight refuses to
grade while there is one)."""
from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from autograder.sandbox.backends import PROJECT_ROOT, WORKER_UID_BASE, inside

def reachable_by_others(path: str) -> bool:
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
        if not os.path.lexists(path) or not reachable_by_others(str(path)):
            continue
        real = os.path.realpath(path)
        if not os.path.islink(path) and inside(real, mine):
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


def writable_by_worker(path: str) -> bool:
    """Owned by a worker uid/gid, or writable by anyone: a sticky world-writable folder too (a worker could add a
    module of its own there). A file gone since its folder was listed (Python renaming the bytecode it has just
    written, in another process) is nobody's to write."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        return False
    return bool(info.st_uid >= WORKER_UID_BASE or (info.st_gid >= WORKER_UID_BASE and info.st_mode & 0o020)
                or info.st_mode & 0o002)


def grader_files_writable_by_worker() -> list[str]:
    """Files and folders the trusted side runs or reads (grader_roots(), walked, and grader_top_level()) that a
    worker's uid could write if it ever reached them. Grading must not start while there is one."""
    found = [path for path in grader_top_level() if writable_by_worker(path)]
    for root in sorted(grader_roots()):
        found += [root] if writable_by_worker(root) else []
        for folder, dirs, files in os.walk(root):
            found += [os.path.join(folder, name) for name in dirs + files
                      if writable_by_worker(os.path.join(folder, name))]
    return found
