"""Stand-ins of the captioning assignment: nn.TransformerDecoderLayer behind the notebook's DecoderLayer interface
(x, memory, tgt_mask). Attention stand-ins (torch_mha) and the reference masks are the Transformer assignment's."""
from __future__ import annotations

import torch.nn as nn

from . import register


@register("torch_caption_decoder_layer")
class TorchCaptionDecoderLayer(nn.Module):
    """nn.TransformerDecoderLayer (post-norm, ReLU, no dropout): x (B, T, D) and memory (B, P, D), tgt_mask in the
    assignment's convention (bool, True = may attend; (T, T)). The image memory is not masked."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(d_model, num_heads, d_ff, dropout=0.0, batch_first=True)

    def forward(self, x, memory, tgt_mask=None):
        return self.layer(x, memory, tgt_mask=None if tgt_mask is None else ~tgt_mask)
