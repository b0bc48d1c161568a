"""Grade on Gradescope: build an assignment's autograder zip, and grade one submission inside Gradescope's container.

    python -m autograder gradescope vit --out autograder_vit.zip [--hidden-until published|due_date]

The zip (Gradescope unpacks it into /autograder/source) holds:
    setup.sh          run once when Gradescope builds the image (Ubuntu 22.04 or 24.04): apt bubblewrap (and Python
                      3.11 where the image's is older), a venv with the pinned CPU requirements (requirements.txt)
                      and the course package
    run_autograder    run for each submission: `python -m autograder.deploy.gradescope run`, and a results.json saying
                      what went wrong if even that could not run
    gradescope.json   the assignment, the tests' visibility and the grading options chosen when the zip was built
    autograder/, dlcourse/, pyproject.toml, requirements.txt      the grader and the course code; of the stand-ins
                                       (autograder/kit/stand_ins/: reference layers), this assignment's and those a
                                       shipped file imports only (`left_out_stand_ins`)
    source/<a>/spec.py, release/<a>/   this assignment only; hidden tests: its own only
    source/<a>/fingerprints.json       in place of the source notebook (no solution ships): the fingerprints of the
                                       hidden text that feedback is cleaned of (autograder/fingerprints.py)
    source/<a>/course_cells.json       only where grading runs the course's model: the code of those cells, trusted
                                       reference code the worker never reaches (autograder/course_cells.py)

`run` grades /autograder/submission with grade_folder, exactly as `python -m autograder grade` does (preflight, one
trusted judge, the sandboxed worker: bubblewrap where the container allows user namespaces, else the uid backend, as
`--sandbox auto` chooses; the zip's --sandbox forces one), and turns its gradebook row into /autograder/results/results.json in Gradescope's
format (https://gradescope-autograders.readthedocs.io/en/latest/specs/). GRADESCOPE_ROOT (default /autograder) moves
the whole layout, so that the project's tests run it in a temporary folder.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import shutil
import stat
import sys
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

from autograder.assignments import PROJECT_ROOT, Assignment, load_assignment
from autograder.imports import imported_names
from autograder.pipeline.gradebook import Gradebook, RowTest
from autograder.options import GradeOptions
from autograder.pipeline.results import Outcome, Status

ROOT_VARIABLE = "GRADESCOPE_ROOT"
CONFIG_NAME = "gradescope.json"
STUDENT_ID = "submission"  # Gradescope keeps whose submission it is; the gradebook row needs some id
# --hidden-until: when students see the tests' results (Gradescope's per-test visibility)
VISIBILITY = {None: "visible", "published": "after_published", "due_date": "after_due_date"}
SKIPPED_NAMES = ("__pycache__", ".pytest_cache")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu 22.04), in /autograder/source.
# bubblewrap confines the student's code, or where the container forbids user namespaces the uid backend (docs/instructors.md,
# "How grading stays safe"; the venv must stay readable by every user for it); the venv holds the pinned CPU
# requirements and the course package.
set -euo pipefail
cd "$(dirname "$0")"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap python3 python3-venv >/dev/null
# The pinned requirements need Python 3.11 or newer; Ubuntu 22.04's python3 is 3.10, its archive has python3.11.
PYTHON=""
for candidate in python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    PYTHON="$candidate"
    break
  fi
done
if [ -z "$PYTHON" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv >/dev/null
  PYTHON=python3.11
fi
"$PYTHON" -m venv venv
venv/bin/python -m pip install --quiet --upgrade pip setuptools
# torch and torchvision from PyTorch's CPU index (the same pinned versions, +cpu): no GPU here, so no CUDA libraries
venv/bin/python -m pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission. The grading itself is `python -m autograder.deploy.gradescope run`; if even
# that cannot start (a broken image), a results.json still tells the instructor what happened.
set -uo pipefail
ROOT="${GRADESCOPE_ROOT:-/autograder}"
export GRADESCOPE_ROOT="$ROOT"
SOURCE="$ROOT/source"
PYTHON="${GRADESCOPE_PYTHON:-$SOURCE/venv/bin/python}"
export DLCOURSE_DATA="${DLCOURSE_DATA:-$SOURCE/data}"
mkdir -p "$ROOT/results"
cd "$SOURCE" || exit 1
"$PYTHON" -m autograder.deploy.gradescope run
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
  cat > "$ROOT/results/results.json" <<EOF
{"score": 0, "execution_time": $SECONDS, "output": "The autograder could not run (exit status $status), so this submission was not graded. Your instructor has the log; resubmitting will not help until they fix it.", "stdout_visibility": "hidden", "tests": []}
EOF
fi
"""


def gradescope_root() -> Path:
    return Path(os.environ.get(ROOT_VARIABLE, "/autograder"))


def imported_modules(path: Path) -> set[str]:
    """The dotted names a Python file of the project imports anywhere in it, inside functions too (read, not run)."""
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return imported_names(".".join(parts[:-1] if is_package else parts), is_package, ast.parse(path.read_text()))


