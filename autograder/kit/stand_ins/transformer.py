"""Stand-ins of the Transformer assignment: attention, feed-forward and encoder/decoder layers from torch behind
the notebook's interfaces, and a whole seeded encoder-decoder for testing greedy_decode."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.kit.attention_reference import sdpa_attention
from autograder.kit.requests import stand_in

from . import register


# Masks follow the assignment's convention: bool, broadcastable to (B, num_heads, T_q, T_k), True = may attend.
@register("torch_mha")
class TorchMHA(nn.Module):
    """Multi-head attention with the student's parameter names (q_proj, k_proj, v_proj, out_proj), computed
    by F.scaled_dot_product_attention, whose bool mask has the same meaning (True = may attend)."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, query, key, value, mask=None):
        projections = {"q_proj": self.q_proj, "k_proj": self.k_proj, "v_proj": self.v_proj, "out_proj": self.out_proj}
        return sdpa_attention(projections, self.num_heads, query, key, value, mask)


@register("torch_feedforward")
class TorchFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(F.relu(self.linear1(x)))


def _torch_attn_mask(mask, batch: int, num_heads: int, t_q: int, t_k: int):
    """The assignment's mask (True = may attend) as torch's attn_mask (True = not allowed), (B * nh, T_q, T_k)."""
    if mask is None:
        return None
    return ~mask.expand(batch, num_heads, t_q, t_k).reshape(batch * num_heads, t_q, t_k)


@register("torch_encoder_layer")
class TorchEncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer (post-norm, ReLU, no dropout) behind the student's EncoderLayer interface."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.num_heads = num_heads
        self.layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=0.0, batch_first=True)

    def forward(self, x, src_mask=None):
        B, S, _ = x.shape
        return self.layer(x, src_mask=_torch_attn_mask(src_mask, B, self.num_heads, S, S))


@register("torch_decoder_layer")
class TorchDecoderLayer(nn.Module):
    """nn.TransformerDecoderLayer (post-norm, ReLU, no dropout) behind the student's DecoderLayer interface."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.num_heads = num_heads
        self.layer = nn.TransformerDecoderLayer(d_model, num_heads, d_ff, dropout=0.0, batch_first=True)

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        B, T, _ = x.shape
        S = memory.shape[1]
        return self.layer(x, memory, tgt_mask=_torch_attn_mask(tgt_mask, B, self.num_heads, T, T),
                          memory_mask=_torch_attn_mask(src_mask, B, self.num_heads, T, S))


def _sinusoidal_table(max_len: int, d_model: int):
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    angles = position * 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angles), torch.cos(angles[:, :d_model // 2])
    return pe.float()


@register("torch_seq2seq")
class TorchSeq2Seq(nn.Module):
    """A whole encoder-decoder with the student's Transformer interface (encode, decode, generator), built
    from torch layers and filled with seeded weights: what greedy_decode is tested on, without the
    student's own layers."""
    pe: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, d_ff: int, num_layers: int, seed: int,
                 eos_bias: float = 0.0, eos_id: int = 2):
        super().__init__()
        from dlcourse.checks import fill_parameters_

        self.d_model = d_model
        self.src_embed, self.tgt_embed = nn.Embedding(vocab_size, d_model), nn.Embedding(vocab_size, d_model)
        self.encoder_layers = nn.ModuleList([TorchEncoderLayer(d_model, num_heads, d_ff) for _ in range(num_layers)])
        self.decoder_layers = nn.ModuleList([TorchDecoderLayer(d_model, num_heads, d_ff) for _ in range(num_layers)])
        self.generator = nn.Linear(d_model, vocab_size)
        self.register_buffer("pe", _sinusoidal_table(64, d_model), persistent=False)
        fill_parameters_(self, seed=seed, scale=0.3)
        with torch.no_grad():  # logits driven by the input rather than by biases, so that rows differ
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            self.generator.bias.zero_()
            self.generator.bias[eos_id] = eos_bias  # makes EOS come at different steps in different rows
        self.eval()

    def encode(self, src, src_mask):
        x = self.src_embed(src) * math.sqrt(self.d_model) + self.pe[:src.shape[1]]
        for layer in self.encoder_layers:
            x = layer(x, src_mask)
        return x

    def decode(self, tgt, memory, src_mask, tgt_mask):
        x = self.tgt_embed(tgt) * math.sqrt(self.d_model) + self.pe[:tgt.shape[1]]
        for layer in self.decoder_layers:
            x = layer(x, memory, src_mask, tgt_mask)
        return x

    def forward(self, src, tgt):
        raise RuntimeError("greedy_decode should use encode / decode / generator")


@register("reference_padding_mask")
def padding_mask_stand_in():
    return reference_padding_mask


@register("reference_causal_mask")
def causal_mask_stand_in():
    return reference_causal_mask


def reference_padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The notebook's make_padding_mask: (B, T) -> (B, 1, 1, T), True where the token is not padding."""
    return (tokens != pad_id)[:, None, None, :]


def reference_causal_mask(T: int, device=None) -> torch.Tensor:
    """The notebook's make_causal_mask: (T, T), True on and below the diagonal."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def with_reference_masks(target: dict) -> dict:
    """The request spec: `target` (the student's Transformer, or greedy_decode; a spec) called with the grader's
    make_padding_mask and make_causal_mask in its notebook, so that the masks are tested on their own."""
    return stand_in("with_reference_masks", target=target, make_padding_mask=stand_in("reference_padding_mask"),
                    make_causal_mask=stand_in("reference_causal_mask"))


def layer_substitutes(d_model: int, heads: int, d_ff: int, attentions) -> dict:
    """torch attention (`attentions`, the notebook's submodule names) and feed-forward stand-ins for a layer's test
    (the Transformer's encoder and decoder layers, captioning's decoder layer)."""
    subs = {a: stand_in("torch_mha", d_model=d_model, num_heads=heads) for a in attentions}
    subs["ff"] = stand_in("torch_feedforward", d_model=d_model, d_ff=d_ff)
    return subs
