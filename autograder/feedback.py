"""What a student is told when a hidden test fails: `Feedback` messages, and checks that raise them.

A Feedback message may describe *what* differs (shape, size of the error, which input) but never shows
expected values or the test's code. Any other exception in a hidden test is reported to the student as
an internal error, with the details only in the instructor's logs.
"""
from __future__ import annotations

import torch


class Feedback(AssertionError):
    """A test failure whose message is safe to show the student."""


def assert_shape(tensor: torch.Tensor, expected: tuple, what: str) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise Feedback(f"{what} has shape {tuple(tensor.shape)}, expected {tuple(expected)}")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Values must agree with the reference up to float rounding."""
    assert_shape(actual, tuple(expected.shape), what)
    actual, expected = actual.double(), expected.double()
    if not torch.isfinite(actual).all():
        raise Feedback(f"{what} contains NaN or inf")
    off = (actual - expected).abs() > atol + rtol * expected.abs()
    if off.any():
        error = (actual - expected).abs().max().item()
        raise Feedback(f"{what} differs from the reference: max abs error {error:.3g}, "
                       f"{off.float().mean().item():.0%} of the values are off")
