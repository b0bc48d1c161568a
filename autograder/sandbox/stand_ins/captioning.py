"""Stand-ins of the captioning assignment: nn.TransformerDecoderLayer behind the notebook's DecoderLayer interface
(x, memory, tgt_mask), a captioning model whose scores are looked up in a table (what `sample` is tested on,
without the student's own forward), and a saved model's `sample` method as a function. Attention stand-ins
(torch_mha) and the reference masks (with_reference_masks) are the Transformer assignment's."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register


@register("torch_caption_decoder_layer")
class TorchCaptionDecoderLayer(nn.Module):
    """nn.TransformerDecoderLayer (post-norm, ReLU, no dropout): x (N, T, D) and memory (N, P, D), tgt_mask in the
    assignment's convention (bool, True = may attend; (T, T)). The image memory is not masked."""

    def __init__(self, embed_dim: int, num_heads: int, ff_dim: int):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(embed_dim, num_heads, ff_dim, dropout=0.0, batch_first=True)

    def forward(self, x, memory, tgt_mask=None):
        return self.layer(x, memory, tgt_mask=None if tgt_mask is None else ~tgt_mask)


@register("sample_with_lookup_scores")
def sample_with_lookup_scores(model: nn.Module, table: torch.Tensor):
    """`model.sample` (the student's) with the model's forward replaced by a table: the scores after word w for the
    image whose features[:, 0, 0] is i are one_hot(table[i, w]). Sampling from it has a known answer."""
    vocab = table.shape[1]

    def forward(features, captions):
        images = features[:, 0, 0].long()
        return F.one_hot(table.to(captions.device)[images[:, None], captions], vocab).float()  # (N, T, V)

    model.forward = forward
    return model.sample


@register("bound_method")
def bound_method(target: nn.Module, method: str):
    """`target.method` as a function (a saved model's `sample`)."""
    return getattr(target, method)
