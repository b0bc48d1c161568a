"""From a student's notebook to the code the grader runs, and a static check of that code.

Only the cells an assignment names are run, matched by nbgrader `grade_id`:
- an instructor (locked) cell is taken from the *release* notebook, so edits a student made to it
  (or to its metadata) change nothing;
- an answer (solution) cell is taken from the student's notebook.
Training and plotting cells are never run by the grader.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# Ways to switch off or go around the worker's run-time checks (autograder/sandbox/tripwires.py): reported
# wherever they appear, as names, attributes or resolvable strings.
TAMPER_NAMES = ["__wrapped__", "_pop_mode", "_pop_torch_dispatch_mode", "_pop_torch_function_mode",
                "_pop_torch_dispatch_stack", "_pop_torch_function_stack", "_disable_current_modes",
                "DisableTorchFunction", "_DisableTorchDispatch", "ExcludeDispatchKeyGuard", "torch.ops", "torch._C",
                "tripwires", "_GRADER_BUILT"]
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# `%name`/`%%name` magics and `!cmd` shell escapes; not `!= x` or `% x` (continuation lines of a
# comparison or a modulo inside brackets), which are plain Python.
MAGIC = re.compile(r"^(\s*)((?:%%?[A-Za-z_]|!(?!=)).*)$")


class NotebookError(Exception):
    """The notebook cannot be read at all (not JSON, not a notebook, a cell that is not one): a `bad-notebook` row
    with this message, never an exception of the grader."""


def read_notebook(path: Path) -> dict:
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NotebookError(f"{Path(path).name} is not a readable notebook ({exc.__class__.__name__}: {exc})") from None
    except RecursionError:  # '[[[[...' thousands deep: the parser's recursion, not a notebook
        raise NotebookError(f"{Path(path).name} is not a readable notebook (its JSON is nested too deeply)") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{Path(path).name} is JSON but not a Jupyter notebook (no 'cells' list)")
    return nb


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    if isinstance(source, str):
        return source
    raise NotebookError(f"the cell '{grade_id(cell)}' has a source that is not text ({type(source).__name__}); "
                        "re-save the notebook from Jupyter")


def raw_grade_id(cell: dict):
    """The cell's nbgrader grade_id as written, whatever its type (a student's notebook may hold anything)."""
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    nbgrader = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None


def grade_id(cell: dict) -> str | None:
    """The cell's grade_id when it is a string; anything else identifies no cell."""
    gid = raw_grade_id(cell)
    return gid if isinstance(gid, str) else None


def strip_magics(source: str) -> str:
    """Comment out IPython magics and shell escapes (`%matplotlib`, `!pip`), which plain Python can't run."""
    return "\n".join(MAGIC.sub(r"\1# (removed by the grader) \2", line) for line in source.splitlines())


def hand_graded_ids(nb: dict) -> list[str]:
    """The grade_ids of the notebook's written answers graded by hand (nbgrader `grade` and `solution`), in order."""
    return [gid for cell in nb["cells"] if (gid := grade_id(cell))
            and (meta := cell.get("metadata", {}).get("nbgrader", {})).get("grade") and meta.get("solution")]


def written_answers(release_nb: dict, student_nb: dict) -> dict[str, str]:
    """grade_id -> the text of the student's cell, for each cell of the release graded by hand (the first cell with that
    grade_id; a cell the student deleted or whose metadata changed is left out): what a TA grades and what a hand
    grade's fingerprint is taken of."""
    wanted, found = set(hand_graded_ids(release_nb)), {}
    for cell in student_nb.get("cells", []):
        gid = grade_id(cell) if isinstance(cell, dict) else None
        if gid in wanted and gid not in found:
            try:
                found[gid] = cell_source(cell)
            except NotebookError:
                continue
    return found


@dataclass
class GradedCode:
    cells: list[dict]  # [{"grade_id", "source"}] in notebook order, what the worker runs
    answer_ids: list[str]  # the answer cells among them (the student's code)
    problems: list[str] = field(default_factory=list)  # e.g. an answer cell that was not found


