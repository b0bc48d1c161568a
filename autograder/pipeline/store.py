"""Durable grading results: one file per graded submission, so that an interrupted or repeated run loses nothing.

    OUT/results/<student-id>.json   written atomically (temp file + os.replace) by the trusted grader only, after
                                    its judge has finished; keyed by student id and the SHA-256 of the submission's
                                    bytes (and of the grader: grader_digest), so a rerun regrades only what is new
                                    or changed
    OUT/pending.json                the students this run still has to grade: a rerun after an interruption grades
                                    them even where --force or --only chose them and an older result is stored
    OUT/.grading.lock               one grader per output folder at a time

A grader killed without warning (SIGKILL) leaves its judges running; the next grader on the folder finds them by their
command line (the judge's marker and OUT/work/) and kills them with their workers, so no orphan writes into it again.

The gradebook is always rebuilt from OUT/results/, never kept in memory alone.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autograder.pipeline.results import FormatError, SubmissionResult


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader (or a rerun after SIGKILL) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def grader_digest(assignment) -> str:
    """SHA-256 of what decides a score besides the submission: the assignment's spec, release notebook and hidden
    tests, and the grader's and course package's code. A stored result graded by another version is graded again."""
    from autograder.assignments import PROJECT_ROOT

    code = sorted((PROJECT_ROOT / "autograder").rglob("*.py")) + sorted((PROJECT_ROOT / "dlcourse").rglob("*.py"))
    other_tests = {p for p in assignment.hidden_tests.parent.glob("test_*.py") if p != assignment.hidden_tests}
    h = hashlib.sha256()
    for path in [assignment.spec_file, assignment.release_dir / assignment.notebook,
                 *(p for p in code if p not in other_tests)]:
        if path.is_file():
            h.update(f"{path.relative_to(PROJECT_ROOT)}\0".encode())
            _hash_file(h, path)
    return h.hexdigest()


def submission_digest(path: Path) -> str:
    """SHA-256 of a submission's bytes: the file's, or for a folder every regular file's relative name and bytes
    (symbolic links are named, never followed)."""
    h = hashlib.sha256()
    if path.is_dir() and not path.is_symlink():
        for item in sorted(p for p in path.rglob("*")):
            rel = item.relative_to(path).as_posix()
            if item.is_symlink():
                h.update(f"link {rel} -> {os.readlink(item)}\0".encode())
            elif item.is_file():
                h.update(f"file {rel}\0".encode())
                _hash_file(h, item)
    else:
        _hash_file(h, path)
    return h.hexdigest()


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


@dataclass
class StoredResult:
    student_id: str
    assignment: str
    source: str  # the submission's file or folder name
    sha256: str  # of the submission's bytes when it was graded
    wall_s: float  # seconds from unpacking to the judge's end
    result: SubmissionResult
    grader: str = ""  # grader_digest when it was graded
    graded_at: float = 0.0  # time.time() when it was stored

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "result": self.result.to_dict()}, indent=2)

    @classmethod
    def from_json(cls, text: str, path: Path | str = "results.json") -> "StoredResult":
        values = json.loads(text)
        values["result"] = SubmissionResult.from_dict(values["result"], path)
        return cls(**values)


class ResultStore:
    """The per-submission results of one output folder, for one assignment."""

    def __init__(self, out: Path, assignment: str):
        self.out, self.assignment = out, assignment
        self.results = out / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = None
        self._pending: set[str] = set()
        self._since, self._pending_lock = 0.0, threading.Lock()

    def lock(self) -> None:
        """Refuse a second grader on the same output folder (both would judge the same students into it)."""
        self._lock_file = lock_file = open(self.out / ".grading.lock", "w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another grader is already writing into {self.out}; wait for it to end, or pass another "
                             "--out") from None
        for stray in [p for d in (self.results, self.out, self.out / "feedback") for p in d.glob(".*.tmp")]:  # SIGKILL
            stray.unlink(missing_ok=True)

    def get(self, student_id: str) -> StoredResult | None:
        path = self.results / f"{student_id}.json"
        if not path.exists():
            return None
        try:
            stored = StoredResult.from_json(path.read_text(), path)
        except FormatError as exc:  # another grader's: never mistaken for no result, nor read wrongly
            raise SystemExit(str(exc)) from None
        except (ValueError, TypeError, KeyError):  # never half-written (atomic), but a hand-edited file may be broken
            return None
        if stored.assignment != self.assignment:
            raise SystemExit(f"{self.out} holds results of assignment '{stored.assignment}' ({path}); grade "
                             f"'{self.assignment}' into another --out folder")
        return stored

    def put(self, stored: StoredResult) -> None:
        stored.graded_at = time.time()
        atomic_write(self.results / f"{stored.student_id}.json", stored.to_json())

    def all(self) -> dict[str, StoredResult]:
        found = {}
        for path in sorted(self.results.glob("*.json")):
            stored = self.get(path.stem)
            if stored is not None:
                found[stored.student_id] = stored
        return found

    def pending(self) -> set[str]:
        """The students an earlier run set out to grade and did not store (a result stored after they were set pending,
        even by a grader killed before it could cross them off, counts as done)."""
        path = self.out / "pending.json"
        try:
            record = json.loads(path.read_text()) if path.exists() else {}
            since, students = float(record.get("since", 0)), set(record.get("students", []))
        except (ValueError, TypeError, AttributeError):
            return set()
        return {sid for sid in students if (stored := self.get(sid)) is None or stored.graded_at < since}

    def set_pending(self, student_ids: set[str]) -> None:
        self._pending, self._since = set(student_ids), time.time()
        self._write_pending()

    def done(self, student_id: str) -> None:
        """`student_id` is graded and stored (called from the grading threads)."""
        with self._pending_lock:
            self._pending.discard(student_id)
            self._write_pending()

    def _write_pending(self) -> None:
        atomic_write(self.out / "pending.json", json.dumps({"since": self._since, "students": sorted(self._pending)}))
