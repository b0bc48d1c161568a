"""Drivers of the Transformer and captioning assignments: a student's model or greedy_decode called with the
grader's masks (stand-ins the grader holds) in its notebook."""
from __future__ import annotations

from collections.abc import Callable

from . import register, replaced_names


@register("with_reference_masks")
def with_reference_masks(target, make_padding_mask: Callable, make_causal_mask: Callable):
    """`target` (the student's Transformer, or greedy_decode) called with the given make_padding_mask and
    make_causal_mask in its notebook: the masks are tested on their own."""
    def run(*args, **kwargs):
        with replaced_names(target, {"make_padding_mask": make_padding_mask, "make_causal_mask": make_causal_mask}):
            return target(*args, **kwargs)
    return run
