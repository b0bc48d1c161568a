"""A fresh, offline Python environment for the student bundle's tests (tests/test_publish.py, tests/test_colab.py).

Offline there is no index to install torch from, so the fresh venv borrows the project venv's third-party packages
(torch, ipykernel, pip, ...) by linking them into its own site-packages, as a venv made with
`--system-site-packages` would see them, minus the course's own packages (dlcourse, the editable install, the
autograder): the fresh venv starts without dlcourse, as a Colab runtime does, with someone else's torch.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

# Never linked: the course package in any form, and the grader.
COURSE_ENTRIES = ("dlcourse", "__editable__", "autograder")


def fresh_venv(where: Path) -> Path:
    """Make the venv; return its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    python = where / "bin" / "python"
    own = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip())
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(COURSE_ENTRIES) and not (own / entry.name).exists():
            (own / entry.name).symlink_to(entry)
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would put the project on the fresh venv's path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}
