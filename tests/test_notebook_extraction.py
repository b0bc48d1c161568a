"""Tests for autograder/notebook.py: which code the grader runs, and the static forbidden-API check.

Uses the real release notebook (release/vit/vit.ipynb) and student copies of it made here in memory.
"""
from __future__ import annotations

import ast

import copy
import json
from pathlib import Path

import pytest

from autograder.assignments import load_assignment
from autograder.notebook import (NotebookError, cell_source, extract_graded_code, find_forbidden, grade_id, resolve_string,
                                 read_notebook, strip_magics)

REPO = Path(__file__).resolve().parents[1]
RELEASE_NB = REPO / "release" / "vit" / "vit.ipynb"
SOURCE_NB = REPO / "source" / "vit" / "vit.ipynb"
VIT = load_assignment("vit").spec  # source/vit/spec.py
RUN_CELLS = list(VIT.run_cells)
FORBIDDEN_NAMES = list(VIT.forbidden_names)
FORBIDDEN_MODULES = list(VIT.forbidden_modules)


@pytest.fixture(scope="module")
def release() -> dict:
    return read_notebook(RELEASE_NB)


@pytest.fixture
def student(release) -> dict:
    return copy.deepcopy(release)


def cell(nb: dict, gid: str) -> dict:
    return next(c for c in nb["cells"] if grade_id(c) == gid)


def set_source(nb: dict, gid: str, source: str) -> None:
    cell(nb, gid)["source"] = source.splitlines(keepends=True)


def by_id(code) -> dict[str, str]:
    return {c["grade_id"]: c["source"] for c in code.cells}


def forbidden(source: str) -> list[str]:
    return find_forbidden(source, FORBIDDEN_NAMES, FORBIDDEN_MODULES)


# -- the release notebook is what these tests assume ---------------------------------------------------
def test_release_notebook_metadata(release):
    meta = {grade_id(c): c["metadata"]["nbgrader"] for c in release["cells"] if grade_id(c)}
    assert meta["setup"]["locked"] and not meta["setup"]["solution"]
    assert meta["vit_config"]["locked"] and not meta["vit_config"]["solution"]
    for gid in ("patchify", "attention", "mlp", "block", "vit"):
        assert meta[gid]["solution"] and not meta[gid]["locked"], gid


# -- extract_graded_code ---------------------------------------------------------------------------------
def test_unchanged_copy_gives_release_code(release, student):
    code = extract_graded_code(release, student, RUN_CELLS)
    assert [c["grade_id"] for c in code.cells] == RUN_CELLS
    assert code.answer_ids == ["patchify", "attention", "mlp", "block", "vit"]
    assert code.problems == []
    for gid, source in by_id(code).items():
        assert source == strip_magics(cell_source(cell(release, gid)))


def test_edited_locked_cell_comes_from_the_release(release, student):
    set_source(student, "setup", "import os\nos.system('curl evil')\n")
    set_source(student, "vit_config", "ViTConfig = None\n")
    code = extract_graded_code(release, student, RUN_CELLS)
    sources = by_id(code)
    assert sources["setup"] == strip_magics(cell_source(cell(release, "setup")))
    assert "curl" not in sources["setup"] and "import torch" in sources["setup"]
    assert sources["vit_config"] == strip_magics(cell_source(cell(release, "vit_config")))


def test_locked_cell_relabelled_as_answer_still_comes_from_the_release(release, student):
    setup = cell(student, "setup")
    setup["metadata"]["nbgrader"].update(solution=True, locked=False)
    setup["source"] = ["STUDENT_EDIT = 1\n"]
    code = extract_graded_code(release, student, RUN_CELLS)
    assert "STUDENT_EDIT" not in by_id(code)["setup"]
    assert "setup" not in code.answer_ids


def test_answer_cells_come_from_the_student(release, student):
    set_source(student, "patchify", "class Patchify(nn.Module):\n    STUDENT_PATCHIFY = True\n")
    set_source(student, "vit", "class ViT(nn.Module):\n    STUDENT_VIT = True\n")
    code = extract_graded_code(release, student, RUN_CELLS)
    sources = by_id(code)
    assert "STUDENT_PATCHIFY" in sources["patchify"]
    assert "STUDENT_VIT" in sources["vit"]
    assert sources["attention"] == strip_magics(cell_source(cell(release, "attention")))  # untouched: the template
    assert code.problems == []


