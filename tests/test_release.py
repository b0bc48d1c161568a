"""Golden check of the student releases: each is exactly what nbgrader generates from its source, and
holds no solution."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment
from autograder.samples import SOLUTION_MARKER
from autograder.notebook import cell_source, read_notebook

ASSIGNMENTS = list_assignments()


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_is_what_nbgrader_generates(name, tmp_path):
    shutil.copytree(PROJECT_ROOT / "source" / name, tmp_path / "source" / name)
    shutil.copy(PROJECT_ROOT / "nbgrader_config.py", tmp_path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    generated, committed = tmp_path / "release" / name, PROJECT_ROOT / "release" / name
    assert sorted(p.name for p in generated.iterdir()) == sorted(p.name for p in committed.iterdir())
    for path in generated.iterdir():
        if path.suffix == ".ipynb":
            same = json.loads(path.read_text()) == json.loads((committed / path.name).read_text())
        else:
            same = path.read_bytes() == (committed / path.name).read_bytes()
        assert same, f"release/{name}/{path.name} differs from what nbgrader generates: run `make release` and commit it"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_holds_no_solution(name):
    assignment = load_assignment(name)
    release_text = (assignment.release_dir / assignment.notebook).read_text()
    assert "BEGIN SOLUTION" not in release_text and "END SOLUTION" not in release_text
    solution_lines = []
    for cell in read_notebook(assignment.source_dir / assignment.notebook)["cells"]:
        inside = False
        for line in cell_source(cell).splitlines():
            if SOLUTION_MARKER.match(line):
                inside = "BEGIN" in line
            elif inside and len(line.strip()) > 12:
                solution_lines.append(line.strip())
    assert solution_lines, "found no solution lines in the source: is the nbgrader markup intact?"
    release_lines = {line.strip() for cell in json.loads(release_text)["cells"] for line in cell_source(cell).splitlines()}
    leaked = [line for line in solution_lines if line in release_lines]
    assert not leaked, f"solution lines in release/{name}: {leaked[:3]}"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_holds_only_what_students_get(name):
    """The notebook and the list of files to hand in; never the spec or the samples beside the source notebook."""
    assignment = load_assignment(name)
    assert sorted(p.name for p in assignment.release_dir.iterdir()) == sorted([assignment.notebook, "submission.txt"])


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_submission_list_is_generated_from_the_spec(name):
    assignment = load_assignment(name)
    for folder in (assignment.source_dir, assignment.release_dir):
        assert (folder / "submission.txt").read_text() == assignment.submission_list(), \
            f"{folder.name}/submission.txt is out of date with source/{name}/spec.py: run `make release` and commit it"
