"""The README's two tables of assignments, written from each assignment's spec (`readme` in source/<a>/spec.py), so
that adding an assignment folder adds its rows. `python -m autograder release` rewrites them between their markers;
tests/test_release.py fails when the README is not what the specs say."""
from __future__ import annotations

import re
from pathlib import Path

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment

BEGIN = "<!-- assignment tables: written by `python -m autograder release` from source/<a>/spec.py (readme=...) -->"
END = "<!-- end of the assignment tables -->"
TO_FILL = "(to fill: `readme=ReadmeRow(...)` in its spec.py)"


def assignment_tables() -> str:
    """The two tables, one row per assignment, in the order of list_assignments()."""
    what = ["| Assignment | Students build | Graded on |", "|---|---|---|"]
    where = ["| assignment | solution | declaration: cells, thresholds, forbidden APIs, budget | hidden tests | data | "
             "course code it imports |", "|---|---|---|---|---|---|"]
    for name in list_assignments():
        assignment = load_assignment(name)
        row = assignment.spec.readme
        builds, graded_on, data, code = ((row.builds, row.graded_on, row.data, row.course_code) if row
                                         else (TO_FILL,) * 4)
        what.append(f"| `{name}` | {builds} | {graded_on} |")
        where.append(f"| `{name}` | `source/{name}/{assignment.notebook}` | `source/{name}/spec.py` | "
                     f"`{assignment.hidden_tests.relative_to(PROJECT_ROOT).as_posix()}` | {data} | {code} |")
    return "\n".join([*what, "", "Where each piece of an assignment is:", "", *where])


def readme_with_tables(text: str, readme: Path) -> str:
    """`text` (the README) with its tables replaced by assignment_tables()."""
    pattern = re.compile(re.escape(BEGIN) + r"\n.*?\n" + re.escape(END), re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{readme}: expected one block of assignment tables between the lines\n{BEGIN}\n{END}\n"
                         "put them back where the tables go")
    return pattern.sub(lambda _: f"{BEGIN}\n{assignment_tables()}\n{END}", text)


def write_readme_tables(readme: Path = PROJECT_ROOT / "README.md") -> bool:
    """Rewrite the README's tables from the specs; whether anything changed."""
    text = readme.read_text()
    new = readme_with_tables(text, readme)
    if new != text:
        readme.write_text(new)
    return new != text