def extract_graded_code(release_nb: dict, student_nb: dict, run_ids: list[str]) -> GradedCode:
    """The cells to run. A student's cell whose grade_id is not a string is ignored, and a grade_id used by more than
    one code cell runs the first; both are reported as problems (the student's feedback, the gradebook)."""
    template = {grade_id(c): c for c in release_nb["cells"] if grade_id(c)}
    student: dict[str, dict] = {}
    copies: dict[str, int] = {}
    problems: list[str] = []
    for number, cell in enumerate(student_nb.get("cells", []), 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        gid = raw_grade_id(cell)
        if gid is not None and not isinstance(gid, str):
            problems.append(f"code cell {number} has a grade_id that is not a string ({type(gid).__name__}); the grader "
                            "ignored that cell (restore its metadata from the release notebook)")
        elif gid:
            copies[gid] = copies.get(gid, 0) + 1
            student.setdefault(gid, cell)
    problems += [f"grade_id '{gid}' is used by {n} code cells of your notebook; the grader ran the first and ignored "
                 "the others (a copied cell keeps its metadata: delete the extra copies)"
                 for gid, n in copies.items() if n > 1 and gid in run_ids]
    cells, answers = [], []
    for gid in run_ids:
        if gid not in template:
            raise KeyError(f"the release notebook has no cell with grade_id {gid!r}")
        cell = template[gid]
        if cell["metadata"]["nbgrader"].get("solution"):
            answers.append(gid)
            if gid in student:
                cell = student[gid]
            else:
                problems.append(f"answer cell '{gid}' is missing from your notebook (deleted, or its metadata "
                                f"changed); the grader used the empty template instead")
        cells.append({"grade_id": gid, "source": strip_magics(cell_source(cell))})
    return GradedCode(cells, answers, problems)


def find_forbidden(source: str, forbidden_names: list[str], forbidden_modules: list[str]) -> list[str]:
    """Uses of forbidden APIs in `source`, found by reading it (not running it).

    forbidden_names: last components such as "MultiheadAttention" or "scaled_dot_product_attention",
    matched as attributes, names, imported names, and strings (to catch getattr(F, "...")).
    forbidden_modules: module prefixes such as "timm" or "torchvision.models".
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"the code does not parse (SyntaxError line {exc.lineno}: {exc.msg}), so it could not be checked"]
    except (RecursionError, MemoryError, ValueError):
        return ["the code is nested too deeply (or holds a null byte) to be read, so it could not be checked"]
    try:
        return _forbidden_in(tree, forbidden_names, forbidden_modules)
    except RecursionError:  # "a" + "a" + ... thousands long: resolve_string recurses
        return ["the code is nested too deeply to be read, so it could not be checked"]


def _forbidden_in(tree: ast.AST, forbidden_names: list[str], forbidden_modules: list[str]) -> list[str]:
    found = set()

    def module_forbidden(name: str) -> bool:
        return any(name == m or name.startswith(m + ".") for m in forbidden_modules)

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in forbidden_names:
            found.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in forbidden_names:
            found.add(node.id)
        elif isinstance(node, (ast.Constant, ast.BinOp, ast.JoinedStr, ast.Call)):
            text = resolve_string(node)  # getattr(F, "scaled_dot_" + "product_attention"), f-strings, "".join
            if text is not None and DOTTED.match(text):  # a name, not a sentence that mentions one
                found.update(n for n in text.split(".") if n in forbidden_names)
                found.update(_tampering(text))
                if module_forbidden(text):
                    found.add(text)
        elif isinstance(node, ast.Import):
            found.update(f"import {a.name}" for a in node.names if module_forbidden(a.name))
            found.update(t for a in node.names for t in _tampering(a.name))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(t for a in node.names for t in _tampering(f"{node.module}.{a.name}"))
            if module_forbidden(node.module):
                found.add(f"from {node.module} import ...")
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if a.name in forbidden_names or module_forbidden(f"{node.module}.{a.name}"))
        if isinstance(node, (ast.Attribute, ast.Name)):  # torchvision.models spelled as attribute access
            dotted = dotted_name(node)
            if dotted and module_forbidden(dotted):
                found.add(dotted)
            found.update(_tampering(dotted or ""))
    return sorted(found)


def _tampering(dotted: str) -> list[str]:
    """The TAMPER_NAMES that `dotted` is, starts with or ends with (as whole dotted components)."""
    return [t for t in TAMPER_NAMES if dotted == t or dotted.startswith(t + ".") or dotted.endswith("." + t)]


def _joined(separator: str, parts: list[str | None]) -> str | None:
    """`separator`.join(parts), or None when a part could not be resolved."""
    known = [p for p in parts if p is not None]
    return separator.join(known) if len(known) == len(parts) else None


def resolve_string(node: ast.AST) -> str | None:
    """The value of a string expression built only from constants: "a" + "b", f"{'a'}b", "".join(["a", "b"]),
    str methods without arguments' side effects; None when it depends on anything else."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = resolve_string(node.left), resolve_string(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        return _joined("", [resolve_string(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
        owner = resolve_string(node.func.value)
        if node.func.attr == "join" and owner is not None and len(node.args) == 1 and \
                isinstance(node.args[0], (ast.List, ast.Tuple)):
            return _joined(owner, [resolve_string(e) for e in node.args[0].elts])
        if node.func.attr in ("lower", "upper", "strip") and owner is not None and not node.args:
            return getattr(owner, node.func.attr)()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2:
        name = resolve_string(node.args[1])  # getattr(x, "a" + "b") is x.ab
        owner = dotted_name(node.args[0])
        return f"{owner}.{name}" if owner and name is not None else name
    return None


def dotted_name(node: ast.AST) -> str | None:
    """`a.b.c` for an attribute chain on a plain name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None
