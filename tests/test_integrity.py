"""The integrity report (autograder/pipeline/integrity.py): what the scan of the answer cells flags, that correct code of
every assignment is never flagged, and that copydetect ranks a copied pair above independent work."""
from __future__ import annotations

import pytest

from autograder.assignments import list_assignments, load_assignment
from autograder.pipeline.integrity import integrity_report, scan_answer_cells, similar_pairs
from autograder.notebook import extract_graded_code, read_notebook
from autograder.samples import sample_notebook, samples_for

HOSTILE = {
    "grader": "from autograder.sandbox import tripwires\ntripwires._check = lambda *a: None\n",
    "modes": "from torch.utils._python_dispatch import _pop_mode_temporarily\n",
    "frames": "import sys\ncaller = sys._getframe(1).f_globals\n",
    "gc": "import gc\nlayers = [o for o in gc.get_objects() if type(o).__name__ == 'ReferenceAttention']\n",
    "reversed": "attend = getattr(F, 'noitnetta_tcudorp_tod_delacs'[::-1])\n",
    "patch": "import torch.nn as nn\nnn.Module.__call__ = lambda self, *a, **k: self.forward(*a, **k)\n",
    "setattr": "setattr(nn.Module, '__getattribute__', object.__getattribute__)\n",
    "data": "ANSWERS = [" + ", ".join(str(i % 10) for i in range(1500)) + "]\n",
    "ctypes": "import ctypes\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_code_that_reaches_for_the_grader_is_flagged(case):
    flags = scan_answer_cells({"answer": HOSTILE[case]})
    assert flags and all(f.startswith("answer: ") for f in flags), (case, flags)


def test_what_each_flag_says():
    assert scan_answer_cells({"a": HOSTILE["reversed"]}) == ["a: getattr() with a name built at run time"]
    assert "a: replaces nn.Module.__call__ (patches how modules are called or looked up)" in \
        scan_answer_cells({"a": HOSTILE["patch"]})
    assert scan_answer_cells({"a": HOSTILE["data"]})[0].startswith("a: a literal of 4,")
    assert scan_answer_cells({"a": "x = (", "b": "import gc"}) == ["b: imports gc (grader internals)"]  # unparsable: skipped


def answer_cells(assignment, notebook: dict) -> dict[str, str]:
    release = read_notebook(assignment.release_dir / assignment.notebook)
    code = extract_graded_code(release, notebook, list(assignment.spec.run_cells))
    return {c["grade_id"]: c["source"] for c in code.cells if c["grade_id"] in code.answer_ids}


@pytest.mark.parametrize("name", list_assignments())
def test_correct_code_is_never_flagged(name):
    """The reference solution and the sample of correct code written differently: nothing to look at."""
    assignment = load_assignment(name)
    for sample in samples_for(name):
        if sample.name in ("reference", "alternative_correct"):
            assert scan_answer_cells(answer_cells(assignment, sample_notebook(assignment, sample))) == [], sample.name


def test_a_copied_submission_is_the_most_similar_pair():
    """ada's solution, bob's copy of it with a variable renamed, and cy's own code (the definitions source/vit/samples.py
    writes unlike the reference): the copy is the top pair, far above either against cy."""
    import importlib.util

    assignment = load_assignment("vit")
    samples = {s.name: s for s in samples_for("vit")}
    reference = "\n\n".join(answer_cells(assignment, sample_notebook(assignment, samples["reference"])).values())
    renamed = reference.replace("attn", "attention_weights")
    spec = importlib.util.spec_from_file_location("vit_samples_for_integrity", assignment.samples_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    own = "\n\n".join([module.ALTERNATIVE_ATTENTION, module.ALTERNATIVE_MLP, module.ALTERNATIVE_VIT])
    release = read_notebook(assignment.release_dir / assignment.notebook)
    template = extract_graded_code(release, release, list(assignment.spec.run_cells))
    boilerplate = "\n\n".join(c["source"] for c in template.cells if c["grade_id"] in template.answer_ids)
    pairs = similar_pairs({"ada": reference, "bob": renamed, "cy": own}, boilerplate)
    assert {pairs[0][1], pairs[0][2]} == {"ada", "bob"} and pairs[0][0] > 0.8, pairs
    assert pairs[0][0] > pairs[1][0] + 0.2, pairs
    report = integrity_report("vit", {"ada": [], "bob": ["solution: imports gc (grader internals)"]}, pairs)
    assert "- **bob** (1)" in report and "| ada | bob |" in report.split("## Most similar")[1]
