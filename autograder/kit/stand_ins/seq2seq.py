"""Stand-ins of the seq2seq assignment: attention, the bidirectional encoder and the decoder step built from torch
behind the notebook's interfaces, and a whole seeded encoder-decoder for testing greedy_translate.

They are written unlike the notebook's solution on purpose, so that they are a second opinion: the encoder runs
each sentence alone, without padding or packing, and attention is spelled out as scores, softmax and a sum.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import register

RECURRENT = {"lstm": nn.LSTM, "rnn": nn.RNN}
CELLS = {"lstm": nn.LSTMCell, "rnn": nn.RNNCell}


def attention(kind: str, query, keys, src_mask, scale: float = 10.0):
    """The assignment's attention (kind "dot" or "cosine"): (context (B, H), weights (B, S)), padding at weight 0."""
    scores = (keys * query[:, None, :]).sum(-1)  # (B, S)
    if kind == "cosine":
        scores = scale * scores / torch.clamp(keys.norm(dim=-1) * query.norm(dim=-1)[:, None], min=1e-8)
    scores = torch.where(src_mask, scores, torch.full_like(scores, torch.finfo(scores.dtype).min))
    weights = torch.softmax(scores, dim=1)
    return (weights[:, :, None] * keys).sum(1), weights


@register("reference_attention")
def reference_attention(score: str = "dot"):
    """A function with the signature of the notebook's dot_attention / cosine_attention (what AttnDecoder.attend holds)."""
    return lambda query, keys, src_mask: attention(score, query, keys, src_mask)


@register("lstm_encoder")
class ReferenceEncoder(nn.Module):
    """The notebook's Encoder (same parameter names), computed one sentence at a time on its real tokens only."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, model_type: str = "lstm", pad_id: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = RECURRENT[model_type](embed_dim, hidden_size // 2, batch_first=True, bidirectional=True)

    def forward(self, src, src_lengths):
        rows, finals = [], []
        for b in range(src.shape[0]):
            n = int(src_lengths[b])
            out, final = self.rnn(self.embedding(src[b:b + 1, :n]))  # (1, n, H); final (2, 1, H/2) each
            rows.append(torch.cat([out[0], out.new_zeros(src.shape[1] - n, out.shape[-1])]))  # zeros at the padding
            finals.append(final)
        outputs = torch.stack(rows)  # (B, S, H)
        join = lambda states: torch.cat([torch.cat([s[0], s[1]], dim=-1) for s in states])  # noqa: E731  (B, H)
        if isinstance(finals[0], tuple):
            return outputs, (join([f[0] for f in finals]), join([f[1] for f in finals]))
        return outputs, join(finals)


@register("lstm_decoder_step")
class ReferenceDecoder(nn.Module):
    """The notebook's AttnDecoder step (same parameter names): cell, attention, tanh(combine([h; context])), out."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, model_type: str = "lstm",
                 attention: str | None = "dot", pad_id: int = 0):
        super().__init__()
        self.kind = attention
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.cell = CELLS[model_type](embed_dim, hidden_size)
        self.combine = nn.Linear(2 * hidden_size, hidden_size) if attention is not None else None
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, prev_token, state, encoder_outputs, src_mask):
        state = self.cell(self.embedding(prev_token), tuple(state) if isinstance(state, list) else state)
        h = state[0] if isinstance(state, tuple) else state
        if self.kind is None or self.combine is None:  # (both None without attention)
            return self.out(h), state, None
        context, weights = attention(self.kind, h, encoder_outputs, src_mask)
        return self.out(torch.tanh(self.combine(torch.cat([h, context], dim=-1)))), state, weights


@register("lstm_seq2seq")
class ReferenceSeq2Seq(nn.Module):
    """A whole model with the notebook's Seq2Seq interface (encoder, decoder), seeded weights and an EOS bias that
    makes rows end at different steps: what greedy_translate is tested on, without the student's own layers."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, seed: int, eos_bias: float = 0.0,
                 eos_id: int = 2):
        super().__init__()
        from dlcourse.checks import fill_parameters_

        self.encoder = ReferenceEncoder(vocab_size, embed_dim, hidden_size)
        self.decoder = ReferenceDecoder(vocab_size, embed_dim, hidden_size)
        fill_parameters_(self, seed=seed, scale=0.5)
        with torch.no_grad():
            self.decoder.out.bias.zero_()
            self.decoder.out.bias[eos_id] = eos_bias
        self.eval()

    def forward(self, *args, **kwargs):
        raise RuntimeError("greedy_translate should use model.encoder and model.decoder")
