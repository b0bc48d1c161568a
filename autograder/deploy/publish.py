"""The student bundle: what students get, and nothing else (`python -m autograder publish OUT`).

    OUT/README.md                the student README: Colab steps (open, run, save, submit) and local steps
    OUT/release/<a>/             the release notebooks (with their Colab setup and submit cells) and submission.txt
    OUT/dlcourse/, pyproject.toml   the course package's source (`pip install -e .` works in OUT)
    OUT/dist/dlcourse-<v>-py3-none-any.whl   the same package built as a wheel: serve dist/ at bundle.cfg's url
    OUT/CollectSubmission.sh     packing from a terminal (its checks are dlcourse/collect.py's)
    OUT/notebooks/setup.ipynb    the environment check, with the wheel's URL written in
    OUT/environment.yml          for conda users

Nothing is copied by walking the project: each entry above is named here, so that a new file in the project (a
solution, a hidden test, weights) never reaches students by accident. tests/test_publish.py scans every file of a
published bundle for solution lines, hidden tests, samples and weights.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment
from autograder.deploy.colab import bundle_url, package_version, wheel_name

STUDENT_README = """\
# Deep learning course: your assignments

Each assignment is one notebook, `release/<assignment>/<assignment>.ipynb`. Fill in every `# YOUR CODE HERE`
(and every written answer), run the notebook top to bottom, and hand in the archive its last cell writes.

## On Google Colab

1. **Open.** Put this whole folder in your Google Drive (for example as `MyDrive/dl-course/`), then open
   `release/<assignment>/<assignment>.ipynb` from Drive with Colab (double-click it, *Open with → Google
   Colaboratory*). For the training cells, choose a GPU: *Runtime → Change runtime type → GPU*.
2. **Run.** Run the first cell. It installs the course package (`dlcourse`, version {version}) into this notebook's
   runtime, asks for access to your Google Drive (allow it: a Colab runtime forgets its files when it ends) and
   works in the notebook's own Drive folder, so that the weights your training cells save land next to the
   notebook. Then work through the notebook; run it all with *Runtime → Run all* before you submit.
3. **Save.** *File → Save* (Ctrl+S). What is checked and packed is the saved notebook in Drive.
4. **Submit.** At the end of the notebook, write your student id into the `STUDENT_ID` cell and run the last cell.
   It checks your work (every cell run, no `NotImplementedError` left, the saved weights present, written
   answers filled in), writes `<student-id>.tar.gz` next to the notebook and downloads it. Upload that file.

Every notebook installs the package in its own first cell, because each Colab notebook has a runtime of its own.
`notebooks/setup.ipynb` only checks your runtime (Python, PyTorch, GPU) and the datasets.

## On your own machine

1. Python 3.10 or newer. From this folder, in a terminal: `python -m venv .venv && source .venv/bin/activate`,
   then `pip install -e .` (or, with conda, `conda env create -f environment.yml && conda activate dlcourse`,
   then `pip install -e .`).
2. `jupyter lab`, run `notebooks/setup.ipynb` once, then open `release/<assignment>/<assignment>.ipynb`. Its
   first cell does nothing outside Colab.
3. Save the notebook, then either run its last cell, or from a terminal:
   `./CollectSubmission.sh <student-id> <assignment>`, which runs the same checks and writes
   `<student-id>.tar.gz` in the current folder. Upload that file.

Assignments: {assignments}.
"""

STUDENT_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "dlcourse"
version = "{version}"
description = "Course code the assignment notebooks import: data, training loop, plots, public checks, saving."
readme = "README.md"
requires-python = "{requires_python}"
{dependencies}

[tool.setuptools]
packages = ["dlcourse"]
"""


