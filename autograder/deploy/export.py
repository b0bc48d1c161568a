"""Grades for a learning-management system: one CSV for the whole course, one row per student id, one column per
assignment total, merged in as each assignment is graded (`python -m autograder grade ... --export canvas|csv`).

    canvas   Canvas's gradebook import: merged into a gradebook Canvas exported (Student, ID, SIS User ID, SIS Login ID,
             Section, its assignments as `Name (id)`, read-only totals, a "Points Possible" row), the assignment's
             own `Name (id)` column is filled (found by the assignment's name, or named by --canvas-column), the
             Points Possible cell set, Canvas's other columns and rows kept as they are; a column Canvas does not
             have yet goes before its read-only columns (Canvas then creates the assignment). Students are matched by
             SIS User ID (the student id); graded students Canvas does not list are reported, not added. Without
             an export of Canvas's, a new file with those five columns and one per assignment.
    csv      student_id, then per assignment `<a>` (the total), `<a>:autograded`, `<a>:not_judged` (points the
             grader could not judge: left out of both the total and its maximum) and `<a>:hand:<grade_id>`

The default file is beside the assignment's output folder (build/grades/<format>.csv for build/grades/<assignment>/),
so grading each assignment into its default folder fills one file. The file is rewritten atomically; files with a
byte-order mark or semicolons (spreadsheets) are read (autograder/pipeline/csvfiles.py) and written back with commas.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from autograder.pipeline.csvfiles import csv_rows
from autograder.pipeline.gradebook import Gradebook
from autograder.pipeline.store import atomic_write

FORMATS = ("canvas", "csv")
CANVAS_FIXED = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
KEY = {"canvas": "SIS User ID", "csv": "student_id"}
POINTS_POSSIBLE = "Points Possible"  # the Student cell of Canvas's second row
READ_ONLY = "(read only)"  # that row's cell under a column Canvas computes
CANVAS_COMPUTED = re.compile(r"(Current|Final|Unposted Current|Unposted Final) (Points|Score|Grade)$")
CANVAS_ASSIGNMENT = re.compile(r"^(?P<name>.*) \((?P<id>\d+)\)$")


def default_export_path(out: Path, fmt: str) -> Path:
    return out.resolve().parent / f"{fmt}.csv"


def assignment_columns(gradebook: Gradebook, fmt: str, column: str | None = None) -> tuple[list[str], dict[str, dict[str, str]]]:
    """This assignment's column names (`column`: the canvas column's name) and, per student id, their values. A pending
    hand grade is an empty cell in the csv format and counts as 0 in the total."""
    name = gradebook.assignment
    total_column = column or name
    hand_ids = [m["grade_id"] for m in gradebook.hand_graded]
    columns = [total_column] if fmt == "canvas" else [name, f"{name}:autograded", f"{name}:not_judged",
                                                      *(f"{name}:hand:{g}" for g in hand_ids)]
    values = {}
    for row in gradebook.rows:
        cells = {total_column: f"{row.total:g}"}
        if fmt == "csv":
            cells[f"{name}:autograded"] = f"{row.score:g}"
            cells[f"{name}:not_judged"] = f"{row.not_judged_points:g}"
            for gid in hand_ids:
                earned = row.hand_graded[gid].earned if gid in row.hand_graded else None
                cells[f"{name}:hand:{gid}"] = "" if earned is None else f"{earned:g}"
        values[row.student_id] = cells
    return columns, values


def export_grades(gradebook: Gradebook, fmt: str, path: Path, canvas_column: str | None = None) -> tuple[Path, list[str]]:
    """Merge the gradebook's totals into the course file `path` (made if missing): its other columns and students are
    kept, this assignment's columns are replaced. Returns the path and what a TA should know (students not in a
    Canvas export, points not judged)."""
    if fmt not in FORMATS:
        raise SystemExit(f"--export {fmt}: unknown format (choose from {', '.join(FORMATS)})")
    key = KEY[fmt]
    header, rows = list(CANVAS_FIXED if fmt == "canvas" else [key]), []
    if path.exists():
        try:
            with csv_rows(path) as reader:
                if key not in (reader.fieldnames or ()):
                    raise SystemExit(f"{path} exists but has no {key!r} column, so it is not a {fmt} export of this "
                                     "grader or of Canvas; move it away or pass another --export-file")
                header = list(reader.fieldnames or ())
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SystemExit(f"--export-file {path}: cannot read it ({exc})") from None
    notes = []
    partial = [r.student_id for r in gradebook.rows if r.not_judged_points]
    if partial:
        notes.append(f"{len(partial)} student(s) have points not judged, left out of their total and its maximum "
                     f"(see gradebook.csv): {', '.join(partial[:10])}{' ...' if len(partial) > 10 else ''}")
    if fmt == "canvas" and any(_is_points_row(r) for r in rows):
        notes += _merge_into_canvas(gradebook, header, rows, canvas_column)
    else:
        _merge(gradebook, fmt, header, rows, key)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue())
    return path, notes


def _merge(gradebook: Gradebook, fmt: str, header: list[str], rows: list[dict], key: str) -> None:
    """A file of this grader's own: this assignment's columns replaced at the end, a row per student, sorted."""
    columns, values = assignment_columns(gradebook, fmt)
    name = gradebook.assignment
    header[:] = [c for c in header if c != name and not c.startswith(f"{name}:")] + columns
    by_id = {r[key]: {k: v for k, v in r.items() if not (k == name or k.startswith(f"{name}:"))} for r in rows}
    for sid, cells in values.items():
        by_id.setdefault(sid, {key: sid}).update(cells)
    rows[:] = [by_id[sid] for sid in sorted(by_id)]


def _is_points_row(row: dict) -> bool:
    return (row.get("Student") or "").strip() == POINTS_POSSIBLE


def _merge_into_canvas(gradebook: Gradebook, header: list[str], rows: list[dict], column: str | None) -> list[str]:
    """Fill this assignment's column of a gradebook Canvas exported, in place (see the module docstring)."""
    name = gradebook.assignment
    points_row = next(r for r in rows if _is_points_row(r))
    read_only = [c for c in header if (points_row.get(c) or "").strip() == READ_ONLY or CANVAS_COMPUTED.search(c)]
    if column is None:
        matches = [c for c in header if (m := CANVAS_ASSIGNMENT.match(c)) and m["name"].strip().lower() == name.lower()]
        if len(matches) > 1:
            raise SystemExit(f"the Canvas export has {len(matches)} columns for '{name}' ({', '.join(matches)}): "
                             "name one with --canvas-column")
        column = matches[0] if matches else name
    elif column not in header:
        assignments = [c for c in header if CANVAS_ASSIGNMENT.match(c)]
        raise SystemExit(f"--canvas-column {column!r} is not a column of the Canvas export; its assignments are: "
                         f"{', '.join(assignments) or 'none'}")
    if column in read_only:
        raise SystemExit(f"--canvas-column {column!r} is a column Canvas computes (read only); name an assignment's")
    if column not in header:  # before Canvas's computed columns: Canvas imports it as a new assignment
        at = min((header.index(c) for c in read_only), default=len(header))
        header.insert(at, column)
    _, values = assignment_columns(gradebook, "canvas", column)
    points_row[column] = f"{gradebook.possible_points:g}"
    listed = set()
    for row in rows:
        sid = (row.get("SIS User ID") or "").strip()
        if sid in values:
            row.update(values[sid])
            listed.add(sid)
    missing = sorted(set(values) - listed)
    return [f"{len(missing)} graded student(s) are not in the Canvas export (SIS User ID), so not added: "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"] if missing else []
