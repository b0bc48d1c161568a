"""The public checks students run in the notebooks pass on the solution and catch the bugs each part is known for
(order, axis, scale, masking): each planted bug (PUBLIC_CHECK_BUGS in source/<a>/samples.py) is one small edit of
the solution, of the kind students make, and the check of its part must fail on it. The checks compare with torch built-ins or small cases worked
out by hand in the notebook, never with the hidden tests' references."""
from __future__ import annotations

import pytest

from autograder.assignments import list_assignments
from public_checks import check_cells, declared, run_public_checks


def declared_bugs() -> list:
    """The planted bugs an assignment declares beside its notebook: PUBLIC_CHECK_BUGS in source/<a>/samples.py, a list of
    (check, bug, edit), so that a new assignment needs no line here."""
    return [(name, check, bug, edit) for name in list_assignments()
            for check, bug, edit in declared(name, "PUBLIC_CHECK_BUGS", [])]


PLANTED_BUGS = declared_bugs()


@pytest.mark.parametrize("name", list_assignments())
def test_public_checks_pass_on_the_solution(name):
    results = run_public_checks(name)
    assert list(results) == check_cells(name)
    assert not any(results.values()), {check: failed for check, failed in results.items() if failed}


@pytest.mark.parametrize("name, check, bug, edit", PLANTED_BUGS, ids=[f"{a}-{c}-{b}" for a, c, b, _ in PLANTED_BUGS])
def test_public_check_catches_a_planted_bug(name, check, bug, edit):
    results = run_public_checks(name, edit, until=check)
    assert results[check], f"{check} passes with a planted bug: {bug}"


def test_every_public_check_has_a_planted_bug():
    covered = {(name, check) for name, check, _, _ in PLANTED_BUGS}
    missing = [(name, check) for name in list_assignments() for check in check_cells(name) if (name, check) not in covered]
    assert not missing, f"public checks without a planted bug: {missing}"
