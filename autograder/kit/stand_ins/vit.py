"""Stand-ins of the ViT assignment: torch / torchvision layers behind the notebook's Patchify, Attention, MLP, Block."""
from __future__ import annotations

import torch.nn as nn

from . import register


@register("torch_attention")
class TorchAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(d_model, num_heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


@register("torch_mlp")
class TorchMLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@register("conv_patchify")
class ConvPatchify(nn.Module):
    def __init__(self, in_channels: int, patch_size: int, d_model: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


@register("torchvision_block")
def torchvision_block(d_model: int, num_heads: int, d_ff: int) -> nn.Module:
    """torchvision's ViT encoder block (same parameter names), no dropout. torchvision is imported here, not with
    the package: every judge imports the package, and only the ViT tests need it."""
    from functools import partial

    from torchvision.models.vision_transformer import EncoderBlock

    return EncoderBlock(num_heads, d_model, d_ff, 0.0, 0.0, partial(nn.LayerNorm, eps=1e-6))
