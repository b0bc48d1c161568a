"""The Gradescope autograder zip (autograder/deploy/gradescope.py): built by the real command, checked file by file, and its
run_autograder run in Gradescope's folder layout simulated under a temporary root (GRADESCOPE_ROOT). Its results.json
must follow Gradescope's format and give the same scores as `python -m autograder grade` on the same samples.
setup.sh's install step (apt, a venv, pip) is not run here: run_autograder uses this project's interpreter
(GRADESCOPE_PYTHON) instead of the venv setup.sh would make."""
import ast
import json
import os
import stat
import subprocess
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import jsonschema
import pytest

from autograder.assignments import PROJECT_ROOT, list_assignments
from autograder.samples import build_samples

ASSIGNMENT = "vit"
MEMORY_MB = 1536  # the worker's cap the zip is built with: Gradescope's machine has 1.5-2 GB (README)
SAMPLE = "bug_attention_scale"  # passes some layer tests, fails others; no trained weights needed: seconds to grade

# Gradescope's results.json (https://gradescope-autograders.readthedocs.io/en/latest/specs/), the fields we write.
VISIBILITIES = ["hidden", "after_due_date", "after_published", "visible"]
RESULTS_SCHEMA = {
    "type": "object",
    "required": ["score", "execution_time", "output", "stdout_visibility", "tests"],
    "properties": {
        "score": {"type": "number", "minimum": 0},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string", "minLength": 1},
        "stdout_visibility": {"const": "hidden"},
        "tests": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "number", "output", "visibility"],
            "properties": {"name": {"type": "string", "minLength": 1}, "number": {"type": "string"},
                           "score": {"type": "number", "minimum": 0}, "max_score": {"type": "number", "minimum": 0},
                           "status": {"enum": ["passed", "failed"]}, "output": {"type": "string"},
                           "visibility": {"enum": VISIBILITIES}},
            "dependentRequired": {"score": ["max_score"], "max_score": ["score"]},
            "additionalProperties": False}},
    },
    "additionalProperties": False,
}


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("gradescope") / f"autograder_{ASSIGNMENT}.zip"
    run(sys.executable, "-m", "autograder", "gradescope", ASSIGNMENT, "--out", str(path), "--hidden-until", "published",
        "--memory-mb", str(MEMORY_MB))
    return path


@pytest.fixture(scope="module")
def local_row(tmp_path_factory):
    """The ViT sample's archive, and its gradebook row from `python -m autograder grade`."""
    out = tmp_path_factory.mktemp("gradescope-samples")
    [archive] = build_samples(ASSIGNMENT, out / "submissions", only=[SAMPLE])
    run(sys.executable, "-m", "autograder", "grade", str(out / "submissions"), "--assignment", ASSIGNMENT,
        "--out", str(out / "grades"), "--workers", "1", "--no-preflight")  # the preflight: test_preflight.py
    [row] = json.loads((out / "grades" / "gradebook.json").read_text())["submissions"]
    return archive, row


