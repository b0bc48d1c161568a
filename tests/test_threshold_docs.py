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


def built_titles(path) -> dict[str, str]:
    """"Class::key" -> the title, for every SavedClassifier of a class the hidden test file builds with
    `TestClass = accuracy_tests(THRESHOLDS, {"key": SavedClassifier(..., title)})`: accuracy_tests gives the test of
    THRESHOLDS[key] that title through bar_title(THRESHOLDS[key])."""
    titles = {}
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "accuracy_tests"):
            (target,), classifiers = node.targets, node.value.args[1]
            for key, classifier in zip(classifiers.keys, classifiers.values, strict=True):
                title = next((kw.value for kw in classifier.keywords if kw.arg == "title"), None) or classifier.args[5]
                titles[f"{target.id}::{ast.literal_eval(key)}"] = ast.literal_eval(title)
    return titles


@pytest.mark.parametrize("name", list_assignments())
def test_a_threshold_title_names_the_specs_bar(name):
    assignment = load_assignment(name)
    tests, built = threshold_tests(assignment.hidden_tests), built_titles(assignment.hidden_tests)
    for key, threshold in assignment.spec.thresholds.items():
        if threshold.test in tests:
            fn = tests[threshold.test]
            title = ast.get_docstring(fn) or ""
            assert bar_title_key(fn) == key, (name, key, title)
        else:
            title = built[f"{threshold.test.split('::')[0]}::{key}"]
        assert "{bar}" in title, (name, key, title)
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


def test_the_spec_check_reads_which_thresholds_a_built_class_holds(tmp_path):
    """load_assignment checks that each threshold's test exists without importing the hidden tests: a class built by
    accuracy_tests holds the tests of the keys its call names."""
    from autograder.assignments import _built_threshold_tests

    path = tmp_path / "test_x.py"
    path.write_text('raise SystemExit("imported")\n'
                    'TestAccuracy = accuracy_tests(THRESHOLDS, {"a": SavedClassifier("s", "M", "C", "d", 1, "t {bar}"),\n'
                    '                                           "b": SavedClassifier("s", "M", "C", "d", 1, "t {bar}")})\n'
                    'TestOther = something_else(THRESHOLDS, {"c": 1})\n')
    assert _built_threshold_tests(path) == {"TestAccuracy": {"a", "b"}}
