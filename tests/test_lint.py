"""The project's code passes its lint rules (pyproject.toml, [tool.ruff]: pyflakes and bugbear) over every Python file
but the notebooks: unused or undefined names, zip() of sequences without strict=, loop variables caught by closures.
`ruff check --fix` fixes what it safely can; `ruff check` lists the rest."""
import subprocess
import sys

from autograder.assignments import PROJECT_ROOT


def test_ruff_finds_nothing():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
