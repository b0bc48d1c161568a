"""Tests for CollectSubmission.sh, run against a small fake course built in tmp_path.

The fake course holds a copy of the script, the real release/vit/submission.txt and made-up notebooks and
weight files, so these tests do not depend on the real notebook's contents and never touch the repository.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "CollectSubmission.sh"
COLLECT = REPO / "dlcourse" / "collect.py"
SUBMISSION_TXT = REPO / "release" / "vit" / "submission.txt"


def read_list(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]


FILES = read_list(SUBMISSION_TXT)
NOTEBOOK, WEIGHTS = FILES[0], FILES[1:]


# ---------------------------------------------------------------- made-up notebooks

def code_cell(source: str, *, grade_id: str | None = None, solution: bool = False,
              execution_count: int | None = 1, outputs: list | None = None) -> dict:
    metadata = {}
    if grade_id is not None:
        metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution, "grade": False,
                                "locked": not solution, "schema_version": 3, "task": False}
    return {"cell_type": "code", "execution_count": execution_count, "metadata": metadata,
            "outputs": outputs or [], "source": source.splitlines(keepends=True)}


def written_answer(text: str, *, grade_id: str) -> dict:
    """A hand-graded markdown answer cell, as nbgrader marks it."""
    return {"cell_type": "markdown", "source": text.splitlines(keepends=True),
            "metadata": {"nbgrader": {"grade_id": grade_id, "solution": True, "grade": True, "points": 5,
                                      "locked": False, "schema_version": 3, "task": False}}}


def error_output(ename: str = "NotImplementedError") -> dict:
    return {"output_type": "error", "ename": ename, "evalue": "",
            "traceback": ["Traceback...", f"{ename}: "]}


def notebook(*cells: dict) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Fake ViT assignment\n"]}, *cells]}


def finished_notebook() -> dict:
    return notebook(
        code_cell("import math\n", grade_id="setup", execution_count=1),
        code_cell("class Attention:\n    def forward(self, x):\n        return x\n",
                  grade_id="attention", solution=True, execution_count=2),
        code_cell("print('ok')\n", grade_id="attention_check", execution_count=3,
                  outputs=[{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}]),
    )


def unfinished_notebook(*, executed: bool = True) -> dict:
    n = (lambda k: k) if executed else (lambda k: None)
    return notebook(
        code_cell("import math\n", grade_id="setup", execution_count=n(1)),
        code_cell("class Attention:\n    def forward(self, x):\n        # YOUR CODE HERE\n"
                  "        raise NotImplementedError()\n", grade_id="attention", solution=True,
                  execution_count=n(2)),
    )


# ---------------------------------------------------------------- the fake course

class Course:
    def __init__(self, root: Path):
        self.root = root
        self.script = root / "CollectSubmission.sh"
        self.release = root / "release"
        self.vit = self.release / "vit"
        self.vit.mkdir(parents=True)
        shutil.copy2(SCRIPT, self.script)
        (root / "dlcourse").mkdir()  # the checks, beside the script as in the student bundle
        shutil.copy2(COLLECT, root / "dlcourse" / "collect.py")
        shutil.copy2(SUBMISSION_TXT, self.vit / "submission.txt")
        self.outside = root.parent / "work folder"  # where the student runs the script, outside the course
        self.outside.mkdir(exist_ok=True)

    def write_notebook(self, nb: dict | str) -> None:
        text = nb if isinstance(nb, str) else json.dumps(nb, indent=1)
        (self.vit / NOTEBOOK).write_text(text)

    def write_weights(self) -> None:
        for i, name in enumerate(WEIGHTS):
            data = b"\x00fake-safetensors" * (i + 1) if name.endswith(".safetensors") else b'{"dim": 8}\n'
            (self.vit / name).write_bytes(data)

    def add_assignment(self, name: str) -> None:
        folder = self.release / name
        folder.mkdir()
        (folder / "submission.txt").write_text(f"{name}.ipynb\n")
        (folder / f"{name}.ipynb").write_text(json.dumps(finished_notebook()))

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.release)): p.read_bytes() for p in sorted(self.release.rglob("*")) if p.is_file()}

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.script), *args], cwd=cwd or self.outside,
                              capture_output=True, text=True, timeout=60)


@pytest.fixture
def course(tmp_path: Path) -> Course:
    c = Course(tmp_path / "My Drive" / "course")  # spaces, as in Google Drive paths on Colab
    c.write_notebook(finished_notebook())
    c.write_weights()
    return c


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def assert_failed_without_archive(course: Course, result: subprocess.CompletedProcess, student: str = "s123") -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert not (course.outside / f"{student}.tar.gz").exists()
    assert not list(course.outside.glob(".*partial*")), "a partial archive was left behind"


# ---------------------------------------------------------------- success

def test_success_packs_every_listed_file_and_a_manifest(course: Course):
    before = course.snapshot()
    result = course.run("s123", "vit")
    assert result.returncode == 0, result.stdout + result.stderr

    archive = course.outside / "s123.tar.gz"
    packed = members(archive)
    assert set(packed) == {f"vit/{f}" for f in FILES} | {"vit/manifest.json"}
    for f in FILES:
        assert packed[f"vit/{f}"] == (course.vit / f).read_bytes()

    manifest = json.loads(packed["vit/manifest.json"])
    assert manifest["student_id"] == "s123"
    assert manifest["assignment"] == "vit"
    assert manifest["files"] == FILES
    created = datetime.datetime.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%SZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - created).total_seconds()) < 300

    for f in FILES:
        assert f"vit/{f}" in result.stdout
    assert "s123.tar.gz" in result.stdout and " B)" in result.stdout  # the archive's size
    assert course.snapshot() == before, "the student's files must not change"
    assert not list(course.outside.glob(".*partial*"))


def test_checks_come_from_the_installed_package_without_a_course_copy(course: Course):
    """Without dlcourse/ beside the script, the installed package's collect.py runs the same checks."""
    shutil.rmtree(course.root / "dlcourse")
    (course.vit / WEIGHTS[0]).unlink()
    result = course.run("s123", "vit")
    assert_failed_without_archive(course, result)
    assert f"release/vit/{WEIGHTS[0]} is missing" in result.stderr


