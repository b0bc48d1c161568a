"""The course package type-checks (pyproject.toml, [tool.mypy]): dlcourse/ is what students import, so a wrong
annotation or a call that does not fit its signature is a bug they would meet. mypy caches in .mypy_cache: the first
run reads torch's and transformers' hints (a minute or two of CPU), later runs take seconds."""
import subprocess
import sys

from autograder.assignments import PROJECT_ROOT


def test_mypy_finds_nothing_in_dlcourse():
    proc = subprocess.run([sys.executable, "-m", "mypy", "dlcourse"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
