"""Grades for a learning-management system: one CSV for the whole course, one row per student id, one column per
assignment total, merged in as each assignment is graded (`python -m autograder grade ... --export canvas|csv`).

    canvas   the columns Canvas's gradebook import reads: Student, ID, SIS User ID (the student id), SIS Login ID,
             Section, then one column per assignment (named after it; Canvas creates an assignment for a new name)
    csv      student_id, then per assignment `<a>` (the total), `<a>:autograded` and `<a>:hand:<grade_id>`

The default file is beside the assignment's output folder (build/grades/<format>.csv for build/grades/<assignment>/),
so grading each assignment into its default folder fills one file. The file is rewritten atomically.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from autograder.store import atomic_write

FORMATS = ("canvas", "csv")
CANVAS_FIXED = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
KEY = {"canvas": "SIS User ID", "csv": "student_id"}


def default_export_path(out: Path, fmt: str) -> Path:
    return out.resolve().parent / f"{fmt}.csv"


def assignment_columns(gradebook: dict, fmt: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """This assignment's column names and, per student id, their values. A pending hand grade is an empty cell in the
    csv format and counts as 0 in the total."""
    name = gradebook["assignment"]
    hand_ids = [m["grade_id"] for m in gradebook["hand_graded"]]
    columns = [name] if fmt == "canvas" else [name, f"{name}:autograded", *(f"{name}:hand:{g}" for g in hand_ids)]
    values = {}
    for row in gradebook["submissions"]:
        cells = {name: f"{row['total']:g}"}
        if fmt == "csv":
            cells[f"{name}:autograded"] = f"{row['score']:g}"
            for gid in hand_ids:
                earned = row["hand_graded"].get(gid, {}).get("earned")
                cells[f"{name}:hand:{gid}"] = "" if earned is None else f"{earned:g}"
        values[row["student_id"]] = cells
    return columns, values


def export_grades(gradebook: dict, fmt: str, path: Path) -> Path:
    """Merge the gradebook's totals into the course file `path` (made if missing): its other assignments' columns and
    students are kept, this assignment's columns are replaced."""
    if fmt not in FORMATS:
        raise SystemExit(f"--export {fmt}: unknown format (choose from {', '.join(FORMATS)})")
    key = KEY[fmt]
    fixed = CANVAS_FIXED if fmt == "canvas" else [key]
    header, rows = list(fixed), {}
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if key not in (reader.fieldnames or ()):
                raise SystemExit(f"{path} exists but has no {key!r} column, so it is not a {fmt} export of this grader; "
                                 "move it away or pass another --export-file")
            header += [c for c in reader.fieldnames if c not in header]
            rows = {r[key]: r for r in reader}
    columns, values = assignment_columns(gradebook, fmt)
    name = gradebook["assignment"]
    header = [c for c in header if c != name and not c.startswith(f"{name}:")] + columns
    rows = {sid: {k: v for k, v in row.items() if not (k == name or k.startswith(f"{name}:"))} for sid, row in rows.items()}
    for sid, cells in values.items():
        rows.setdefault(sid, {key: sid}).update(cells)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for sid in sorted(rows):
        writer.writerow(rows[sid])
    atomic_write(path, buffer.getvalue())
    return path