def test_answer_cells_follow_the_grade_id_not_the_position(release, student):
    set_source(student, "block", "class Block(nn.Module):\n    STUDENT_BLOCK = True\n")
    moved = cell(student, "block")
    student["cells"].remove(moved)
    student["cells"].append(moved)  # moved to the end of the notebook
    code = extract_graded_code(release, student, RUN_CELLS)
    assert [c["grade_id"] for c in code.cells] == RUN_CELLS  # still run in release order
    assert "STUDENT_BLOCK" in by_id(code)["block"]


def test_deleted_answer_cell_gives_the_template_and_a_problem(release, student):
    student["cells"] = [c for c in student["cells"] if grade_id(c) != "attention"]
    code = extract_graded_code(release, student, RUN_CELLS)
    assert by_id(code)["attention"] == strip_magics(cell_source(cell(release, "attention")))
    assert "NotImplementedError" in by_id(code)["attention"]
    assert len(code.problems) == 1 and "'attention'" in code.problems[0]


def test_answer_cell_with_broken_metadata_counts_as_missing(release, student):
    set_source(student, "mlp", "class MLP(nn.Module):\n    STUDENT_MLP = True\n")
    del cell(student, "mlp")["metadata"]["nbgrader"]
    code = extract_graded_code(release, student, RUN_CELLS)
    assert "STUDENT_MLP" not in by_id(code)["mlp"]
    assert any("'mlp'" in p for p in code.problems)


def test_answer_cell_turned_into_markdown_counts_as_missing(release, student):
    cell(student, "mlp")["cell_type"] = "markdown"
    code = extract_graded_code(release, student, RUN_CELLS)
    assert any("'mlp'" in p for p in code.problems)


def test_unknown_run_id_is_a_grader_error(release, student):
    with pytest.raises(KeyError):
        extract_graded_code(release, student, ["setup", "no_such_cell"])


def test_magics_are_commented_out(release, student):
    set_source(student, "patchify", "%matplotlib inline\n!pip install x\nclass Patchify(nn.Module):\n"
                                    "    def f(self, a, b):\n        %timeit a\n"
                                    "        return (a\n                % b) if (a\n                != b) else 0\n")
    source = by_id(extract_graded_code(release, student, RUN_CELLS))["patchify"]
    lines = source.splitlines()
    assert lines[0] == "# (removed by the grader) %matplotlib inline"
    assert lines[1] == "# (removed by the grader) !pip install x"
    assert lines[4] == "        # (removed by the grader) %timeit a"  # indentation kept
    compile(source, "<patchify>", "exec")  # and the rest is valid Python: `% b` and `!= b` left alone
    assert "% b)" in source and "!= b)" in source and source.count("removed by the grader") == 3


# -- read_notebook ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"this is not json", b"\x80\x81\xfe not utf-8", b'{"nbformat": 4}',
                                     b'["a", "list"]', b'{"cells": "not a list"}', b""])
def test_read_notebook_rejects_non_notebooks(tmp_path, content):
    path = tmp_path / "vit.ipynb"
    path.write_bytes(content)
    with pytest.raises(NotebookError, match="vit.ipynb"):
        read_notebook(path)


def test_read_notebook_missing_file(tmp_path):
    with pytest.raises(NotebookError):
        read_notebook(tmp_path / "vit.ipynb")


def test_read_notebook_accepts_minimal_notebook(tmp_path):
    path = tmp_path / "vit.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert read_notebook(path)["cells"] == []