def left_out_stand_ins(assignment: Assignment, shipped: set[Path]) -> set[Path]:
    """The modules of autograder/kit/stand_ins/ (reference layers, one module per assignment) that the zip of `assignment`
    leaves out: every other assignment's, unless a file that ships (`shipped`, the stand-ins aside) or a stand-in module
    that ships imports it (captioning's hidden tests import the transformer's reference attention and masks). This
    assignment's own module always ships: a hidden test may ask for its stand-ins
    by a name it computes; the package's __init__ and remote.py (the registry, the grader's end of the shells) too."""
    package = PROJECT_ROOT / "autograder" / "kit" / "stand_ins"
    others = {p for p in package.glob("*.py") if not p.name.startswith("_") and p.stem not in ("remote", assignment.name)}
    todo = [p for p in shipped if p.suffix == ".py" and p not in others]
    while todo:
        for name in imported_modules(todo.pop()):
            path = PROJECT_ROOT.joinpath(*name.split(".")).with_suffix(".py")
            if path in others:
                others.discard(path)
                todo.append(path)
    return others


def zip_members(assignment: Assignment) -> dict[str, Path]:
    """{path in the zip: file here}: the grader and course code, and this assignment's spec, release notebook, hidden
    tests and stand-ins only (no other assignment's tests or reference layers but those a shipped file imports:
    `left_out_stand_ins`; no samples: source/<a>/samples.py stays out; and no source notebook: its solutions are in
    no file of the zip, see `derived_members`)."""
    other_tests = {p for p in assignment.hidden_tests.parent.glob("test_*.py") if p != assignment.hidden_tests}
    files = [path for package in ("autograder", "dlcourse") for path in sorted((PROJECT_ROOT / package).rglob("*"))
             if path.is_file() and path not in other_tests and not set(path.parts) & set(SKIPPED_NAMES)]
    left_out = left_out_stand_ins(assignment, set(files))
    members = {path.relative_to(PROJECT_ROOT).as_posix(): path for path in files if path not in left_out}
    for path in (assignment.spec_file, *sorted(p for p in assignment.release_dir.rglob("*") if p.is_file()),
                 PROJECT_ROOT / "pyproject.toml"):
        members[path.relative_to(PROJECT_ROOT).as_posix()] = path
    members["requirements.txt"] = PROJECT_ROOT / "requirements" / "dev.txt"
    return members


def derived_members(assignment: Assignment) -> dict[str, str]:
    """{path in the zip: text} made from the source notebook in its place: the fingerprints of the hidden text that
    feedback is cleaned of (autograder/fingerprints.py), and where grading runs the course's model, the code of its
    cells alone (autograder/course_cells.py), trusted code that the worker never reaches."""
    from autograder.course_cells import FILE_NAME as COURSE_CELLS_FILE, course_cells, needs_course_cells
    from autograder.fingerprints import grader_fingerprints, shipped_file

    folder = assignment.source_dir.relative_to(PROJECT_ROOT).as_posix()
    members = {shipped_file(assignment).relative_to(PROJECT_ROOT).as_posix(): grader_fingerprints(assignment).to_json()}
    if needs_course_cells(assignment):
        members[f"{folder}/{COURSE_CELLS_FILE}"] = json.dumps(course_cells(assignment), indent=1)
    return members


def build_zip(name: str, out: Path, options: GradeOptions, hidden_until: str | None = None) -> Path:
    """Write the autograder zip of assignment `name` to `out`; `options` are the grading options every submission
    gets (one worker: Gradescope grades one submission per container)."""
    assignment = load_assignment(name)
    config = {"assignment": name, "visibility": VISIBILITY[hidden_until], "options": dataclasses.asdict(options)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for script, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(script, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o755) << 16  # Gradescope runs both as programs
            archive.writestr(info, text)
        archive.writestr(CONFIG_NAME, json.dumps(config, indent=2))
        for member, path in zip_members(assignment).items():
            archive.write(path, member)
        for member, text in derived_members(assignment).items():
            archive.writestr(member, text)
    return out


# -- inside Gradescope's container -----------------------------------------------------------------------------------

def stage_submission(submission: Path, folder: Path) -> None:
    """Put what the student uploaded into `folder` as one submission grade_folder reads: a lone archive as it is
    (Gradescope unzips a .zip itself, never a .tar.gz), anything else as a folder (the notebook and saved files,
    at the top or under <assignment>/)."""
    from autograder.pipeline.survey import ARCHIVE_SUFFIXES

    folder.mkdir(parents=True, exist_ok=True)
    entries = [p for p in submission.iterdir() if not p.name.startswith(".")] if submission.is_dir() else []
    archives = [p for p in entries if p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES)]
    if len(entries) == 1 and len(archives) == 1:
        suffix = next(s for s in ARCHIVE_SUFFIXES if archives[0].name.lower().endswith(s))
        shutil.copyfile(archives[0], folder / f"{STUDENT_ID}{suffix}")
    elif submission.is_dir():  # symbolic links are copied as links, which unpacking refuses to follow
        shutil.copytree(submission, folder / STUDENT_ID, symlinks=True)
    else:  # nothing uploaded: an empty folder, graded as a missing notebook
        (folder / STUDENT_ID).mkdir()


