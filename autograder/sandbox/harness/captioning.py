"""Drivers of the captioning assignment: a captioning model whose scores are looked up in a table (what `sample` is
tested on, without the student's own forward), and a saved model's `sample` method as a function."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register


@register("sample_with_lookup_scores")
def sample_with_lookup_scores(model: nn.Module, table: torch.Tensor, start: int):
    """`model.sample` (the student's) with the model's forward replaced by a table: for the image whose
    features[:, 0, 0] is i, the scores after word w are one_hot(table[i, w]), but only where the whole caption so far
    is the greedy one (<START>, table[i, <START>], ...); elsewhere they are all zero. Sampling from it has a known
    answer, which a `sample` that feeds forward less than the whole caption so far does not reach."""
    vocab = table.shape[1]

    def forward(features, captions):
        images, lookup = features[:, 0, 0].long(), table.to(captions.device)
        path = [torch.full_like(captions[:, 0], start)]
        for _ in range(captions.shape[1] - 1):
            path.append(lookup[images, path[-1]])
        on_path = (captions == torch.stack(path, 1)).long().cumprod(1)  # (B, T): the caption up to t is the greedy one
        return F.one_hot(lookup[images[:, None], captions], vocab).float() * on_path[..., None]  # (B, T, V)

    model.forward = forward
    return model.sample


@register("bound_method")
def bound_method(target: nn.Module, method: str):
    """`target.method` as a function (a saved model's `sample`)."""
    return getattr(target, method)
