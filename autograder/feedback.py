"""What a student is told when a hidden test fails: `Feedback` messages, and checks that raise them.

A Feedback message may describe *what* differs (shape, size of the error, which input) but never shows
expected values or the test's code. Any other exception in a hidden test is reported to the student as
an internal error, with the details only in the instructor's logs.

Every message that reaches a student's feedback passes through `sanitise` on the trusted side: control
characters and terminal escapes go, a line holding text of a hidden file (the hidden tests, the instructor's
notebook: found by their fingerprints, autograder/fingerprints.py) is replaced, and an excerpt of what the student's code said (an exception message) is cut short.
"""
from __future__ import annotations

import re

import torch

from autograder.fingerprints import MIN_HIDDEN_LINE, Fingerprints

EXCERPT_CHARS = 300  # of a student-controlled message (an exception's text, a traceback)
MESSAGE_CHARS = 4000  # of a whole feedback message
REMOVED = "[removed: text from the grader's files]"
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")
NO_FINGERPRINTS = Fingerprints()  # a message checked against no grader's files
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def sanitise(message: str, hidden: Fingerprints = NO_FINGERPRINTS, student: bool = True) -> str:
    """`message` made safe to show: no control characters or terminal escapes, no line that holds a hidden line
    (or, for a `student`-controlled excerpt, that is a piece of a hidden file), at most EXCERPT_CHARS characters
    for a student's excerpt and MESSAGE_CHARS for a whole message."""
    limit = EXCERPT_CHARS if student else MESSAGE_CHARS
    text = _CONTROL.sub("", _ESCAPES.sub("", str(message)[:4 * limit].replace("\r\n", "\n").replace("\t", "    ")))
    lines: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        leaks = len(stripped) >= MIN_HIDDEN_LINE and (hidden.holds_line(line) or (student and hidden.is_piece(stripped)))
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
