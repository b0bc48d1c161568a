"""Drivers of the RNN assignment: the student's evaluate or training loop run with the grader's compute_loss (a
stand-in the grader holds), and a training loop run with a recording optimizer and scheduler."""
from __future__ import annotations

from collections.abc import Callable

import torch

from . import recorded_optimizer, register, replaced_names


@register("with_reference_loss")
def with_reference_loss(function: Callable, compute_loss: Callable):
    """`function` (the student's evaluate, say), called with `compute_loss` (the grader's) in its notebook: the loop
    tests judge the student's loops, not their compute_loss (tested on its own)."""
    def run(*args, **kwargs):
        with replaced_names(function, {"compute_loss": compute_loss}):
            return function(*args, **kwargs)
    return run


@register("train_loop_probe")
def train_loop_probe(train_one_epoch, model, batches, compute_loss: Callable, epochs: int = 1, lr: float = 0.01,
                     optimizer: str = "adam", clip_norm: float | None = None):
    """Run the student's train_one_epoch `epochs` times on `batches` with a recording optimizer and scheduler, and
    `compute_loss` (the grader's) in its notebook.
    Returns a function (the hidden test calls it) giving what happened: the optimizer/scheduler step events
    in order, the gradients' norm at each optimizer step, the values train_one_epoch returned, and the model's weights
    afterwards."""
    opt, scheduler, events, grad_norms = recorded_optimizer(model, lr, optimizer)
    device = next(model.parameters()).device
    # (the worker answers calls without autograd unless asked for a backward pass)
    with torch.enable_grad(), replaced_names(train_one_epoch, {"compute_loss": compute_loss}):
        returned = [train_one_epoch(model, batches, opt, scheduler, device=device, clip_norm=clip_norm) for _ in range(epochs)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return lambda: {"events": events, "grad_norms": grad_norms, "returned": returned, "state": state}
