"""The recipe for adding an assignment (docs/maintainers.md), done for real: copy an existing one under a new name in a copy of
the project, build its release and samples, grade them; and a declaration that names what does not exist."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IGNORED, copy_project

from autograder.assignments import load_assignment
from autograder.samples import samples_for


def run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=project, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def add_by_copying(project: Path, existing: str, new: str) -> None:
    """The recipe of docs/maintainers.md: the assignment's folder and its hidden tests, copied; the notebook renamed."""
    shutil.copytree(project / "source" / existing, project / "source" / new, ignore=IGNORED)
    (project / "source" / new / f"{existing}.ipynb").rename(project / "source" / new / f"{new}.ipynb")
    shutil.copy(project / "autograder" / "hidden_tests" / f"test_{existing}.py",
                project / "autograder" / "hidden_tests" / f"test_{new}.py")


# An existing assignment -> the name of its copy. cnn has nothing outside its folder but its hidden tests; transformer
# also has stand-ins (autograder/kit/stand_ins/transformer.py) and a driver in the worker
# (autograder/sandbox/harness/transformer.py), which its copied hidden tests keep using as they are, a synthetic task
# and Multi30k data, and thresholds judged on saved weights in the course's own Transformer.
COPIES = {"cnn": "toy", "transformer": "toy_transformer"}


@pytest.fixture(scope="module")
def added(tmp_path_factory) -> Path:
    """One copy of the project with every assignment of COPIES added by the recipe, their releases built by one
    `release` call (the tests below share it: a project copy and a release build each cost seconds)."""
    project = copy_project(tmp_path_factory.mktemp("added"))
    for existing, new in COPIES.items():
        add_by_copying(project, existing, new)
    run(project, "release", *COPIES.values())
    return project


@pytest.mark.parametrize("existing", COPIES)
def test_an_assignment_added_by_copying_its_folder_builds_and_grades(added, existing, tmp_path):
    new = COPIES[existing]
    release = added / "release" / new
    assert sorted(p.name for p in release.iterdir()) == ["submission.txt", f"{new}.ipynb"]  # no spec, no samples
    assert (release / "submission.txt").read_text().splitlines()[2] == f"{new}.ipynb"
    readme = added / "README.md"
    assert f"| `{new}` | {load_assignment(existing).spec.readme.builds} |" in readme.read_text()  # its README rows

    # The demo's recipes, as test_samples trains the original's: the copy's notebook is the original's, so it shares
    # those weights (build/cache; conftest's `project`) instead of training again.
    run(added, "samples", new, "--out", str(tmp_path / "all"), "--demo-recipes")
    chosen = tmp_path / "submissions"
    chosen.mkdir()
    for sample in ("reference", "untouched_release"):
        shutil.copy(tmp_path / "all" / f"{sample}.tar.gz", chosen)
    # No preflight, as in test_samples: the untouched release is one of the samples graded.
    run(added, "grade", str(chosen), "--assignment", new, "--out", str(tmp_path / "grades"), "--no-preflight")
    rows = {r["student_id"]: r for r in json.loads((tmp_path / "grades" / "gradebook.json").read_text())["submissions"]}
    # The copy's samples.py is the original's and its hidden tests carry the same ids: each sample fails what the
    # original declares (the reference only the thresholds whose weights are trained where CUDA is).
    declared = {s.name: s for s in samples_for(existing)}
    for sample in ("reference", "untouched_release"):
        row = rows[sample]
        failed = {tid for tid, t in row["tests"].items() if t["outcome"] in ("failed", "error")}
        assert row["status"] == declared[sample].expect_status, row
        assert failed == declared[sample].expect_failed, {t: row["tests"][t]["message"] for t in failed}
    assert rows["reference"]["score"] > 0 and rows["untouched_release"]["score"] == 0


def test_a_spec_naming_a_missing_cell_is_an_error_naming_the_spec_file(project):
    add_by_copying(project, "cnn", "toy")
    spec = project / "source" / "toy" / "spec.py"
    spec.write_text(spec.read_text().replace('"simple_cnn"', '"simple_cnn_renamed"', 1))
    proc = subprocess.run([sys.executable, "-c", "from autograder.assignments import load_assignment; load_assignment('toy')"],
                          cwd=project, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "source/toy/spec.py" in proc.stderr and "simple_cnn_renamed" in proc.stderr, proc.stderr[-2000:]
