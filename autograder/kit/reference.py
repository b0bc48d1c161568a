"""What every hidden test compares with, in one import (trusted side only):

    from autograder.kit.reference import (Feedback, assert_close, assert_shape, expect_grads, fill_parameters_,
                                      reference_grads, seeded_randn)

Checks that raise Feedback (defined in autograder/feedback.py, which the judge uses too), seeded inputs and weights
(dlcourse/checks.py, the same numbers the notebooks' public checks use), a reference's gradients, the check of a
student module's parameter gradients against them, and the check of a module's dropout in eval and train mode. The reference layers themselves are the stand-ins'
(autograder/kit/stand_ins/<assignment>.py), imported from there.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Callable

import torch
import torch.nn as nn

from autograder.feedback import Feedback, assert_close, assert_shape, within_tolerance
from autograder.kit.requests import stand_in
from autograder.sandbox.harness.dropout import replayed_dropout
from dlcourse.checks import fill_parameters_, seeded_randn

__all__ = ["Feedback", "assert_close", "assert_shape", "check_dropout", "expect_grads", "fill_parameters_", "grad_of",
           "reference_grads", "replayed_dropout", "seeded_randn"]


def grad_of(tensor: torch.Tensor) -> torch.Tensor:
    """The gradient a reference computation's backward() left in `tensor` (a grader error where it left none)."""
    if tensor.grad is None:
        raise RuntimeError("the reference computation left no gradient in this tensor")
    return tensor.grad


def reference_grads(module: nn.Module, x: torch.Tensor, grad_output: torch.Tensor,
                    forward: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """(input gradient, {parameter name: gradient}) of `module` (or of `forward`) at `x` for `grad_output`."""
    x = x.clone().requires_grad_(True)
    module.zero_grad()
    out = forward(x) if forward else module(x)
    out.backward(grad_output)
    return x.grad, {n: p.grad for n, p in module.named_parameters()}


def check_output_and_input_grad(student, request, ref: nn.Module, x: torch.Tensor, grad_output: torch.Tensor,
                                what: str, label: str) -> None:
    """The student's module built by `request` with `ref`'s weights gives `ref`'s output at `x` and its gradient with
    respect to `x` for `grad_output` (a block such as the transformer's FeedForward or the ViT's MLP)."""
    result = student.run(request, (x,), weights=ref.state_dict(), grad_output=grad_output, what=what)
    x_grad, _ = reference_grads(ref, x, grad_output)
    assert_close(result.output, ref(x).detach(), f"{label} output")
    assert_close(result.input_grads[0], x_grad, f"{label} gradient with respect to the input")


def expect_grads(grads: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                 names: Mapping[str, str] | Iterable[str] | None = None, atol: float = 1e-5) -> None:
    """The student's parameter gradients `grads` ({name: gradient}, as the worker returned them) equal the
    `reference` ones. `names`: {student's parameter name: reference parameter name}, or the names both share
    (default: every name of `reference`). Feedback names the first parameter that got no gradient or a wrong one."""
    pairs = names.items() if isinstance(names, Mapping) else ((n, n) for n in (reference if names is None else names))
    for ours, theirs in pairs:
        if ours not in grads:
            raise Feedback(f"{ours} received no gradient: is it used in forward?")
        assert_close(grads[ours], reference[theirs], f"gradient of {ours}", atol=atol)


def check_dropout(student, built: dict, inputs: tuple, *, p: float, seed: int, expected_eval: torch.Tensor,
                  expected_train: torch.Tensor, calls: int, where: str, what: str, atol: float = 1e-5,
                  output: Callable | None = None) -> None:
    """The student's module `built` (a requests.module() spec made with dropout `p`) does nothing random in eval mode
    (its output is `expected_eval`) and, in train mode, makes `calls` dropout calls with p `where` the notebook says
    (its output is `expected_train`, the reference computed under replayed_dropout(seed): the same masks).
    `output` picks the compared tensor from what forward returns (default: forward returns it)."""
    def picked(value):
        try:
            value = output(value) if output else value
        except (TypeError, IndexError, KeyError, RuntimeError):  # not the structure asked for
            value = None
        if not isinstance(value, torch.Tensor):
            raise Feedback(f"{what}: forward must return " + ("a tensor" if output is None else "what the notebook says"))
        return value

    evaluated = picked(student.invoke(built, *inputs, what=f"{what} in eval mode").value)
    if not within_tolerance(evaluated, expected_eval, atol=atol):
        again = picked(student.invoke(built, *inputs, what=f"{what} in eval mode").value)
        if not within_tolerance(again, evaluated, atol=atol):  # random in eval mode: dropout is on
            raise Feedback(f"{what} gave different outputs for the same input in eval mode: dropout must do nothing in "
                           "eval mode (use nn.Dropout, or F.dropout with training=self.training)")
        assert_close(evaluated, expected_eval, f"{what} output in eval mode, before any dropout is checked (a bug "
                     "outside dropout: the layer's own test says more; this test checks dropout once the eval-mode "
                     "output matches)", atol=atol)
    trained = student.invoke(stand_in("train_mode_forward", module=built, seed=seed), *inputs, what=f"{what} in train mode").value
    made = trained["dropout_calls"]
    if len(made) != calls or any(abs(q - p) > 1e-9 for q in made):
        raise Feedback(f"in train mode, {what} applied dropout {len(made)} time(s) (with p = {', '.join(f'{q:g}' for q in made) or '-'}); "
                       f"the notebook's applies it {calls} time(s), with p = {p:g}: {where}")
    assert_close(picked(trained["output"]), expected_train, f"{what} output in train mode (dropout {where}; the reference drew "
                 "the same masks)", atol=atol)