# -- find_forbidden -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source, expected", [
    ("self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)", "MultiheadAttention"),
    ("from torch.nn import MultiheadAttention as MHA", "torch.nn.MultiheadAttention"),
    ("y = F.scaled_dot_product_attention(q, k, v)", "scaled_dot_product_attention"),
    ("y = torch.nn.functional.scaled_dot_product_attention(q, k, v)", "scaled_dot_product_attention"),
    ("from torch.nn.functional import scaled_dot_product_attention as s", "torch.nn.functional.scaled_dot_product_attention"),
    ('fn = getattr(F, "scaled_dot_product_attention")', "scaled_dot_product_attention"),
    ("layer = nn.TransformerEncoderLayer(8, 2)", "TransformerEncoderLayer"),
    ("import torchvision.models", "import torchvision.models"),
    ("import torchvision.models as tvm", "import torchvision.models"),
    ("import torchvision.models.vision_transformer", "import torchvision.models.vision_transformer"),
    ("from torchvision import models", "torchvision.models"),
    ("from torchvision.models import vit_b_16", "from torchvision.models import ..."),
    ("import torchvision\nm = torchvision.models.vit_b_16()", "torchvision.models.vit_b_16"),
    ("import timm", "import timm"),
    ("from timm.layers import Attention", "from timm.layers import ..."),
    ("def forward(self, x):\n    import transformers\n    return x", "import transformers"),
])
def test_find_forbidden_flags(source, expected):
    assert expected in forbidden(source)


@pytest.mark.parametrize("source", [
    "# do not use nn.MultiheadAttention or F.scaled_dot_product_attention here\nx = 1",
    '"""We cannot import torchvision.models, timm or call F.scaled_dot_product_attention."""',
    'def forward(self, x):\n    """Like nn.MultiheadAttention, but written by hand."""\n    return x',
    'msg = "scaled_dot_product_attention is forbidden"',
    "import torchvision\nimport torchvision.transforms as T\nfrom torchvision import transforms",
    "import torch.nn.functional as F\ny = F.softmax(x, dim=-1) @ v",
    "timm_like = 1\nmodels = []\nself.models = models",
])
def test_find_forbidden_ignores_mentions_and_allowed_code(source):
    assert forbidden(source) == []


@pytest.mark.parametrize("source, expected", [
    ('fn = getattr(F, "scaled_dot_" + "product_attention")', "scaled_dot_product_attention"),
    ('fn = getattr(F, f"scaled_dot_{\'product\'}_attention")', "scaled_dot_product_attention"),
    ('fn = getattr(F, "_".join(["scaled", "dot", "product", "attention"]))', "scaled_dot_product_attention"),
    ('fn = getattr(nn, "multihead" + "attention".title())', None),  # not resolvable here: the run-time check decides
    ('m = importlib.import_module("torch.nn." + "functional").scaled_dot_product_attention', "scaled_dot_product_attention"),
    ('m = importlib.import_module("torchvision" + ".models")', "torchvision.models"),
    ("f = F.scaled_dot_product_attention.__wrapped__", "__wrapped__"),
    ('f = getattr(g, "__wrap" + "ped__")', "__wrapped__"),
    ("y = torch.ops.aten.bmm(a, b)", "torch.ops"),
    ("y = torch._C._nn.linear(a, b)", "torch._C"),
    ("from torch.utils._python_dispatch import _pop_mode", "_pop_mode"),
    ("torch.utils._python_dispatch._disable_current_modes()", "_disable_current_modes"),
    ('sys.modules["tripwires"]', "tripwires"),
])
def test_find_forbidden_resolves_built_strings_and_reports_tampering(source, expected):
    found = forbidden(source)
    assert expected in found if expected else found == [], found


@pytest.mark.parametrize("source, value", [
    ('"a" + "b" + "c"', "abc"), ('f"x{\'y\'}z"', "xyz"), ('"-".join(("a", "b"))', "a-b"), ('"AB".lower()', "ab"),
    ('getattr(torch.nn, "LS" + "TM")', "torch.nn.LSTM"), ('"a" + name', None), ("f\"{x}\"", None), ("3", None),
])
def test_resolve_string(source, value):
    assert resolve_string(ast.parse(source, mode="eval").body) == value


def test_find_forbidden_reports_unparsable_code():
    (found,) = forbidden("def broken(:\n")
    assert "SyntaxError" in found


def test_instructor_solutions_and_release_templates_are_clean(release):
    """The check must not flag the reference solutions (or the empty templates) themselves."""
    for nb in (release, read_notebook(SOURCE_NB)):
        for c in nb["cells"]:
            if c["cell_type"] == "code" and grade_id(c) in RUN_CELLS:
                assert forbidden(strip_magics(cell_source(c))) == [], grade_id(c)
