"""Canary files for the hostile samples: places a student must never write or read.

The project's tests create them before grading the samples (`plant`) and check them afterwards
(`damaged`). A hostile sample touches only these files, and only when they exist, so it is harmless
if the sandbox ever fails: at worst it overwrites a canary with a comment line. The paths are
written into the samples' code when they are built (trusted code, on the grading machine).

- `site_packages`: a `.pth` file in the virtualenv, which every trusted judge process reads at start-up
  (writing Python into it would run code in the judges: the forged-grades attack);
- `course_package`: a file inside `dlcourse/`, which the judges import;
- `second_checkout`: a "second copy of the hidden tests" outside the grading checkout;
- `build_folder`: a file in the checkout's `build/` folder (grades and caches live there).
"""
from __future__ import annotations

import hashlib
import os
import site
from pathlib import Path

from autograder.assignments import PROJECT_ROOT

# Each worker of a parallel test run (pytest-xdist) plants, checks and removes canaries of its own: one worker's
# cleanup must not look like another's damage. The samples are built in the worker's subprocesses, which inherit it.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# Outside the checkout, named after it, so that two checkouts' test runs on one machine keep apart.
SECOND_CHECKOUT = Path("/var/tmp") / (f"dlcourse-canary-{hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:12]}"
                                      + (f"-{WORKER}" if WORKER else ""))
CONTENT = "# canary of the autograder's tests: a sandboxed student must not change this line\n"


def paths() -> dict[str, Path]:
    suffix = f"_{WORKER}" if WORKER else ""
    return {
        "site_packages": Path(site.getsitepackages()[0]) / f"dlcourse_sandbox_canary{suffix}.pth",
        "course_package": PROJECT_ROOT / "dlcourse" / f"sandbox_canary{suffix}.txt",
        "second_checkout": SECOND_CHECKOUT / "test_vit.py",
        "build_folder": PROJECT_ROOT / "build" / f"sandbox-canary{suffix}" / "test_vit.py",
    }


def plant() -> None:
    for path in paths().values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CONTENT)


def damaged() -> list[str]:
    """The canaries that are missing or no longer hold CONTENT."""
    return [name for name, path in paths().items() if not path.exists() or path.read_text() != CONTENT]


def remove() -> None:
    for path in paths().values():
        path.unlink(missing_ok=True)
    for folder in (paths()["build_folder"].parent, SECOND_CHECKOUT):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