def gradescope_root(tmp_path, autograder_zip):
    """Gradescope's layout: the zip unpacked in ROOT/source, ROOT/submission and ROOT/results to be filled."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extractall(root / "source")
    (root / "submission").mkdir()
    return root


def run_autograder(root, python=sys.executable) -> dict:
    env = dict(os.environ, GRADESCOPE_ROOT=str(root), GRADESCOPE_PYTHON=python)
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    return results


def test_zip_holds_the_scripts_and_this_assignment_only(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        config = json.loads(archive.read("gradescope.json"))
    names = set(infos)
    for script in ("setup.sh", "run_autograder"):
        assert infos[script].external_attr >> 16 & stat.S_IXUSR, f"{script} is not executable in the zip"
    hidden = {n for n in names if n.startswith("autograder/hidden_tests/") and n.endswith(".py")}
    assert hidden == {f"autograder/hidden_tests/test_{ASSIGNMENT}.py"}
    assert {n.split("/")[1] for n in names if n.startswith(("source/", "release/"))} == {ASSIGNMENT}
    assert f"source/{ASSIGNMENT}/samples.py" not in names  # the samples' solutions and hostile code stay out
    assert {f"source/{ASSIGNMENT}/spec.py", f"release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", "requirements.txt",
            "pyproject.toml", "autograder/pipeline/judge.py", "autograder/sandbox/worker.py", "dlcourse/__init__.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "build/", "data/"))]
    assert config["assignment"] == ASSIGNMENT and config["visibility"] == "after_published"
    assert config["options"]["workers"] == 1
    assert len(list_assignments()) > 1  # so "this assignment only" above excluded something
    stand_ins = {n.removeprefix("autograder/kit/stand_ins/") for n in names if n.startswith("autograder/kit/stand_ins/")}
    assert stand_ins == {"__init__.py", "remote.py", f"{ASSIGNMENT}.py"}  # the registry, the shells' server, its own


FOREIGN_STAND_INS = {"captioning": {"transformer"}}
"""The other assignments' stand-in modules a zip ships: captioning's hidden tests use the Transformer's attention,
feed-forward and masks. Every other zip holds its own only (the kit that all of them ship names no assignment's)."""


@pytest.mark.parametrize("name", list_assignments())
def test_zip_ships_the_stand_ins_its_files_use_and_no_other(name):
    """Every stand-in the zip's files import or name (a string constant that a stand-in module registers) is in the
    zip, and every stand-in module it leaves out is another assignment's that no file of the zip imports or names."""
    from autograder.assignments import load_assignment
    from autograder.deploy.gradescope import imported_modules, zip_members
    from autograder.kit.stand_ins import STAND_INS

    members = zip_members(load_assignment(name))
    package = PROJECT_ROOT / "autograder" / "kit" / "stand_ins"
    shipped = {path for path in members.values() if path.parent == package}
    left_out = set(package.glob("*.py")) - shipped
    registered = {kind: package / f"{factory.__module__.rsplit('.', 1)[1]}.py" for kind, factory in STAND_INS.factories.items()}
    assert {registered[kind] for kind in registered} == {p for p in package.glob("*.py") if p.stem not in ("__init__", "remote")}
    for member, path in members.items():
        if path.suffix != ".py":
            continue
        named = {node.value for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        missing = {registered[kind].name for kind in named & set(registered)} & {p.name for p in left_out}
        imported = {p.name for p in left_out if f"autograder.kit.stand_ins.{p.stem}" in imported_modules(path)}
        assert not missing | imported, f"{member} uses stand-ins of {missing | imported}, which the {name} zip leaves out"
    if name != "transformer":  # every other zip leaves out some assignment's stand-ins
        assert left_out and package / f"{name}.py" not in left_out
    foreign = {path.stem for path in shipped} - {"__init__", "remote", name}
    assert foreign == FOREIGN_STAND_INS.get(name, set()), f"the {name} zip ships other assignments' stand-ins {foreign}"
    for stem in foreign:  # each for a reason: a shipped file outside the package imports it
        assert any(f"autograder.kit.stand_ins.{stem}" in imported_modules(path) for path in members.values()
                   if path.suffix == ".py" and path.parent != package), f"nothing in the {name} zip imports {stem}.py"


def test_zip_holds_no_solution(autograder_zip):
    """No notebook but the release, and no line of the assignment's solutions in any file (scanned as the student
    bundle is, tests/test_publish.py), except the trusted reference code the judge needs for the thresholds judged in
    the course's model: course_cells.json, the spec's run_cells alone (test_run_autograder_picks_the_uid_backend...
    checks that the worker cannot read it). The source notebook's lines reach feedback only as fingerprints."""
    from test_publish import notebook_text, solution_leaks

    from autograder.assignments import load_assignment
    from autograder.notebook import cell_source

    assignment = load_assignment(ASSIGNMENT)
    source = notebook_text(assignment.source_dir / assignment.notebook)
    assert solution_leaks(source, (ASSIGNMENT,)), "the scan finds nothing in the source notebook itself"
    reference = f"source/{ASSIGNMENT}/course_cells.json"
    with zipfile.ZipFile(autograder_zip) as archive:
        texts = {name: archive.read(name).decode("utf-8") for name in archive.namelist()}  # a binary file fails here
    assert [n for n in texts if n.endswith(".ipynb")] == [f"release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"]
    for name, text in texts.items():
        if name == reference:
            continue
        if name.endswith(".ipynb"):
            text = "\n".join(cell_source(cell) for cell in json.loads(text)["cells"])
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, name
        leaks = solution_leaks(text, (ASSIGNMENT,))
        assert not leaks, f"{name} holds solution lines: {leaks[:3]}"
    cells = json.loads(texts[reference])
    assert cells and set(cells) <= set(assignment.spec.run_cells)
    fingerprints = texts[f"source/{ASSIGNMENT}/fingerprints.json"]
    assert not {line.strip() for line in source.splitlines() if len(line.strip()) >= 20} & set(fingerprints.split('"'))


def test_the_zips_course_cells_build_the_course_model(autograder_zip, tmp_path, monkeypatch):
    """Where the zip's source folder has course_cells.json and no notebook (as unpacked on Gradescope), the judge reads
    the same cells' code as from the source notebook here, and it defines the course's model."""
    from autograder.assignments import Assignment, load_assignment
    from autograder.course_cells import course_cells

    assignment = load_assignment(ASSIGNMENT)
    expected = course_cells(assignment)
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extract(f"source/{ASSIGNMENT}/course_cells.json", tmp_path)
    monkeypatch.setattr(Assignment, "source_dir", property(lambda self: tmp_path / "source" / self.name))
    assert course_cells(assignment) == expected and list(expected) == list(assignment.spec.run_cells)
    module = types.ModuleType("course_cells_check")  # a real module, as trusted.course_namespace makes: @dataclass
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for code in course_cells(assignment).values():
        exec(compile(code, "course_cells.json", "exec"), namespace)  # noqa: S102  (the course's own code)
    assert callable(namespace["ViT"]) and callable(namespace["ViTConfig"])


def test_scripts_are_shellcheck_clean(autograder_zip, tmp_path, shellcheck):
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extractall(tmp_path, members=["setup.sh", "run_autograder"])
    proc = subprocess.run([shellcheck, "--shell=bash", "setup.sh", "run_autograder"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_run_autograder_scores_as_local_grading(autograder_zip, local_row, tmp_path):
    """The sample uploaded as the files Gradescope unzips from a .zip, graded by run_autograder, scores as `grade`
    scored its .tar.gz, test by test."""
    archive, row = local_row
    root = gradescope_root(tmp_path, autograder_zip)
    with tarfile.open(archive) as tar:
        tar.extractall(root / "submission", filter="data")
    results = run_autograder(root)
    assert row["status"] == "ok" and 0 < row["score"] < row["max_score"]
    assert results["score"] == row["score"]
    judged = [t for t in results["tests"] if "score" in t]
    assert len(results["tests"]) == len(row["tests"])
    assert sum(t["max_score"] for t in judged) == row["max_score"]
    assert sum(t["score"] for t in judged) == row["score"]
    assert sorted((t["score"], t["status"]) for t in judged) == sorted(
        (t["earned"], "passed" if t["outcome"] == "passed" else "failed") for t in row["tests"].values()
        if t["outcome"] != "skipped")
    assert {t["visibility"] for t in results["tests"]} == {"after_published"}
    failed = [t for t in results["tests"] if t.get("status") == "failed"]
    assert failed and all(t["output"] for t in failed)  # each failure says why
    assert "def test_" not in json.dumps(results)  # no hidden test code reaches the student


@pytest.mark.parametrize("upload", ["archive", "files", "nested files", "nothing"])
def test_what_students_upload_becomes_one_submission(tmp_path, upload):
    """A lone .tar.gz is graded as it is (Gradescope unzips a .zip itself, never a .tar.gz); loose files, at the top
    or under <assignment>/, as a folder; an empty upload as an empty folder (a missing notebook)."""
    from autograder.pipeline.survey import survey
    from autograder.pipeline.unpack import unpack_submission
    from autograder.assignments import load_assignment
    from autograder.deploy.gradescope import STUDENT_ID, stage_submission

    uploaded = tmp_path / "submission"
    inner = uploaded / ASSIGNMENT if upload == "nested files" else uploaded
    inner.mkdir(parents=True)
    if upload == "archive":
        with tarfile.open(uploaded / "alice.tar.gz", "w:gz") as tar:
            (tmp_path / "vit.ipynb").write_text("{}")
            tar.add(tmp_path / "vit.ipynb", f"{ASSIGNMENT}/vit.ipynb")
    elif upload != "nothing":
        (inner / "vit.ipynb").write_text("{}")
        (inner / "notes.txt").write_text("not graded")
    stage_submission(uploaded, tmp_path / "staged")
    [sub] = survey(tmp_path / "staged").submissions
    assert sub.student_id == STUDENT_ID
    found = unpack_submission(sub, load_assignment(ASSIGNMENT), tmp_path / "work")
    assert found == ([] if upload == "nothing" else ["vit.ipynb"])


def test_a_grader_that_cannot_start_still_writes_results(autograder_zip, tmp_path):
    """No usable Python in the image (a broken setup.sh): run_autograder still writes a results.json that says so."""
    root = gradescope_root(tmp_path, autograder_zip)
    results = run_autograder(root, python="/bin/false")
    assert results["tests"] == [] and results["score"] == 0
    assert "could not run" in results["output"] and "not graded" in results["output"]


def test_a_grader_that_refuses_to_grade_writes_results_saying_so(autograder_zip, tmp_path):
    """The grader's own refusal (here: a grader file any user could write, which check_isolation refuses as root;
    without root, no bubblewrap) is a results.json naming the cause, as the grader's failure, not the student's."""
    from autograder.sandbox import bwrap_problem

    if os.geteuid() != 0 and not bwrap_problem():
        pytest.skip("as a user with bubblewrap the grader refuses neither; CI runs as root")
    root = gradescope_root(tmp_path, autograder_zip)
    writable = root / "source" / "autograder" / "options.py"
    writable.chmod(writable.stat().st_mode | stat.S_IWOTH)
    (root / "submission" / "alice.tar.gz").write_bytes(b"never unpacked")
    results = run_autograder(root)
    assert results["tests"] == [] and results["score"] == 0
    assert "status: grader-error" in results["output"] and "cannot grade safely" in results["output"]
    assert "not graded" in results["output"]


def test_a_bad_archive_gets_results_with_the_reason(tmp_path):
    """What `grade` records for an archive it cannot unpack becomes a results.json with that message."""
    from autograder.assignments import load_assignment
    from autograder.pipeline.survey import Submission
    from autograder.pipeline.unpack import BadSubmission, unpack_submission
    from autograder.pipeline.gradebook import build_gradebook
    from autograder.deploy.gradescope import to_results
    from autograder.pipeline.results import SubmissionResult

    assignment = load_assignment(ASSIGNMENT)
    archive = tmp_path / "alice.tar.gz"
    archive.write_bytes(b"not a tar archive")
    with pytest.raises(BadSubmission) as exc:
        unpack_submission(Submission("alice", archive), assignment, tmp_path / "work")
    result = SubmissionResult.without_results("bad-archive", str(exc.value))
    results = to_results(build_gradebook(assignment, [(Submission("alice", archive), result)]), "visible", 1.0)
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["score"] == 0 and results["tests"] == []
    assert "status: bad-archive" in results["output"] and "CollectSubmission.sh" in results["output"]


def test_a_test_not_judged_has_no_points_either_way():
    """A threshold the grader could not decide within its budget (a skipped test) is listed as not judged, with the
    reason and without score or max_score; a judged threshold's output says what was measured and how."""
    from autograder.assignments import load_assignment
    from autograder.pipeline.survey import Submission
    from autograder.pipeline.gradebook import build_gradebook
    from autograder.deploy.gradescope import to_results
    from autograder.pipeline.results import SubmissionResult, TestResult

    measured = "accuracy 88.10% on 1,000 of 10,000 test images (99.9% interval 84.9%–90.9%): reaches the bar 85%"
    undecided = "not judged on this grader: accuracy between 62.0% and 68.4% after 800 of 10,000 test images"
    result = SubmissionResult(status="ok", tests=[
        TestResult("TestAccuracy::test_fashion_mnist_accuracy", "FashionMNIST accuracy", "Accuracy", 5, 5, "passed", "",
                   notes={"vit_fashionmnist": measured}),
        TestResult("TestAccuracy::test_cifar10_accuracy", "CIFAR-10 accuracy", "Accuracy", 10, 0, "skipped", undecided,
                   notes={"vit_cifar10": undecided})])
    gradebook = build_gradebook(load_assignment(ASSIGNMENT), [(Submission("alice", None), result)])
    results = to_results(gradebook, "visible", 12.3)
    jsonschema.validate(results, RESULTS_SCHEMA)
    judged, skipped = results["tests"]
    assert (judged["score"], judged["max_score"], judged["status"]) == (5, 5, "passed")
    assert measured in judged["output"]
    assert "score" not in skipped and "max_score" not in skipped and "status" not in skipped
    assert "not judged" in skipped["name"] and "62.0% and 68.4%" in skipped["output"] and "10 points" in skipped["output"]
    assert results["score"] == 5 and "10 more points were not judged" in results["output"]


def test_run_autograder_picks_the_uid_backend_where_bubblewrap_cannot_run(autograder_zip, tmp_path):
    """In a container-like host (tests/container_like.py: bubblewrap cannot start, as where Docker's seccomp profile
    forbids user namespaces, and no cgroup can be made) the zip as built (--sandbox auto) grades with the uid backend: the hostile sample that
    snoops for the hidden tests, the solution, the grader, the judge's process and the network reaches none of them and
    keeps every layer test's points, and the instructor's log names the backend. The zip's own secrets are among what
    it snoops for (source/vit/samples.py: SNOOP): the solution's fingerprints, the course's reference cells and the
    zip's settings; and its worker's address space is capped (RLIMIT_AS, the zip's --memory-mb)."""
    from container_like import problem as wrapper_problem

    if os.geteuid() != 0:
        pytest.skip("the uid backend needs the grader to run as root")
    why = wrapper_problem()
    if why:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"cannot simulate a container here: {why}")
    import shutil
    import tempfile

    public = tempfile.mkdtemp(dir="/var/tmp", prefix="dlcourse-gradescope-")  # searchable by every user, as /autograder
    os.chmod(public, 0o755)
    try:
        check_uid_backend(autograder_zip, tmp_path, Path(public))
    finally:
        shutil.rmtree(public)


def check_uid_backend(autograder_zip, tmp_path, public) -> None:
    from autograder.samples import samples_for
    from container_like import container_like

    root = gradescope_root(public, autograder_zip)
    [archive] = build_samples(ASSIGNMENT, tmp_path / "samples", only=["hostile_snooping"])
    (root / "submission" / archive.name).write_bytes(archive.read_bytes())
    secrets = [root / "source" / "source" / ASSIGNMENT / name for name in ("fingerprints.json", "course_cells.json")]
    assert all(path.is_file() for path in [*secrets, root / "source" / "gradescope.json"])  # what the sample snoops for
    (tmp_path / "stash").mkdir()
    command, env = container_like(["bash", str(root / "source" / "run_autograder")], tmp_path / "stash", no_cgroups=True)
    env.update(GRADESCOPE_ROOT=str(root), GRADESCOPE_PYTHON=sys.executable)
    env.pop("DLCOURSE_DATA", None)  # run_autograder's own, in the zip's folder (the checkout's data/ is not the grader's)
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert "Sandbox: the uid backend" in proc.stdout and "(uid backend (uid " in proc.stdout, proc.stdout[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    [sample] = [s for s in samples_for(ASSIGNMENT) if s.name == "hostile_snooping"]
    failed = [t["name"] for t in results["tests"] if t.get("status") == "failed"]
    assert len(failed) == len(sample.expect_failed) and all("ccuracy" in name for name in failed), failed
    assert "status: ok" in results["output"]
    [row] = json.loads((root / "grading" / "out" / "gradebook.json").read_text())["submissions"]
    assert row["memory_cap"] == f"RLIMIT_AS {MEMORY_MB} MiB above torch's own reservation", row["memory_cap"]
    assert not (root / "source" / "source").stat().st_mode & 0o007  # the fingerprints and course cells: private
