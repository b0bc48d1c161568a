"""A student on Colab, simulated without Colab: from the published bundle to a graded archive.

What is real: the published bundle (served from a file:// URL instead of a web server), a fresh venv in which
dlcourse is not installed until the notebook's first cell pip-installs the bundle's wheel (with its dependencies
resolved, offline, against the venv's own torch: Colab's is kept), a Jupyter kernel running in that venv, a
`/content`-like working folder, the notebook opened from another folder (its "Drive" folder), the training cells in
quick mode, the submit cell, and `python -m autograder grade` on the archive it wrote.
What is faked, at the boundary only: the `google.colab` module (`drive.mount` links the fake Drive in, as Colab mounts
it; `files.download` records what it was asked to download).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.assignments import PROJECT_ROOT, load_assignment
from autograder.deploy.colab import SETUP_CELL, STUDENT_ID_CELL, SUBMIT_CELL
from autograder.notebook import grade_id
from autograder.deploy.publish import publish
from autograder.samples import reference_notebook
from bundle_env import clean_env, fresh_venv

ASSIGNMENT = "vit"
STUDENT = "s1234567"
# The GPU part (CIFAR-10: loading 60 000 images, training) is out of a CPU test's budget: those cells are not run, and
# the untrained CIFAR-10 model is saved in place of the trained one (its threshold fails at grading, as expected).
NOT_RUN = {"cifar_data": None, "cifar_train": 'save_model(ViT(cifar_config), cifar_config, "vit_cifar10")'}

FAKE_DRIVE = '''\
import os


def mount(mountpoint, **kwargs):
    """Colab asks the student for consent, then mounts Drive at mountpoint/MyDrive."""
    if os.environ.get("FAKE_DRIVE_DECLINED"):
        raise ValueError("mount failed")  # what Colab raises when the student says no
    os.symlink(os.environ["FAKE_DRIVE_ROOT"], mountpoint)
'''
FAKE_FILES = '''\
def download(path):
    print("FAKE-COLAB-DOWNLOAD", path)
'''


def fake_colab(where: Path) -> Path:
    """A `google.colab` package (a namespace portion beside protobuf's `google`) with `drive` and `files`."""
    package = where / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "drive.py").write_text(FAKE_DRIVE)
    (package / "files.py").write_text(FAKE_FILES)
    return where


