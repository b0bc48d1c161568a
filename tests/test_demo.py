"""`make demo` (python -m autograder demo): which samples it grades, and one assignment's demo run for real in a copy
of the project, on a machine where bubblewrap cannot run, as a newcomer's laptop may be."""
import json
import os
import subprocess
import sys

import pytest

from autograder.assignments import list_assignments, load_assignment
from autograder.deploy.demo import INSTALL_BUBBLEWRAP, WEAK, demo_samples
from autograder.notebook import cell_source, grade_id
from autograder.samples import edited_notebook, reference_notebook, samples_for


@pytest.mark.parametrize("name", list_assignments())
def test_the_demo_grades_a_representative_few_samples(name):
    every = [s.name for s in samples_for(name)]
    chosen = demo_samples(name)
    assert chosen[:2] == ["reference", "untouched_release"]
    assert len([n for n in chosen if n.startswith("bug_")]) == 1
    assert len([n for n in chosen if n.startswith("hostile_")]) == (1 if any(n.startswith("hostile_") for n in every) else 0)
    assert set(chosen) <= set(every) and len(chosen) == len(set(chosen))
    assert demo_samples(name, all_samples=True) == every


@pytest.mark.parametrize("name", list_assignments())
def test_demo_recipes_edit_only_training_cells_and_say_what_they_change(name):
    """A spec's demo_edits still apply to its notebook (edited_notebook raises naming the spec otherwise), change only
    cells the reference trains with, and come with the note the banner prints."""
    assignment = load_assignment(name)
    spec = assignment.spec
    assert all(gid in spec.training_cells for gid, _, _ in spec.demo_edits)
    assert bool(spec.demo_edits) == bool(spec.demo_note)
    before = {grade_id(c): cell_source(c) for c in reference_notebook(assignment)["cells"]}
    after = {grade_id(c): cell_source(c) for c in edited_notebook(assignment, spec.demo_edits)["cells"]}
    assert {gid for gid in before if before[gid] != after[gid]} == {gid for gid, _, _ in spec.demo_edits}
    reference = next(s for s in samples_for(name) if s.name == "reference")
    if reference.trained and spec.training_cells:  # the demo trains it here: its banner needs the cost
        assert spec.demo_train_s > 0, "measure the demo's training (CPU seconds, one thread) for demo_train_s"


def test_demo_of_one_assignment_without_bubblewrap_says_weak_isolation_everywhere(project, tmp_path):
    """PATH holds only the virtualenv's bin, so `bwrap` is not found: the demo names the install command, goes on with
    weak isolation and says so in its banner and in the gradebook's header; every stage prints its progress. The ViT:
    its demo trains the notebook's own recipe, the reference weights test_samples trains too (one cache, trained once)."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    proc = subprocess.run([sys.executable, "-m", "autograder", "demo", "vit", "--out", str(tmp_path / "grades")],
                          cwd=project, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert INSTALL_BUBBLEWRAP in out
    banner = out[out.index("make demo:"):out.index("Building the 1 release(s)")]
    assert WEAK in banner and "About" in banner and "min on an idle 2-core machine" in banner
    assert f"Gradebook of 'vit' — {WEAK}:" in out
    assert "[0:" in out and "Grading 1/1 vit: 4 samples" in out
    assert out.rstrip().splitlines()[-1].endswith(f"-m autograder hand-grade {tmp_path / 'grades' / 'vit'}")
    written = {sid: json.loads((tmp_path / "grades" / "vit" / "results" / f"{sid}.json").read_text())["result"]["written"]
               for sid in ("reference", "untouched_release")}  # what the hand-grading page shows
    assert set(written["reference"]) == {"analysis", "paper_review"} and written["untouched_release"]["analysis"] == "YOUR ANSWER HERE"
    assert "test acc." in written["reference"]["analysis"]
    rows = json.loads((tmp_path / "grades" / "vit" / "gradebook.json").read_text())["submissions"]
    assert sorted(r["student_id"] for r in rows) == sorted(demo_samples("vit"))
    assert {r["isolation"] for r in rows} == {"weak: no bubblewrap, the audit hook only"}
    reference = next(r for r in rows if r["student_id"] == "reference")
    assert reference["tests"]["TestAccuracy::test_fashion_mnist_accuracy"]["outcome"] == "passed"
