"""Reference layers the worker can put in place of a student's sublayer or pass to a student's function.

A test of one layer (say Block) should not depend on the student's other layers (say Attention), so that
a bug costs points once: the hidden test asks the worker to substitute a stand-in built only from
torch / torchvision / transformers. Stand-ins run on the untrusted side; they hold no answers.

Each assignment adds its stand-ins in its own section and registers them in STAND_INS by name.
"""
from __future__ import annotations

from functools import partial

import torch.nn as nn
from torchvision.models.vision_transformer import EncoderBlock


# -- vit ---------------------------------------------------------------------------------------------
class TorchAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


class TorchMLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ConvPatchify(nn.Module):
    def __init__(self, in_channels: int, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def torchvision_block(dim: int, num_heads: int, mlp_dim: int):
    return EncoderBlock(num_heads, dim, mlp_dim, 0.0, 0.0, partial(nn.LayerNorm, eps=1e-6))


# name -> factory; a later assignment section adds its own with STAND_INS.update({...}).
STAND_INS = {"torch_attention": TorchAttention, "torch_mlp": TorchMLP, "conv_patchify": ConvPatchify,
             "torchvision_block": torchvision_block}

