"""Trusted oracles shared by the hidden tests of the attention assignments (transformer, captioning, vit): the causal
mask, the sinusoidal positional encoding by its formula, and multi-head attention as torch computes it, with its
weights under the notebooks' names (q_proj, k_proj, v_proj, out_proj; ViT's fused qkv, proj)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dlcourse.checks import fill_parameters_


def causal(T: int) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril()


def sinusoidal_reference(max_len: int, d_model: int) -> torch.Tensor:
    """The formula, one entry at a time (float64)."""
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    for pos in range(max_len):
        for j in range(d_model):
            angle = pos / 10000 ** ((j - j % 2) / d_model)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def mha_reference(d_model: int, heads: int, seed: int) -> tuple[nn.MultiheadAttention, dict]:
    mha = fill_parameters_(nn.MultiheadAttention(d_model, heads, batch_first=True), seed=seed, scale=0.3).eval()
    return mha, attention_weights("", mha)


def attention_weights(prefix: str, mha: nn.MultiheadAttention) -> dict:
    """`mha`'s weights under the notebooks' names, in the submodule `prefix` (e.g. "self_attn"; "" for the module
    itself), each with its own storage (safetensors refuses shared storage)."""
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)
    weights = {"q_proj.weight": wq, "q_proj.bias": bq, "k_proj.weight": wk, "k_proj.bias": bk, "v_proj.weight": wv,
               "v_proj.bias": bv, "out_proj.weight": mha.out_proj.weight, "out_proj.bias": mha.out_proj.bias}
    return {f"{prefix}.{key}" if prefix else key: value.detach().clone() for key, value in weights.items()}


def fused_attention_weights(mha: nn.MultiheadAttention) -> dict:
    """`mha`'s weights under the names of a self-attention with one fused projection (ViT's qkv: [queries | keys |
    values], heads contiguous in each, as torch's in_proj), and its output projection proj."""
    weights = {"qkv.weight": mha.in_proj_weight, "qkv.bias": mha.in_proj_bias, "proj.weight": mha.out_proj.weight,
               "proj.bias": mha.out_proj.bias}
    return {key: value.detach().clone() for key, value in weights.items()}


def sdpa_attention(projections: dict, heads: int, query, key, value, mask=None) -> torch.Tensor:
    """Multi-head attention computed by F.scaled_dot_product_attention, whose bool mask means what the notebooks'
    does (True = may attend), with `projections` {"q_proj", "k_proj", "v_proj", "out_proj": a linear map each}: the
    torch_mha stand-in's forward (autograder/kit/stand_ins/transformer.py) and `sdpa_reference`."""
    B, T_q, D = query.shape
    split = lambda t: t.view(B, t.shape[1], heads, D // heads).transpose(1, 2)  # noqa: E731
    y = F.scaled_dot_product_attention(split(projections["q_proj"](query)), split(projections["k_proj"](key)),
                                       split(projections["v_proj"](value)), attn_mask=mask)
    return projections["out_proj"](y.transpose(1, 2).reshape(B, T_q, D))


@torch.no_grad()
def sdpa_reference(weights: dict, heads: int, query, key, value, mask=None) -> torch.Tensor:
    """A second oracle: the torch_mha stand-in's computation (`sdpa_attention`) with `weights` (notebook names)."""
    def linear(proj: str):
        return lambda t: F.linear(t, weights[f"{proj}.weight"], weights[f"{proj}.bias"])
    return sdpa_attention({proj: linear(proj) for proj in ("q_proj", "k_proj", "v_proj", "out_proj")}, heads,
                          query, key, value, mask)
