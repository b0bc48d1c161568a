"""The project installs as a package, not only as an editable checkout: the wheel holds every module of `autograder`
and `dlcourse` (the hidden tests and the sample builders included), and `python -m autograder` runs from it."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from autograder.assignments import PROJECT_ROOT

PACKAGES = ("autograder", "dlcourse")


def modules_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for package in PACKAGES for p in (root / package).rglob("*.py")
            if "__pycache__" not in p.parts}


def test_the_wheel_holds_every_module_and_the_command_runs_from_it(tmp_path):
    source = tmp_path / "source"  # a copy: setuptools leaves build/ and *.egg-info/ where it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(tmp_path / "dist"),
                    str(source)], check=True, capture_output=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("*.whl")
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    assert modules_in(PROJECT_ROOT) <= in_wheel, sorted(modules_in(PROJECT_ROOT) - in_wheel)

    site = tmp_path / "site"  # the wheel alone on the path (its dependencies come from this interpreter's own)
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    code = "import autograder.__main__, dlcourse, autograder.samples; print(autograder.__file__)"
    imported = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert imported.returncode == 0 and imported.stdout.strip() == str(site / "autograder" / "__init__.py"), imported
    helped = subprocess.run([sys.executable, "-m", "autograder", "--help"], cwd=tmp_path, env=env, capture_output=True,
                            text=True)
    assert helped.returncode == 0 and "grade" in helped.stdout, helped.stderr
