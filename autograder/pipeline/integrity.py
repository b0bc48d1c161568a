"""The integrity report a TA reads after a batch: what in each submission's answer cells reaches for the grader, and
which submissions are most alike. It never changes a score.

The run-time checks (the tripwires, the audit hook) run inside the student's own process and are best effort; this
report reads the answer cells as text, on the trusted side, after grading:

* `scan_answer_cells` flags code that reaches grader internals (`autograder`, the tripwires, torch's dispatch
  modes, `gc`, frames, `ctypes`, `inspect`), long literal data (a table of answers), names built by string
  manipulation (`getattr(F, "noitnetta"[::-1])`), and patches of `__call__` / `__getattribute__`. A flag is a
  reason to look, not a verdict: `import inspect` has honest uses.
* `similar_pairs` compares the answer cells of every pair of submissions with copydetect (winnowed k-gram
  fingerprints, the standard tool), the release's own text of those cells removed as boilerplate.

`write_integrity_report` writes `integrity.md` beside the gradebook; the gradebook's `integrity` column counts each
row's flags.
"""
from __future__ import annotations

import ast
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.notebook import dotted_name

if TYPE_CHECKING:
    from autograder.pipeline.gradebook import Gradebook

# Module or attribute names whose use in an answer cell reaches for the grader rather than the assignment.
GRADER_NAMES = ("autograder", "sandbox", "tripwires", "stand_ins", "RemoteModule", "RemoteFunction", "worker", "seccomp",
                "_pop_mode", "_pop_mode_temporarily", "_push_mode", "torch.overrides", "torch.utils._python_dispatch",
                "_get_current_dispatch_mode", "gc", "sys._getframe", "_getframe", "f_back", "f_globals", "f_locals",
                "ctypes", "inspect", "sys.modules", "__builtins__", "builtins", "__import__", "importlib",
                "sys.settrace", "sys.setprofile", "sys.addaudithook", "audit_hook")
PATCHED_DUNDERS = ("__call__", "__getattribute__", "__getattr__", "__class__", "__init_subclass__")
LONG_LITERAL_CHARS = 2048  # a literal this long (its source text) is data, not code
DYNAMIC_NAME_CALLS = ("getattr", "setattr", "hasattr", "delattr", "__import__", "import_module", "eval", "exec",
                      "compile")
SIMILARITY_SHOWN = 10  # pairs listed in the report
SIMILARITY_NOTED = 0.5  # a pair above this share of common fingerprints is marked in the report


def _reaches_grader(name: str) -> str | None:
    parts = name.split(".")
    for target in GRADER_NAMES:
        wanted = target.split(".")
        if any(parts[i:i + len(wanted)] == wanted for i in range(len(parts) - len(wanted) + 1)):
            return target
    return None


def scan_answer_cells(cells: Mapping[str, str]) -> list[str]:
    """What in the answer cells (`grade_id` -> source) deserves a TA's look, one line each, in cell order."""
    flags: list[str] = []
    for gid, source in cells.items():
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # the grader already reported it; nothing to read
        found: dict[str, None] = {}  # ordered, without repeats
        try:
            for node in ast.walk(tree):
                for flag in _node_flags(node, source):
                    found[flag] = None
        except RecursionError:
            found["code nested too deeply to read"] = None
        flags += [f"{gid}: {flag}" for flag in found]
    return flags


