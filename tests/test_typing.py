"""The project type-checks (pyproject.toml, [tool.mypy]): dlcourse/ is what students import, autograder/ what grades
them, so a wrong annotation, a call that does not fit its signature or an unchecked None is a bug a student or an
instructor would meet. One mypy run checks both packages: most of its time goes to reading torch's hints (about 20 CPU
s without a cache; transformers is not followed, see pyproject.toml), and a second run would read them again. mypy caches in .mypy_cache:
later runs take seconds."""
import subprocess
import sys
import tomllib

from autograder.assignments import PROJECT_ROOT

PACKAGES = ["dlcourse", "autograder"]


def test_the_gate_covers_both_packages():
    """A bare `mypy` (as a maintainer types it) checks what this test checks."""
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert sorted(config["files"]) == sorted(PACKAGES)


def test_mypy_finds_nothing_in_dlcourse_and_autograder():
    proc = subprocess.run([sys.executable, "-m", "mypy", *PACKAGES], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