def output_of(test: RowTest) -> str:
    """What a student reads under one test: why it failed or was not judged, and what it measured."""
    lines = []
    if test.needs_review:
        lines.append(f"{test.message[0].upper()}{test.message[1:]} ({test.points:g} points)")
    elif not test.judged:
        lines.append(f"Not judged on this grader ({test.points:g} points neither given nor taken): "
                     f"{test.message.removeprefix('not judged on this grader: ')}")
    elif test.message:
        lines.append(test.message)
    lines += [f"{name}: {text}" for name, text in (test.notes or {}).items()]
    return "\n".join(lines)


def to_results(gradebook: Gradebook, visibility: str, seconds: float) -> dict:
    """Gradescope's results.json for the gradebook's one row: a test per hidden test, numbered by group, with the
    row's score. A test not judged here carries no score and no max_score (Gradescope shows it without points), so
    it counts neither as a zero nor as full marks."""
    row = gradebook.rows[0]
    groups = gradebook.groups
    tests: list[dict[str, Any]] = []
    count = dict.fromkeys(groups, 0)
    for info in gradebook.tests:
        result = row.tests[info.id]
        count[info.group] += 1
        param = info.id.partition("[")[2].rstrip("]")
        entry: dict[str, Any] = {"name": f"{info.group}: {info.title}" + (f" [{param}]" if param else ""),
                 "number": f"{groups.index(info.group) + 1}.{count[info.group]}",
                 "output": output_of(result), "visibility": visibility}
        if not result.judged:
            entry["name"] += " (needs review)" if result.needs_review else " (not judged)"
        else:
            entry.update(score=result.earned, max_score=result.points,
                         status="passed" if result.outcome == Outcome.PASSED else "failed")
        tests.append(entry)
    summary = [f"Autograded score: {row.score:g} / {row.max_score:g} (status: {row.status})"]
    if row.not_judged_points:
        summary.append(f"{row.not_judged_points:g} more points were not judged on this grader; your instructor "
                       "judges them elsewhere (see the tests marked 'not judged').")
    summary += [f"{text}" for text in (row.message, *row.problems) if text]
    attached = {name for t in row.tests.values() for name in (t.notes or {})}
    summary += [f"{name}: {text}" for name, text in row.notes.items() if name not in attached]
    return {"score": row.score, "execution_time": round(seconds), "output": "\n".join(summary),
            "stdout_visibility": "hidden", "tests": tests}


def grade_submission(root: Path) -> tuple[Gradebook, str]:
    """Grade root/submission with the zip's assignment and options; (gradebook, visibility). A problem that stops the
    grading (no sandbox, a failed preflight, a crash of the grader) is a grader-error row saying so: the grader's
    failure, never the student's."""
    from autograder.pipeline.grade import grade_folder

    config = json.loads((PROJECT_ROOT / CONFIG_NAME).read_text())
    assignment = load_assignment(config["assignment"])
    options = GradeOptions.from_dict(config["options"])
    work = root / "grading"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700, parents=True)  # the staged submission and OUT: no other user's (the uid backend's worker)
    for folder in (root / "submission", root / "results"):  # the upload and the results: the grader's alone
        if folder.is_dir():
            folder.chmod(folder.stat().st_mode & ~0o007)
    try:
        stage_submission(root / "submission", work / "submissions")
        gradebook = grade_folder(work / "submissions", assignment.name, work / "out", options)
    except (Exception, SystemExit) as exc:  # SystemExit: the grader refused (its message names the cause)
        print(traceback.format_exc(), file=sys.stderr)  # stdout/stderr are the instructor's only (stdout_visibility)
        reason = str(exc) if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        gradebook = Gradebook.without_results(
            assignment, STUDENT_ID, Status.GRADER_ERROR, "The autograder failed on its own side, so this submission was not graded: the 0 shown "
            "is a placeholder until your instructor fixes the autograder and regrades it. "
            f"Cause: {reason.splitlines()[0] if reason else 'unknown'}")
    return gradebook, config["visibility"]


def run(root: Path | None = None) -> Path:
    """Grade root/submission and write root/results/results.json; return its path."""
    from autograder.pipeline.store import atomic_write

    root = root or gradescope_root()
    started = time.monotonic()
    gradebook, visibility = grade_submission(root)
    results = root / "results" / "results.json"
    atomic_write(results, json.dumps(to_results(gradebook, visibility, time.monotonic() - started), indent=2))
    print(f"Wrote {results}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m autograder.deploy.gradescope", description="Gradescope's run step "
                                     f"(run_autograder calls it): grades ${ROOT_VARIABLE}/submission")
    parser.add_argument("command", choices=("run",))
    parser.parse_args()
    run()
