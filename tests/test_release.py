"""Golden check of the student releases: each is exactly what nbgrader generates from its source, and
holds no solution."""
import json
import shutil
from pathlib import Path

import pytest

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment
from autograder.pipeline.gradebook import hand_graded_cells
from autograder.notebook import cell_source, read_notebook
from autograder.deploy.points import POINTS_CELL, collect_hidden_tests, format_bar, points_cell, points_table
from autograder.deploy.release import nbgrader_api
from autograder.deploy.readme_tables import BEGIN, END, assignment_tables, readme_with_tables
from autograder.samples import SOLUTION_MARKER
from autograder.spec import Threshold

ASSIGNMENTS = list_assignments()


@pytest.fixture(scope="module")
def nbgrader_generated(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """(release folder, nbgrader's result per assignment): `nbgrader generate_assignment` of every assignment from a
    copy of source/ and nbgrader_config.py, through one nbgrader API (as `make release` does; a process each would
    import nbgrader and create its database again, about 5 CPU s apiece)."""
    course = tmp_path_factory.mktemp("nbgrader-course")
    shutil.copytree(PROJECT_ROOT / "source", course / "source", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "nbgrader_config.py", course)
    api = nbgrader_api(course)
    return course / "release", {name: api.generate_assignment(name, force=True) for name in ASSIGNMENTS}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_is_what_nbgrader_generates(name, nbgrader_generated):
    release, results = nbgrader_generated
    assert results[name]["success"], f"{results[name].get('log', '')}\n{results[name].get('error', '')}"[-2000:]
    generated, committed = release / name, PROJECT_ROOT / "release" / name
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


@pytest.fixture(scope="module")
def hidden_tests():
    """Every assignment's hidden tests with their points, collected by pytest (one child process, a few seconds)."""
    return collect_hidden_tests([load_assignment(name) for name in ASSIGNMENTS])


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the points table, as cells; the header and the separator left out."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|")]
    return rows[2:]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_points_table_is_generated_from_the_hidden_tests(name, hidden_tests):
    assignment = load_assignment(name)
    tests = hidden_tests[name]
    assert tests, f"collected no hidden tests for {name}"
    expected = points_table(assignment, tests)
    for folder in (assignment.source_dir, assignment.release_dir):
        cell = points_cell(read_notebook(folder / assignment.notebook))
        assert cell is not None and cell_source(cell) == expected, (
            f"{folder.relative_to(PROJECT_ROOT)}/{assignment.notebook}: the points table is out of date with the hidden "
            "tests: run `python -m autograder release` and commit source/ and release/")


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_points_table_adds_up_to_the_markers(name, hidden_tests):
    """Read back from the release's markdown: each part's points are its tests' markers, the written answers' are
    what the gradebook reads from the release, and the total is their sum."""
    assignment = load_assignment(name)
    release = read_notebook(assignment.release_dir / assignment.notebook)
    table = cell_source(points_cell(release))
    *rows, total = table_rows(table)
    points_of_part = {}
    for part, _, points in rows:
        points_of_part[part] = points_of_part.get(part, 0.0) + float(points)
    expected = {}
    for test in hidden_tests[name]:
        expected[test.group] = expected.get(test.group, 0.0) + test.points
    for cell in hand_graded_cells(assignment):
        expected[f"Written answer `{cell['grade_id']}`"] = float(cell["points"])
    assert points_of_part == expected
    assert total[0] == "**Total**" and float(total[2].strip("*")) == sum(expected.values())
    for threshold_name, threshold in assignment.spec.thresholds.items():
        assert format_bar(threshold_name, threshold) in table, f"the table does not state the bar of {threshold_name}"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_threshold_is_stated_where_its_part_is_taught(name):
    """Beside the generated table, the notebook's own text states each bar (e.g. 'perplexity ≤ 8')."""
    assignment = load_assignment(name)
    text = "\n".join(cell_source(c) for c in read_notebook(assignment.source_dir / assignment.notebook)["cells"]
                     if c["cell_type"] == "markdown" and (c.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
                     != POINTS_CELL)
    for threshold_name, threshold in assignment.spec.thresholds.items():
        bar = format_bar(threshold_name, threshold).split("` ", 1)[1]  # "≥ 85 %", without the name
        assert bar in text, f"source/{name}/{assignment.notebook} never states the {threshold_name} threshold ({bar})"


def test_bars_are_written_as_students_read_them():
    def bar(value: float, ceiling: bool = False) -> str:
        return format_bar("x", Threshold(value, test="TestAccuracy::test_x", reference_eval_s=1.0, ceiling=ceiling))

    assert bar(0.85) == "`x` ≥ 85 %" and bar(0.995) == "`x` ≥ 99.5 %"  # accuracies
    assert bar(30.0) == "`x` ≥ 30"  # a BLEU floor
    assert bar(7.5, ceiling=True) == "`x` ≤ 7.5"  # a perplexity ceiling


def test_the_readme_tables_are_written_from_the_specs():
    """README.md's assignment tables are each spec's `readme` row, one per assignment folder (`python -m autograder
    release` rewrites them); a spec without one gets a row that says what to fill in."""
    readme = PROJECT_ROOT / "README.md"
    assert readme_with_tables(readme.read_text(), readme) == readme.read_text(), \
        "README.md's assignment tables differ from the specs: run python -m autograder release"
    tables = assignment_tables()
    for name in list_assignments():
        row = load_assignment(name).spec.readme
        assert row is not None and f"| `{name}` | {row.builds} | {row.graded_on} |" in tables, name
    assert readme_with_tables(f"x\n{BEGIN}\nold\n{END}\ny", readme) == f"x\n{BEGIN}\n{tables}\n{END}\ny"
    with pytest.raises(SystemExit, match="expected one block of assignment tables"):
        readme_with_tables("no markers", readme)
