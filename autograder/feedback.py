"""What a student is told when a hidden test fails: `Feedback` messages, and checks that raise them.

A Feedback message may describe *what* differs (shape, size of the error, which input) but never shows
expected values or the test's code. Any other exception in a hidden test is reported to the student as
an internal error, with the details only in the instructor's logs.

Every message that reaches a student's feedback passes through `sanitise` on the trusted side: control
characters and terminal escapes go, a line holding text of a hidden file (the hidden tests, the instructor's
notebook) is replaced, and an excerpt of what the student's code said (an exception message) is cut short.
"""
from __future__ import annotations

import functools
import io
import json
import re
import tokenize
from pathlib import Path

import torch

EXCERPT_CHARS = 300  # of a student-controlled message (an exception's text, a traceback)
MESSAGE_CHARS = 4000  # of a whole feedback message
FAMILIES = Path(__file__).with_name("families.py")  # the hidden tests that several assignments share
MIN_HIDDEN_LINE = 20  # shorter lines ("return x", "def forward(self, x):") are common to everyone's code
REMOVED = "[removed: text from the grader's files]"
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _lines(path: Path) -> list[str]:
    """The stripped lines of a file; of a notebook, those of its cells (code and text); of Python source, its code
    without string literals (a hidden test's messages and titles are written for students)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if path.suffix == ".ipynb" and text:
        text = "\n".join("".join(c.get("source", "")) for c in json.loads(text).get("cells", []))
    elif path.suffix == ".py":
        text = _without_strings(text)
    return [line.strip() for line in text.splitlines()]


def _without_strings(source: str) -> str:
    """`source` with the characters of its string literals blanked (lines keep their places)."""
    rows = [list(line) for line in source.splitlines(True)]
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.STRING:
                continue
            (first, start), (last, end) = token.start, token.end
            for row in range(first, last + 1):
                chars = rows[row - 1]
                for col in range(start if row == first else 0, end if row == last else len(chars)):
                    if chars[col] != "\n":
                        chars[col] = " "
    except (tokenize.TokenError, SyntaxError, IndexError):
        return source
    return "".join("".join(chars) for chars in rows)


@functools.lru_cache(maxsize=8)
def hidden_text(hidden: tuple[Path, ...], public: tuple[Path, ...] = (), own: tuple[str, ...] = ()) -> tuple[frozenset[str], str]:
    """The non-trivial lines (stripped, at least MIN_HIDDEN_LINE characters) of the grader's `hidden` files that
    are not in a `public` one (the release notebook students have) nor in the student's `own` code (their answer
    cells: showing a student their own line reveals nothing, even where it equals the solution's), and those lines as
    one text. Read once per judge process."""
    shown = {line for path in public for line in _lines(Path(path))} | {line.strip() for text in own for line in text.splitlines()}
    lines = [line for path in hidden for line in _lines(Path(path)) if line not in shown]
    return frozenset(line for line in lines if len(line) >= MIN_HIDDEN_LINE), "\n".join(lines)


def grader_files_text(assignment, own: tuple[str, ...] = ()) -> tuple[frozenset[str], str]:
    """hidden_text of an assignment (autograder.assignments.Assignment): its hidden tests (with the test families
    they instantiate, autograder/families.py) and solution notebook, less the student's `own` answer cells."""
    return hidden_text((assignment.hidden_tests, FAMILIES, assignment.source_dir / assignment.notebook),
                       (assignment.release_dir / assignment.notebook,), tuple(own))


def sanitise(message: str, hidden: tuple[frozenset[str], str] = (frozenset(), ""), student: bool = True) -> str:
    """`message` made safe to show: no control characters or terminal escapes, no line that holds a hidden line
    (or, for a `student`-controlled excerpt, that is a piece of a hidden file), at most EXCERPT_CHARS characters
    for a student's excerpt and MESSAGE_CHARS for a whole message."""
    limit = EXCERPT_CHARS if student else MESSAGE_CHARS
    text = _CONTROL.sub("", _ESCAPES.sub("", str(message)[:4 * limit].replace("\r\n", "\n").replace("\t", "    ")))
    hidden_lines, hidden_all = hidden
    lines = []
    for line in text.split("\n"):
        stripped = line.strip()
        leaks = any(h in line for h in hidden_lines) if len(stripped) >= MIN_HIDDEN_LINE else False
        if student and len(stripped) >= MIN_HIDDEN_LINE and stripped in hidden_all:
            leaks = True
        if leaks and (not lines or lines[-1] != REMOVED):
            lines.append(REMOVED)
        elif not leaks:
            lines.append(line)
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


class Feedback(AssertionError):
    """A test failure whose message is safe to show the student."""


def assert_shape(tensor: torch.Tensor, expected: tuple, what: str) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise Feedback(f"{what} has shape {tuple(tensor.shape)}, expected {tuple(expected)}")


def _off(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> torch.Tensor:
    return (actual - expected).abs() > atol + rtol * expected.abs()


def within_tolerance(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Whether assert_close would accept `actual`."""
    if tuple(actual.shape) != tuple(expected.shape):
        return False
    actual, expected = actual.double(), expected.double()
    return bool(torch.isfinite(actual).all() and not _off(actual, expected, rtol, atol).any())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Values must agree with the reference up to float rounding."""
    assert_shape(actual, tuple(expected.shape), what)
    actual, expected = actual.double(), expected.double()
    if not torch.isfinite(actual).all():
        raise Feedback(f"{what} contains NaN or inf")
    off = _off(actual, expected, rtol, atol)
    if off.any():
        error = (actual - expected).abs().max().item()
        raise Feedback(f"{what} differs from the reference: max abs error {error:.3g}, "
                       f"{off.float().mean().item():.0%} of the values are off")
