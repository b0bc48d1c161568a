"""The course's own implementation of an assignment: the code of the source notebook's cells that the judge runs as
the course's model (spec.run_cells; autograder/kit/trusted.py judges a threshold from the saved weights in it).

The Gradescope zip ships no notebook with solutions. Where an assignment judges in the course's model
(`needs_course_cells`), `python -m autograder gradescope` writes that code alone, as trusted reference code, to
source/<a>/course_cells.json, which the judge reads there (`course_cells`); the worker never reaches it (bubblewrap
does not show it source/, the uid backend makes source/ unreadable to it).
"""
from __future__ import annotations

import json

FILE_NAME = "course_cells.json"


def needs_course_cells(assignment) -> bool:
    """Whether grading `assignment` runs the course's model: a threshold judged in it, or a hidden test that builds
    it itself."""
    return (any(t.course_model for t in assignment.spec.thresholds.values())
            or any(name in assignment.hidden_tests.read_text() for name in ("course_model", "course_namespace")))


def course_cells(assignment) -> dict[str, str]:
    """{grade_id: code} of the spec's run_cells, magics stripped: from the source notebook, else from the zip's
    course_cells.json, else {} (a zip of an assignment that does not need them)."""
    from autograder.notebook import cell_source, grade_id, read_notebook, strip_magics

    notebook, shipped = assignment.source_dir / assignment.notebook, assignment.source_dir / FILE_NAME
    if notebook.is_file():
        cells = {grade_id(c): c for c in read_notebook(notebook)["cells"] if grade_id(c)}
        return {gid: strip_magics(cell_source(cells[gid])) for gid in assignment.spec.run_cells if gid in cells}
    return json.loads(shipped.read_text()) if shipped.is_file() else {}
