"""Small values of the seq2seq tests that JSON cannot carry: a tuple (the LSTM state) and a seeded generator."""
from __future__ import annotations

import torch

from . import register


@register("tuple_of")
def tuple_of(items: list) -> tuple:
    """A tuple (a request's lists arrive as lists): the LSTM state (h, c) passed to a student's decoder."""
    return tuple(items)


@register("seeded_generator")
def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
