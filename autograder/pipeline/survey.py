"""Survey a folder of submissions: which entries are submissions (one per student id), which are warnings; the roster.
(Step 1 of the pipeline, autograder/pipeline/grade.py: grade_folder.)"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from autograder.pipeline.csvfiles import csv_rows

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar", ".zip")
NOTEBOOK_SUFFIX = ".ipynb"
COPY_MARK = re.compile(r"\s*\(\d+\)$")  # "alice (1).ipynb": the same student's file downloaded twice


@dataclass
class Submission:
    student_id: str
    path: Path
    sha256: str = ""  # of its bytes (autograder/pipeline/store.py), set when it is graded


@dataclass
class Survey:
    """What discovery found: the submissions, and every other entry of the folder with why it is not one."""
    submissions: list[Submission]
    warnings: list[str]


def submission_id(path: Path) -> str | None:
    """The student id a folder entry's name gives, or None when the grader cannot read that kind of file.
    Archive and notebook suffixes match in any case; a trailing " (1)" (a browser's second download) is dropped."""
    name, lower = path.name, path.name.lower()
    if path.is_dir():
        stem = name
    else:
        suffix = next((s for s in (*ARCHIVE_SUFFIXES, NOTEBOOK_SUFFIX) if lower.endswith(s)), None)
        if suffix is None:
            return None
        stem = name[: -len(suffix)]
    return COPY_MARK.sub("", stem).strip() or None


def survey(folder: Path, duplicates: str = "error") -> Survey:
    """Every entry of `folder` as a submission or a warning. Two entries for one student id are an error listing them
    (`duplicates="error"`), or the newest is graded and the others listed (`duplicates="latest"`)."""
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder of submissions")
    warnings: list[str] = []
    by_id: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            warnings.append(f"{path.name}: skipped, a hidden file (names starting with '.' are never submissions)")
        elif path.is_symlink():
            warnings.append(f"{path.name}: refused, a symbolic link (copy the submission itself into {folder})")
        elif not (path.is_file() or path.is_dir()):
            warnings.append(f"{path.name}: refused, not a regular file or folder")
        elif (sid := submission_id(path)) is None:
            warnings.append(f"{path.name}: not a submission the grader can read (it reads {', '.join(ARCHIVE_SUFFIXES)}, "
                            f"{NOTEBOOK_SUFFIX} and folders); ask the student for a .tar.gz from CollectSubmission.sh")
        else:
            by_id.setdefault(sid, []).append(path)
    clashes = {sid: paths for sid, paths in by_id.items() if len(paths) > 1}
    if clashes and duplicates != "latest":
        listing = "\n".join(f"  {sid}: {', '.join(p.name for p in paths)}" for sid, paths in sorted(clashes.items()))
        raise SystemExit(f"{folder} has more than one submission for the same student:\n{listing}\n"
                         "Keep one per student, or pass --duplicates latest to grade the newest (by modification time).")
    found = []
    for sid, paths in sorted(by_id.items()):
        newest = max(paths, key=lambda p: (p.stat().st_mtime, p.name))
        found.append(Submission(sid, newest))
        warnings += [f"{p.name}: not graded, {newest.name} is newer (--duplicates latest)" for p in paths if p != newest]
    return Survey(found, warnings)


def discover(folder: Path) -> list[Submission]:
    """The submissions in `folder` (see survey for what is not one, and why)."""
    return survey(folder).submissions


def read_roster(path: Path) -> list[str]:
    """The student ids of a roster CSV with a `student_id` column (other columns are ignored)."""
    try:
        with csv_rows(path) as reader:
            if "student_id" not in (reader.fieldnames or ()):
                raise SystemExit(f"--roster {path}: expected a CSV with a header row naming a student_id column")
            ids = []
            for row in reader:
                sid = (row["student_id"] or "").strip()
                if not sid:
                    raise SystemExit(f"--roster {path}: line {reader.line_num} has no student_id")
                ids.append(sid)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"--roster {path}: cannot read it ({exc})") from None
    return list(dict.fromkeys(ids))
