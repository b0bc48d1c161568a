"""Unpack one submission: only the files the assignment's submission.txt names, size-capped, never a path from the
archive (step 2 of the pipeline)."""
from __future__ import annotations

import tarfile
import zipfile
import zlib
from pathlib import Path

from autograder.assignments import Assignment
from autograder.pipeline.survey import NOTEBOOK_SUFFIX, Submission

try:
    from lzma import LZMAError  # a corrupt .tar.xz raises it (not an OSError)
    LZMA_ERRORS: tuple[type[Exception], ...] = (LZMAError,)
except ImportError:  # Python without lzma: tarfile cannot open .xz at all then
    LZMA_ERRORS = ()
UNPACK_ERRORS: tuple[type[Exception], ...] = (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, *LZMA_ERRORS)

MAX_FILE_BYTES = 1 << 30
MAX_TOTAL_BYTES = 2 << 30


class BadSubmission(Exception):
    """The submission could not be unpacked (its message goes into the gradebook)."""


def unpack_submission(sub: Submission, assignment: Assignment, dest: Path) -> list[str]:
    """Copy the assignment's files out of the submission into `dest`; return the names found."""
    wanted = set(assignment.files)
    dest.mkdir(parents=True, exist_ok=True)

    def accept(member_name: str) -> str | None:
        parts = Path(member_name).parts
        if len(parts) == 1 or (len(parts) == 2 and parts[0] == assignment.name):
            return parts[-1] if parts[-1] in wanted else None
        return None

    written, total = [], 0

    def write(name: str, size: int, read) -> None:
        nonlocal total
        total += size
        if size > MAX_FILE_BYTES or total > MAX_TOTAL_BYTES:
            raise BadSubmission(f"{name} is too large ({size / 2**20:.0f} MiB)")
        (dest / name).write_bytes(read())
        written.append(name)

    path = sub.path
    if path.is_symlink():
        raise BadSubmission(f"{path.name} is a symbolic link, which the grader refuses; copy the submission itself")
    try:
        if path.is_dir():
            for f in assignment.files:
                for candidate in (path / f, path / assignment.name / f):
                    # a symlink (say to source/) must not become the student's file, nor a linked folder lead to one
                    if any(p.is_symlink() for p in (candidate, candidate.parent)):
                        continue
                    if candidate.is_file() and path.resolve() in candidate.resolve().parents:
                        write(f, candidate.stat().st_size, candidate.read_bytes)
                        break
        elif path.name.lower().endswith(NOTEBOOK_SUFFIX):
            write(assignment.notebook, path.stat().st_size, path.read_bytes)
        elif path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    name = accept(info.filename)
                    if name and not info.is_dir() and name not in written:
                        write(name, info.file_size, lambda info=info: archive.read(info))
        else:
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    name = accept(member.name)
                    if name and member.isfile() and name not in written:
                        write(name, member.size, lambda member=member: _member_bytes(tar, member))
    except UNPACK_ERRORS as exc:
        raise BadSubmission(f"{path.name} could not be unpacked ({type(exc).__name__}: {exc}); "
                            "make it again with CollectSubmission.sh") from None
    return written


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of a regular file of `tar`."""
    data = tar.extractfile(member)
    if data is None:  # only regular files are read
        raise tarfile.TarError(f"{member.name} is not a regular file")
    return data.read()
