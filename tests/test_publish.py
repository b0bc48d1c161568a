"""The student bundle (`python -m autograder publish`): exactly what students get, no solution, hidden test, sample
or weight in any of its files, and a wheel that installs and imports in a fresh environment."""
from __future__ import annotations

import functools
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment
from autograder.deploy.colab import SETUP_CELL, SUBMIT_CELL, bundle_url, is_generated, package_version, wheel_name, \
    with_colab_cells
from autograder.fingerprints import FAMILIES
from autograder.notebook import cell_source, grade_id, read_notebook
from autograder.deploy.publish import publish
from autograder.samples import SOLUTION_MARKER
from bundle_env import clean_env, fresh_venv

ASSIGNMENTS = list_assignments()
URL = "https://files.example.org/course-x/dist"
# A leak is a solution line this long (the answer itself), or this many solution lines in a row (a copied block): an
# idiom the course's own code shares with the answers (`loss.backward()`, `optimizer.zero_grad()`) is neither.
DISTINCTIVE = 40
RUN = 3
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".npy", ".pkl", ".onnx", ".h5")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("publish") / "bundle"
    publish(out, URL)
    return out


def notebook_text(path: Path) -> str:
    """A notebook's cells as students read them (not their JSON encoding, where no line is a line of code)."""
    return "\n".join(cell_source(c) for c in json.loads(path.read_text(encoding="utf-8"))["cells"])


def bundle_texts(bundle: Path) -> dict[str, str]:
    """Every file of the bundle as text, the wheel's members included (as `<wheel>!<member>`)."""
    texts = {}
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        name = str(path.relative_to(bundle))
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                texts.update({f"{name}!{m}": wheel.read(m).decode("utf-8") for m in wheel.namelist()})
        elif path.suffix == ".ipynb":
            texts[name] = notebook_text(path)
        else:
            texts[name] = path.read_text(encoding="utf-8")  # a binary file (weights) fails here, by name
    return texts


def long_lines(text: str, minimum: int) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= minimum}


def solution_blocks(names: tuple[str, ...] = tuple(ASSIGNMENTS)) -> list[list[str]]:
    """The lines between the source notebooks' `### BEGIN SOLUTION` and `### END SOLUTION` (as tests/test_release.py
    reads them) of the assignments `names`, stripped, blank lines left out: one list per solution region."""
    blocks = []
    for name in names:
        assignment = load_assignment(name)
        for cell in read_notebook(assignment.source_dir / assignment.notebook)["cells"]:
            block = None
            for line in cell_source(cell).splitlines():
                if SOLUTION_MARKER.match(line):
                    block = [] if "BEGIN" in line else None
                    if block is not None:
                        blocks.append(block)
                elif block is not None and line.strip():
                    block.append(line.strip())
    return blocks


def runs_of(lines: list[str]) -> set[tuple[str, ...]]:
    return {tuple(lines[i:i + RUN]) for i in range(len(lines) - RUN + 1)}


@functools.cache
def solution_patterns(names: tuple[str, ...] = tuple(ASSIGNMENTS)) -> tuple[frozenset[str], frozenset[tuple[str, ...]]]:
    """(the solutions' distinctive lines, their runs of RUN lines)."""
    blocks = solution_blocks(names)
    return (frozenset(line for block in blocks for line in block if len(line) >= DISTINCTIVE),
            frozenset().union(*(runs_of(block) for block in blocks)))


def solution_leaks(text: str, names: tuple[str, ...] = tuple(ASSIGNMENTS)) -> list[str]:
    """The solutions' (of the assignments `names`) distinctive lines and runs of RUN solution lines that `text` holds."""
    distinctive, runs = solution_patterns(names)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return sorted(set(lines) & distinctive) + [" / ".join(run) for run in sorted(runs_of(lines) & runs)]


def grader_only_lines() -> set[str]:
    """Distinctive lines of the hidden tests, the samples and the specs, less those students see anyway (the release
    notebooks and the course package, where a shared line such as an import is public by design)."""
    files = [*(PROJECT_ROOT / "autograder" / "hidden_tests").glob("*.py"), FAMILIES,
             *(PROJECT_ROOT / "source").glob("*/samples.py"), *(PROJECT_ROOT / "source").glob("*/spec.py")]
    secret = set().union(*(long_lines(f.read_text(), 30) for f in files))
    public = set().union(*(long_lines(notebook_text(p), 30) for p in (PROJECT_ROOT / "release").glob("*/*.ipynb")),
                         *(long_lines(p.read_text(encoding="utf-8"), 30) for p in (PROJECT_ROOT / "dlcourse").glob("*.py")))
    return {line for line in secret - public if not line.startswith(("#", "import ", "from "))}


def test_bundle_holds_what_students_get_and_nothing_else(bundle):
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    expected = {"README.md", "pyproject.toml", "CollectSubmission.sh", "environment.yml", "notebooks/setup.ipynb",
                f"dist/{wheel_name(package_version())}",
                *(f"dlcourse/{p.name}" for p in (PROJECT_ROOT / "dlcourse").glob("*.py")),
                *(f"release/{a}/{f}" for a in ASSIGNMENTS for f in (f"{a}.ipynb", "submission.txt"))}
    assert files == expected
    with zipfile.ZipFile(bundle / "dist" / wheel_name(package_version())) as wheel:
        packages = {m.split("/")[0] for m in wheel.namelist()}
    assert packages == {"dlcourse", f"dlcourse-{package_version()}.dist-info"}