def student_notebook(released: Path) -> nbformat.NotebookNode:
    """The bundle's release notebook with every answer cell filled in (the reference's answers) and the student id
    written: what a student has before running it all."""
    answers = {grade_id(c): c["source"] for c in reference_notebook(load_assignment(ASSIGNMENT))["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("solution") and c["cell_type"] == "code"}
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
        elif cell.get("id") == STUDENT_ID_CELL:
            cell.source = f'STUDENT_ID = "{STUDENT}"\n'
    return nb


def kernel_spec(jupyter_dir: Path, python: Path, env: dict[str, str]) -> str:
    """A kernelspec running ipykernel in the fresh venv, with the Colab-like environment."""
    spec = jupyter_dir / "kernels" / "colab-sim"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab (simulated)", "language": "python", "env": env}))
    return "colab-sim"


PROBE = "import os, dlcourse, torch; print(os.getcwd()); print(dlcourse.__file__); print(torch.__file__)"


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def run_code(client: NotebookClient, source: str) -> str:
    """Run a cell that is not in the notebook (the test's own probe); return what it printed."""
    cell = nbformat.v4.new_code_cell(source)
    client.execute_cell(cell, 0)
    return text_of(cell)


def test_a_student_on_colab_goes_from_the_bundle_to_a_graded_archive(tmp_path, monkeypatch, local_datasets):
    bundle = tmp_path / "bundle"
    publish(bundle, (bundle / "dist").as_uri())
    python = fresh_venv(tmp_path / "venv")
    content = tmp_path / "content"  # Colab's /content: where the kernel starts, lost when the runtime ends
    content.mkdir()
    drive_root = tmp_path / "google-drive"
    folder = drive_root / "MyDrive" / "Deep learning" / ASSIGNMENT  # the student's own layout in Drive
    folder.mkdir(parents=True)
    notebook_path = folder / f"{ASSIGNMENT}.ipynb"
    nb = student_notebook(bundle / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    nbformat.write(nb, notebook_path)

    kernel_env = clean_env(PYTHONPATH=str(fake_colab(tmp_path / "fake-colab")), DLCOURSE_COLAB_HOME=str(content),
                           FAKE_DRIVE_ROOT=str(drive_root), PIP_NO_INDEX="1", DLCOURSE_QUICK="1", MPLBACKEND="Agg",
                           OMP_NUM_THREADS="1")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    client = NotebookClient(nb, timeout=300, kernel_name=kernel_spec(tmp_path / "jupyter", python, kernel_env),
                            resources={"metadata": {"path": str(content)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if grade_id(cell) in NOT_RUN:
                if NOT_RUN[grade_id(cell)]:
                    run_code(client, NOT_RUN[grade_id(cell)])
                continue
            if grade_id(cell) == SUBMIT_CELL:
                nbformat.write(nb, notebook_path)  # File > Save, before the submit cell (its own output is not packed)
            client.execute_cell(cell, index)
            if grade_id(cell) == SETUP_CELL:
                setup, setup_output = cell, text_of(cell)
                cwd, dlcourse_file, torch_file = run_code(client, PROBE).splitlines()
        # The student runs the setup cell again and this time declines Drive: the package is not reinstalled, and
        # the notebook works in /content, saying that its files are lost with the runtime.
        run_code(client, 'import os; os.environ["FAKE_DRIVE_DECLINED"] = "1"')
        declined = run_code(client, setup.source)
        cwd_declined = run_code(client, PROBE).splitlines()[0]

    assert "Installing the course package" in setup_output, setup_output
    assert Path(cwd).resolve() == folder.resolve(), cwd  # the notebook's Drive folder (mounted at content/drive)
    assert Path(dlcourse_file).is_relative_to(tmp_path / "venv"), "dlcourse did not come from the bundle's wheel"
    assert not Path(torch_file).resolve().is_relative_to(tmp_path / "venv"), "pip replaced the runtime's own torch"
    assert "Installing" not in declined and "Google Drive is not mounted (mount failed)" in declined, declined
    assert Path(cwd_declined) == content.resolve(), cwd_declined
    for saved in load_assignment(ASSIGNMENT).files[1:]:
        assert (folder / saved).is_file(), f"{saved} was not saved next to the notebook in Drive"
    submit_output = text_of(nb.cells[-1])
    archive = folder / f"{STUDENT}.tar.gz"
    assert archive.is_file(), submit_output
    assert f"FAKE-COLAB-DOWNLOAD {archive.resolve()}" in submit_output, submit_output
    assert "YOUR ANSWER HERE" in submit_output  # the written answers were left empty: packed, with a warning
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted(f"{ASSIGNMENT}/{f}" for f in
                                                [*load_assignment(ASSIGNMENT).files, "manifest.json"])

    submissions = tmp_path / "submissions"
    submissions.mkdir()
    (submissions / archive.name).write_bytes(archive.read_bytes())
    graded = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submissions), "--assignment", ASSIGNMENT,
                             "--out", str(tmp_path / "grades"), "--workers", "1", "--threshold-budget", "0",
                             "--no-preflight"],  # the code's tests only; the preflight is test_preflight.py's
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert graded.returncode == 0, graded.stderr[-2000:]
    row = json.loads((tmp_path / "grades" / "gradebook.json").read_text())["submissions"][0]
    assert row["student_id"] == STUDENT and row["status"] == "ok", row
    layer_tests = {tid: t for tid, t in row["tests"].items() if not tid.startswith("TestAccuracy")}
    assert layer_tests and all(t["outcome"] == "passed" for t in layer_tests.values()), layer_tests
