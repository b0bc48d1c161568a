"""The project installs as a package, not only as an editable checkout: the wheel holds every module of `autograder`
and `dlcourse` (the hidden tests and the sample builders included), `python -m autograder` runs from it, and it
grades a submission.

The grader is a course-in-a-folder tool: it finds an assignment's declaration, solutions and release notebook in
source/<a>/ and release/<a>/ beside its own package (autograder.assignments.PROJECT_ROOT is the folder that holds
autograder/), and its judges run there. Those folders are the instructor's course, not code, so the wheel does not
hold them: here the wheel is installed into a fresh course folder (`pip install --target`, no editable install) with
one assignment's source/ and release/ copied beside it, and everything runs from outside the checkout."""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from autograder.assignments import PROJECT_ROOT
from autograder.samples import samples_for

PACKAGES = ("autograder", "dlcourse")
ASSIGNMENT = "rnn"  # its samples need no trained weights: building them takes seconds
SAMPLE = "untouched_release"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def modules_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for package in PACKAGES for p in (root / package).rglob("*.py")
            if "__pycache__" not in p.parts}


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"  # a copy: setuptools leaves build/ and *.egg-info/ where it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("*.whl")
    return wheel


def test_the_wheel_holds_every_module_and_grades_from_a_course_folder(tmp_path):
    wheel = build_wheel(tmp_path)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert modules_in(PROJECT_ROOT) <= in_wheel, sorted(modules_in(PROJECT_ROOT) - in_wheel)
    data = {p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / "autograder" / "deploy").glob("[st]*/*")}
    assert data and data <= in_wheel, sorted(data - in_wheel)  # the hand-grading page's template, script and style

    # The wheel alone on the path: its dependencies (torch, ...) come from this interpreter's site-packages, but not
    # the project (PYTHONPATH comes first, and the editable install's finder only answers what the path does not).
    course = tmp_path / "course"
    subprocess.run([*PIP, "install", "--no-deps", "--no-index", "--target", str(course), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    for folder in ("source", "release"):  # the one assignment's course files, which the wheel does not hold
        shutil.copytree(PROJECT_ROOT / folder / ASSIGNMENT, course / folder / ASSIGNMENT,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),  # (bwrap)
           "PYTHONPATH": str(course), "HOME": str(tmp_path), **{k: v for k, v in os.environ.items() if k.startswith("DLCOURSE_")}}

    def autograder(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    code = "import autograder.__main__, dlcourse, autograder.samples; print(autograder.__file__, dlcourse.__file__)"
    imported = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == [str(course / "autograder" / "__init__.py"), str(course / "dlcourse" / "__init__.py")]
    helped = autograder("--help")
    assert helped.returncode == 0 and "grade" in helped.stdout, helped.stderr

    built = autograder("samples", ASSIGNMENT, "--out", str(tmp_path / "submissions"))
    assert built.returncode == 0, built.stderr[-3000:]
    graded = autograder("grade", str(tmp_path / "submissions"), "--assignment", ASSIGNMENT, "--only", SAMPLE,
                        "--out", str(tmp_path / "grades"), "--workers", "1", "--no-preflight")
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    row, = json.loads((tmp_path / "grades" / "gradebook.json").read_text())["submissions"]
    sample = next(s for s in samples_for(ASSIGNMENT) if s.name == SAMPLE)  # as tests/test_samples.py expects it
    failed = {tid for tid, t in row["tests"].items() if t["outcome"] in ("failed", "error")}
    assert (row["student_id"], row["status"], failed) == (SAMPLE, sample.expect_status, sample.expect_failed), row
    assert row["tests"] and not any(t["outcome"] == "skipped" for t in row["tests"].values())
    # The judges ran the wheel's code too (the kit the hidden tests import): each judge log says where it came from.
    judge_log = (tmp_path / "grades" / "logs" / SAMPLE / "judge.log").read_text()
    assert re.findall(r"^\[judge\] grader code: (.*)$", judge_log, re.M) == [str(course.resolve() / "autograder")], judge_log[:3000]
