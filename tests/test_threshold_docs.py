"""The bar a student reads is the bar the grader applies: a threshold test's docstring (its title in the feedback and
in Gradescope) names its bar only as `{bar}`, which `@bar_title(THRESHOLDS[key])` (autograder/kit/families.py) fills in
from the spec (source/<a>/spec.py), so the two cannot drift. The docstrings are read from the hidden tests' source,
not imported."""
from __future__ import annotations

import ast
import re

import pytest

from autograder.assignments import list_assignments, load_assignment
from autograder.kit.families import bar_text
from autograder.fingerprints import FAMILIES
from autograder.spec import Threshold


def threshold_tests(path) -> dict[str, ast.FunctionDef]:
    """"Class::method" -> the method, for every test method of the hidden test file."""
    tree = ast.parse(path.read_text())
    return {f"{cls.name}::{fn.name}": fn for cls in tree.body if isinstance(cls, ast.ClassDef)
            for fn in cls.body if isinstance(fn, ast.FunctionDef)}


def bar_title_key(fn: ast.FunctionDef) -> str | None:
    """The spec's key in the method's @bar_title(THRESHOLDS["key"]), if it has one."""
    for decorator in fn.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "bar_title":
            (argument,) = decorator.args
            if isinstance(argument, ast.Subscript) and getattr(argument.value, "id", None) == "THRESHOLDS":
                return ast.literal_eval(argument.slice)
    return None


@pytest.mark.parametrize("name", list_assignments())
def test_a_threshold_title_names_the_specs_bar(name):
    assignment = load_assignment(name)
    tests = threshold_tests(assignment.hidden_tests)
    for key, threshold in assignment.spec.thresholds.items():
        fn = tests[threshold.test]
        title = ast.get_docstring(fn) or ""
        assert "{bar}" in title and bar_title_key(fn) == key, (name, key, title)
        assert not re.findall(r"\d+(?:\.\d+)?\s*%|at (?:most|least) \d", title), f"{name} {key}: a bar written by hand"


def test_the_bar_reads_as_a_percentage_only_for_an_accuracy():
    assert bar_text(Threshold(test="T::t", reference_eval_s=1.0, value=0.85)) == "85%"
    assert bar_text(Threshold(test="T::t", reference_eval_s=1.0, value=7.5, ceiling=True)) == "7.5"
    assert bar_text(Threshold(test="T::t", reference_eval_s=1.0, value=0.05, ceiling=True)) == "0.05"
    assert bar_text(Threshold(test="T::t", reference_eval_s=1.0, value=30.0)) == "30"


HIDDEN_TEST_KIT = sorted({load_assignment(a).hidden_tests for a in list_assignments()}) + [FAMILIES]


@pytest.mark.parametrize("path", HIDDEN_TEST_KIT, ids=lambda p: p.name)
def test_substitutes_and_stand_ins_are_written_only_through_the_request_helpers(path):
    """A hidden test names a stand-in with stand_in() and puts it in place with module(..., substitutes=), never in the
    request's wire format by hand (autograder/kit/requests.py is the one place that knows it)."""
    tree = ast.parse(path.read_text())
    wire_keys = [n.value for n in ast.walk(tree) if isinstance(n, ast.Dict)
                 for n in n.keys if isinstance(n, ast.Constant) and isinstance(n.value, str)
                 and (n.value.startswith("$") or n.value in ("kind", "substitutes", "kwargs"))
                 and n.value != "$module"]  # "$module" is how a reply names a returned module (CallResult.value)
    assigned = [n.slice.value for n in ast.walk(tree) if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store)
                and isinstance(n.slice, ast.Constant) and n.slice.value in ("substitutes", "weights", "kwargs")]
    assert not wire_keys and not assigned, (path.name, wire_keys, assigned)
