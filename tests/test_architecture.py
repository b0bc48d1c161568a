"""The structure ARCHITECTURE.md draws ("Layers") holds in the code: read with `ast` (nothing is imported), every
`import` in autograder/ and dlcourse/ (also those inside functions) is an arrow of the import drawing, and

- the drawing has no cycle;
- no arrow points back up the layers: the shared modules (the declaration and what every layer shares) import only
  each other; the sandbox imports only itself (and dlcourse); the kit imports the shared modules and the sandbox; the
  hidden tests import the kit and the shared modules; the pipeline imports the kit, the sandbox and the shared
  modules; deploy/ (and samples/, which builds the sample submissions the demo and the tests grade) imports the
  pipeline and all below it; only the command line (`__main__`) is imported by nothing; dlcourse imports nothing of
  the project;
- no function in autograder/ is over 80 lines.

A new top-level module of autograder/ has to be given its layer below (SHARED) before this test passes."""
from __future__ import annotations

import ast
from pathlib import Path

from autograder.assignments import PROJECT_ROOT
from autograder.imports import imported_names

MAX_FUNCTION_LINES = 80
# The top-level modules of autograder/ that every layer shares (ARCHITECTURE.md, "Layers").
SHARED = {"autograder", "autograder.imports", "autograder.spec", "autograder.assignments", "autograder.options", "autograder.notebook",
          "autograder.feedback", "autograder.fingerprints", "autograder.course_cells"}
# layer -> the layers its modules may import (dlcourse aside: every layer but dlcourse's own may import it).
MAY_IMPORT = {
    "dlcourse": {"dlcourse"},
    "shared": {"shared"},
    "sandbox": {"sandbox"},
    "kit": {"shared", "sandbox", "kit"},
    "hidden_tests": {"shared", "kit"},
    "pipeline": {"shared", "sandbox", "kit", "pipeline"},
    "deploy": {"shared", "sandbox", "kit", "pipeline", "deploy"},
    "main": {"shared", "sandbox", "kit", "pipeline", "deploy"},
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module == "dlcourse" or module.startswith("dlcourse."):
        return "dlcourse"
    if module in SHARED:
        return "shared"
    parts = module.split(".")
    if parts[0] == "autograder" and len(parts) > 1:
        if parts[1] in ("sandbox", "kit", "hidden_tests", "pipeline", "deploy"):
            return parts[1]
        if parts[1] == "samples":
            return "deploy"
        if parts[1] == "__main__":
            return "main"
    raise AssertionError(f"{module} has no layer: place it in ARCHITECTURE.md's Layers and in this test")


def import_drawing(sources: dict[str, tuple[bool, str]]) -> dict[str, set[str]]:
    """module -> the project modules it imports, from module -> (is_package, source text)."""
    return {module: {name for name in imported_names(module, is_package, ast.parse(text))
                     if name in sources and name != module}
            for module, (is_package, text) in sources.items()}


def read_sources(root: Path = PROJECT_ROOT) -> dict[str, tuple[bool, str]]:
    return {module_name(path, root): (path.name == "__init__.py", path.read_text())
            for package in ("autograder", "dlcourse") for path in sorted((root / package).rglob("*.py"))}


def cycles(drawing: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(drawing[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == module:
                    break
            if len(component) > 1 or module in drawing[module]:
                found.append(sorted(component))

    for module in sorted(drawing):
        if module not in index:
            visit(module)
    return found


def arrows_back_up(drawing: dict[str, set[str]]) -> list[str]:
    return [f"{module} ({layer_of(module)}) imports {other} ({layer_of(other)})"
            for module, others in sorted(drawing.items()) for other in sorted(others)
            if layer_of(other) not in MAY_IMPORT[layer_of(module)]
            and not (layer_of(other) == "dlcourse" and layer_of(module) != "dlcourse")]


def long_functions(sources: dict[str, tuple[bool, str]], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    return [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for module, (_, text) in sorted(sources.items()) if module.startswith("autograder")
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (node.end_lineno or node.lineno) - node.lineno + 1 > limit]


def test_the_drawing_is_read():
    drawing = import_drawing(read_sources())
    # The reader finds the arrows it should (a reader that found none would pass every rule below).
    assert "autograder.pipeline.store" in drawing["autograder.pipeline.grade"]
    assert "autograder.kit.requests" in drawing["autograder.kit.stand_ins.remote"]   # a relative or absolute import
    assert "autograder.pipeline.grade" in drawing["autograder.__main__"]
    assert sum(map(len, drawing.values())) > 100


def test_no_import_cycle():
    assert cycles(import_drawing(read_sources())) == []


def test_no_arrow_back_up_the_layers():
    assert arrows_back_up(import_drawing(read_sources())) == []


def test_no_function_over_80_lines():
    assert long_functions(read_sources()) == []


def test_the_rules_catch_a_planted_violation():
    """The checks themselves fail where they should: a cycle, an upward arrow, a long function, a relative import."""
    planted = {
        "autograder.pipeline.grade": (False, "from autograder.deploy import slurm\n"),
        "autograder.deploy.slurm": (False, "def f():\n    from autograder.pipeline.grade import grade_folder\n"),
        "autograder.kit": (True, ""),
        "autograder.kit.student": (False, "from ..pipeline import grade\n"),
        "autograder.pipeline": (True, ""),
        "dlcourse.bert": (False, "import autograder.spec\n"),
        "autograder.spec": (False, "def g():\n" + "    x = 1\n" * MAX_FUNCTION_LINES),
    }
    drawing = import_drawing(planted)
    assert cycles(drawing) == [["autograder.deploy.slurm", "autograder.pipeline.grade"]]
    assert arrows_back_up(drawing) == [
        "autograder.kit.student (kit) imports autograder.pipeline (pipeline)",
        "autograder.kit.student (kit) imports autograder.pipeline.grade (pipeline)",
        "autograder.pipeline.grade (pipeline) imports autograder.deploy.slurm (deploy)",
        "dlcourse.bert (dlcourse) imports autograder.spec (shared)"]
    assert long_functions(planted) == [f"autograder.spec.g: {MAX_FUNCTION_LINES + 1} lines"]
