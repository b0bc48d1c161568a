"""`python -m autograder release`: build release/<a>/ from source/<a>/ with nbgrader, after writing what the release
derives from the spec and the hidden tests (submission.txt, the points table, the Colab cells, the README's rows)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from autograder.assignments import PROJECT_ROOT, load_assignment


def nbgrader_api(course: Path):
    """nbgrader's API, in this process, for the course folder `course` (its nbgrader_config.py roots it there).
    nbgrader shells out to alembic, so the interpreter's bin folder goes first on PATH."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    bin_folder = str(Path(sys.executable).parent)
    if bin_folder not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    return NbGraderAPI(CourseDirectory(config=config), config=config)


def build_release(names: list[str]) -> None:
    """`nbgrader generate_assignment` for each assignment, after writing its submission.txt from its spec and the
    points table of its notebook from its hidden tests (autograder/deploy/points.py). One nbgrader API in this process for
    every assignment (a `nbgrader` process each would import it again: about 1.7 CPU s apiece)."""
    from autograder.deploy.colab import write_colab_cells
    from autograder.deploy.points import collect_hidden_tests, write_points_table
    from autograder.deploy.readme_tables import write_readme_tables

    nbgrader = nbgrader_api(PROJECT_ROOT)
    assignments = [load_assignment(name) for name in names]
    hidden_tests = collect_hidden_tests(assignments)
    for assignment in assignments:
        name = assignment.name
        (assignment.source_dir / "submission.txt").write_text(assignment.submission_list())  # for CollectSubmission.sh
        if write_points_table(assignment, hidden_tests[name]):
            print(f"Updated the points table of source/{name}/{assignment.notebook} from its hidden tests")
        if write_colab_cells(assignment):
            print(f"Updated the Colab setup and submit cells of source/{name}/{assignment.notebook} (autograder/deploy/colab.py)")
        print(f"Building release/{name}/ from source/{name}/ ...", flush=True)
        result = nbgrader.generate_assignment(name, force=True)
        if not result["success"]:
            raise SystemExit(f"nbgrader generate_assignment {name} failed:\n{result.get('log', '')}\n{result['error']}")
    if write_readme_tables():
        print("Updated the assignment tables of README.md from the specs (autograder/deploy/readme_tables.py)")