def _node_flags(node: ast.AST, source: str) -> list[str]:
    flags = []
    if isinstance(node, ast.Import):
        flags += [f"imports {a.name} (grader internals)" for a in node.names if _reaches_grader(a.name)]
    elif isinstance(node, ast.ImportFrom) and node.module:
        flags += [f"imports {node.module}.{a.name} (grader internals)" for a in node.names
                  if _reaches_grader(f"{node.module}.{a.name}")]
    elif isinstance(node, (ast.Attribute, ast.Name)):
        dotted = dotted_name(node)
        target = _reaches_grader(dotted) if dotted else None
        if target and target not in ("worker", "sandbox"):  # common words as plain names: only imports count
            flags.append(f"uses {target} (grader internals)")
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        flags += [f"replaces {dotted_name(t) or t.attr} (patches how modules are called or looked up)" for t in targets
                  if isinstance(t, ast.Attribute) and t.attr in PATCHED_DUNDERS]
    if isinstance(node, ast.Call):
        called = dotted_name(node.func) or ""
        short = called.rpartition(".")[2]
        if short in DYNAMIC_NAME_CALLS:
            name_arg = node.args[1] if short in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1 \
                else (node.args[0] if node.args else None)
            if name_arg is not None and not (isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str)):
                flags.append(f"{short}() with a name built at run time")
            if short in ("setattr",) and isinstance(name_arg, ast.Constant) and name_arg.value in PATCHED_DUNDERS:
                flags.append(f"setattr(..., {name_arg.value!r}) (patches how modules are called or looked up)")
    # On one line, a literal of at most LONG_LITERAL_CHARS bytes is not long: its text is not cut out (each cut splits
    # the whole cell into lines again, for every literal of it).
    if isinstance(node, (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set)) and not (
            node.lineno == node.end_lineno and node.end_col_offset is not None
            and node.end_col_offset - node.col_offset <= LONG_LITERAL_CHARS):
        segment = ast.get_source_segment(source, node) or ""
        if len(segment) > LONG_LITERAL_CHARS:
            flags.append(f"a literal of {len(segment):,} characters (data, not code) on line {node.lineno}")
    return flags


def similar_pairs(answers: Mapping[str, str], boilerplate: str) -> list[tuple[float, str, str]]:
    """(similarity, student, student) for every pair of submissions, most alike first: copydetect's share of the
    first student's fingerprints found in the second's (the larger of the two directions), with the release's text
    of the answer cells (`boilerplate`) removed. Needs two submissions with code."""
    from copydetect import CopyDetector

    students = [s for s, text in answers.items() if text.strip()]
    if len(students) < 2:
        return []
    with tempfile.TemporaryDirectory(prefix="dlcourse-integrity-") as folder:
        files = {}
        for i, student in enumerate(students):  # numbered files: a student id need not be a safe file name
            files[student] = Path(folder) / f"s{i}.py"
            files[student].write_text(answers[student])
        template = Path(folder) / "release_boilerplate.py"
        template.write_text(boilerplate)
        detector = CopyDetector(extensions=["py"], silent=True, autoopen=False, display_t=0.0, noise_t=25,
                                guarantee_t=25)
        for path in files.values():
            detector.add_file(str(path), "testref")
        detector.add_file(str(template), "boilerplate")
        detector.run()
        matrix = detector.similarity_matrix
    pairs = []
    for i, a in enumerate(students):
        for j in range(i + 1, len(students)):
            similarity = max(float(matrix[i, j, 0]), float(matrix[j, i, 0]))
            pairs.append((max(similarity, 0.0), a, students[j]))
    return sorted(pairs, key=lambda p: -p[0])


def format_flags(gradebook: Gradebook) -> str:
    """The flags of a gradebook's rows, for the terminal: one line per flag, or a line saying there are none."""
    lines = [f"integrity: {row.student_id}: {flag}" for row in gradebook.rows for flag in row.integrity]
    return "\n".join(lines) if lines else "integrity: no answer cell flagged"


def integrity_report(assignment: str, flags: Mapping[str, list[str]], pairs: list[tuple[float, str, str]]) -> str:
    """The markdown of integrity.md."""
    lines = [f"# {assignment}: integrity report", "",
             "For the TA: nothing here changes a score. The grader's in-process checks (tripwires, the audit hook) are",
             "best effort; this report reads the answer cells as text. A flag is a reason to look, not a verdict.", "",
             "## Flags", ""]
    flagged = {s: f for s, f in flags.items() if f}
    if not flagged:
        lines.append("No answer cell reaches for grader internals, carries long literal data, builds names at run "
                     "time or patches `__call__`/`__getattribute__`.")
    for student, found in sorted(flagged.items()):
        lines.append(f"- **{student}** ({len(found)})")
        lines += [f"  - {flag}" for flag in found]
    lines += ["", f"## Most similar pairs (copydetect, the release's text removed; {SIMILARITY_NOTED:.0%} and more "
              "marked)", ""]
    if not pairs:
        lines.append("Fewer than two submissions with answer code: nothing to compare.")
    else:
        lines += ["| similarity | student | student |", "|---:|---|---|"]
        lines += [f"| {sim:.0%}{' ⚠' if sim >= SIMILARITY_NOTED else ''} | {a} | {b} |"
                  for sim, a, b in pairs[:SIMILARITY_SHOWN]]
    return "\n".join(lines) + "\n"
