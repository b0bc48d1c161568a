"""Dropout that both sides can replay: the hidden tests check a student's dropout in train mode by running the
student's module (in the worker) and a reference (in the trusted process) under the same masks.

torch's own masks depend on the device (CPU and CUDA generators differ) and on the tensor's memory layout (an
einsum or a transpose gives a correct answer other strides, hence other masks). Inside `replayed_dropout(seed)`,
F.dropout (which nn.Dropout calls) and torch.dropout draw their mask on the CPU from a generator seeded with
`seed`, in the tensor's logical row-major order: the k-th dropout call gets the same mask on either side, whatever
the device or layout. So a student's dropout matches the reference exactly when it is applied where the notebook
says, in the order the notebook says, as nn.Dropout, or F.dropout / torch.dropout with the module's training flag.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from . import register


def _replayed(generator: torch.Generator, calls: list[float]):
    def dropout(input, p=0.5, training=True, inplace=False):
        if not training or p == 0.0:
            return input
        calls.append(float(p))
        keep = torch.rand(tuple(input.shape), generator=generator) >= p  # (row-major, on the CPU)
        mask = keep.to(device=input.device, dtype=input.dtype) / (1.0 - p)
        return input.mul_(mask) if inplace else input * mask
    return dropout


@contextlib.contextmanager
def replayed_dropout(seed: int) -> Iterator[list[float]]:
    """F.dropout (and torch.dropout, its functional twin) replaced by replayable masks (see the module's docstring)
    while the block runs; yields the list of the p of every dropout call that drew a mask, in order."""
    calls: list[float] = []
    dropout = _replayed(torch.Generator().manual_seed(seed), calls)
    originals = F.dropout, torch.dropout
    F.dropout = dropout
    torch.dropout = lambda input, p, train: dropout(input, p, train)
    try:
        yield calls
    finally:
        F.dropout, torch.dropout = originals


@register("train_mode_forward")
def train_mode_forward(module, seed: int = 0):
    """A function: (*inputs) -> module(*inputs) in train mode under replayed_dropout(seed), and the p of each
    dropout call the module made: {"output": ..., "dropout_calls": [...]}."""
    def run(*inputs):
        module.train()
        with replayed_dropout(seed) as calls:
            output = module(*inputs)
        return {"output": output, "dropout_calls": calls}
    return run
