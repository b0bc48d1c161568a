"""The bar a student reads is the bar the grader applies: a threshold test's docstring (its title in the feedback and
in Gradescope) may name its bar, and where it does, it must be the spec's (source/<a>/spec.py). The docstrings are
read from the hidden tests' source, not imported."""
from __future__ import annotations

import ast
import re

import pytest

from autograder.assignments import list_assignments, load_assignment


def docstrings(path) -> dict[str, str]:
    """"Class::method" -> the method's docstring, for every test method of the hidden test file."""
    tree = ast.parse(path.read_text())
    found = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            found[f"{cls.name}::{fn.name}"] = ast.get_docstring(fn) or ""
    return found


@pytest.mark.parametrize("name", list_assignments())
def test_a_threshold_title_names_the_specs_bar(name):
    assignment = load_assignment(name)
    titles = docstrings(assignment.hidden_tests)
    for key, threshold in assignment.spec.thresholds.items():
        title = titles[threshold.test]
        percents = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)\s*%", title)]
        at_most = [float(x) for x in re.findall(r"at most (\d+(?:\.\d+)?)", title)]
        if threshold.ceiling:
            assert all(x == threshold.value for x in at_most) and not percents, (name, key, title)
        elif threshold.value <= 1:  # an accuracy: written as a percentage
            assert all(abs(x - 100 * threshold.value) < 1e-9 for x in percents), (name, key, title)
        else:  # a score such as BLEU: never a percentage
            assert not percents, (name, key, title)