def test_no_file_holds_a_solution_hidden_test_sample_or_weights(bundle):
    texts = bundle_texts(bundle)  # every file decodes as text: no weights, no binary of any kind but the wheel
    assert not [n for n in texts if n.lower().endswith(WEIGHT_SUFFIXES)]
    secrets = grader_only_lines()
    assert solution_blocks() and secrets, "found nothing to look for: is the nbgrader markup intact?"
    for name, text in texts.items():
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, name
        assert "BEGIN HIDDEN TESTS" not in text and "hidden_tests" not in text, name
        assert not solution_leaks(text), f"{name} holds solution lines: {solution_leaks(text)[:3]}"
        lines = {line.strip() for line in text.splitlines()}
        assert not lines & secrets, f"{name} holds lines of the hidden tests, samples or specs: {sorted(lines & secrets)[:3]}"


def test_the_scan_finds_a_planted_leak(bundle, tmp_path):
    """The scan above can fail: a copy of the bundle with a long solution line, then a run of short ones (indented
    as in a module of its own), then one hidden-test line planted; an idiom alone is no leak."""
    planted = tmp_path / "bundle"
    subprocess.run(["cp", "-r", str(bundle), str(planted)], check=True)
    long_line = next(line for block in solution_blocks() for line in block if len(line) >= DISTINCTIVE)
    short_run = next(block[i:i + RUN] for block in solution_blocks() for i in range(len(block) - RUN + 1)
                     if all(len(line) < DISTINCTIVE for line in block[i:i + RUN]))
    for leak in (long_line, "\n".join(f"        {line}" for line in short_run)):
        (planted / "dlcourse" / "leak.py").write_text(f"x = 1\n{leak}\n")
        assert solution_leaks(bundle_texts(planted)["dlcourse/leak.py"]), leak
    (planted / "dlcourse" / "leak.py").write_text("optimizer.zero_grad()\nloss.backward()\n")
    assert not solution_leaks(bundle_texts(planted)["dlcourse/leak.py"])
    (planted / "dlcourse" / "leak.py").write_text(f"{sorted(grader_only_lines())[0]}\n")
    assert {line.strip() for line in bundle_texts(planted)["dlcourse/leak.py"].splitlines()} & grader_only_lines()


def test_notebooks_install_the_wheel_from_the_published_url(bundle):
    wheel_url = f"{URL}/{wheel_name(package_version())}"
    for name in ASSIGNMENTS:
        nb = read_notebook(bundle / "release" / name / f"{name}.ipynb")
        setup = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert grade_id(setup) == SETUP_CELL and f'COURSE_PACKAGE = "{wheel_url}"' in cell_source(setup)
        assert grade_id(nb["cells"][-1]) == SUBMIT_CELL
    setup_nb = (bundle / "notebooks" / "setup.ipynb").read_text()
    assert json.dumps(f'COURSE_PACKAGE = "{wheel_url}"')[1:-1] in setup_nb and "git clone" not in setup_nb


def test_wheel_installs_and_imports_in_a_fresh_venv(bundle, tmp_path):
    """pip install --no-deps --no-index of the wheel alone (offline: the venv borrows the project's torch)."""
    python = fresh_venv(tmp_path / "venv")
    env = clean_env()
    missing = subprocess.run([str(python), "-c", "import dlcourse"], cwd=tmp_path, env=env, capture_output=True)
    assert missing.returncode != 0, "the fresh venv sees a dlcourse before the wheel is installed"
    wheel = bundle / "dist" / wheel_name(package_version())
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   cwd=tmp_path, env=env, check=True, timeout=120)
    imported = subprocess.run([str(python), "-c", "import dlcourse, dlcourse.collect, dlcourse.text_data; "
                               "print(dlcourse.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert Path(imported.stdout.strip()).is_relative_to(tmp_path / "venv"), imported.stdout


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_colab_cells_are_generated_and_never_graded(name):
    """The source notebook holds what autograder/deploy/colab.py generates (`python -m autograder release` writes it), and
    the grader runs none of it."""
    assignment = load_assignment(name)
    nb = read_notebook(assignment.source_dir / assignment.notebook)
    assert with_colab_cells(nb, assignment, bundle_url(), package_version()) == nb, \
        f"source/{name}/{name}.ipynb: the Colab cells are out of date: run `python -m autograder release` and commit"
    generated = {grade_id(c) for c in nb["cells"] if is_generated(c)} - {None}
    spec = assignment.spec
    assert generated and not generated & {*spec.run_cells, *spec.training_cells, *spec.cuda_training_cells}


def test_collect_submission_runs_in_the_bundle(bundle, tmp_path):
    """The bundle's CollectSubmission.sh finds its checks (the bundle's dlcourse/collect.py) and judges the untouched
    release notebook as students would see it: not run, TODOs left, weights missing; nothing packed."""
    result = subprocess.run(["bash", str(bundle / "CollectSubmission.sh"), "s1", "vit"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "vit.ipynb has not been run" in result.stderr and "release/vit/vit_fashionmnist.safetensors is missing" \
        in result.stderr and "still raises NotImplementedError" in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


def test_only_the_packages_modules_are_bundled(tmp_path, monkeypatch):
    """A stray file in dlcourse/ (a canary a parallel test planted, an editor's backup) never reaches students."""
    import autograder.deploy.publish as publish_module
    checkout = tmp_path / "checkout"
    (checkout / "dlcourse").mkdir(parents=True)
    (checkout / "dlcourse" / "training.py").write_text("x = 1\n")
    (checkout / "dlcourse" / "sandbox_canary_gw0.txt").write_text("canary\n")
    monkeypatch.setattr(publish_module, "PROJECT_ROOT", checkout)
    publish_module.copy_package(tmp_path / "bundle")
    assert sorted(p.name for p in (tmp_path / "bundle" / "dlcourse").iterdir()) == ["training.py"]