def test_existing_archive_is_replaced_and_the_script_says_so(course: Course):
    (course.outside / "s123.tar.gz").write_bytes(b"old upload")
    result = course.run("s123")
    assert result.returncode == 0, result.stderr
    assert "already exists" in result.stdout and "replacing" in result.stdout
    assert "vit/manifest.json" in members(course.outside / "s123.tar.gz")


def test_help(course: Course):
    result = course.run("--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout and "<student-id>" in result.stdout and "vit" in result.stdout


def test_commented_out_raise_in_an_answer_cell_is_fine(course: Course):
    course.write_notebook(notebook(code_cell("# raise NotImplementedError()\nx = 1\n", grade_id="attention",
                                             solution=True)))
    assert course.run("s123").returncode == 0


def test_unanswered_written_answers_are_listed_but_packed(course: Course):
    nb = finished_notebook()
    nb["cells"] += [written_answer("YOUR ANSWER HERE", grade_id="analysis"),
                    written_answer("My review: ...", grade_id="paper_review"),
                    written_answer("YOUR ANSWER HERE\n", grade_id="questions")]
    course.write_notebook(nb)
    result = course.run("s123")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vit/manifest.json" in members(course.outside / "s123.tar.gz")
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1, result.stderr
    assert "'analysis', 'questions'" in warning[0] and "YOUR ANSWER HERE" in warning[0], warning
    assert "paper_review" not in warning[0], warning


def test_answered_written_answers_give_no_warning(course: Course):
    nb = finished_notebook()
    nb["cells"].append(written_answer("Patch size mattered most.", grade_id="analysis"))
    course.write_notebook(nb)
    result = course.run("s123")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stdout + result.stderr


def test_unanswered_written_answers_are_listed_beside_the_problems(course: Course):
    nb = unfinished_notebook()
    nb["cells"].append(written_answer("YOUR ANSWER HERE", grade_id="analysis"))
    course.write_notebook(nb)
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert "Found 1 problem(s)" in result.stderr  # the warning is not counted as a problem
    assert "Warning:" in result.stderr and "'analysis'" in result.stderr


# ---------------------------------------------------------------- failed checks

def test_missing_notebook(course: Course):
    (course.vit / NOTEBOOK).unlink()
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert f"release/vit/{NOTEBOOK} is missing" in result.stderr


def test_notebook_that_is_not_json(course: Course):
    course.write_notebook('{"cells": [')
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert f"{NOTEBOOK} is not valid JSON" in result.stderr


def test_notebook_that_was_never_run(course: Course):
    nb = finished_notebook()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["execution_count"], cell["outputs"] = None, []
    course.write_notebook(nb)
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert f"{NOTEBOOK} has not been run" in result.stderr
    assert "Run all" in result.stderr


def test_not_implemented_error_in_saved_outputs(course: Course):
    nb = finished_notebook()
    nb["cells"].append(code_cell("Attention()(1)\n", grade_id="attention_check", execution_count=4,
                                 outputs=[error_output()]))
    course.write_notebook(nb)
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert "still raises NotImplementedError in cell 'attention_check'" in result.stderr


def test_other_errors_in_outputs_do_not_block(course: Course):
    nb = finished_notebook()
    nb["cells"].append(code_cell("1/0\n", execution_count=4, outputs=[error_output("ZeroDivisionError")]))
    course.write_notebook(nb)
    assert course.run("s123").returncode == 0


def test_not_implemented_error_left_in_an_answer_cell(course: Course):
    course.write_notebook(unfinished_notebook())
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert "still raises NotImplementedError in cell 'attention'" in result.stderr
    assert "finish that TODO" in result.stderr


def test_missing_weights(course: Course):
    missing = WEIGHTS[-1]
    (course.vit / missing).unlink()
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert f"release/vit/{missing} is missing" in result.stderr
    assert "training cells" in result.stderr
    for present in WEIGHTS[:-1]:
        assert f"{present} is missing" not in result.stderr


def test_all_problems_are_reported_together(course: Course):
    before = course.snapshot()
    course.write_notebook(unfinished_notebook(executed=False))
    for name in WEIGHTS:
        (course.vit / name).unlink()
    result = course.run("s123")
    assert_failed_without_archive(course, result)
    assert "has not been run" in result.stderr
    assert "cell 'attention'" in result.stderr
    for name in WEIGHTS:
        assert f"release/vit/{name} is missing" in result.stderr
    assert f"Found {2 + len(WEIGHTS)} problem(s)" in result.stderr
    assert set(course.snapshot()) <= set(before), "nothing may be written into the release folder"


# ---------------------------------------------------------------- usage errors

@pytest.mark.parametrize("student", ["", "has space", "a/b", "../up", "é", "s1;rm"])
def test_bad_student_id(course: Course, student: str):
    result = course.run(student)
    assert result.returncode == 2
    assert "student id" in result.stderr and "letters, digits" in result.stderr
    assert not list(course.outside.iterdir())


def test_missing_student_id(course: Course):
    result = course.run()
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_unknown_assignment(course: Course):
    result = course.run("s123", "nope")
    assert result.returncode == 2
    assert "unknown assignment 'nope'" in result.stderr and "vit" in result.stderr


def test_assignment_that_is_a_path(course: Course):
    result = course.run("s123", "vit/..")
    assert result.returncode == 2


def test_several_assignments_need_a_choice(course: Course):
    course.add_assignment("cnn")
    result = course.run("s123")
    assert result.returncode == 2
    assert "cnn" in result.stderr and "vit" in result.stderr


def test_the_only_assignment_is_used_by_default(course: Course):
    result = course.run("s123")
    assert result.returncode == 0, result.stderr
    assert "vit/manifest.json" in members(course.outside / "s123.tar.gz")


@pytest.mark.parametrize("subfolder", ["", "data/cache"])
def test_assignment_inferred_from_the_current_folder(course: Course, subfolder: str):
    course.add_assignment("cnn")  # so that "the only assignment" cannot be what picked vit
    cwd = course.vit / subfolder
    cwd.mkdir(parents=True, exist_ok=True)
    result = course.run("s123", cwd=cwd)
    assert result.returncode == 0, result.stderr
    packed = members(cwd / "s123.tar.gz")
    assert json.loads(packed["vit/manifest.json"])["assignment"] == "vit"
    assert set(packed) == {f"vit/{f}" for f in FILES} | {"vit/manifest.json"}


def test_explicit_assignment_wins_over_the_current_folder(course: Course):
    course.add_assignment("cnn")
    result = course.run("s123", "cnn", cwd=course.vit)
    assert result.returncode == 0, result.stderr
    assert set(members(course.vit / "s123.tar.gz")) == {"cnn/cnn.ipynb", "cnn/manifest.json"}


# ---------------------------------------------------------------- the script itself

def test_script_is_executable_and_parses():
    assert SCRIPT.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_shellcheck(shellcheck):
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# ---------------------------------------------------------------- the notebook's submit cell (dlcourse.collect.submit)

def load_collect():
    """dlcourse/collect.py on its own, as the script runs it (importing the package would import torch)."""
    spec = importlib.util.spec_from_file_location("_collect_under_test", COLLECT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


submit = load_collect().submit


def test_submit_cell_packs_what_the_script_packs(course: Course, capsys):
    assert course.run("s123", "vit").returncode == 0
    archive = submit("s123", "vit", FILES, folder=course.vit)
    assert archive == str(course.vit / "s123.tar.gz") and "Upload this file" in capsys.readouterr().out
    script, cell = members(course.outside / "s123.tar.gz"), members(Path(archive))
    assert script.keys() == cell.keys()
    assert {k: v for k, v in script.items() if not k.endswith("manifest.json")} == \
        {k: v for k, v in cell.items() if not k.endswith("manifest.json")}
    manifests = [json.loads(m["vit/manifest.json"]) for m in (script, cell)]
    assert [{k: v for k, v in m.items() if k != "created"} for m in manifests] == \
        [{"student_id": "s123", "assignment": "vit", "files": FILES}] * 2


@pytest.mark.parametrize("student", ["", "a b", "../x"])
def test_submit_cell_refuses_a_bad_student_id(course: Course, capsys, student: str):
    assert submit(student, "vit", FILES, folder=course.vit) is None
    assert "is not allowed" in capsys.readouterr().out and not list(course.vit.glob("*.tar.gz"))


def test_submit_cell_lists_the_problems_and_packs_nothing(course: Course, capsys):
    (course.vit / WEIGHTS[0]).unlink()
    assert submit("s123", "vit", FILES, folder=course.vit) is None
    out = capsys.readouterr().out
    assert "Found 1 problem(s); nothing was packed" in out and f"{WEIGHTS[0]} is missing" in out, out
    assert not list(course.vit.glob("*.tar.gz")) and not list(course.vit.glob(".*partial*"))
