"""Runs a notebook's public checks (the `*_check` cells students run after each part) on the source notebook's
solution, optionally with a planted bug, and says which checks caught something.

A check catches a bug when it raises (an `assert`, a shape check) or when one of its printed lines
`... (should be < TOL): VALUE` or `... (should be X): VALUE` does not hold. Only the cells a check needs run:
the grader's run_cells, the checks, and the few cells a check reads (PUBLIC_CHECK_CELLS in source/<a>/samples.py:
BERT's pretrained tokenizer).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
import types
from typing import Any

from autograder.assignments import load_assignment
from autograder.notebook import cell_source, grade_id, read_notebook

# "(should be < 1e-5): 3.2e-08", "(should be 0): 0.0", "(should be 20): 20"
VERDICT = re.compile(r"\(should be (< )?([-+0-9.e]+)\):\s*([-+0-9.e]+|nan|inf)")


def declared(name: str, attribute: str, default: Any) -> Any:
    """What source/<name>/samples.py declares for the public checks' tests (PUBLIC_CHECK_BUGS, PUBLIC_CHECK_CELLS)."""
    spec = importlib.util.spec_from_file_location(f"_public_checks_of_{name}", load_assignment(name).samples_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute, default)


def check_cells(name: str) -> list[str]:
    """grade_ids of the notebook's public checks, in order."""
    assignment = load_assignment(name)
    return [gid for cell in read_notebook(assignment.source_dir / assignment.notebook)["cells"]
            if (gid := grade_id(cell)) and gid.endswith("_check")]


def verdicts(output: str) -> list[tuple[str, bool, float, float]]:
    """(line, strict, bound, value) of each verdict printed: strict means `value < bound`, else `value == bound`."""
    return [(line.strip(), bool(strict), float(bound), float(value))
            for line in output.splitlines() for strict, bound, value in VERDICT.findall(line)]


def failed_lines(output: str) -> list[str]:
    return [line for line, strict, bound, value in verdicts(output)
            if not (value < bound if strict else value == bound)]


def run_public_checks(name: str, bug: dict[str, tuple[str, str]] | None = None,
                      until: str | None = None, outputs: dict[str, str] | None = None) -> dict[str, list[str]]:
    """{check grade_id: what failed (empty when it passed)}. `bug` plants a bug: {cell grade_id: (old, new)}, a
    text replacement in that cell of the solution (its old text must be there). `until`: stop after that check.
    `outputs`, when given, receives {check grade_id: what it printed} (the margin test reads the values)."""
    assignment = load_assignment(name)
    bug = dict(bug or {})
    wanted = set(assignment.spec.run_cells) | set(declared(name, "PUBLIC_CHECK_CELLS", ()))
    module = types.ModuleType(f"public_checks_{name}")  # dataclasses look their module up in sys.modules
    sys.modules[module.__name__] = module
    results = {}
    try:
        for cell in read_notebook(assignment.source_dir / assignment.notebook)["cells"]:
            gid = grade_id(cell)
            if cell.get("cell_type") != "code" or not gid or not (gid in wanted or gid.endswith("_check")):
                continue
            source = cell_source(cell)
            if gid in bug:
                old, new = bug.pop(gid)
                assert old in source, f"the planted bug's text is not in the cell {gid!r}: {old!r}"
                source = source.replace(old, new)
            output = io.StringIO()
            try:
                with contextlib.redirect_stdout(output):
                    exec(compile(source, f"<{name}:{gid}>", "exec"), module.__dict__)
                failures = failed_lines(output.getvalue())
            except Exception as exc:  # a check that raises has caught something; so has a layer that crashes in it
                if not gid.endswith("_check"):
                    raise
                failures = [f"{type(exc).__name__}: {exc}"]
            if gid.endswith("_check"):
                results[gid] = failures
                if outputs is not None:
                    outputs[gid] = output.getvalue()
            if gid == until:
                break
    finally:
        del sys.modules[module.__name__]
    assert not bug, f"planted bugs in cells that did not run: {list(bug)}"
    return results


if __name__ == "__main__":  # python tests/public_checks.py OUT.json NAME...: the margin test's run in a fresh process
    import json
    from pathlib import Path

    report = {}
    for _name in sys.argv[2:]:
        _outputs: dict[str, str] = {}
        report[_name] = {"results": run_public_checks(_name, outputs=_outputs), "outputs": _outputs}
    Path(sys.argv[1]).write_text(json.dumps(report))