def student_pyproject() -> str:
    """The project's pyproject.toml reduced to the course package: its version and dependencies, no autograder."""
    text = (PROJECT_ROOT / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[.*?^\]", text, re.M | re.S)
    requires = re.search(r'^requires-python\s*=\s*"([^"]+)"', text, re.M)
    if not dependencies or not requires:
        raise SystemExit("pyproject.toml: no [project] dependencies = [...] or requires-python to publish from")
    return STUDENT_PYPROJECT.format(version=package_version(), requires_python=requires.group(1),
                                    dependencies=dependencies.group(0))


def copy_package(out: Path) -> None:
    """The package's Python modules and nothing else (an allow-list: a file a test or a tool leaves in dlcourse/,
    such as the sandbox tests' canaries, never reaches students)."""
    target = out / "dlcourse"
    target.mkdir(parents=True, exist_ok=True)
    for module in sorted((PROJECT_ROOT / "dlcourse").glob("*.py")):
        shutil.copy2(module, target / module.name)


def build_wheel(bundle: Path, dist: Path) -> Path:
    """The wheel, built offline from a copy of the bundle's package (setuptools leaves build/ and *.egg-info/ in
    the folder it builds, which must not end up in the bundle)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(bundle / name, Path(tmp) / name)
        shutil.copytree(bundle / "dlcourse", Path(tmp) / "dlcourse")
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                               "--quiet", "--wheel-dir", str(dist), tmp], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"building the dlcourse wheel failed (pip exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    wheel = dist / wheel_name(package_version())
    if not wheel.is_file():
        raise SystemExit(f"pip built no {wheel.name} in {dist}: {sorted(p.name for p in dist.iterdir())}")
    return wheel


def package_line(url: str) -> str:
    """The line of a notebook cell (as it reads in the .ipynb's JSON) that names the wheel to install."""
    return json.dumps(f"COURSE_PACKAGE = {json.dumps(url)}\n")[1:-1]


def write_notebook(source: Path, target: Path, old_url: str, wheel_url: str) -> None:
    """Copy a notebook, its one `COURSE_PACKAGE = "<old_url>"` line now naming `wheel_url`."""
    text = source.read_text(encoding="utf-8")
    if text.count(package_line(old_url)) != 1:
        raise SystemExit(f"{source.relative_to(PROJECT_ROOT)} has no single `COURSE_PACKAGE = {json.dumps(old_url)}` "
                         "line to write the wheel's URL into: run `python -m autograder release` and commit it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(package_line(old_url), package_line(wheel_url)), encoding="utf-8")


def publish(out: Path, url: str | None = None) -> Path:
    """Write the bundle into `out` (emptied first if it is an earlier bundle); returns the wheel. `url` (default:
    bundle.cfg's) is where dist/ will be served: it is written into every notebook's COURSE_PACKAGE line."""
    url = (url or bundle_url()).rstrip("/")
    out = out.resolve()
    if out.exists():
        if any(out.iterdir()) and not (out / "dist").is_dir():
            raise SystemExit(f"{out} is not empty and not an earlier bundle: give a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = list_assignments()
    version = package_version()
    for name in names:
        assignment = load_assignment(name)
        target = out / "release" / name
        target.mkdir(parents=True)
        shutil.copy2(assignment.release_dir / "submission.txt", target / "submission.txt")
        write_notebook(assignment.release_dir / assignment.notebook, target / assignment.notebook,
                       f"{bundle_url()}/{wheel_name(version)}", f"{url}/{wheel_name(version)}")
    (out / "README.md").write_text(STUDENT_README.format(version=version, assignments=", ".join(names)))
    (out / "pyproject.toml").write_text(student_pyproject())
    copy_package(out)
    shutil.copy2(PROJECT_ROOT / "CollectSubmission.sh", out / "CollectSubmission.sh")
    shutil.copy2(PROJECT_ROOT / "environment.yml", out / "environment.yml")
    write_notebook(PROJECT_ROOT / "notebooks" / "setup.ipynb", out / "notebooks" / "setup.ipynb", "",
                   f"{url}/{wheel_name(version)}")
    wheel = build_wheel(out, out / "dist")
    print(f"Wrote the student bundle to {out}: {len(names)} assignments, {wheel.relative_to(out)}.\n"
          f"Serve {out / 'dist'} at {url}: every notebook's first cell installs the wheel from there.")
    return wheel
